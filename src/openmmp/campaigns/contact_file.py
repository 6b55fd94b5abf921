"""Contact files of bulk campaigns (issue 17): a CSV or XLSX read in resumable steps, in flat memory.

A background task reads a campaign's file a chunk at a time and may be stopped between any two chunks (a
restart, a deploy), so `read_chunk` takes where the previous chunk stopped and answers where it stopped
itself. Only one chunk's rows are ever held, whatever the file's size: a CSV is read from a byte offset
(never from its start again, but for its header row), an XLSX through openpyxl's streaming reader.

openpyxl cannot start a sheet at a row: it parses the sheet's XML from the top to reach it, so reading a
whole XLSX chunk by chunk costs the square of its rows (hours for a million). An import therefore reads an
XLSX directly only for its first rows (the check of an upload); it converts the sheet once, in one
streaming pass (`convert_xlsx`), to a CSV of its own that carries each row's number, and reads that
(`"xlsx-csv"`) from byte offsets as it reads any CSV.

Pure: no database, no I/O but reading the file (and writing a converted sheet). De-duplication is the
database's; rows come in file order, each with the line (CSV) or row (XLSX) a person sees in an editor or
a spreadsheet, the header being 1.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import os
import re
import tempfile
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import IO, Literal

import openpyxl

from openmmp.kit.phone import normalise_phone

Kind = Literal["csv", "xlsx"]
"""The formats a company uploads."""
Source = Literal["csv", "xlsx", "xlsx-csv"]
"""What `read_chunk` reads: an uploaded file, or an XLSX's sheet that `convert_xlsx` wrote as a CSV."""

MAX_CELL_CHARS = 1_000
"""A longer cell is no contact's data but a broken file (a stray quote) or a pasted document."""

_MAX_RECORD_BYTES = 1 << 20
"""The most one CSV record (or the header) may take: an unbalanced quote would otherwise make the rest of
the file one field, held in memory."""

_OFFSET_BITS = 36
"""A CSV position packs the lines read above the byte offset, since rows carry their line numbers and
counting the lines above an offset would mean reading those bytes again. 36 bits: files up to 64 GiB with
up to 2^27 - 1 lines, so that a position fits a signed 64-bit column."""
_MAX_OFFSET = (1 << _OFFSET_BITS) - 1
_MAX_LINES = (1 << (63 - _OFFSET_BITS)) - 1

_BLOCK = 64 * 1024
_BOM = b"\xef\xbb\xbf"
_EOL = re.compile(rb"\r\n|\r|\n")
_DELIMITERS = (",", ";", "\t")
_PHONE_SHOWN = 64
"""The most of a bad phone cell a RowError repeats."""
_ROW_COLUMN = "row"
"""The first column of a converted sheet: each row's number in the sheet."""
_CUT = "…"
"""Ends a converted cell cut at MAX_CELL_CHARS: trimmed, it is still longer than that, as its row's error
says, and the cut keeps every field far below the csv module's limit (128 Ki characters)."""

_EXTENSIONS: dict[str, Kind] = {".csv": "csv", ".xlsx": "xlsx"}
_CONTENT_TYPES: dict[str, Kind] = {
    "text/csv": "csv",
    "application/csv": "csv",
    "text/comma-separated-values": "csv",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": "xlsx",
}


@dataclass(frozen=True, slots=True)
class ColumnMapping:
    """Which column holds the phone and which the template's parameters.

    `params` maps a parameter's name to its column; None takes every other column with a header as a
    parameter named after its header (trimmed). Column names match case-insensitively, trimmed.
    """

    phone: str = "phone"
    params: dict[str, str] | None = None


@dataclass(frozen=True, slots=True)
class ContactRow:
    line: int
    """1-based, the header being 1: a CSV's line the record starts on, an XLSX's row."""
    phone: str
    """E.164 digits without `+`."""
    params: dict[str, str]
    """Parameter name → its cell, trimmed and never empty."""


