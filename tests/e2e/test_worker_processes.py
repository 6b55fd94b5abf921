"""`openmmp serve` runs its workers as a child process: woken by the API, restarted, gone with the API.

The API and the workers share nothing but the database and a pipe (the child's stdin): a byte on it
wakes the child, its end stops it. So a child SIGKILLed is started again by the API, and an API
SIGKILLed leaves no worker behind. The API's /metrics still shows everything: the child's counters
(sends, which only workers make) are added to the API's own.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import httpx
import pytest
from tests.e2e.harness import Sandbox, wait_until
from tests.e2e.test_sandbox_restart import API, _launched, _read

from openmmp.providers.registry import REGISTRY

pytestmark = pytest.mark.e2e


def _children(pid: int) -> list[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(child) for child in text.split()]


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"  # a zombie has exited; only its parent's wait is missing


async def _send_and_read(sandbox: Sandbox, demo: dict[str, str], phone: str) -> None:
    headers = {"apiKey": demo["apiKey"]}
    account = demo["channels"]["VIBER"]  # type: ignore[index]
    async with httpx.AsyncClient(base_url=sandbox.url, timeout=15) as api:
        await _launched(api, headers, account)
        sent = await api.post(
            f"{API}/channel/{account}/broadcast",
            json={"phone": phone, "message": {"type": "text", "message": "hello"}},
            headers=headers,
        )
        assert sent.status_code == 200, sent.text
        viber = REGISTRY.by_name("viber")
        assert viber is not None
        await _read(api, headers, sent.json()["messageId"], viber)


async def test_the_workers_run_in_a_child_that_is_restarted_and_dies_with_the_api(tmp_path: Path) -> None:
    sandbox = Sandbox(tmp_path)
    try:
        demo = await sandbox.start()
        assert sandbox.process is not None and sandbox.process.popen is not None
        api_pid = sandbox.process.popen.pid
        [first] = await wait_until(lambda: _children(api_pid), timeout=30, what="a worker process")
        await _send_and_read(sandbox, demo, "85512345670")

        # Sends are made by the child only: the API's /metrics shows them, added to its own.
        async with httpx.AsyncClient(base_url=sandbox.url, timeout=15) as api:
            scraped = (await api.get("/metrics")).text
        sends = [
            line for line in scraped.splitlines() if line.startswith("openmmp_provider_send_seconds_count")
        ]
        assert any('provider="viber"' in line and not line.endswith(" 0.0") for line in sends), sends
        assert scraped.count("# TYPE openmmp_provider_send_seconds histogram") == 1

        # A child that dies is started again, and the next send goes through the new one.
        os.kill(first, signal.SIGKILL)
        [second] = await wait_until(
            lambda: [pid for pid in _children(api_pid) if pid != first and _alive(pid)],
            timeout=30,
            what="a new worker process",
        )
        await _send_and_read(sandbox, demo, "85512345680")

        # The API SIGKILLed: its child sees the pipe end and stops.
        sandbox.stop(signal.SIGKILL)
        await wait_until(lambda: not _alive(second), timeout=30, what="the worker process to stop")
        assert "worker_process_exited" in sandbox.process.log()
    except BaseException:
        print(sandbox.logs())
        raise
    finally:
        if sandbox.process is not None:
            sandbox.process.stop()
