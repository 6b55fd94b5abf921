"""Contact files of campaigns (issue 17): how fast a large CSV or XLSX is read in chunks, and in how much
memory.

Writes an N-row file (a distinct phone each, as campaign lists are, and two parameters) in a temporary
folder, then reads it as the campaign task does: `read_chunk` 5,000 rows at a time, each call resuming
from the previous one's position. An XLSX (`--format xlsx`, phones typed as numbers but a tenth written
nationally as text) is first converted to a CSV (`convert_xlsx`), as the import's first step does, then
read from the converted copy; the figures count the conversion in. For comparison, it then reads the
sheet's last chunk directly, as every step did before conversions: each step parsed the sheet from its
top. Prints one JSON line: rows/s, MB/s and the process's peak RSS, which must not grow with N (compare
`--rows 100000` with the default). Each phone is parsed once (no repeat hits the phone cache), so a CSV's
rows/s is mostly phonenumbers' parsing, and an XLSX's mostly openpyxl's.

Standalone, results.md untouched: `../.venv/bin/python contact_file.py [--format xlsx] [--rows N]` from
bench/.
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

import openpyxl

from openmmp.campaigns.contact_file import ColumnMapping, Source, convert_xlsx, read_chunk

CHUNK_ROWS = 5_000
DEFAULT_ROWS = {"csv": 1_000_000, "xlsx": 200_000}


def phone(i: int) -> str:
    """855 12 xxx xxx: a million distinct valid Cambodian mobiles; a tenth written nationally."""
    return f"012 {i // 1000 % 1000:03d} {i % 1000:03d}" if i % 10 == 0 else f"+85512{i % 10**6:06d}"


def write_csv(path: Path, rows: int) -> None:
    with path.open("w", encoding="utf-8", newline="") as file:
        file.write("phone,first_name,city\r\n")
        for i in range(rows):
            file.write(f'{phone(i)},"Name {i}",Phnom Penh\r\n')


def write_xlsx(path: Path, rows: int) -> None:
    book = openpyxl.Workbook(write_only=True)
    sheet = book.create_sheet("Contacts")
    sheet.append(["phone", "first_name", "city"])
    for i in range(rows):
        typed = phone(i) if i % 10 == 0 else 85512000000 + i % 10**6
        sheet.append([typed, f"Name {i}", "Phnom Penh"])
    book.save(path)


def read_all(path: Path, kind: Source) -> tuple[int, int, int]:
    """(rows, row errors, chunks) of reading the whole file as the campaign task does."""
    rows = errors = chunks = 0
    position = 0
    mapping = ColumnMapping(phone="phone")
    while True:
        chunk = read_chunk(path, kind, mapping, position=position, max_rows=CHUNK_ROWS, default_region="KH")
        rows += len(chunk.rows)
        errors += len(chunk.errors)
        chunks += 1
        position = chunk.position
        if chunk.done:
            return rows, errors, chunks


def mib(kib: int) -> float:
    return round(kib / 1024, 1)


def peak_rss_kib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux


def bench_csv(folder: Path, rows_asked: int) -> dict[str, Any]:
    path = folder / "contacts.csv"
    write_csv(path, rows_asked)
    size = path.stat().st_size
    rss_before = peak_rss_kib()
    started = time.perf_counter()
    rows, errors, chunks = read_all(path, "csv")
    elapsed = time.perf_counter() - started
    return {
        "scenario": "contact_file_csv",
        "rows": rows,
        "row_errors": errors,
        "chunks": chunks,
        "chunk_rows": CHUNK_ROWS,
        "file_mb": round(size / 1e6, 1),
        "seconds": round(elapsed, 2),
        "rows_per_s": round(rows / elapsed),
        "mb_per_s": round(size / 1e6 / elapsed, 2),
        "peak_rss_mib_before_reading": mib(rss_before),
        "peak_rss_mib": mib(peak_rss_kib()),
    }


def bench_xlsx(folder: Path, rows_asked: int) -> dict[str, Any]:
    path = folder / "contacts.xlsx"
    converted = folder / "contacts.xlsx.csv"
    write_xlsx(path, rows_asked)
    size = path.stat().st_size
    rss_before = peak_rss_kib()
    started = time.perf_counter()
    convert_xlsx(path, converted)
    converting = time.perf_counter() - started
    rows, errors, chunks = read_all(converted, "xlsx-csv")
    elapsed = time.perf_counter() - started
    rss_peak = peak_rss_kib()
    started = time.perf_counter()
    last = read_chunk(
        path,
        "xlsx",
        ColumnMapping(phone="phone"),
        position=max(0, rows_asked - CHUNK_ROWS),
        max_rows=CHUNK_ROWS,
        default_region="KH",
    )
    direct = time.perf_counter() - started
    assert last.done
    return {
        "scenario": "contact_file_xlsx",
        "rows": rows,
        "row_errors": errors,
        "chunks": chunks,
        "chunk_rows": CHUNK_ROWS,
        "file_mb": round(size / 1e6, 1),
        "converted_mb": round(converted.stat().st_size / 1e6, 1),
        "convert_seconds": round(converting, 2),
        "seconds": round(elapsed, 2),
        "rows_per_s": round(rows / elapsed),
        "convert_rows_per_s": round(rows / converting),
        "peak_rss_mib_before_reading": mib(rss_before),
        "peak_rss_mib": mib(rss_peak),
        "direct_last_chunk_seconds": round(direct, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--format", choices=sorted(DEFAULT_ROWS), default="csv")
    parser.add_argument("--rows", type=int, help="1,000,000 for a CSV, 200,000 for an XLSX unless given")
    args = parser.parse_args()
    rows = args.rows or DEFAULT_ROWS[args.format]
    with tempfile.TemporaryDirectory(prefix="openmmp-contacts-") as folder:
        bench = bench_xlsx if args.format == "xlsx" else bench_csv
        figures = bench(Path(folder), rows)
    print(json.dumps(figures), flush=True)


if __name__ == "__main__":
    main()
