"""A bulk campaign of N recipients sent end to end at its channel's limit, optionally through faults.

Starts the Viber simulator (`openmmp simulate`, its limit set to the channel's, every accepted `seq`
tracked) and a sandbox `openmmp serve` (its workers in a child process) over a fresh database, makes a
Viber channel limited to `--limit` sends a second, an APPROVED template and a campaign of it, imports N
contacts from a CSV, broadcasts it and follows it to DONE with every message settled.

With `--faults` the run is paused at 25 % (and held until the outbox has drained: the sends counted after
the pause are those already handed to the outbox), resumed, and its worker process killed with SIGKILL
at 60 % (`serve` starts it again).

Then it checks, from the simulator's own count and the database: each recipient was accepted upstream
exactly once (one `seq` each, none twice: `duplicates`), none was skipped (`skipped`), and every contact
has its one message. Prints one JSON line and appends a row to bench/results.md: the achieved rate over
the limit (the steady part, 10-90 %, with the pause taken out), the drain after the pause, the seconds,
peak resident memory.

Usage (from bench/): ../.venv/bin/python campaign_send.py [--contacts 100000] [--limit 250] [--faults]
                     [--db sqlite|postgresql]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from common import OPENMMP, children, database_url, free_port, record, rss_mib, stop, wait_launched, wait_up

STEADY = (0.10, 0.90)
PAUSE_AT, KILL_AT = 0.25, 0.60


def write_csv(path: Path, rows: int) -> None:
    """Distinct Metfone numbers (+855 97 + 7 digits) whose last digit is 0-7: the simulator accepts each
    (8 would fail it, 9 retry it) and reports it delivered, and read unless it ends in 7."""
    with path.open("w") as out:
        out.write("phone,name,code\n")
        for n in range(rows):
            out.write(f"+85597{n:06d}{n % 8},Customer {n},C{n}\n")


class Run:
    def __init__(self, base: str, sim: str, env: dict[str, str], serve: subprocess.Popen[bytes]) -> None:
        demo = json.loads((Path(env["OPENMMP_DATA_DIR"]) / "demo.json").read_text())
        self.http = httpx.Client(base_url=base, headers={"apiKey": demo["apiKey"]}, timeout=600)
        self.base, self.sim, self.env, self.serve = base, sim, env, serve
        self.samples: list[tuple[float, int]] = []
        self.paused_s = 0.0

    def accepted(self) -> int:
        count = int(httpx.get(f"{self.sim}/viber/_sandbox/stats", timeout=10).json()["accepted"])
        self.samples.append((time.monotonic(), count))
        return count

    def campaign_of(self, limit: int, contacts: Path) -> tuple[str, int, float]:
        """(campaign id, simulator service id, import seconds) of a new campaign with its contacts."""
        service_id = random.randrange(1, 10**9)
        channel = self.http.post(
            "/api/v1/channel",
            json={
                "name": "campaign bench",
                "applicationId": 1,
                "credentials": {"serviceId": service_id},
                "settings": {"defaultCountry": "KH", "rateLimitPerSecond": limit},
            },
        )
        channel.raise_for_status()
        account = channel.json()["publicId"]
        wait_launched(self.base, account, dict(self.http.headers))
        message = {"type": "text", "message": "Hello {{name}}, your code is {{code}}"}
        template = self.http.post(
            "/api/v1/template",
            json={
                "name": "Bench",
                "type": 1,
                "applicationId": 1,
                "accountId": account,
                "messages": [{"id": "m", "name": "m", "status": "START", "message": message}],
            },
        )
        template.raise_for_status()
        template_id = template.json()["publicId"]
        subprocess.run(
            [*OPENMMP, "template", "approve", template_id], env=self.env, check=True, capture_output=True
        )
        campaign = self.http.post(
            "/api/v1/bulk-campaign",
            json={
                "name": "Bench",
                "type": 1,
                "channels": [{"accountId": account, "templateId": template_id}],
            },
        )
        campaign.raise_for_status()
        campaign_id = campaign.json()["publicId"]
        started = time.perf_counter()
        task = self.http.post(
            f"/api/v1/bulk-campaign/{campaign_id}/contacts",
            params={"filename": "contacts.csv"},
            content=contacts.read_bytes(),
            headers={"content-type": "text/csv"},
        )
        task.raise_for_status()
        while (state := self.http.get(f"/api/v1/background-task/{task.json()['id']}").json())["status"] < 3:
            time.sleep(0.5)
        assert state["cause"] == "DONE", state
        return campaign_id, service_id, time.perf_counter() - started

    def show(self, campaign_id: str) -> dict[str, Any]:
        shown: dict[str, Any] = self.http.get(f"/api/v1/bulk-campaign/{campaign_id}").json()
        return shown

    def pause_and_resume(self, campaign_id: str) -> int:
        """Pause, wait for the outbox to drain (no send for 3 s), resume; the sends after the pause."""
        at_pause = self.accepted()
        paused = time.monotonic()
        assert self.http.post(f"/api/v1/bulk-campaign/{campaign_id}/pause").json()["status"] == 8
        last, still_since = at_pause, time.monotonic()
        while time.monotonic() - still_since < 3:
            time.sleep(0.5)
            now = self.accepted()
            if now != last:
                last, still_since = now, time.monotonic()
        assert self.http.post(f"/api/v1/bulk-campaign/{campaign_id}/resume").json()["status"] == 2
        self.paused_s += time.monotonic() - paused
        return last - at_pause

    def kill_worker(self) -> list[int]:
        workers = children(self.serve.pid)
        for pid in workers:
            os.kill(pid, signal.SIGKILL)
        return workers

    def achieved(self, total: int) -> float:
        """Sends a second over the steady part, with the time paused taken out."""
        low, high = total * STEADY[0], total * STEADY[1]
        window = [(t, n) for t, n in self.samples if low <= n <= high]
        if len(window) < 2:
            return 0.0
        seconds = window[-1][0] - window[0][0] - self.paused_s
        return (window[-1][1] - window[0][1]) / seconds if seconds > 0 else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--contacts", type=int, default=100_000)
    parser.add_argument("--limit", type=int, default=250, help="The channel's (and the simulator's) sends/s")
    parser.add_argument("--faults", action="store_true", help="Pause / resume at 25 %%, SIGKILL at 60 %%")
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="openmmp-campaign-") as folder:
        work = Path(folder)
        contacts = work / "contacts.csv"
        write_csv(contacts, args.contacts)
        port, sim_port = free_port(), free_port()
        env = {
            "PATH": "/usr/bin:/bin",
            "OPENMMP_DATA_DIR": str(work / "data"),
            "OPENMMP_DATABASE_URL": database_url(args.db, work, "campaign"),
            "OPENMMP_LOG_LEVEL": "WARNING",
            "OPENMMP_PUBLIC_URL": f"http://127.0.0.1:{port}",
            "OPENMMP_PROVIDERS__VIBER_BASE_URL": f"http://127.0.0.1:{sim_port}/viber",
        }
        subprocess.run([*OPENMMP, "migrate"], env=env, check=True, capture_output=True)
        simulator = subprocess.Popen(
            [
                *OPENMMP,
                "simulate",
                "--port",
                str(sim_port),
                "--set",
                f"viber.requests_per_second={args.limit}",
            ],
            env=env,
        )
        serve = subprocess.Popen([*OPENMMP, "serve", "--sandbox", "--port", str(port)], env=env)
        try:
            base, sim = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{sim_port}"
            wait_up(f"{base}/readyz")
            wait_up(f"{sim}/viber/_sandbox/stats")
            figures = run(Run(base, sim, env, serve), args, contacts)
        finally:
            stop(serve, simulator)
    mode = (
        "paused at 25 % until drained then resumed, worker SIGKILLed at 60 %" if args.faults else "no faults"
    )
    settings = (
        f"{args.contacts:,} contacts (CSV import), Viber BM channel and simulator limited to {args.limit}/s, "
        f"1 serve --sandbox with its worker process, {mode}"
    )
    record("campaign-send", args.db, settings, figures)


def run(bench: Run, args: argparse.Namespace, contacts: Path) -> dict[str, Any]:
    total = args.contacts
    campaign_id, service_id, import_s = bench.campaign_of(args.limit, contacts)
    started = time.monotonic()
    answer = bench.http.post(f"/api/v1/bulk-campaign/{campaign_id}/broadcast", json={"broadcastType": 2})
    answer.raise_for_status()
    drained, killed = None, None
    shown_at = 0.0
    while True:
        accepted = bench.accepted()
        if time.monotonic() - shown_at >= 10:
            shown_at = time.monotonic()
            shown = bench.show(campaign_id)
            counts = {k: v for k, v in shown["progress"].items() if v}
            print(f"{shown_at - started:6.0f} s  accepted {accepted}  {shown['cause']}  {counts}", flush=True)
        if args.faults and drained is None and accepted >= total * PAUSE_AT:
            drained = bench.pause_and_resume(campaign_id)
        if args.faults and killed is None and accepted >= total * KILL_AT:
            killed = bench.kill_worker()
        if accepted >= total:
            shown = bench.show(campaign_id)
            if shown["status"] == 4 and shown["progress"]["inQueue"] == 0:
                break
        time.sleep(0.5)
    elapsed = time.monotonic() - started
    stats = httpx.get(f"{bench.sim}/viber/_sandbox/stats", params={"detail": 1}, timeout=60).json()
    ours = [count for key, count in stats["acceptedByKey"].items() if key.startswith(f"{service_id}:")]
    progress = shown["progress"]
    worker_peak = max((rss_mib(child)[1] for child in children(bench.serve.pid)), default=0.0)
    achieved = bench.achieved(total)
    figures: dict[str, Any] = {
        "contacts": total,
        "import_s": round(import_s, 1),
        "send_s": round(elapsed, 1),
        "limit_per_s": args.limit,
        "achieved_per_s": round(achieved, 1),
        "achieved_over_limit": round(achieved / args.limit, 3),
        "accepted_upstream": len(ours),
        "duplicates": sum(count - 1 for count in ours) + max(0, len(ours) - total),
        "skipped": total - len(ours),
        "sent_or_better": progress["sent"] + progress["delivered"] + progress["read"],
        "failed": progress["fail"],
        "peak_rss_mib_api": round(rss_mib(bench.serve.pid)[1], 1),
        "peak_rss_mib_worker": round(worker_peak, 1),
    }
    if args.faults:
        figures |= {
            "paused_s": round(bench.paused_s, 1),
            "sent_after_pause": drained,
            "killed": len(killed or []),
        }
    return figures


if __name__ == "__main__":
    main()
