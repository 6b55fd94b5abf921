"""DNS rebinding: the address a webhook's connection uses is checked when the connection is made.

The guard resolves a target's name before each delivery batch and the HTTP client resolves it again to
connect. Here the event loop's resolver answers a public address to the first look-up and 127.0.0.1 to
every later one, so the guard's check passes and only the check at connection time stands between the
signed request and the receiver listening on 127.0.0.1. The guarded client itself is tried on literal
addresses against real listeners.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from tests.webhooks.conftest import Receiver, drive

from openmmp.kit.http import ADDRESS_REFUSED, HttpClient, HttpUnreachable, IpAddress
from openmmp.webhooks.guard import address_problem, check_target

PUBLIC = "93.184.216.34"
REBOUND = "rebind.customer.test"


@dataclass
class RebindingResolver:
    """The event loop's resolver with one name that answers PUBLIC first and 127.0.0.1 ever after."""

    real: Any
    answers: list[str] = field(default_factory=list)

    async def getaddrinfo(self, host: Any, port: Any, *args: Any, **kwargs: Any) -> list[Any]:
        name = host.decode() if isinstance(host, bytes) else str(host)
        if name.rstrip(".") != REBOUND:
            return await self.real(host, port, *args, **kwargs)  # type: ignore[no-any-return]
        answer = PUBLIC if not self.answers else "127.0.0.1"
        self.answers.append(answer)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (answer, int(port or 0)))]


@pytest.fixture
async def rebinding(monkeypatch: pytest.MonkeyPatch) -> RebindingResolver:
    loop = asyncio.get_running_loop()
    fake = RebindingResolver(loop.getaddrinfo)
    monkeypatch.setattr(loop, "getaddrinfo", fake.getaddrinfo)
    return fake


@pytest.fixture
async def checked_http() -> AsyncIterator[HttpClient]:
    http = HttpClient(timeout=2.0)
    yield http.checked(address_problem)
    await http.aclose()


class TestTheGuardAloneIsFooled:
    async def test_the_first_answer_passes_the_guard_and_the_connection_is_refused_on_the_second(
        self, rebinding: RebindingResolver, receiver: Receiver, checked_http: HttpClient
    ):
        path = receiver.endpoint()
        url = f"http://{REBOUND}:{receiver.base_url.rsplit(':', 1)[1]}{path}"
        await check_target(url, allow_private=False)
        with pytest.raises(HttpUnreachable) as refused:
            await checked_http.post(url, json={"hello": "inside"})
        assert rebinding.answers == [PUBLIC, "127.0.0.1"]
        assert refused.value.kind == ADDRESS_REFUSED
        assert not refused.value.timed_out
        assert refused.value.detail == f"{REBOUND} resolves to 127.0.0.1, which is a loopback address"
        assert receiver.of(path) == []


class TestDelivery:
    async def test_a_name_rebound_to_loopback_between_check_and_connection_gets_nothing_delivered(
        self,
        rebinding: RebindingResolver,
        hook_client,
        make_hook,
        receiver: Receiver,
        make_deliverer,
        read_delivery,
        enqueue,
    ):
        hook = await make_hook()
        port = receiver.base_url.rsplit(":", 1)[1]
        url = f"http://{REBOUND}:{port}{hook.path}"
        answer = await hook_client.post(
            hook.base, json={"url": url, "secret": hook.secret}, headers=hook.tenant.headers
        )
        assert answer.status_code == 200, answer.text
        webhook_id = await enqueue(hook, {"type": 1, "messageId": "rebound", "status": 2})

        assert await make_deliverer(allow_private=False, timeout_seconds=2).deliver_due() == 1

        assert rebinding.answers == [PUBLIC, "127.0.0.1"]  # the guard's look-up, then the connection's
        assert receiver.of(hook.path) == []
        delivery, [attempt] = await read_delivery(webhook_id)
        assert attempt.error == (
            f"target refused when connecting: {REBOUND} resolves to 127.0.0.1, which is a loopback address"
        )
        assert attempt.status_code is None
        assert (delivery.attempts, delivery.delivered_at) == (1, None)
        assert delivery.last_error == attempt.error

    async def test_where_private_targets_are_allowed_the_same_name_is_delivered(
        self,
        rebinding: RebindingResolver,
        hook_client,
        make_hook,
        receiver: Receiver,
        make_deliverer,
        enqueue,
    ):
        hook = await make_hook()
        port = receiver.base_url.rsplit(":", 1)[1]
        url = f"http://{REBOUND}:{port}{hook.path}"
        answer = await hook_client.post(
            hook.base, json={"url": url, "secret": hook.secret}, headers=hook.tenant.headers
        )
        assert answer.status_code == 200, answer.text
        rebinding.answers.append(PUBLIC)  # every look-up from now on answers 127.0.0.1
        webhook_id = await enqueue(hook, {"type": 1, "messageId": "allowed", "status": 2})
        deliverer = make_deliverer(allow_private=True, timeout_seconds=2)

        async def received() -> bool:
            return len(receiver.of(hook.path)) == 1

        await drive(deliverer, received)
        assert receiver.of(hook.path)[0].webhook_id == webhook_id


