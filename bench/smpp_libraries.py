"""Issue 13's choice of an SMPP library, by measurement: the three candidates on PyPI against the same SMSC.

Each candidate binds one transceiver to `../shared/bench/smsc_sim.py` (receipt delay 0.1 s), submits N
messages asking for a delivery receipt, and waits for every receipt. Reported per library: submits/s,
receipts/s end to end, CPU of the client process per message, and what went wrong. The candidates are
not dependencies of OpenMMP, so this runs in a scratch virtualenv that has them:

    python3.11 -m venv /tmp/smpp-candidates
    /tmp/smpp-candidates/bin/pip install aiosmpplib==0.7.4 smpp34==1.5.0 smpplib==2.2.4
    python bench/smpp_libraries.py --python /tmp/smpp-candidates/bin/python [--messages 10000]

`--driver NAME` runs one candidate's client (what the command above starts, once per library).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SMSC = ROOT.parent / "shared" / "bench" / "smsc_sim.py"
LIBRARIES = ("smpp34", "aiosmpplib", "smpplib")
TEXT = "Your code is 4711"
BIND = ("bench", "bench")  # system_id, password: the SMSC simulator takes any


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _destination(n: int) -> str:
    return f"85512{n:06d}"


async def _smpp34(port: int, messages: int, window: int) -> dict[str, Any]:
    import smpp34  # type: ignore[import-not-found]

    # Its window is full until a response is handled inside: room for the slots our semaphore just freed.
    # With the default inbound capacity the session died once ~1,800 receipts were queued (every later
    # submit_sm raised ESME_RSYSERR), however fast they were read: room for all of them.
    client = smpp34.Client("127.0.0.1", port, *BIND, window_size=2 * window, inbound_capacity=messages + 100)
    smsc = await client.connect()
    receipts = 0
    errors = 0
    done = asyncio.Event()

    async def receive() -> None:
        nonlocal receipts
        while True:
            event = await smsc.next()
            if isinstance(event, smpp34.Disconnected):
                return
            if event.esm_class & 0x04:
                receipts += 1
                if receipts == messages:
                    done.set()

    reader = asyncio.create_task(receive())
    limit = asyncio.Semaphore(window)

    async def submit(n: int) -> None:
        nonlocal errors
        async with limit:
            response = await smsc.submit_sm(
                _destination(n), TEXT.encode(), source_addr="OpenMMP", registered_delivery=1
            )
            if not response.is_success:
                errors += 1

    started = time.perf_counter()
    await asyncio.gather(*(submit(n) for n in range(messages)))
    submitted = time.perf_counter() - started
    await asyncio.wait_for(done.wait(), timeout=300)
    finished = time.perf_counter() - started
    await smsc.unbind()
    reader.cancel()
    await client.stop()
    return {"submitted_s": submitted, "finished_s": finished, "receipts": receipts, "errors": errors}


async def _aiosmpplib(port: int, messages: int, window: int) -> dict[str, Any]:
    import logging

    from aiosmpplib import (  # type: ignore[import-not-found]
        ESME,
        AbstractHook,
        DeliverSm,
        PhoneNumber,
        SubmitSm,
        SubmitSmResp,
    )
    from aiosmpplib.broker import SimpleBroker  # type: ignore[import-not-found]

    counts = {"responses": 0, "receipts": 0, "errors": 0, "send_errors": 0}
    submitted_at = asyncio.Event()
    done = asyncio.Event()

    class Hook(AbstractHook):  # type: ignore[misc]
        async def sending(self, smpp_message: Any, pdu: bytes, client_id: str) -> None:
            return None

        async def received(self, smpp_message: Any, pdu: bytes, client_id: str) -> None:
            if isinstance(smpp_message, SubmitSmResp):
                counts["responses"] += 1
                if int(smpp_message.command_status) != 0:
                    counts["errors"] += 1
                if counts["responses"] == messages:
                    submitted_at.set()
            elif isinstance(smpp_message, DeliverSm):
                counts["receipts"] += 1
                if counts["receipts"] == messages:
                    done.set()

        async def send_error(self, smpp_message: Any, error: Exception, client_id: str) -> None:
            counts["send_errors"] += 1

    broker = SimpleBroker(maxsize=messages + 10)
    esme = ESME(
        smsc_host="127.0.0.1",
        smsc_port=port,
        system_id=BIND[0],
        password=BIND[1],
        broker=broker,
        hook=Hook(),
        log_level=logging.WARNING,
    )
    runner = asyncio.create_task(esme.start())
    started = time.perf_counter()
    for n in range(messages):
        await broker.enqueue(
            SubmitSm(
                short_message=TEXT,
                source=PhoneNumber("OpenMMP"),
                destination=PhoneNumber(_destination(n)),
                log_id=str(n),
            )
        )
    await asyncio.wait_for(submitted_at.wait(), timeout=300)
    submitted = time.perf_counter() - started
    await asyncio.wait_for(done.wait(), timeout=300)
    finished = time.perf_counter() - started
    await esme.stop()
    runner.cancel()
    return {
        "submitted_s": submitted,
        "finished_s": finished,
        "receipts": counts["receipts"],
        "errors": counts["errors"],
        "send_errors": counts["send_errors"],
    }


def _smpplib(port: int, messages: int, window: int) -> dict[str, Any]:
    import smpplib.client  # type: ignore[import-not-found]
    import smpplib.consts  # type: ignore[import-not-found]

    counts = {"responses": 0, "receipts": 0, "errors": 0}
    in_flight = threading.Semaphore(window)
    submitted_at = threading.Event()
    done = threading.Event()
    client = smpplib.client.Client("127.0.0.1", port, allow_unknown_opt_params=True)

    def sent(pdu: Any, **_: Any) -> None:
        counts["responses"] += 1
        in_flight.release()
        if counts["responses"] == messages:
            submitted_at.set()

    def received(pdu: Any, **_: Any) -> None:
        if pdu.esm_class & 0x04:
            counts["receipts"] += 1
            if counts["receipts"] == messages:
                done.set()

    def error(pdu: Any) -> None:
        counts["errors"] += 1
        in_flight.release()

    client.set_message_sent_handler(sent)
    client.set_message_received_handler(received)
    client.set_error_pdu_handler(error)
    client.connect()
    client.bind_transceiver(system_id=BIND[0], password=BIND[1])
    listener = threading.Thread(target=client.listen, daemon=True)
    listener.start()
    started = time.perf_counter()
    for n in range(messages):
        in_flight.acquire()
        client.send_message(
            source_addr="OpenMMP",
            destination_addr=_destination(n),
            short_message=TEXT.encode(),
            registered_delivery=1,
        )
    submitted_at.wait(300)
    submitted = time.perf_counter() - started
    done.wait(300)
    finished = time.perf_counter() - started
    return {
        "submitted_s": submitted,
        "finished_s": finished,
        "receipts": counts["receipts"],
        "errors": counts["errors"],
    }


def drive(name: str, port: int, messages: int, window: int) -> None:
    """One candidate's client, in this process: prints its figures as one JSON line."""
    before = _cpu()
    if name == "smpplib":
        figures = _smpplib(port, messages, window)
    else:
        figures = asyncio.run((_smpp34 if name == "smpp34" else _aiosmpplib)(port, messages, window))
    cpu = _cpu() - before
    print(
        json.dumps(
            {
                "library": name,
                "messages": messages,
                "window": window,
                "submits_per_s": round(messages / figures["submitted_s"], 1),
                "end_to_end_per_s": round(figures["receipts"] / figures["finished_s"], 1),
                "receipts": figures["receipts"],
                "errors": figures["errors"],
                **({"send_errors": figures["send_errors"]} if "send_errors" in figures else {}),
                "client_cpu_us_per_message": round(cpu / messages * 1e6, 1),
            }
        ),
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--python", help="a Python that has the three candidates installed")
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--window", type=int, default=10, help="submit_sm in flight at most")
    parser.add_argument("--driver", choices=LIBRARIES, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.driver:
        drive(args.driver, args.port, args.messages, args.window)
        return
    if not args.python:
        parser.error("--python is required")
    from common import free_port, record  # the candidates' Python has no httpx: only here

    for name in LIBRARIES:
        port = free_port()
        smsc = subprocess.Popen(
            [sys.executable, str(SMSC), "--port", str(port), "--dlr-delay", "0.1", "--log-interval", "0"],
            stdout=subprocess.DEVNULL,
        )
        try:
            time.sleep(0.5)
            command = [args.python, __file__, "--driver", name, "--port", str(port)]
            command += ["--messages", str(args.messages), "--window", str(args.window)]
            result = subprocess.run(
                command, capture_output=True, text=True, timeout=900, env={**os.environ, "PYTHONPATH": ""}
            )
            lines = result.stdout.strip().splitlines()
            failure = (result.stderr.strip().splitlines() or ["no output"])[-1][:200]
            figures = json.loads(lines[-1]) if lines else {"library": name, "failed": failure}
            figures["exit_code"] = result.returncode  # smpp34 aborted at interpreter exit (a native crash)
            settings = f"{args.messages} submit_sm, window {args.window}, smsc_sim.py receipt delay 0.1 s"
            record(f"smpp-library-{name}", "-", settings, figures)
        finally:
            smsc.terminate()
            smsc.wait()


if __name__ == "__main__":
    main()
