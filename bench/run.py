"""`make bench`: run benchmark scenarios as separate processes and record the figures.

Each scenario prints one JSON line and appends a row (date, commit, machine, settings, figures) to
bench/results.md. Scenarios so far:

- ingest: accepted messages/s and p50/p99 of `POST .../broadcast` (single) and `.../broadcast/batch`
  (1,000 per call) with 32 concurrent clients, against `openmmp serve --no-workers` (ingest alone), and
  the same load against `bench/bare_app.py` (one row inserted per request): the ceiling of our stack.
- limits: the simulator refuses Viber BM sends above L/s; 10·L messages to a channel limited to L:
  achieved rate / L (steady part) and the number of rate-limit answers (the target is zero).
- e2e: N messages (default 100,000; half Viber, half Viber Bot) through the simulators with callbacks and
  webhooks to bench/receiver.py; on PostgreSQL with 1, 2 and 4 worker processes. Includes the status
  reads: Get Message Status at 500 requests/s (bench/status_load.py) while the backlog drains.
- reads: Get Message Status p50/p99 while the platform runs at 80 % of its end-to-end maximum (measured
  first in the same run), the messages paced in batches of 20 (bench/e2e.py `reads_under_load`).
- stages: the end to end run under py-spy: CPU per message of OpenMMP's processes by stage (accept,
  dispatch, callback, webhook, HTTP server, ...), the profiles kept in bench/profiles/ (bench/stages.py).
- webhooks: deliveries/s of one worker process to a local receiver (bench/outbox.py).
- memory: RSS of the API and a worker with 1,000,000 messages queued (bench/outbox.py).
- claims: what one claim costs with 10 and with 1,000,000 jobs queued (bench/claims.py).
- sms: issue 13's SMS end to end: N single sends (default 10,000) from 32 clients through an SMS channel's
  SMPP binds (`--sms-binds`, `--sms-window`; default 1 and 10) to ../shared/bench/smsc_sim.py (receipt
  delay 0.1 s), the platform not in sandbox mode; accepted/s, DELIVERED webhooks/s end to end, accept →
  DELIVERED webhook p50/p99, receipts lost, CPU per message, beside the peer's figures (bench/sms.py).
- soak: a steady rate for 10 minutes, latency by minute and RSS over time (bench/soak.py; not in the
  default set, ask for it with --scenario soak).

Usage: python bench/run.py [--db sqlite|postgresql] [--scenario NAME]... [--messages N] [--workers W]...
       [--seconds 10] [--limit 100] [--deliveries 20000] [--queued 1000000] [--soak-rate R] [--soak-seconds S]
       [--sms-binds 1] [--sms-window 10] [--sms-worker-processes N]
e.g. `cd bench && ../.venv/bin/python run.py --db sqlite --scenario sms --messages 10000`.
PostgreSQL uses OPENMMP_BENCH_DATABASE_URL (default postgresql://postgres@127.0.0.1:5432/openmmp_bench).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from claims import claims
from common import PY, ROOT, database_url, free_port, record, wait_up
from e2e import end_to_end, reads_under_load
from outbox import memory, webhooks
from sms import sms
from soak import soak
from stages import stages


def launch(base: str, channel: str, headers: dict[str, str], env: dict[str, str]) -> None:
    """Let a worker set the channel up (sandbox registration), then stop it: ingest is measured alone."""
    worker = subprocess.Popen([PY, "-m", "openmmp.cli", "worker"], env=env)
    try:
        for _ in range(300):
            status = httpx.get(f"{base}/api/v1/channel/{channel}/status", headers=headers, timeout=5).json()
            if status["status"] == 3:
                return
            time.sleep(0.1)
        raise RuntimeError("the channel was not launched")
    finally:
        worker.terminate()
        worker.wait()


WRK_SCRIPT = """
local body, unique = %s, %s
local headers = %s
local counter = 0
math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
local prefix = "bench-" .. os.time() .. "-" .. math.random(1, 1000000000) .. "-"
request = function()
  local text = body
  if unique ~= "" then
    counter = counter + 1
    text = body:gsub('"' .. unique .. '":"[^"]*"', '"' .. unique .. '":"' .. prefix .. counter .. '"')
  end
  return wrk.format("POST", nil, headers, text)
