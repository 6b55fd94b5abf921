"""Contact files of campaigns (issue 17): how fast a large CSV is read in chunks, and in how much memory.

Writes an N-row CSV (a distinct phone each, as campaign lists are, and two parameters) in a temporary
folder, then reads it as the campaign task does: `read_chunk` 5,000 rows at a time, each call resuming
from the previous one's position. Prints one JSON line: rows/s, MB/s and the process's peak RSS, which
must not grow with N (compare `--rows 100000` with the default). Each phone is parsed once (no repeat
hits the phone cache), so rows/s is mostly phonenumbers' parsing.

Standalone, results.md untouched: `../.venv/bin/python contact_file.py [--rows N]` from bench/.
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

from openmmp.campaigns.contact_file import ColumnMapping, read_chunk

CHUNK_ROWS = 5_000


def write_csv(path: Path, rows: int) -> None:
    with path.open("w", encoding="utf-8", newline="") as file:
        file.write("phone,first_name,city\r\n")
        for i in range(rows):
            # 855 12 xxx xxx: a million distinct valid Cambodian mobiles; a tenth written nationally.
            phone = f"012 {i // 1000 % 1000:03d} {i % 1000:03d}" if i % 10 == 0 else f"+85512{i % 10**6:06d}"
            file.write(f'{phone},"Name {i}",Phnom Penh\r\n')


def read_all(path: Path) -> tuple[int, int, int]:
    """(rows, row errors, chunks) of reading the whole file as the campaign task does."""
    rows = errors = chunks = 0
    position = 0
    mapping = ColumnMapping(phone="phone")
    while True:
        chunk = read_chunk(path, "csv", mapping, position=position, max_rows=CHUNK_ROWS, default_region="KH")
        rows += len(chunk.rows)
        errors += len(chunk.errors)
        chunks += 1
        position = chunk.position
        if chunk.done:
            return rows, errors, chunks


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="openmmp-contacts-") as folder:
        path = Path(folder) / "contacts.csv"
        write_csv(path, args.rows)
        size = path.stat().st_size
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        started = time.perf_counter()
        rows, errors, chunks = read_all(path)
        elapsed = time.perf_counter() - started
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(
        json.dumps(
            {
                "scenario": "contact_file_csv",
                "rows": rows,
                "row_errors": errors,
                "chunks": chunks,
                "chunk_rows": CHUNK_ROWS,
                "file_mb": round(size / 1e6, 1),
                "seconds": round(elapsed, 2),
                "rows_per_s": round(rows / elapsed),
                "mb_per_s": round(size / 1e6 / elapsed, 2),
                "peak_rss_mib_before_reading": round(rss_before / 1024, 1),
                "peak_rss_mib": round(peak_kib / 1024, 1),
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