@dataclass(frozen=True, slots=True)
class RowError:
    """A row that cannot be sent to, for the campaign's error report."""

    line: int
    phone: str
    """The phone cell as written (trimmed, at most 64 characters); empty when missing or unreadable."""
    error: str
    """Every problem of the row, for a person, separated by `; `."""


@dataclass(frozen=True, slots=True)
class Chunk:
    rows: list[ContactRow]
    errors: list[RowError]
    position: int
    """Where the next chunk starts: pass it back as it is (opaque; it fits a signed 64-bit integer)."""
    done: bool
    """Nothing is left to read; a chunk that is not done may still hold no row (blank lines)."""
    bytes_read: int
    """How far into the file reading has got, for progress against the file's size: exact for a CSV
    (converted sheets included), an estimate for an XLSX (compressed bytes; the size itself once done)."""


def kind_of(filename: str, content_type: str | None) -> Kind:
    """The format of an uploaded file: by its extension, else by the content type the browser sent.

    The extension comes first because browsers send `application/vnd.ms-excel` for a .csv on Windows
    machines with Excel.
    """
    suffix = PurePath(filename).suffix.lower()
    if suffix in _EXTENSIONS:
        return _EXTENSIONS[suffix]
    if suffix == ".xls":
        raise ValueError("file: Excel 97-2003 workbooks (.xls) are not supported: save it as .xlsx or CSV")
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    if media_type in _CONTENT_TYPES:
        return _CONTENT_TYPES[media_type]
    raise ValueError(f"file: {filename!r} is neither a CSV nor an XLSX file")


def header(path: Path | str, kind: Kind) -> list[str]:
    """The names of the file's columns (trimmed; blank ones left out), to choose a mapping from."""
    if kind == "csv":
        with open(path, "rb") as file:
            names = _csv_header(file).names
    else:
        with open(path, "rb") as file, _Workbook(file) as workbook:
            names = workbook.header()[0]
    return [name for name in names if name]


def read_chunk(
    path: Path | str,
    kind: Source,
    mapping: ColumnMapping,
    *,
    position: int,
    max_rows: int,
    default_region: str | None,
) -> Chunk:
    """Up to `max_rows` rows (good or bad, blank ones included) from `position` (0: the first row).

    Raises ValueError (`file: ...` or `mapping.<field>: ...`) when the file or the mapping cannot be used
    at all: the campaign fails rather than skipping rows. `default_region` reads national numbers.

    Each chunk of an `xlsx` parses the sheet from its top: read one that way only for its first rows, and
    convert it (`convert_xlsx`) to read it whole. A converted sheet (`xlsx-csv`) gives the rows and errors
    the sheet gives, with the sheet's row numbers, but no blank row; its positions are its own, not the
    sheet's.
    """
    if position < 0 or max_rows < 1:
        raise ValueError("position must be >= 0 and max_rows >= 1")
    if kind == "csv":
        return _csv_chunk(Path(path), mapping, position, max_rows, default_region)
    if kind == "xlsx-csv":
        return _converted_chunk(Path(path), mapping, position, max_rows, default_region)
    return _xlsx_chunk(Path(path), mapping, position, max_rows, default_region)


