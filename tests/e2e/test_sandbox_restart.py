"""The sandbox as `make run` starts it, stopped and started again: every channel still works.

One `openmmp serve --sandbox` process (in-process simulators, demo data) over a SQLite file, as a new user
runs it. For every registered provider, through the demo channel of its application: a send reaches READ
and an end user's message becomes a `type: 2` webhook — before a restart, after a Ctrl-C (SIGINT) and a
second start, and after a SIGKILL and a third. The simulators forget everything with the process, so this
only works because each channel's set-up is re-established at every start.
"""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.e2e.harness import Sandbox, WebhookReceiver, wait_until

from openmmp.providers.base import Addressing, Provider
from openmmp.providers.registry import REGISTRY

pytestmark = pytest.mark.e2e
API = "/api/v1"


@pytest.fixture
async def sandbox(tmp_path: Path) -> AsyncIterator[Sandbox]:
    running = Sandbox(tmp_path)
    try:
        yield running
    finally:
        if running.process is not None:
            running.process.stop()


async def _launched(api: httpx.AsyncClient, headers: dict[str, str], account: str) -> None:
    async def launched() -> bool:
        answer = await api.get(f"{API}/channel/{account}/status", headers=headers)
        return answer.status_code == 200 and answer.json()["status"] == 3

    await wait_until(launched, timeout=60, what=f"channel {account} LAUNCH")


async def _read(api: httpx.AsyncClient, headers: dict[str, str], message_id: str, provider: Provider) -> None:
    """The message reaches READ; DELIVERED where the upstream reports no reads (SMS), SENT where it
    reports nothing at all (Telegram)."""
    final = 5 if provider.reports_read else 4 if provider.reports_delivery else 2

    async def read() -> bool:
        answer = await api.get(f"{API}/message/{message_id}/status", headers=headers)
        return answer.status_code == 200 and answer.json()["status"] == final

    await wait_until(read, timeout=60, what=f"message {message_id} at status {final}")


async def _round_trip(
    api: httpx.AsyncClient,
    receiver: WebhookReceiver,
    headers: dict[str, str],
    provider: Provider,
    account: str,
    tag: str,
) -> None:
    """An end user writes in (→ a type 2 webhook), and a message to them reaches READ (or DELIVERED). On
    a channel nobody writes to (MMS, e-mail), the provider's example message reaches its final status."""
    text = f"hello from {tag}"
    phone = "85512345670"  # last digit 0: delivered and read (README "Sandbox outcomes")
    if not provider.receives_messages:
        await _send_example(api, headers, provider, account, phone)
        return

    async def wrote() -> httpx.Response | None:
        answer = await api.post(
            f"/sandbox/{account}/inbound",
            json={"name": "Sokha", "text": text, "phone": phone},
            headers=headers,
        )
        # Right after a start the channel's set-up may not have reached the simulator yet: 503, retry.
        if answer.status_code == 503 and "set-up runs when the workers start" in answer.text:
            return None
        assert answer.status_code == 200, answer.text
        return answer

    await wait_until(wrote, timeout=60, interval=0.5, what=f"the {provider.name} simulator set up ({tag})")

    def inbound() -> dict[str, Any] | None:
        for delivery in receiver.deliveries:
            body = delivery.body
            if (
                body.get("type") == 2
                and body.get("publicId") == account
                and body["message"]["message"] == text
            ):
                assert delivery.signature_ok
                return body
        return None

    webhook = await wait_until(inbound, timeout=60, what=f"type 2 webhook on {provider.name} ({tag})")
    message = {"type": "text", "message": f"reply {tag}"}
    if provider.addressing == Addressing.PHONE:
        sent = await api.post(
            f"{API}/channel/{account}/broadcast", json={"phone": phone, "message": message}, headers=headers
        )
    else:
        sent = await api.post(
            f"{API}/channel/{account}/conversation",
            json={"to": webhook["from"], "message": message},
            headers=headers,
        )
    assert sent.status_code == 200, sent.text
    await _read(api, headers, sent.json()["messageId"], provider)


def _example(provider: Provider, phone: str) -> dict[str, Any]:
    """A broadcast of the provider's example message (it sends what its channels take: ZNS a template)."""
    example = provider.example_message
    body: dict[str, Any] = {
        "message": {k: v for k, v in example.items() if k not in provider.send_fields},
        **{k: v for k, v in example.items() if k in provider.send_fields},
    }
    return body | (
        {"email": "sokha@bank.example"} if provider.addressing == Addressing.EMAIL else {"phone": phone}
    )


async def _send_example(
    api: httpx.AsyncClient, headers: dict[str, str], provider: Provider, account: str, phone: str
) -> None:
    sent = await api.post(
        f"{API}/channel/{account}/broadcast", json=_example(provider, phone), headers=headers
    )
    assert sent.status_code == 200, sent.text
    await _read(api, headers, sent.json()["messageId"], provider)


async def _every_provider_works(
    sandbox: Sandbox, receiver: WebhookReceiver, demo: dict[str, Any], tag: str
) -> None:
    headers = {"apiKey": demo["apiKey"]}
    async with httpx.AsyncClient(base_url=sandbox.url, timeout=15) as api:
        # After a restart, sent at once, before the workers have set the channels up with the restarted
        # simulators again: they must be reported all the same (an upstream would not forget a channel).
        early = []
        for provider in REGISTRY.providers:
            if tag != "first" and provider.addressing == Addressing.PHONE:
                sent = await api.post(
                    f"{API}/channel/{demo['channels'][provider.application.name]}/broadcast",
                    json=_example(provider, "85512345670"),
                    headers=headers,
                )
                assert sent.status_code == 200, sent.text
                early.append((sent.json()["messageId"], provider))
        for provider in REGISTRY.providers:
            account = demo["channels"][provider.application.name]
            await _launched(api, headers, account)
            if tag == "first":
                hooked = await api.post(
                    f"{API}/channel/{account}/webhook",
                    json={"url": receiver.url},
                    headers=headers,
                )
                assert hooked.status_code == 200, hooked.text
                receiver.secrets[account] = hooked.json()["secret"]
            await _round_trip(api, receiver, headers, provider, account, f"{tag}-{provider.name}")
        for message_id, sender in early:
            await _read(api, headers, message_id, sender)


async def test_every_channel_works_after_a_ctrl_c_and_after_a_sigkill(
    sandbox: Sandbox, receiver: WebhookReceiver
) -> None:
    try:
        demo = await sandbox.start()
        await _every_provider_works(sandbox, receiver, demo, "first")
        sandbox.stop(signal.SIGINT)
        assert await sandbox.start() == demo  # the same demo data, printed again
        await _every_provider_works(sandbox, receiver, demo, "after-ctrl-c")
        sandbox.stop(signal.SIGKILL)
        assert await sandbox.start() == demo
        await _every_provider_works(sandbox, receiver, demo, "after-sigkill")
    except BaseException:
        print(sandbox.logs())
        raise
