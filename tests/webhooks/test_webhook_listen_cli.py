"""`openmmp webhooks listen` as an operator runs it: a real process receiving real deliveries."""

import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
from tests.conftest import Tenant, bot_credentials
from tests.webhooks.conftest import Hook, drive, eventually

from openmmp.models.webhook import DeliveryState
from openmmp.webhooks.signing import sign_headers


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Listener:
    def __init__(self, process: asyncio.subprocess.Process, url: str) -> None:
        self.process = process
        self.url = url

    async def line(self, stream: asyncio.StreamReader | None, timeout: float = 5.0) -> str:
        assert stream is not None
        async with asyncio.timeout(timeout):
            return (await stream.readline()).decode().rstrip("\n")


@asynccontextmanager
async def listening(port: int, *args: str) -> AsyncIterator[Listener]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "openmmp.cli",
        "webhooks",
        "listen",
        "--port",
        str(port),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    listener = Listener(process, f"http://127.0.0.1:{port}/")

    async def accepting() -> bool:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            assert process.returncode is None, "the listener exited"
            return False
        writer.close()
        await writer.wait_closed()
        return True

    try:
        await eventually(accepting, timeout=15, what="the listener to accept connections")
        yield listener
    finally:
        if process.returncode is None:
            process.terminate()
            async with asyncio.timeout(10):
                await process.wait()


class TestListen:
    async def test_prints_signed_deliveries_and_refuses_bad_signatures(
        self, hook_client: httpx.AsyncClient, owner: Tenant, enqueue, make_deliverer, read_delivery
    ):
        port = free_port()
        body = {"name": "Watched", "applicationId": 10, "credentials": bot_credentials()}
        created = await hook_client.post(
            "/api/v1/channel",
            json={**body, "webhookUrl": f"http://127.0.0.1:{port}/"},
            headers=owner.headers,
        )
        assert created.status_code == 201, created.text
        channel = created.json()
        secret = channel["webhookSecret"]

        hook = Hook(owner, channel["publicId"], secret, "/", f"http://127.0.0.1:{port}/")
        async with listening(port, "--secret", secret) as listener:
            assert "listening on" in await listener.line(listener.process.stderr)
            status = {"messageId": "m-cli", "cause": "READ", "type": 1, "status": 5, "publicId": "p"}
            inbound = {"from": "conv-1", "type": 2, "message": {"type": "text", "message": "hello\nthere"}}
            first = await enqueue(hook, status)
            second = await enqueue(hook, inbound, event_type=2)

            async def delivered() -> bool:
                states = [(await read_delivery(i))[0].state for i in (first, second)]
                return states == [DeliveryState.DELIVERED] * 2

            await drive(make_deliverer(), delivered)
            lines = [await listener.line(listener.process.stdout) for _ in range(2)]
            by_id = {line.split()[1]: line for line in lines}
            assert by_id[first].endswith(f"{first} type=1 message=m-cli status=5 READ")
            assert by_id[second].endswith(f"{second} type=2 from=conv-1 text: hello there")
            assert all(line[:2].isdigit() and line[2] == ":" for line in lines)

            forged = sign_headers(
                "whsec_" + "A" * 32, webhook_id="forged-1", body='{"type":1}', timestamp_s=int(time.time())
            )
            async with httpx.AsyncClient() as http:
                refused = await http.post(listener.url, content=b'{"type":1}', headers=forged)
                unsigned = await http.post(listener.url, content=b'{"type":1}')
            assert (refused.status_code, unsigned.status_code) == (401, 401)
            assert "forged-1 REFUSED bad signature" in await listener.line(listener.process.stderr)

    async def test_several_secrets_accept_what_any_of_them_signed(self):
        """The tour's receiver serves two channels, each with its own secret."""
        port = free_port()
        first, second, other = ("whsec_" + letter * 32 for letter in "ABC")
        async with listening(port, "--secret", first, "--secret", second) as listener:
            assert "checking signatures (2 secrets)" in await listener.line(listener.process.stderr)
            body = '{"type":1,"messageId":"m","status":2,"cause":"SEND"}'
            answers = []
            async with httpx.AsyncClient() as http:
                for number, secret in enumerate((first, second, other)):
                    headers = sign_headers(
                        secret, webhook_id=f"w-{number}", body=body, timestamp_s=int(time.time())
                    )
                    answers.append(
                        (await http.post(listener.url, content=body.encode(), headers=headers)).status_code
                    )
            assert answers == [204, 204, 401]
            printed = [await listener.line(listener.process.stdout) for _ in range(2)]
            assert sorted(line.split()[1] for line in printed) == ["w-0", "w-1"]

    async def test_without_a_secret_it_prints_everything(self):
        port = free_port()
        async with listening(port) as listener:
            assert "NOT checking signatures" in await listener.line(listener.process.stderr)
            async with httpx.AsyncClient() as http:
                response = await http.post(
                    listener.url + "any/path", content=b'{"type":4,"channel":{"publicId":"c","status":3}}'
                )
            assert response.status_code == 204
            line = await listener.line(listener.process.stdout)
            assert line.endswith("- type=4 channel=c status=3 None")

    @pytest.mark.parametrize("secret", ["plain", "whsec_"])
    def test_a_malformed_secret_is_refused(self, secret: str):
        done = subprocess.run(
            [sys.executable, "-m", "openmmp.cli", "webhooks", "listen", "--port", "1", "--secret", secret],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert done.returncode != 0
        assert "--secret" in done.stderr