def convert_xlsx(source: Path | str, target: Path | str) -> None:
    """Write the first sheet of the XLSX at `source` as a CSV at `target`, for `read_chunk(target,
    "xlsx-csv", ...)`: one streaming pass over the sheet, in flat memory.

    `target` appears complete or not at all: it is written under a temporary name beside it,
    `<target's name>.<random>.part`, synced, then renamed over it. A crash leaves that part behind, never
    read, for the caller to delete with `target`. The same workbook always gives the same bytes, so that
    positions in a converted sheet hold in another conversion of it (on another host). Raises ValueError
    (`file: ...`) as `read_chunk` does for a workbook or a sheet that cannot be read.
    """
    target = Path(target)
    with open(source, "rb") as xlsx, _Workbook(xlsx) as workbook:
        names, header_row = workbook.header()
        first = header_row + 1
        descriptor, partial = tempfile.mkstemp(suffix=".part", prefix=f"{target.name}.", dir=target.parent)
        try:
            with open(descriptor, "w", encoding="utf-8", newline="") as file:
                # `\r\n` ends records, so that the writer quotes a cell's lone `\r` too.
                writer = csv.writer(file, lineterminator="\r\n")
                writer.writerow([_ROW_COLUMN, *names])
                with contextlib.closing(workbook.rows(first, len(names))) as rows:
                    for number, values in enumerate(rows, start=first):
                        cells = [_converted_cell(value) for value in values]
                        if any(cells):
                            writer.writerow([number, *cells])
                file.flush()
                os.fsync(file.fileno())
            os.replace(partial, target)
        except BaseException:
            Path(partial).unlink(missing_ok=True)
            raise


@dataclass(frozen=True, slots=True)
class _Plan:
    """A mapping resolved against a header: the cells' indexes."""

    columns: tuple[str, ...]
    phone: int
    params: tuple[tuple[str, int], ...]


def _plan(columns: Sequence[str], mapping: ColumnMapping) -> _Plan:
    index: dict[str, int] = {}
    twice: set[str] = set()
    for i, name in enumerate(columns):
        key = name.casefold()
        if key in index:
            twice.add(key)
        elif key:
            index[key] = i
    shown = ", ".join(name for name in columns if name)

    def find(field: str, name: str) -> int:
        key = name.strip().casefold()
        if key not in index:
            raise ValueError(f"mapping.{field}: no column {name!r} in the file (columns: {shown})")
        if key in twice:
            raise ValueError(f"mapping.{field}: the file has two columns named {name!r}")
        return index[key]

    phone = find("phone", mapping.phone)
    if mapping.params is not None:
        params = tuple((param, find(f"params.{param}", column)) for param, column in mapping.params.items())
    else:
        params = tuple((name, i) for i, name in enumerate(columns) if name and i != phone)
        for name, _ in params:
            if name.casefold() in twice:
                raise ValueError(f"file: two columns are named {name!r}: map the parameters explicitly")
    return _Plan(tuple(columns), phone, params)


def _row(line: int, cells: Sequence[str], plan: _Plan, region: str | None) -> ContactRow | RowError | None:
    """The contact of one row, the reasons it has none, or None for a blank row (skipped silently)."""
    values = [cell.strip() for cell in cells]
    if not any(values):
        return None
    problems: list[str] = []
    if len(values) != len(plan.columns):
        problems.append(f"the row has {len(values)} columns, the header {len(plan.columns)}")
    for i, value in enumerate(values):
        if len(value) > MAX_CELL_CHARS:
            column = plan.columns[i] if i < len(plan.columns) else f"#{i + 1}"
            problems.append(f"column {column!r}: longer than {MAX_CELL_CHARS:,} characters")
    raw_phone = values[plan.phone] if plan.phone < len(values) else ""
    phone = ""
    if not raw_phone:
        problems.append("phone: missing")
    elif len(raw_phone) <= MAX_CELL_CHARS:
        try:
            phone = normalise_phone(raw_phone, region)
        except ValueError as exc:
            problems.append(f"phone: {exc}")
    params: dict[str, str] = {}
    for name, i in plan.params:
        if i >= len(values):
            continue  # the column count's problem says it
        if not values[i]:
            problems.append(f"parameter {name!r} (column {plan.columns[i]!r}): missing")
        params[name] = values[i]
    if problems:
        return RowError(line, raw_phone[:_PHONE_SHOWN], "; ".join(problems))
    return ContactRow(line, phone, params)