@dataclass
class Listener:
    """A bare HTTP listener that counts the connections it accepts and answers every request 204."""

    host: str
    port: int = 0
    connections: int = 0

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(
                (
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                ),
                0,
            )
            await reader.readexactly(length)
            writer.write(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
            await writer.drain()
        finally:
            writer.close()

    def url(self) -> str:
        shown = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{shown}:{self.port}/hook"


@pytest.fixture
async def listeners() -> AsyncIterator[dict[str, Listener]]:
    """Listeners on 127.0.0.1 and ::1 (when this machine has IPv6 loopback)."""
    found: dict[str, Listener] = {}
    servers = []
    for host in ("127.0.0.1", "::1"):
        listener = Listener(host)
        try:
            server = await asyncio.start_server(listener.serve, host, 0)
        except OSError:
            continue
        listener.port = server.sockets[0].getsockname()[1]
        found[host] = listener
        servers.append(server)
    yield found
    for server in servers:
        server.close()
        await server.wait_closed()


@dataclass
class Connects:
    """The event loop's socket connect, recording every address; only the listeners are really dialled."""

    real: Any
    listened: set[str]
    addresses: list[str] = field(default_factory=list)

    async def sock_connect(self, sock: socket.socket, address: Any) -> None:
        self.addresses.append(address[0])
        if address[0] not in self.listened:
            raise ConnectionRefusedError(f"test: no connection to {address[0]} leaves this machine")
        await self.real(sock, address)


@pytest.fixture
async def connects(monkeypatch: pytest.MonkeyPatch, listeners: dict[str, Listener]) -> Connects:
    loop = asyncio.get_running_loop()
    fake = Connects(loop.sock_connect, set(listeners))
    monkeypatch.setattr(loop, "sock_connect", fake.sock_connect)
    return fake


# (address, what the guard calls it)
PRIVATE = [
    ("127.0.0.1", "a loopback address"),
    ("10.0.0.1", "a private address"),
    ("169.254.169.254", "a cloud metadata address"),
    ("::1", "a loopback address"),
]


def target(address: str, listeners: dict[str, Listener]) -> str:
    if address in listeners:
        return listeners[address].url()
    if ":" in address:
        pytest.skip("no IPv6 loopback on this machine")
    return f"http://{address}/hook"


class TestGuardedClient:
    @pytest.mark.parametrize(("address", "problem"), PRIVATE)
    async def test_a_private_literal_is_refused_before_any_connection(
        self,
        checked_http: HttpClient,
        listeners: dict[str, Listener],
        connects: Connects,
        address: str,
        problem: str,
    ):
        url = target(address, listeners)
        with pytest.raises(HttpUnreachable) as refused:
            await checked_http.post(url, json={"hello": "inside"})
        assert refused.value.kind == ADDRESS_REFUSED
        assert not refused.value.timed_out
        assert refused.value.detail == f"the connection would go to {address}, which is {problem}"
        assert connects.addresses == []
        assert sum(listener.connections for listener in listeners.values()) == 0

    @pytest.mark.parametrize(("address", "problem"), PRIVATE)
    async def test_the_same_literals_are_connected_to_when_private_targets_are_allowed(
        self, listeners: dict[str, Listener], connects: Connects, address: str, problem: str
    ):
        url = target(address, listeners)
        http = HttpClient(timeout=2.0)  # what the deliverer uses when private targets are allowed
        try:
            if address in listeners:
                response = await http.post(url, json={"hello": "inside"})
                assert response.status_code == 204
                assert listeners[address].connections == 1
            else:
                with pytest.raises(HttpUnreachable) as failed:
                    await http.post(url, json={"hello": "inside"})
                assert failed.value.kind == "ConnectError"  # the fake connect's refusal, not the check's
        finally:
            await http.aclose()
        assert connects.addresses == [address]

    async def test_the_check_judges_the_address_each_connection_uses(
        self, listeners: dict[str, Listener], connects: Connects
    ):
        seen: list[IpAddress] = []

        def accept(address: IpAddress) -> str | None:
            seen.append(address)
            return None

        http = HttpClient(timeout=2.0, address_check=accept)
        try:
            response = await http.post(listeners["127.0.0.1"].url(), json={})
        finally:
            await http.aclose()
        assert response.status_code == 204
        assert seen == [ipaddress.ip_address("127.0.0.1")]
        assert connects.addresses == ["127.0.0.1"]