end
done = function(summary, latency, requests)
  local ok = summary.requests - summary.errors.status - summary.errors.connect - summary.errors.read
      - summary.errors.write - summary.errors.timeout
  io.write(string.format('{"requests": %%d, "errors": %%d, "seconds": %%.2f, "rps": %%.1f, '
    .. '"p50_ms": %%.2f, "p99_ms": %%.2f}\\n', ok, summary.requests - ok, summary.duration / 1e6,
    ok / (summary.duration / 1e6), latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
"""


def generator() -> str:
    return "wrk" if shutil.which("wrk") else "bench/load.py"


def _lua(value: str) -> str:
    return "[==[" + value + "]==]"


def load_wrk(
    url: str, body: dict[str, Any], seconds: float, headers: dict[str, str], unique: str, work: Path
) -> dict[str, Any]:
    """The same load from `wrk` (C, one thread): the generator then costs the 2 cores far less."""
    if unique:
        body = {**body, unique: "x"}
    lua_headers = (
        "{"
        + ", ".join(
            f"[ {_lua(k)} ] = {_lua(v)}" for k, v in {"Content-Type": "application/json", **headers}.items()
        )
        + "}"
    )
    script = work / "load.lua"
    script.write_text(WRK_SCRIPT % (_lua(json.dumps(body, separators=(",", ":"))), _lua(unique), lua_headers))
    args = ["wrk", "-t1", "-c32", f"-d{int(seconds)}s", "--timeout", "30s", "-s", str(script), url]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


def load(
    url: str, body: dict[str, Any], seconds: float, headers: dict[str, str], unique: str, work: Path
) -> dict[str, Any]:
    """32 clients posting `body` for `seconds`: with `wrk` when installed, else bench/load.py."""
    if shutil.which("wrk"):
        return load_wrk(url, body, seconds, headers, unique, work)
    path = work / "body.json"
    path.write_text(json.dumps(body))
    args = [PY, str(ROOT / "bench" / "load.py"), "--url", url, "--body", str(path), "--seconds", str(seconds)]
    args += [f"--header={k}: {v}" for k, v in headers.items()]
    if unique:
        args += ["--unique", unique]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


def ingest(kind: str, seconds: float, work: Path) -> None:
    env = {**os.environ, "OPENMMP_DATA_DIR": str(work / "data"), "OPENMMP_LOG_LEVEL": "WARNING"}
    # The ceiling: the bare endpoint.
    bare_port = free_port()
    bare_env = {**env, "BARE_DATABASE_URL": database_url(kind, work, "bare")}
    bare = subprocess.Popen(
        [PY, "-m", "uvicorn", "bench.bare_app:app", "--port", str(bare_port), "--log-level", "warning"],
        cwd=ROOT,
        env=bare_env,
    )
    try:
        wait_up(f"http://127.0.0.1:{bare_port}/docs")
        ceiling = load(
            f"http://127.0.0.1:{bare_port}/insert", {"phone": "85512345678"}, seconds, {}, "", work
        )
    finally:
        bare.terminate()
        bare.wait()
    record("ingest-bare-ceiling", kind, f"32 clients ({generator()}), 1 row per request", ceiling)

    url = database_url(kind, work, "ingest")
    env["OPENMMP_DATABASE_URL"] = url
    subprocess.run([PY, "-m", "openmmp.cli", "migrate"], env=env, check=True, capture_output=True)
    port = free_port()
    api = subprocess.Popen(
        [PY, "-m", "openmmp.cli", "serve", "--sandbox", "--no-workers", "--port", str(port)], env=env
    )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_up(f"{base}/readyz")
        demo = json.loads((work / "data" / "demo.json").read_text())
        headers = {"apiKey": demo["apiKey"]}
        channel = demo["channels"]["VIBER"]
        # The worker reaches the sandbox's simulators at this API's address (serve has them by option).
        launch(base, channel, headers, {**env, "OPENMMP_PORT": str(port), "OPENMMP_SANDBOX": "true"})
        message = {
            "phone": "85512345678",
            "message": {"type": "text", "message": "Your code is {{code}}"},
            "params": {"code": "4711"},
        }
        single = load(
            f"{base}/api/v1/channel/{channel}/broadcast", message, seconds, headers, "clientMessageId", work
        )
        single["ratio_to_ceiling"] = round(single["rps"] / ceiling["rps"], 2) if ceiling["rps"] else 0
        record("ingest-single", kind, f"32 clients ({generator()}), POST /broadcast, no workers", single)
        batch_body = {"messages": [{**message, "phone": f"85512{n:06d}"} for n in range(1000)]}
        batch = load(
            f"{base}/api/v1/channel/{channel}/broadcast/batch", batch_body, seconds, headers, "", work
        )
        figures = {
            "messages_per_s": round(batch["rps"] * 1000, 0),
            "calls_per_s": batch["rps"],
            "p50_ms": batch["p50_ms"],
            "p99_ms": batch["p99_ms"],
            "errors": batch["errors"],
            "ratio_to_ceiling": round(batch["rps"] * 1000 / ceiling["rps"], 2) if ceiling["rps"] else 0,
        }
        record(
            "ingest-batch",
            kind,
            f"32 clients ({generator()}), POST /broadcast/batch x1000, no workers",
            figures,
        )
    finally:
        api.terminate()
        api.wait()


def limits(kind: str, seconds: float, work: Path, limit: int) -> None:
    """Upstream limit L: the simulator refuses above L requests/s; we send 10·L messages at a channel
    limited to L and report the achieved rate / L and how many rate-limit answers the simulator gave."""
    env = {**os.environ, "OPENMMP_DATA_DIR": str(work / "data-limits"), "OPENMMP_LOG_LEVEL": "WARNING"}
    env["OPENMMP_DATABASE_URL"] = database_url(kind, work, "limits")
    subprocess.run([PY, "-m", "openmmp.cli", "migrate"], env=env, check=True, capture_output=True)
    api_port, sim_port = free_port(), free_port()
    env.update(
        OPENMMP_PUBLIC_URL=f"http://127.0.0.1:{api_port}",
        OPENMMP_PROVIDERS__VIBER_BASE_URL=f"http://127.0.0.1:{sim_port}/viber",
        OPENMMP_PROVIDERS__VIBER_BOT_BASE_URL=f"http://127.0.0.1:{sim_port}/viber-bot",
    )
    sim_args = [
        "simulate",
        "--port",
        str(sim_port),
        "--set",
        f"viber.requests_per_second={limit}",
        "--no-track-keys",
    ]
    processes = [
        subprocess.Popen([PY, "-m", "openmmp.cli", *sim_args], env=env),
        subprocess.Popen([PY, "-m", "openmmp.cli", "serve", "--sandbox", "--port", str(api_port)], env=env),
    ]
    try:
        base, sim = f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{sim_port}"
        wait_up(f"{base}/readyz")
        wait_up(f"{sim}/viber/_sandbox/stats")
        demo = json.loads((work / "data-limits" / "demo.json").read_text())
        headers = {"apiKey": demo["apiKey"]}
        created = httpx.post(
            f"{base}/api/v1/channel",
            json={
                "name": "limits",
                "applicationId": 1,
                "credentials": {"serviceId": 4242},
                "settings": {"rateLimitPerSecond": limit},
            },
            headers=headers,
        ).json()
        channel = created["publicId"]
        for _ in range(300):
            if httpx.get(f"{base}/api/v1/channel/{channel}/status", headers=headers).json()["status"] == 3:
                break
            time.sleep(0.1)
        total = limit * 10
        for start in range(0, total, 1000):
            items = [
                {"phone": f"85512{n:05d}0", "message": {"type": "text", "message": "limit"}}
                for n in range(start, min(total, start + 1000))
            ]
            httpx.post(
                f"{base}/api/v1/channel/{channel}/broadcast/batch",
                json={"messages": items},
                headers=headers,
                timeout=60,
            )
        samples: list[tuple[float, int]] = []
        deadline = time.monotonic() + max(seconds, 60)
        while time.monotonic() < deadline:
            stats = httpx.get(f"{sim}/viber/_sandbox/stats").json()
            samples.append((time.monotonic(), stats["accepted"]))
            if stats["accepted"] >= total:
                break
            time.sleep(0.2)
        # The steady rate: from the first sample past 10 % to the last below 90 % of the messages.
        window = [(t, n) for t, n in samples if total * 0.1 <= n <= total * 0.9]
        achieved = (window[-1][1] - window[0][1]) / (window[-1][0] - window[0][0]) if len(window) > 1 else 0.0
        figures = {
            "limit_per_s": limit,
            "achieved_per_s": round(achieved, 1),
            "achieved_over_limit": round(achieved / limit, 3),
            "rate_limit_answers": stats["rateLimited"],
            "accepted": stats["accepted"],
        }
        safety = env.get("OPENMMP_LIMITS__SAFETY", "0.95 (default)")
        setting = f"Viber BM, {total} messages, embedded workers, OPENMMP_LIMITS__SAFETY {safety}"
        record("upstream-limits", kind, setting, figures)
    finally:
        for process in processes:
            process.terminate()
            process.wait()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--db", choices=["sqlite", "postgresql"], action="append")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument(
        "--scenario",
        choices=["ingest", "limits", "e2e", "reads", "stages", "webhooks", "memory", "claims", "sms", "soak"],
        action="append",
    )
    parser.add_argument("--limit", type=int, default=100, help="the upstream limit L (requests/s)")
    parser.add_argument(
        "--messages", type=int, help="end to end: messages sent (default 100,000; sms: 10,000)"
    )
    parser.add_argument(
        "--workers", type=int, action="append", help="end to end on PostgreSQL: worker processes"
    )
    parser.add_argument(
        "--separate",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="end to end: API and worker processes apart (default: on PostgreSQL only)",
    )
    parser.add_argument(
        "--unlimited",
        action="store_true",
        help="end to end: raise the upstreams' published limits in the simulators and in OpenMMP alike "
        "(one Viber Bot is otherwise capped at 500 requests per 10 s)",
    )
    parser.add_argument(
        "--status-rate", type=float, default=500.0, help="end to end: Get Message Status per second (0: none)"
    )
    parser.add_argument("--deliveries", type=int, default=20_000, help="webhooks: deliveries queued")
    parser.add_argument("--queued", type=int, default=1_000_000, help="memory, claims: jobs queued")
    parser.add_argument("--sms-binds", type=int, default=1, help="sms: the channel's binds (1-10)")
    parser.add_argument("--sms-window", type=int, default=10, help="sms: submit_sm in flight per bind")
    parser.add_argument(
        "--sms-worker-processes",
        type=int,
        help="sms, one serve: its --worker-processes (0: the workers in the API's process; default: serve's)",
    )
    parser.add_argument("--soak-rate", type=float, default=50.0, help="soak: messages/s (half of e2e)")
    parser.add_argument("--soak-seconds", type=float, default=600.0, help="soak: how long")
    args = parser.parse_args()
    scenarios = args.scenario or [
        "ingest",
        "limits",
        "e2e",
        "reads",
        "stages",
        "webhooks",
        "memory",
        "claims",
        "sms",
    ]
    messages = args.messages or 100_000
    for kind in args.db or ["sqlite", "postgresql"]:
        work = Path(tempfile.mkdtemp(prefix="openmmp-bench-"))
        try:
            if "ingest" in scenarios:
                ingest(kind, args.seconds, work)
            if "limits" in scenarios:
                limits(kind, args.seconds, work, args.limit)
            if "e2e" in scenarios:
                for workers in (args.workers or [1, 2, 4]) if kind == "postgresql" or args.separate else [1]:
                    end_to_end(
                        kind,
                        work,
                        messages,
                        workers,
                        status_rate=args.status_rate,
                        separate=args.separate,
                        unlimited=args.unlimited,
                    )
            if "reads" in scenarios:
                reads_under_load(kind, work, min(messages, 10_000), separate=args.separate)
            if "stages" in scenarios:
                for workers in (args.workers or [2]) if kind == "postgresql" or args.separate else [1]:
                    stages(kind, work, min(messages, 10_000), workers, separate=args.separate)
            if "webhooks" in scenarios:
                webhooks(kind, work, args.deliveries)
            if "memory" in scenarios:
                memory(kind, work, args.queued)
            if "claims" in scenarios:
                claims(kind, work, args.queued)
            if "sms" in scenarios:
                for workers in (args.workers or [1]) if kind == "postgresql" or args.separate else [1]:
                    sms(
                        kind,
                        work,
                        args.messages or 10_000,
                        workers,
                        binds=args.sms_binds,
                        window=args.sms_window,
                        separate=args.separate,
                        worker_processes=args.sms_worker_processes,
                    )
            if "soak" in scenarios:
                soak(kind, work, args.soak_rate, args.soak_seconds)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        time.sleep(1)


if __name__ == "__main__":
    main()