@dataclass(slots=True)
class _Found:
    """A chunk's rows and errors, in file order each."""

    rows: list[ContactRow]
    errors: list[RowError]

    def add(self, line: int, cells: Sequence[str], plan: _Plan, region: str | None) -> None:
        found = _row(line, cells, plan, region)
        if isinstance(found, ContactRow):
            self.rows.append(found)
        elif found is not None:
            self.errors.append(found)


# CSV


class _Overlong(Exception):
    """A line or record past _MAX_RECORD_BYTES: an unbalanced quote, or no CSV at all."""


class _Lines:
    """Physical lines of a binary file from an offset, each with its end: `\\n`, `\\r\\n` or a lone `\\r`
    (old Excel for Mac), so that `offset` is always exact, unlike a text file's `tell()`. A line longer
    than `limit` bytes is skipped."""

    def __init__(self, file: IO[bytes], offset: int, limit: int = _MAX_RECORD_BYTES) -> None:
        file.seek(offset)
        self._file = file
        self._limit = limit
        self._buffer = b""
        self._start = 0
        self._eof = False
        self.offset = offset
        """In the file, after the last line returned (or skipped)."""

    def next(self) -> bytes | None:
        """The next line; None at the end. Raises _Overlong after skipping a line that is too long."""
        skipped = False
        while True:
            match = _EOL.search(self._buffer, self._start)
            # A `\r` ending the buffer may be the first half of `\r\n`: read on to know.
            if match is not None and (self._eof or match.end() < len(self._buffer)):
                return self._take(match.end(), skipped)
            if self._eof:
                return self._take(len(self._buffer), skipped) if self._start < len(self._buffer) else None
            pending = len(self._buffer) - self._start
            if pending > self._limit:
                # Drop what is read of the line, but its last byte, which may be a `\r`.
                self.offset += pending - 1
                self._buffer = self._buffer[-1:]
                self._start = 0
                skipped = True
            block = self._file.read(_BLOCK)
            self._eof = not block
            self._buffer = self._buffer[self._start :] + block
            self._start = 0

    def _take(self, end: int, skipped: bool) -> bytes:
        line = self._buffer[self._start : end]
        self.offset += end - self._start
        self._start = end
        if skipped:
            raise _Overlong
        return line


class _Records:
    """CSV records from an offset, each with the line it starts on; `offset` and `lines` say where the last
    one returned ended, to resume from.

    The csv module parses lines fed one at a time (it never reads ahead of a record's end), so the offset
    after the last line fed is the record's end, even for a quoted field spanning lines.
    """

    def __init__(
        self, file: IO[bytes], offset: int, lines: int, delimiter: str, limit: int = _MAX_RECORD_BYTES
    ) -> None:
        self._file = file
        self.delimiter = delimiter
        self._limit = limit
        self.offset = offset
        self.lines = lines
        self._restart()

    def _restart(self) -> None:
        self._lines = _Lines(self._file, self.offset, self._limit)
        self._lines_fed = self.lines
        self._record_bytes = 0
        self._reader = csv.reader(self._feed(), delimiter=self.delimiter, strict=True)

    def _feed(self) -> Iterator[str]:
        while (raw := self._lines.next()) is not None:
            self._lines_fed += 1
            self._record_bytes += len(raw)
            if self._record_bytes > self._limit:
                raise _Overlong
            try:
                text = raw.decode()
            except UnicodeDecodeError:
                raise ValueError(
                    f"file: not UTF-8 text (line {self._lines_fed}): save it as “CSV UTF-8”"
                ) from None
            yield text

    def next(self) -> tuple[int, list[str] | str] | None:
        """(line, cells), (line, why the record is unreadable), or None at the end."""
        line = self.lines + 1
        self._record_bytes = 0
        try:
            cells = next(self._reader)
        except StopIteration:
            return None
        except (csv.Error, _Overlong) as exc:
            why = str(exc) if isinstance(exc, csv.Error) else f"longer than {self._limit:,} bytes"
            self._skip_line()
            return line, f"not valid CSV ({why}): an unbalanced quote?"
        self.offset = self._lines.offset
        self.lines = self._lines_fed
        return line, cells

    def _skip_line(self) -> None:
        """Go on after the first line of an unreadable record: its quote most likely never closes, and
        the lines after it are records of their own."""
        lines = _Lines(self._file, self.offset, self._limit)
        with contextlib.suppress(_Overlong):
            lines.next()
        self.offset = lines.offset
        self.lines += 1
        self._restart()


