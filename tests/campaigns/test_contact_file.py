"""The contact files of campaigns read in resumable chunks (issue 17): results must not depend on the chunk
size, resuming must not read earlier bytes again, and memory must stay flat whatever the file's size."""

from __future__ import annotations

import datetime as dt
import gc
import os
import re
import signal
import subprocess
import sys
import time
import tracemalloc
import zipfile
from pathlib import Path

import openpyxl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from openmmp.campaigns.contact_file import (
    Chunk,
    ColumnMapping,
    ContactRow,
    Kind,
    RowError,
    Source,
    convert_xlsx,
    header,
    kind_of,
    read_chunk,
)
from openmmp.kit.phone import normalise_phone

# A file with every trap: a BOM, CRLF and bare-LF and lone-CR line ends, quoted fields spanning lines
# (with a comma and doubled quotes), blank lines, and bad rows between good ones.
TRICKY = (
    "\ufeffPhone , Name,City\r\n"  # 1
    '+855 12 000 001,"Bob\r\nSmith",Phnom Penh\r\n'  # 2-3
    "012 000 002,Alice,Siem Reap\n"  # 4
    "\r\n"  # 5
    '85512000003,"Multi\n\nline, with ""quotes""",Kampot\r'  # 6-8 (lone CR ends line 8)
    "bad phone,Carl,Kep\n"  # 9
    ",Dara,Kep\n"  # 10
    "85512000004,,Kep\n"  # 11
    "85512000005,Eve\n"  # 12
    "85512000006,Fay,Kep,extra\n"  # 13
    "85512000007,Gus,Takeo"  # 14 (no final newline)
)

EXPECTED_ROWS = [
    ContactRow(2, "85512000001", {"Name": "Bob\r\nSmith", "City": "Phnom Penh"}),
    ContactRow(4, "85512000002", {"Name": "Alice", "City": "Siem Reap"}),
    ContactRow(6, "85512000003", {"Name": 'Multi\n\nline, with "quotes"', "City": "Kampot"}),
    ContactRow(14, "85512000007", {"Name": "Gus", "City": "Takeo"}),
]
EXPECTED_ERRORS = [
    (9, "bad phone", "phone: 'bad phone' is not a valid phone number"),
    (10, "", "phone: missing"),
    (11, "85512000004", "parameter 'Name' (column 'Name'): missing"),
    (12, "85512000005", "the row has 2 columns, the header 3"),
    (13, "85512000006", "the row has 4 columns, the header 3"),
]


