"""The `openmmp` command as an operator runs it: real processes, a real database, real HTTP."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from tests.conftest import TEST_SECRET

OPENMMP = [sys.executable, "-m", "openmmp.cli"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def env(database_url: str, tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "OPENMMP_DATABASE_URL": database_url,
        "OPENMMP_DATA_DIR": str(tmp_path / "data"),
        "OPENMMP_SECRET_KEY": "",
    }


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*OPENMMP, *args], env=env, capture_output=True, text=True, timeout=60, check=False)


class TestBootstrap:
    async def test_json_output_gives_a_partner_key_that_can_onboard(
        self, env: dict[str, str], client: httpx.AsyncClient
    ):
        done = run(["bootstrap", "--name", "Operator", "--json"], {**env, "OPENMMP_SECRET_KEY": TEST_SECRET})
        assert done.returncode == 0, done.stderr
        printed = json.loads(done.stdout)
        assert set(printed) == {"companyPublicId", "apiKey"}
        assert printed["apiKey"] not in done.stderr
        body = {"company": {"name": "Via CLI partner"}, "admin": {"name": "A", "email": "a@cli.example"}}
        response = await client.post("/api/v1/onboard", json=body, headers={"apiKey": printed["apiKey"]})
        assert response.status_code == 201

    def test_a_missing_server_secret_is_generated_and_never_printed(
        self, env: dict[str, str], tmp_path: Path
    ):
        done = run(["bootstrap", "--name", "Operator"], env)
        assert done.returncode == 0, done.stderr
        assert "API key (shown once" in done.stdout
        secret_file = tmp_path / "data" / "secret.key"
        assert secret_file.stat().st_mode & 0o777 == 0o600
        assert "server_secret_generated" in done.stderr
        assert secret_file.read_text().strip() not in done.stderr

    def test_an_empty_name_is_refused(self, env: dict[str, str]):
        done = run(["bootstrap", "--name", " "], env)
        assert done.returncode != 0
        assert "name" in done.stderr


class TestServeSandbox:
    def test_first_start_creates_demo_data_and_prints_a_working_key(self, env: dict[str, str]):
        port = free_port()
        process = subprocess.Popen(
            [*OPENMMP, "serve", "--sandbox", "--port", str(port)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.1)
            else:
                pytest.fail("server did not become ready")
        finally:
            process.send_signal(signal.SIGINT)
            _, stderr = process.communicate(timeout=20)
        key = re.search(r"Demo API key:\s+(mmp_\w+)", stderr)
        assert key, stderr
        assert "curl -s" in stderr
        assert process.returncode == 0

        # A second start reuses the same demo company and key.
        port = free_port()
        process = subprocess.Popen(
            [*OPENMMP, "serve", "--sandbox", "--port", str(port)], env=env, stderr=subprocess.PIPE, text=True
        )
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 30
            channels = None
            while time.monotonic() < deadline:
                try:
                    channels = httpx.get(
                        f"{base}/api/v1/channel?size=100", headers={"apiKey": key.group(1)}, timeout=1
                    )
                    break
                except httpx.HTTPError:
                    time.sleep(0.1)
            assert channels is not None and channels.status_code == 200
            assert {c["applicationId"] for c in channels.json()["items"]} == {
                1,
                2,
                3,
                4,
                5,
                6,
                7,
                8,
                10,
                11,
                15,
                24,
            }
        finally:
            process.send_signal(signal.SIGINT)
            _, stderr = process.communicate(timeout=20)
        assert key.group(1) in stderr