@dataclass(frozen=True, slots=True)
class _CsvHeader:
    names: list[str]
    delimiter: str
    offset: int
    lines: int


def _csv_header(file: IO[bytes]) -> _CsvHeader:
    """The header record (the first that is not blank), read again by every chunk: it is small."""
    file.seek(0)
    start = len(_BOM) if file.read(len(_BOM)) == _BOM else 0
    records = _Records(file, start, 0, _delimiter(file, start))
    while (record := records.next()) is not None:
        line, cells = record
        if isinstance(cells, str):
            raise ValueError(f"file: the header (line {line}) is {cells}")
        names = [cell.strip() for cell in cells]
        if any(names):
            return _CsvHeader(names, records.delimiter, records.offset, records.lines)
    raise ValueError("file: empty, no header row")


def _delimiter(file: IO[bytes], start: int) -> str:
    """`,`, or `;` or a tab when the first line that is not blank has more of them: Excel writes `;` in
    the many locales whose decimal separator is a comma."""
    lines = _Lines(file, start)
    with contextlib.suppress(_Overlong):
        while (raw := lines.next()) is not None:
            if raw.strip():
                first = raw.decode("utf-8", "replace")
                return max(_DELIMITERS, key=first.count)
    return ","


def _csv_chunk(path: Path, mapping: ColumnMapping, position: int, max_rows: int, region: str | None) -> Chunk:
    with open(path, "rb") as file:
        size = os.fstat(file.fileno()).st_size
        if size > _MAX_OFFSET:
            raise ValueError(f"file: larger than {_MAX_OFFSET + 1:,} bytes")
        head = _csv_header(file)
        plan = _plan(head.names, mapping)
        if position == 0:
            offset, lines = head.offset, head.lines
        else:
            offset, lines = position & _MAX_OFFSET, position >> _OFFSET_BITS
        records = _Records(file, offset, lines, head.delimiter)
        found = _Found([], [])
        done = False
        for _ in range(max_rows):
            record = records.next()
            if record is None:
                done = True
                break
            line, cells = record
            if isinstance(cells, str):
                found.errors.append(RowError(line, "", cells))
            else:
                found.add(line, cells, plan, region)
        else:
            done = records.offset >= size
    if records.lines > _MAX_LINES:
        raise ValueError(f"file: more than {_MAX_LINES:,} lines")
    return Chunk(
        rows=found.rows,
        errors=found.errors,
        position=records.lines << _OFFSET_BITS | records.offset,
        done=done,
        bytes_read=records.offset,
    )


# XLSX