def _write(tmp_path: Path, text: str | bytes, name: str = "contacts.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


def _excel_quoted(cell: str) -> str:
    return '"' + cell.replace('"', '""') + '"' if any(c in cell for c in ',"\r\n') else cell


def _read_all(
    path: Path,
    max_rows: int,
    *,
    kind: Source = "csv",
    mapping: ColumnMapping | None = None,
    region: str | None = "KH",
) -> tuple[list[ContactRow], list[RowError], list[Chunk]]:
    rows: list[ContactRow] = []
    errors: list[RowError] = []
    chunks: list[Chunk] = []
    position = 0
    for _ in range(10_000):
        chunk = read_chunk(
            path,
            kind,
            mapping or ColumnMapping(),
            position=position,
            max_rows=max_rows,
            default_region=region,
        )
        assert len(chunk.rows) + len(chunk.errors) <= max_rows
        assert chunk.position >= position
        chunks.append(chunk)
        rows += chunk.rows
        errors += chunk.errors
        position = chunk.position
        if chunk.done:
            return rows, errors, chunks
    raise AssertionError("never done")


def _xlsx(tmp_path: Path, rows: list[list[object]], name: str = "contacts.xlsx") -> Path:
    book = openpyxl.Workbook(write_only=True)
    sheet = book.create_sheet("Contacts")
    for row in rows:
        sheet.append(row)
    path = tmp_path / name
    book.save(path)
    return path


class TestKind:
    @pytest.mark.parametrize(
        ("filename", "content_type", "kind"),
        [
            ("contacts.csv", "text/csv", "csv"),
            ("CONTACTS.CSV", None, "csv"),
            ("contacts.csv", "application/vnd.ms-excel", "csv"),  # what Windows browsers send
            ("contacts.xlsx", None, "xlsx"),
            ("upload", "text/csv; charset=utf-8", "csv"),
            ("upload", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", "xlsx"),
        ],
    )
    def test_by_extension_then_content_type(self, filename: str, content_type: str | None, kind: str):
        assert kind_of(filename, content_type) == kind

    @pytest.mark.parametrize(
        ("filename", "content_type", "message"),
        [
            ("contacts.xls", "application/vnd.ms-excel", r"^file: Excel 97-2003"),
            ("contacts.pdf", "application/pdf", r"^file: 'contacts.pdf' is neither a CSV nor an XLSX"),
            ("upload", None, r"^file: 'upload' is neither"),
        ],
    )
    def test_other_files_are_refused(self, filename: str, content_type: str | None, message: str):
        with pytest.raises(ValueError, match=message):
            kind_of(filename, content_type)


class TestHeaderAndMapping:
    def test_header_is_trimmed_without_bom_nor_blank_names(self, tmp_path: Path):
        path = _write(tmp_path, "\ufeff\n Phone ;Name; City ;\n1;2;3;\n")
        assert header(path, "csv") == ["Phone", "Name", "City"]

    def test_xlsx_header(self, tmp_path: Path):
        path = _xlsx(tmp_path, [[], [" Phone", "Name ", None, "City", None], ["1", "2", None, "3"]])
        assert header(path, "xlsx") == ["Phone", "Name", "City"]

    def test_columns_match_case_insensitively_and_trimmed(self, tmp_path: Path):
        path = _write(tmp_path, "PHONE,First Name,Unused\n85512000001,Bob,x\n")
        mapping = ColumnMapping(phone=" phone ", params={"name": "first name"})
        chunk = read_chunk(path, "csv", mapping, position=0, max_rows=10, default_region=None)
        assert chunk.rows == [ContactRow(2, "85512000001", {"name": "Bob"})]
        assert chunk.done

    @pytest.mark.parametrize("kind", ["csv", "xlsx"])
    @pytest.mark.parametrize(
        ("mapping", "message"),
        [
            (
                ColumnMapping(phone="mobile"),
                "mapping.phone: no column 'mobile' in the file (columns: a, b, c)",
            ),
            (
                ColumnMapping(phone="a", params={"name": "nom"}),
                "mapping.params.name: no column 'nom' in the file (columns: a, b, c)",
            ),
        ],
    )
    def test_a_mapping_naming_a_missing_column_is_refused(
        self, tmp_path: Path, kind: Kind, mapping: ColumnMapping, message: str
    ):
        if kind == "csv":
            path = _write(tmp_path, "a,b,c\n1,2,3\n")
        else:
            path = _xlsx(tmp_path, [["a", "b", "c"], [1, 2, 3]])
        with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
            read_chunk(path, kind, mapping, position=0, max_rows=10, default_region=None)

    def test_a_duplicated_column_cannot_be_mapped(self, tmp_path: Path):
        path = _write(tmp_path, "phone,Name,name,other\n85512000001,a,b,c\n")
        with pytest.raises(ValueError, match=r"^mapping.params.n: the file has two columns named 'NAME'"):
            read_chunk(
                path,
                "csv",
                ColumnMapping(params={"n": "NAME"}),
                position=0,
                max_rows=1,
                default_region=None,
            )
        with pytest.raises(ValueError, match=r"^file: two columns are named 'Name'"):
            read_chunk(path, "csv", ColumnMapping(), position=0, max_rows=1, default_region=None)
        # Unmapped, the duplicate is harmless.
        chunk = read_chunk(
            path, "csv", ColumnMapping(params={"o": "other"}), position=0, max_rows=1, default_region=None
        )
        assert chunk.rows == [ContactRow(2, "85512000001", {"o": "c"})]

    @pytest.mark.parametrize("content", ["", "\ufeff", "\n\r\n  \n", ",,\n"])
    def test_a_file_without_a_header_is_refused(self, tmp_path: Path, content: str):
        path = _write(tmp_path, content)
        with pytest.raises(ValueError, match=r"^file: empty, no header row"):
            header(path, "csv")
        with pytest.raises(ValueError, match=r"^file: empty, no header row"):
            read_chunk(path, "csv", ColumnMapping(), position=0, max_rows=1, default_region=None)


class TestCsv:
    def test_one_pass(self, tmp_path: Path):
        rows, errors, chunks = _read_all(_write(tmp_path, TRICKY), 1000)
        assert rows == EXPECTED_ROWS
        assert [(e.line, e.phone, e.error) for e in errors] == EXPECTED_ERRORS
        assert len(chunks) == 1
        assert chunks[0].bytes_read == len(TRICKY.encode())

    @pytest.mark.parametrize("max_rows", [1, 2, 3, 7])
    def test_chunks_of_any_size_give_the_one_pass_result(self, tmp_path: Path, max_rows: int):
        path = _write(tmp_path, TRICKY)
        one_pass = _read_all(path, 1000)
        rows, errors, chunks = _read_all(path, max_rows)
        assert (rows, errors) == one_pass[:2]
        assert len(chunks) > 1
        assert [c.bytes_read for c in chunks] == sorted(c.bytes_read for c in chunks)
        assert chunks[-1].bytes_read == len(TRICKY.encode())
        assert all(0 <= c.position < 2**63 for c in chunks)

    @settings(max_examples=60, deadline=None)
    @given(
        cells=st.lists(
            st.text(alphabet=st.sampled_from('ab ,;"\r\né'), max_size=12), min_size=1, max_size=12
        ),
        terminator=st.sampled_from(["\n", "\r\n", "\r"]),
        max_rows=st.integers(1, 5),
    )
    def test_whatever_csv_writes_is_read_back_in_any_chunks(
        self, tmp_path_factory: pytest.TempPathFactory, cells: list[str], terminator: str, max_rows: int
    ):
        # Quoted as Excel quotes (csv.writer leaves a `\r` unquoted when lines end with `\n`).
        lines = [
            "phone,note",
            *(f"+85512{i:06d},{_excel_quoted('x' + cell)}" for i, cell in enumerate(cells)),
        ]
        text = "".join(line + terminator for line in lines)
        path = _write(tmp_path_factory.mktemp("csv"), text)
        rows, errors, _ = _read_all(path, max_rows)
        assert errors == []
        assert [(r.phone, r.params) for r in rows] == [
            (f"85512{i:06d}", {"note": f"x{cell}".strip()}) for i, cell in enumerate(cells)
        ]
        assert [r.line for r in rows] == [r.line for r in _read_all(path, 1000)[0]]

    def test_exactly_at_the_end_a_chunk_is_done(self, tmp_path: Path):
        path = _write(tmp_path, "phone\n85512000001\n85512000002\n")
        chunk = read_chunk(path, "csv", ColumnMapping(), position=0, max_rows=2, default_region=None)
        assert len(chunk.rows) == 2
        assert chunk.done

    def test_resuming_never_reads_the_bytes_before_the_position(self, tmp_path: Path):
        """Bytes between the header and the position are overwritten: the next chunks do not notice."""
        path = _write(tmp_path, TRICKY)
        first = read_chunk(path, "csv", ColumnMapping(), position=0, max_rows=3, default_region="KH")
        data = bytearray(path.read_bytes())
        header_end = data.index(b"\r\n") + 2
        data[header_end : first.bytes_read] = b"\xff" * (first.bytes_read - header_end)  # not even UTF-8
        path.write_bytes(bytes(data))
        rows, errors, _ = _read_all_from(path, first.position, 2)
        assert first.rows + rows == EXPECTED_ROWS
        assert [(e.line, e.phone, e.error) for e in first.errors + errors] == EXPECTED_ERRORS

    def test_semicolons_and_tabs_are_taken_as_excel_writes_them(self, tmp_path: Path):
        for delimiter in (";", "\t"):
            path = _write(tmp_path, f"phone{delimiter}amount\n85512000001{delimiter}1,50\n")
            chunk = read_chunk(path, "csv", ColumnMapping(), position=0, max_rows=5, default_region=None)
            assert chunk.rows == [ContactRow(2, "85512000001", {"amount": "1,50"})]

    def test_national_numbers_need_a_region(self, tmp_path: Path):
        path = _write(tmp_path, "phone\n012 000 001\n(012) 000-002\n+855 12 000 003\n")
        kh = read_chunk(path, "csv", ColumnMapping(), position=0, max_rows=5, default_region="KH")
        assert [r.phone for r in kh.rows] == ["85512000001", "85512000002", "85512000003"]
        assert kh.errors == []
        none = read_chunk(path, "csv", ColumnMapping(), position=0, max_rows=5, default_region=None)
        assert [r.phone for r in none.rows] == ["85512000003"]
        assert [(e.line, e.phone) for e in none.errors] == [(2, "012 000 001"), (3, "(012) 000-002")]
        assert all("is not a valid phone number" in e.error for e in none.errors)

    def test_whitespace_only_cells_are_missing_and_every_problem_is_told(self, tmp_path: Path):
        path = _write(tmp_path, "phone,a,b\n  ,  , x\n")
        chunk = read_chunk(path, "csv", ColumnMapping(), position=0, max_rows=5, default_region=None)
        assert chunk.errors == [RowError(2, "", "phone: missing; parameter 'a' (column 'a'): missing")]

    def test_explicit_params_ignore_other_columns(self, tmp_path: Path):
        path = _write(tmp_path, "phone,name,notes\n85512000001,Bob,\n")
        mapping = ColumnMapping(params={"first": "name"})
        chunk = read_chunk(path, "csv", mapping, position=0, max_rows=5, default_region=None)
        assert chunk.rows == [ContactRow(2, "85512000001", {"first": "Bob"})]

    def test_a_cell_over_1000_characters_is_a_row_error(self, tmp_path: Path):
        path = _write(tmp_path, f"phone,note\n85512000001,{'x' * 1001}\n85512000002,{'y' * 1000}\n")
        chunk = read_chunk(path, "csv", ColumnMapping(), position=0, max_rows=5, default_region=None)
        assert chunk.errors == [RowError(2, "85512000001", "column 'note': longer than 1,000 characters")]
        assert chunk.rows == [ContactRow(3, "85512000002", {"note": "y" * 1000})]

    def test_an_unbalanced_quote_costs_its_line_only(self, tmp_path: Path):
        path = _write(
            tmp_path, 'phone,name\n85512000001,"Bob\n85512000002,Al\n85512000003,"Cy" x\n85512000004,Di\n'
        )
        rows, errors, _ = _read_all(path, 1)
        assert [(r.line, r.phone) for r in rows] == [(3, "85512000002"), (5, "85512000004")]
        assert [e.line for e in errors] == [2, 4]
        assert all(e.error.startswith("not valid CSV") for e in errors)

    def test_a_record_over_a_mebibyte_is_skipped_in_flat_memory(self, tmp_path: Path):
        """An unbalanced quote before a large rest of the file: one error, then the rows after it (the
        csv module's field limit, 128 KiB, stops the record first)."""
        body = "".join(f"85512{i:06d},n{i}\n" for i in range(90_000))  # > 1 MiB
        path = _write(tmp_path, f'phone,name\n"85512999999,x\n{body}')
        first = read_chunk(path, "csv", ColumnMapping(), position=0, max_rows=2, default_region=None)
        assert [e.line for e in first.errors] == [2]
        assert first.errors[0].error.startswith("not valid CSV (field larger than field limit")
        assert first.rows == [ContactRow(3, "85512000000", {"name": "n0"})]

    def test_a_line_without_end_over_a_mebibyte_is_skipped(self, tmp_path: Path):
        path = _write(tmp_path, "phone,name\n" + "9" * (3 << 20) + "\r85512000001,ok\n")
        rows, errors, _ = _read_all(path, 1)
        assert [e.line for e in errors] == [2]
        assert rows == [ContactRow(3, "85512000001", {"name": "ok"})]

    def test_non_utf8_is_refused_at_its_chunk(self, tmp_path: Path):
        lines = [f"85512{i:06d},n{i}" for i in range(10)]
        lines[6] = "85512000006,Fran\xe7ois"
        path = _write(tmp_path, ("phone,name\n" + "\n".join(lines) + "\n").encode("latin-1"))
        first = read_chunk(path, "csv", ColumnMapping(), position=0, max_rows=5, default_region=None)
        assert len(first.rows) == 5
        with pytest.raises(ValueError, match=r"^file: not UTF-8 text \(line 8\)"):
            read_chunk(path, "csv", ColumnMapping(), position=first.position, max_rows=5, default_region=None)

    def test_a_latin1_header_is_refused(self, tmp_path: Path):
        path = _write(tmp_path, "t\xe9l\xe9phone\n1\n".encode("latin-1"))
        with pytest.raises(ValueError, match=r"^file: not UTF-8 text \(line 1\)"):
            header(path, "csv")

    def test_memory_stays_flat_over_200000_rows(self, tmp_path: Path):
        """Peak traced memory over a whole 200,000-row read in chunks of 5,000 stays under 20 MiB, less
        than the file itself. The phones repeat 5,000 numbers so that the phone parser's cache, which is
        not the reader's, stays small and fast."""
        path = tmp_path / "big.csv"
        with path.open("w") as file:
            file.write("phone,first,last\n")
            for i in range(200_000):
                file.write(f"+85512{i % 5_000:06d},{'First name ' * 4}{i},{'Last name ' * 4}{i}\n")
        normalise_phone.cache_clear()
        gc.collect()
        tracemalloc.start()
        try:
            total = 0
            position = 0
            while True:
                chunk = read_chunk(
                    path, "csv", ColumnMapping(), position=position, max_rows=5_000, default_region=None
                )
                total += len(chunk.rows)
                assert chunk.errors == []
                position = chunk.position
                if chunk.done:
                    break
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert total == 200_000
        assert path.stat().st_size > 20 * 2**20
        assert peak < 20 * 2**20, f"peak {peak:,} bytes"


class TestXlsx:
    ROWS: list[list[object]] = [
        ["Phone", "Name", "Joined"],
        [85512000001, "Bob", dt.datetime(2024, 5, 1)],
        ["012 000 002", "Alice", dt.datetime(2024, 5, 1, 9, 30)],
        [None, None, None],
        [85512000003.0, "Cy", 3.5],
        ["bad", "Di", 1],
        [85512000005, None, 2],
        [85512000006, "Ed", True],
    ]

    def test_rows_errors_and_row_numbers(self, tmp_path: Path):
        path = _xlsx(tmp_path, self.ROWS)
        rows, errors, chunks = _read_all(path, 100, kind="xlsx")
        assert rows == [
            ContactRow(2, "85512000001", {"Name": "Bob", "Joined": "2024-05-01"}),
            ContactRow(3, "85512000002", {"Name": "Alice", "Joined": "2024-05-01 09:30:00"}),
            ContactRow(5, "85512000003", {"Name": "Cy", "Joined": "3.5"}),
            ContactRow(8, "85512000006", {"Name": "Ed", "Joined": "TRUE"}),
        ]
        assert errors == [
            RowError(6, "bad", "phone: 'bad' is not a valid phone number"),
            RowError(7, "85512000005", "parameter 'Name' (column 'Name'): missing"),
        ]
        assert len(chunks) == 1
        assert chunks[0].bytes_read == path.stat().st_size

    @pytest.mark.parametrize("max_rows", [1, 2, 3, 7])
    def test_chunks_of_any_size_give_the_one_pass_result(self, tmp_path: Path, max_rows: int):
        path = _xlsx(tmp_path, self.ROWS)
        one_pass = _read_all(path, 100, kind="xlsx")
        rows, errors, chunks = _read_all(path, max_rows, kind="xlsx")
        assert (rows, errors) == one_pass[:2]
        assert [c.position for c in chunks] == [min(i * max_rows, 7) for i in range(1, len(chunks) + 1)]
        assert chunks[-1].done

    def test_the_first_sheet_is_read_after_leading_blank_rows(self, tmp_path: Path):
        book = openpyxl.Workbook()
        first = book.active
        assert first is not None
        first.cell(row=3, column=2, value="phone")
        first.cell(row=4, column=2, value="85512000001")
        other = book.create_sheet("Other")
        other.append(["phone"])
        other.append(["85512000009"])
        book.active = 1
        path = tmp_path / "two.xlsx"
        book.save(path)
        chunk = read_chunk(path, "xlsx", ColumnMapping(), position=0, max_rows=5, default_region=None)
        assert chunk.rows == [ContactRow(4, "85512000001", {})]

    def test_a_large_sheet_is_streamed(self, tmp_path: Path):
        """A chunk near the end of a 30,000-row sheet holds that chunk, not the sheet (loaded whole, it
        takes over 20 MiB)."""
        path = _xlsx(tmp_path, [["phone", "n"], *([85512000000 + i, i] for i in range(30_000))])
        gc.collect()
        tracemalloc.start()
        try:
            chunk = read_chunk(
                path, "xlsx", ColumnMapping(), position=29_990, max_rows=100, default_region=None
            )
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert [r.line for r in chunk.rows] == list(range(29_992, 30_002))
        assert chunk.rows[-1] == ContactRow(30_001, "85512029999", {"n": "29999"})
        assert chunk.done
        # Half of what the sheet takes loaded whole: room for what else the process caches meanwhile.
        assert peak < 10 * 2**20, f"peak {peak:,} bytes"

    @pytest.mark.parametrize("content", [b"phone\n85512000001\n", b"PK\x03\x04 not a zip", b""])
    def test_a_file_that_is_no_workbook_is_refused(self, tmp_path: Path, content: bytes):
        path = _write(tmp_path, content, "contacts.xlsx")
        with pytest.raises(ValueError, match=r"^file: not a valid XLSX workbook"):
            read_chunk(path, "xlsx", ColumnMapping(), position=0, max_rows=5, default_region=None)
        with pytest.raises(ValueError, match=r"^file: not a valid XLSX workbook"):
            header(path, "xlsx")

    def test_an_empty_sheet_has_no_header(self, tmp_path: Path):
        path = _xlsx(tmp_path, [])
        with pytest.raises(ValueError, match=r"^file: empty, no header row"):
            header(path, "xlsx")


@pytest.fixture(scope="module")
def large_sheet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """30,000 rows of a phone and a number: loaded whole, the sheet takes over 20 MiB."""
    return _xlsx(
        tmp_path_factory.mktemp("large"), [["phone", "n"], *([85512000000 + i, i] for i in range(30_000))]
    )


def _convert(xlsx: Path, name: str = "contacts.xlsx.csv") -> Path:
    target = xlsx.parent / name
    convert_xlsx(xlsx, target)
    return target


class TestConvertedXlsx:
    """A sheet converted once to a CSV (`convert_xlsx`) reads as the sheet does, chunk by chunk from byte
    offsets: the same rows and errors, the sheet's row numbers, the same cell text."""

    @pytest.mark.parametrize("max_rows", [1, 2, 3, 7, 100])
    def test_it_gives_the_sheets_rows_and_errors_in_chunks_of_any_size(self, tmp_path: Path, max_rows: int):
        xlsx = _xlsx(tmp_path, TestXlsx.ROWS)
        sheet_rows, sheet_errors, _ = _read_all(xlsx, 100, kind="xlsx")
        converted = _convert(xlsx)
        rows, errors, chunks = _read_all(converted, max_rows, kind="xlsx-csv")
        assert (rows, errors) == (sheet_rows, sheet_errors)
        assert [r.line for r in rows] == [2, 3, 5, 8]
        assert [c.bytes_read for c in chunks] == sorted(c.bytes_read for c in chunks)
        assert chunks[-1].done
        assert chunks[-1].bytes_read == converted.stat().st_size
        assert not any(c.done for c in chunks[:-1])

    @settings(max_examples=40, deadline=None)
    @given(
        rows=st.lists(
            st.lists(
                st.one_of(
                    st.none(),
                    st.text(alphabet=st.sampled_from('ab ,;"\r\n\té'), max_size=10),
                    st.sampled_from(["+85512000001", "012 000 002", 85512000003, 85512000004.0]),
                    st.integers(-(10**15), 10**15),
                    st.floats(allow_nan=False, allow_infinity=False),
                    st.booleans(),
                    st.datetimes(min_value=dt.datetime(1900, 3, 1), max_value=dt.datetime(9999, 1, 1)),
                ),
                max_size=6,
            ),
            max_size=8,
        ),
        max_rows=st.integers(1, 4),
    )
    def test_whatever_a_sheet_holds_reads_the_same_converted(
        self, tmp_path_factory: pytest.TempPathFactory, rows: list[list[object]], max_rows: int
    ):
        # A header with a `;` would make a CSV sniffer take `;` for the delimiter.
        folder = tmp_path_factory.mktemp("sheet")
        xlsx = _xlsx(folder, [[" Phone ", "a;b;c", None, "d"], *rows])
        sheet = _read_all(xlsx, 100, kind="xlsx")
        converted = _read_all(_convert(xlsx), max_rows, kind="xlsx-csv")
        assert converted[:2] == sheet[:2]

    def test_a_cell_over_1000_characters_is_the_same_error_and_is_cut_short(self, tmp_path: Path):
        long_phone = "8" * 5_000
        spaced = "x" * 1_000 + " " * 10 + "y"  # cut at 1,000 characters, it would be trimmed to a good one
        rows: list[list[object]] = [
            ["phone", "name"],
            [long_phone, "Bob"],
            [85512000002, spaced],
            [85512000003, "z" * 1_000 + "   "],
        ]
        xlsx = _xlsx(tmp_path, rows)
        converted = _convert(xlsx)
        assert (
            _read_all(converted, 2, kind="xlsx-csv")[:2]
            == _read_all(xlsx, 100, kind="xlsx")[:2]
            == (
                [ContactRow(4, "85512000003", {"name": "z" * 1_000})],
                [
                    RowError(2, "8" * 64, "column 'phone': longer than 1,000 characters"),
                    RowError(3, "85512000002", "column 'name': longer than 1,000 characters"),
                ],
            )
        )
        assert converted.stat().st_size < 4_000

    def test_a_carriage_return_in_a_cell_stays_in_its_cell(self, tmp_path: Path):
        """XML reads a raw `\\r` as `\\n`, but `&#13;` as a `\\r`: the converted CSV must quote a lone one,
        which a reader of lines takes for the end of a line."""
        xlsx = _xlsx(tmp_path, [["phone", "note"], [85512000001, "a{CR}b"], [85512000002, "c{CR}{CR}"]])
        with zipfile.ZipFile(xlsx) as book:
            parts = {name: book.read(name) for name in book.namelist()}
        with zipfile.ZipFile(xlsx, "w") as book:
            for name, data in parts.items():
                book.writestr(name, data.replace(b"{CR}", b"&#13;"))
        sheet = _read_all(xlsx, 100, kind="xlsx", region=None)
        assert sheet[0] == [
            ContactRow(2, "85512000001", {"note": "a\rb"}),
            ContactRow(3, "85512000002", {"note": "c"}),
        ]
        assert _read_all(_convert(xlsx), 1, kind="xlsx-csv", region=None)[:2] == sheet[:2]

    def test_rows_keep_their_numbers_after_leading_blank_rows(self, tmp_path: Path):
        book = openpyxl.Workbook()
        sheet = book.active
        assert sheet is not None
        sheet.cell(row=3, column=2, value="phone")
        sheet.cell(row=4, column=2, value="85512000001")
        sheet.cell(row=9, column=2, value=85512000002)
        path = tmp_path / "gaps.xlsx"
        book.save(path)
        rows, errors, _ = _read_all(_convert(path), 1, kind="xlsx-csv")
        assert rows == [ContactRow(4, "85512000001", {}), ContactRow(9, "85512000002", {})]
        assert errors == []

    def test_a_mapping_naming_a_missing_column_is_refused(self, tmp_path: Path):
        converted = _convert(_xlsx(tmp_path, [["a", "b"], [1, 2]]))
        with pytest.raises(
            ValueError, match=r"^mapping.phone: no column 'phone' in the file \(columns: a, b\)$"
        ):
            read_chunk(converted, "xlsx-csv", ColumnMapping(), position=0, max_rows=1, default_region=None)

    def test_a_workbook_that_cannot_be_read_is_refused_and_nothing_is_written(self, tmp_path: Path):
        for content in (b"PK\x03\x04 not a zip", None):
            xlsx = _write(tmp_path, content, "bad.xlsx") if content else _xlsx(tmp_path, [], "bad.xlsx")
            with pytest.raises(ValueError, match=r"^file: (not a valid XLSX workbook|empty, no header row)"):
                convert_xlsx(xlsx, tmp_path / "bad.xlsx.csv")
            assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.xlsx"]

    def test_the_same_sheet_converts_to_the_same_bytes_so_positions_hold_in_another_copy(
        self, tmp_path: Path
    ):
        xlsx = _xlsx(tmp_path, TestXlsx.ROWS)
        here, there = _convert(xlsx, "here.csv"), _convert(xlsx, "there.csv")
        assert here.read_bytes() == there.read_bytes()
        first = read_chunk(here, "xlsx-csv", ColumnMapping(), position=0, max_rows=3, default_region="KH")
        rest = read_chunk(
            there, "xlsx-csv", ColumnMapping(), position=first.position, max_rows=100, default_region="KH"
        )
        assert (first.rows + rest.rows, first.errors + rest.errors) == _read_all(xlsx, 100, kind="xlsx")[:2]

    def test_a_conversion_that_fails_midway_leaves_nothing(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ):
        def full(descriptor: int) -> None:
            raise OSError(28, "No space left on device")

        xlsx = _xlsx(tmp_path, TestXlsx.ROWS)
        monkeypatch.setattr(os, "fsync", full)
        with pytest.raises(OSError, match="No space left"):
            convert_xlsx(xlsx, tmp_path / "contacts.xlsx.csv")
        assert sorted(p.name for p in tmp_path.iterdir()) == ["contacts.xlsx"]

    def test_a_conversion_killed_midway_leaves_only_its_part_and_runs_again_whole(
        self, large_sheet: Path, tmp_path: Path
    ):
        """SIGKILL in the middle of the sheet: the converted name never holds a partial file."""
        target = tmp_path / "contacts.xlsx.csv"
        script = (
            "import sys; from openmmp.campaigns.contact_file import convert_xlsx; convert_xlsx(*sys.argv[1:])"
        )
        process = subprocess.Popen([sys.executable, "-c", script, str(large_sheet), str(target)])
        try:
            deadline = time.monotonic() + 60
            while not any(p.stat().st_size for p in tmp_path.glob("contacts.xlsx.csv.*.part")):
                assert process.poll() is None, "the conversion ended before it wrote anything"
                assert time.monotonic() < deadline
                time.sleep(0.005)
            os.kill(process.pid, signal.SIGKILL)
        finally:
            process.wait()
        assert process.returncode == -signal.SIGKILL
        assert not target.exists()
        [part] = tmp_path.glob("contacts.xlsx.csv.*.part")
        convert_xlsx(large_sheet, target)
        assert part.exists()  # never read: the caller deletes it with the import's files
        rows, errors, _ = _read_all(target, 10_000, kind="xlsx-csv", region=None)
        assert errors == []
        assert [(r.line, r.phone, r.params) for r in rows] == [
            (i + 2, f"{85512000000 + i}", {"n": f"{i}"}) for i in range(30_000)
        ]

    def test_a_large_sheet_is_converted_in_flat_memory(self, large_sheet: Path, tmp_path: Path):
        gc.collect()
        tracemalloc.start()
        try:
            convert_xlsx(large_sheet, tmp_path / "large.csv")
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert (tmp_path / "large.csv").stat().st_size > 500_000
        # As reading the sheet in chunks: under half of what it takes loaded whole.
        assert peak < 10 * 2**20, f"peak {peak:,} bytes"


def _read_all_from(path: Path, position: int, max_rows: int) -> tuple[list[ContactRow], list[RowError], int]:
    rows: list[ContactRow] = []
    errors: list[RowError] = []
    while True:
        chunk = read_chunk(
            path, "csv", ColumnMapping(), position=position, max_rows=max_rows, default_region="KH"
        )
        rows += chunk.rows
        errors += chunk.errors
        position = chunk.position
        if chunk.done:
            return rows, errors, position
