"""The webhook target guard, class by class, for addresses and for names that RESOLVE to them.

test_webhook_guard.py covers literal addresses and real resolution of a few names. Here the event loop's
resolver is replaced (no real DNS: an unknown name does not resolve), so that every refused class is
tried behind a name, a name with one public and one private address is refused, and the range
boundaries are pinned. Outside sandbox mode all are refused; in sandbox mode, or with the operator's
allow-private switch, all are accepted without even being resolved. A name that resolves publicly when it
is set and privately later (DNS rebinding) is refused again by the deliverer.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from tests.conftest import Tenant
from tests.webhooks.conftest import Receiver, drive

from openmmp.settings import Settings, WebhookSettings
from openmmp.webhooks.guard import TargetRefused, check_target, webhooks_allow_private

# (address, what the guard calls it)
REFUSED = [
    ("127.0.0.1", "a loopback address"),
    ("127.255.255.254", "a loopback address"),
    ("::1", "a loopback address"),
    ("10.0.0.1", "a private address"),
    ("10.255.255.254", "a private address"),
    ("172.16.0.1", "a private address"),
    ("172.31.255.254", "a private address"),
    ("192.168.0.1", "a private address"),
    ("192.168.255.254", "a private address"),
    ("fc00::1", "a private address"),
    ("fdff:ffff:ffff::1", "a private address"),
    ("fec0::1", "a private address"),  # deprecated site-local, which `ipaddress` calls global
    ("169.254.0.1", "a link-local address"),
    ("169.254.255.254", "a link-local address"),
    ("fe80::1", "a link-local address"),
    ("febf:ffff::1", "a link-local address"),
    ("100.64.0.1", "not a public address"),  # carrier-grade NAT, 100.64/10
    ("100.127.255.254", "not a public address"),
    ("169.254.169.254", "a cloud metadata address"),
    ("fd00:ec2::254", "a cloud metadata address"),
    ("::ffff:127.0.0.1", "a loopback address"),  # IPv4-mapped
    ("::ffff:10.0.0.1", "a private address"),
    ("::ffff:169.254.169.254", "a cloud metadata address"),
    ("::ffff:100.64.0.1", "not a public address"),
    ("64:ff9b::7f00:1", "a loopback address"),  # NAT64 of 127.0.0.1
    ("64:ff9b::c0a8:101", "a private address"),  # NAT64 of 192.168.1.1
    ("64:ff9b::a9fe:a9fe", "a cloud metadata address"),  # NAT64 of 169.254.169.254
    ("64:ff9b::6440:1", "not a public address"),  # NAT64 of 100.64.0.1
    ("2002:a9fe:a9fe::1", "a cloud metadata address"),  # 6to4 of 169.254.169.254
]
# Just outside the refused ranges, and public addresses in the forms above.
ACCEPTED = [
    "9.255.255.254",
    "11.0.0.1",
    "172.15.255.254",
    "172.32.0.1",
    "192.167.255.254",
    "192.169.0.1",
    "169.253.255.254",
    "169.255.0.1",
    "100.63.255.254",
    "100.128.0.1",
    "8.8.8.8",
    "2001:4860:4860::8888",
    "::ffff:8.8.8.8",
    "64:ff9b::808:808",
]


def literal_url(address: str) -> str:
    return f"https://[{address}]/hook" if ":" in address else f"https://{address}/hook"


def name_for(address: str) -> str:
    return "hooks-" + re.sub(r"[^0-9a-z]+", "-", address).strip("-") + ".customer.test"


@dataclass
class Resolver:
    """Answers for the names it was given; any other name does not resolve. Literals go to the real one."""

    real: Any
    names: dict[str, list[str]] = field(default_factory=dict)
    asked: list[str] = field(default_factory=list)

    async def getaddrinfo(self, host: Any, port: Any, *args: Any, **kwargs: Any) -> list[Any]:
        text = host.decode() if isinstance(host, bytes) else str(host)
        try:
            socket.inet_pton(socket.AF_INET6 if ":" in text else socket.AF_INET, text)
        except OSError:
            pass
        else:
            return await self.real(host, port, *args, **kwargs)  # type: ignore[no-any-return]
        self.asked.append(text)
        if text not in self.names:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        port_number = int(port or 0)
        return [
            (socket.AF_INET6, socket.SOCK_STREAM, 6, "", (a, port_number, 0, 0))
            if ":" in a
            else (socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port_number))
            for a in self.names[text]
        ]


@pytest.fixture
async def resolver(monkeypatch: pytest.MonkeyPatch) -> Resolver:
    loop = asyncio.get_running_loop()
    fake = Resolver(loop.getaddrinfo)
    monkeypatch.setattr(loop, "getaddrinfo", fake.getaddrinfo)
    return fake


def refused_names(resolver: Resolver) -> list[tuple[str, str, str]]:
    """(url, address, reason) of one name per refused address."""
    for address, _ in REFUSED:
        resolver.names[name_for(address)] = [address]
    return [(f"https://{name_for(a)}/hook", a, reason) for a, reason in REFUSED]


class TestOutsideSandbox:
    @pytest.mark.parametrize(("address", "reason"), REFUSED)
    async def test_each_refused_address_is_refused_as_a_literal(self, address: str, reason: str):
        with pytest.raises(TargetRefused, match=re.escape(f"is {reason}; webhooks go to public addresses")):
            await check_target(literal_url(address), allow_private=False)

    async def test_each_refused_address_is_refused_behind_a_name(self, resolver: Resolver):
        for url, address, reason in refused_names(resolver):
            name = url.split("/")[2]
            shown = ipaddress.ip_address(address)  # as the guard prints it: ::ffff:a00:1 for ::ffff:10.0.0.1
            expected = f"{name} resolves to {shown}, which is {reason}; webhooks go to public addresses only"
            with pytest.raises(TargetRefused) as refused:
                await check_target(url, allow_private=False, name="webhookUrl")
            assert refused.value.message == expected
            assert (refused.value.items[0].name, refused.value.status_code) == ("webhookUrl", 400)
        assert len(resolver.asked) == len(REFUSED)

    @pytest.mark.parametrize(
        "addresses",
        [
            ["93.184.216.34", "10.0.0.8"],
            ["10.0.0.8", "93.184.216.34"],
            ["2001:4860:4860::8888", "93.184.216.34", "fd00:ec2::254"],
            ["93.184.216.34", "::ffff:192.168.0.7"],
        ],
    )
    async def test_one_private_address_among_public_ones_is_enough_to_refuse(
        self, resolver: Resolver, addresses: list[str]
    ):
        resolver.names["mixed.customer.test"] = addresses
        # As the guard prints it: ::ffff:c0a8:7, not ::ffff:192.168.0.7.
        bad = ipaddress.ip_address(
            next(a for a in addresses if a not in ("93.184.216.34", "2001:4860:4860::8888"))
        )
        with pytest.raises(
            TargetRefused, match=re.escape(f"mixed.customer.test resolves to {bad}, which is")
        ):
            await check_target("https://mixed.customer.test/hook", allow_private=False)

    @pytest.mark.parametrize("address", ACCEPTED)
    async def test_public_addresses_next_to_the_ranges_are_accepted(self, resolver: Resolver, address: str):
        resolver.names[name_for(address)] = [address]
        await check_target(literal_url(address), allow_private=False)
        await check_target(f"https://{name_for(address)}/hook", allow_private=False)

    async def test_a_name_with_only_public_addresses_is_accepted(self, resolver: Resolver):
        resolver.names["several.customer.test"] = ACCEPTED
        await check_target("https://several.customer.test:8443/hook", allow_private=False)
        assert resolver.asked == ["several.customer.test"]

    async def test_a_documentation_name_that_does_resolve_is_judged_by_its_addresses(
        self, resolver: Resolver
    ):
        resolver.names["hooks.example.com"] = ["127.0.0.1"]
        with pytest.raises(
            TargetRefused, match=re.escape("resolves to 127.0.0.1, which is a loopback address")
        ):
            await check_target("https://hooks.example.com/mmp", allow_private=False)

    async def test_the_api_refuses_a_name_resolving_privately_and_keeps_the_old_url(
        self, client: httpx.AsyncClient, tenant: Tenant, make_channel, resolver: Resolver
    ):
        resolver.names["inside.customer.test"] = ["93.184.216.34", "169.254.169.254"]
        resolver.names["outside.customer.test"] = ["93.184.216.34"]
        channel = await make_channel(tenant)
        url = f"/api/v1/channel/{channel['publicId']}/webhook"
        accepted = await client.post(
            url, json={"url": "https://outside.customer.test/h"}, headers=tenant.headers
        )
        assert accepted.status_code == 200, accepted.text
        refused = await client.post(
            url, json={"url": "https://inside.customer.test/h"}, headers=tenant.headers
        )
        assert refused.status_code == 400
        [error] = refused.json()["errors"]
        assert (error["name"], error["code"]) == ("url", "INVALID")
        assert "169.254.169.254, which is a cloud metadata address" in error["message"]
        info = await client.get(f"/api/v1/channel/{channel['publicId']}", headers=tenant.headers)
        assert info.json()["webhookUrl"] == "https://outside.customer.test/h"


class TestSandboxAndAllowPrivate:
    @pytest.mark.parametrize(
        "settings",
        [
            pytest.param(Settings(_env_file=None, sandbox=True), id="sandbox"),
            pytest.param(
                Settings(_env_file=None, webhooks=WebhookSettings(allow_private=True)),
                id="allow_private",
            ),
        ],
    )
    async def test_every_refused_target_is_accepted_without_being_resolved(
        self, resolver: Resolver, settings: Settings
    ):
        allow_private = webhooks_allow_private(settings)
        assert allow_private
        for url, address, _ in refused_names(resolver):
            await check_target(url, allow_private=allow_private)
            await check_target(literal_url(address), allow_private=allow_private)
        assert resolver.asked == []

    def test_outside_sandbox_nothing_turns_it_on(self):
        assert not webhooks_allow_private(Settings(_env_file=None, sandbox=False))


class TestRebinding:
    async def test_a_name_that_turns_private_after_it_was_set_is_refused_at_delivery(
        self,
        resolver: Resolver,
        hook_client,
        make_hook,
        receiver: Receiver,
        make_deliverer,
        read_delivery,
        enqueue,
    ):
        hook = await make_hook()
        port = receiver.base_url.rsplit(":", 1)[1]
        url = f"http://rebind.customer.test:{port}{hook.path}"
        answer = await hook_client.post(
            f"{hook.base}", json={"url": url, "secret": hook.secret}, headers=hook.tenant.headers
        )
        assert answer.status_code == 200, answer.text
        resolver.names["rebind.customer.test"] = ["93.184.216.34", "10.1.2.3"]
        webhook_id = await enqueue(hook, {"type": 1, "messageId": "rebinding", "status": 2})
        await make_deliverer(allow_private=False, timeout_seconds=2).deliver_due()
        _, [attempt] = await read_delivery(webhook_id)
        assert attempt.error == (
            "target refused: rebind.customer.test resolves to 10.1.2.3, which is a private address; "
            "webhooks go to public addresses only"
        )
        assert attempt.status_code is None
        assert receiver.of(hook.path) == []

        # Where private targets are allowed, the same name (now the receiver's address) gets it.
        resolver.names["rebind.customer.test"] = ["127.0.0.1"]
        deliverer = make_deliverer(allow_private=True, timeout_seconds=2)

        async def received() -> bool:
            return len(receiver.of(hook.path)) == 1

        await drive(deliverer, received)
        assert receiver.of(hook.path)[0].webhook_id == webhook_id
