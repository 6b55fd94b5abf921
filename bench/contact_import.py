"""Importing a campaign's contacts end to end: a CSV of N rows uploaded to a running `openmmp serve` and
imported by its workers, as a company does it.

Generates the CSV (phone + 2 parameters, every phone valid and distinct), starts a sandbox `serve`
(SQLite, its workers in a child process) on a fresh data folder, makes an APPROVED template of the demo
Viber channel (the CLI approves it) and a campaign of it, streams the file to
`POST /api/v1/bulk-campaign/{id}/contacts`, then follows the background task to DONE. Prints one JSON line
and appends a row to bench/results.md: upload and import seconds, rows per second over both, and the peak
resident memory of the API process and of its worker process.

Usage (from bench/): ../.venv/bin/python contact_import.py [--rows 1000000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from common import OPENMMP, children, free_port, record, rss_mib, stop, wait_up

PIECE = 1024 * 1024


def write_csv(path: Path, rows: int) -> None:
    with path.open("w") as out:
        out.write("phone,name,code\n")
        for n in range(rows):
            out.write(f"+85512{n:06d},Customer {n},C{n}\n")


def pieces(path: Path) -> Iterator[bytes]:
    with path.open("rb") as file:
        while piece := file.read(PIECE):
            yield piece


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="openmmp-import-") as folder:
        work = Path(folder)
        contacts = work / "contacts.csv"
        write_csv(contacts, args.rows)
        port = free_port()
        env = {
            "PATH": "/usr/bin:/bin",
            "OPENMMP_DATA_DIR": str(work / "data"),
            "OPENMMP_LOG_LEVEL": "WARNING",
            "OPENMMP_PUBLIC_URL": f"http://127.0.0.1:{port}",
        }
        subprocess.run([*OPENMMP, "migrate"], env=env, check=True, capture_output=True)
        serve = subprocess.Popen([*OPENMMP, "serve", "--sandbox", "--port", str(port)], env=env)
        try:
            base = f"http://127.0.0.1:{port}"
            wait_up(f"{base}/readyz")
            figures = run(base, env, work, contacts, args.rows, serve.pid)
        finally:
            stop(serve)
    settings = (
        f"{args.rows:,}-row CSV (phone + 2 parameters, {contacts_mb(args.rows):.1f} MB) streamed to "
        "POST /bulk-campaign/{id}/contacts, imported by 1 serve with workers (steps of 5,000 rows)"
    )
    record("contacts-import", "sqlite", settings, figures)


def contacts_mb(rows: int) -> float:
    return (16 + rows * len("+85512000000,Customer 000000,C000000\n")) / 1e6


def run(
    base: str, env: dict[str, str], work: Path, contacts: Path, rows: int, api_pid: int
) -> dict[str, float]:
    demo = json.loads((work / "data" / "demo.json").read_text())
    headers = {"apiKey": demo["apiKey"]}
    viber = demo["channels"]["VIBER"]
    with httpx.Client(base_url=base, headers=headers, timeout=600) as http:
        template = http.post(
            "/api/v1/template",
            json={
                "name": "Bench",
                "type": 1,
                "applicationId": 1,
                "accountId": viber,
                "messages": [
                    {
                        "id": "m",
                        "name": "m",
                        "status": "START",
                        "message": {"type": "text", "message": "{{name}} {{code}}"},
                    }
                ],
            },
        )
        template.raise_for_status()
        subprocess.run(
            [*OPENMMP, "template", "approve", template.json()["publicId"]],
            env=env,
            check=True,
            capture_output=True,
        )
        campaign = http.post(
            "/api/v1/bulk-campaign",
            json={
                "name": "Bench",
                "type": 1,
                "channels": [{"accountId": viber, "templateId": template.json()["publicId"]}],
            },
        )
        campaign.raise_for_status()
        started = time.perf_counter()
        task = http.post(
            f"/api/v1/bulk-campaign/{campaign.json()['publicId']}/contacts",
            params={"filename": "contacts.csv"},
            content=pieces(contacts),
            headers={"content-type": "text/csv"},
        )
        task.raise_for_status()
        uploaded = time.perf_counter()
        while True:
            state = http.get(f"/api/v1/background-task/{task.json()['id']}").json()
            if state["status"] in (3, 4):
                break
            time.sleep(0.5)
        done = time.perf_counter()
    worker_peak = max((rss_mib(child)[1] for child in children(api_pid)), default=0.0)
    summary = state["summary"] or {}
    return {
        "status": state["cause"],
        "rows": summary.get("rows", 0),
        "imported": summary.get("imported", 0),
        "upload_s": round(uploaded - started, 1),
        "import_s": round(done - uploaded, 1),
        "rows_per_s": round(rows / (done - started)),
        "peak_rss_mib_api": round(rss_mib(api_pid)[1], 1),
        "peak_rss_mib_worker": round(worker_peak, 1),
    }


if __name__ == "__main__":
    main()