class _Workbook:
    """The first sheet of a workbook in openpyxl's read-only mode, which parses the sheet as it is
    iterated rather than loading it (the shared strings table, though, is loaded whole)."""

    def __init__(self, file: IO[bytes]) -> None:
        self._file = file
        try:
            self._book = openpyxl.load_workbook(file, read_only=True, data_only=True, keep_links=False)
        except Exception as exc:
            raise ValueError(f"file: not a valid XLSX workbook ({_why(exc)})") from None
        if not self._book.worksheets:
            self._book.close()
            raise ValueError("file: the workbook has no sheet")
        self._sheet = self._book.worksheets[0]
        # Some writers leave a wrong <dimension>, which would cut the rows short.
        self._sheet.reset_dimensions()

    def __enter__(self) -> _Workbook:
        return self

    def __exit__(self, *_: object) -> None:
        self._book.close()

    def header(self) -> tuple[list[str], int]:
        """The names of the first row that is not blank, and its number."""
        with contextlib.closing(self.rows(1, None)) as rows:
            for number, values in enumerate(rows, start=1):
                names = [_cell_text(value).strip() for value in values]
                if any(names):
                    while not names[-1]:
                        names.pop()
                    return names, number
        raise ValueError("file: empty, no header row")

    def rows(self, first: int, width: int | None) -> Generator[tuple[object, ...]]:
        """The rows' values from row `first`, each `width` wide when given (missing cells None)."""
        iterator = self._sheet.iter_rows(min_row=first, max_col=width, values_only=True)
        while True:
            try:
                values: tuple[object, ...] = next(iterator)
            except StopIteration:
                return
            except Exception as exc:
                raise ValueError(f"file: not a valid XLSX workbook ({_why(exc)})") from None
            yield values

    def tell(self) -> int:
        return self._file.tell()


def _why(exc: Exception) -> str:
    return str(exc) or type(exc).__name__


def _converted_cell(value: object) -> str:
    """A cell as `_row` reads it (trimmed), cut when it is too long for any row to take."""
    text = _cell_text(value).strip()
    return text if len(text) <= MAX_CELL_CHARS else text[:MAX_CELL_CHARS] + _CUT


def _cell_text(value: object) -> str:
    """A cell as a person reads it: a phone typed as a number is a float without its `.0`."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, dt.datetime):
        return value.date().isoformat() if value.time() == dt.time() else value.isoformat(sep=" ")
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    return str(value)


def _xlsx_chunk(
    path: Path, mapping: ColumnMapping, position: int, max_rows: int, region: str | None
) -> Chunk:
    with open(path, "rb") as file, _Workbook(file) as workbook:
        names, header_row = workbook.header()
        plan = _plan(names, mapping)
        first = header_row + 1 + position
        found = _Found([], [])
        consumed = 0
        done = True
        # openpyxl still parses the rows above `first`, but holds none of them.
        with contextlib.closing(workbook.rows(first, len(names))) as rows:
            for values in rows:
                found.add(first + consumed, [_cell_text(value) for value in values], plan, region)
                consumed += 1
                if consumed == max_rows:
                    done = next(rows, None) is None
                    break
        bytes_read = os.path.getsize(path) if done else workbook.tell()
    return Chunk(
        rows=found.rows, errors=found.errors, position=position + consumed, done=done, bytes_read=bytes_read
    )


def _converted_chunk(
    path: Path, mapping: ColumnMapping, position: int, max_rows: int, region: str | None
) -> Chunk:
    with open(path, "rb") as file:
        # The file is this module's own, quoted by the csv module and with cells cut short: the limit
        # that stops an unbalanced quote in a company's file would only stop a wide row here.
        size = os.fstat(file.fileno()).st_size
        records = _Records(file, 0, 0, ",", limit=size)
        head = _converted_record(records)
        if head is None:
            raise RuntimeError("converted sheet: empty")
        plan = _plan(head[1:], mapping)
        if position:
            records = _Records(file, position, 0, ",", limit=size)
        found = _Found([], [])
        done = False
        for _ in range(max_rows):
            cells = _converted_record(records)
            if cells is None:
                done = True
                break
            found.add(int(cells[0]), cells[1:], plan, region)
        else:
            done = records.offset >= size
    return Chunk(
        rows=found.rows,
        errors=found.errors,
        position=records.offset,
        done=done,
        bytes_read=records.offset,
    )


def _converted_record(records: _Records) -> list[str] | None:
    record = records.next()
    if record is None:
        return None
    line, cells = record
    if isinstance(cells, str) or not cells:
        # Not what `convert_xlsx` writes: the copy is damaged, which no company's file explains.
        raise RuntimeError(f"converted sheet, line {line}: {cells or 'empty'}")
    return cells
