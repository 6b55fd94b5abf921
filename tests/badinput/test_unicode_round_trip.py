"""Text in any script survives every hop exactly: no normalisation, trimming or re-encoding anywhere.

A whole system runs in this process over real HTTP: the API with its workers (uvicorn), the Viber and
Viber Bot simulators behind a recorder that keeps every request body they receive, and a webhook
receiver. Each sample goes out (broadcast → stored message → Get Message Status → the upstream's request)
and comes in (a sandbox end user writes → Viber Bot callback → the `type: 2` webhook), and is compared as
an exact string. NFC and NFD spellings of the same Vietnamese text are both sent: each must come back in
its own form.
"""

from __future__ import annotations

import asyncio
import unicodedata
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
import pytest
from sqlalchemy import select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from tests.badinput.conftest import (
    Recorder,
    Simulators,
    bound_socket,
    create_partner,
    onboard,
    providers_at,
    serving,
)
from tests.conftest import TEST_SECRET, Tenant, migrated_database

from openmmp.app import create_app
from openmmp.models import Message
from openmmp.settings import Settings

VIETNAMESE = "Tiếng Việt có dấu: Hà Phước Hòa, Nguyễn Thị Ánh, Đặng Quỳnh"
SAMPLES = {
    "khmer": "សួស្តី! ខ្ញុំឈ្មោះ ដារ៉ា។ លេខកូដ ៤៧១១ ស្ត្រី ក្ស",
    "vietnamese-nfc": unicodedata.normalize("NFC", VIETNAMESE),
    "vietnamese-nfd": unicodedata.normalize("NFD", VIETNAMESE),
    "vietnamese-mixed": "Vie\u0323\u0302t và Việt: e\u0301 é",
    "thai": "สวัสดีครับ ภาษาไทย ๑๒๓ กรุงเทพฯ",
    "emoji-zwj": "👩\u200d👩\u200d👧\u200d👦 👨🏽\u200d💻 🏳️\u200d🌈 ❤️ 👋🏿 🇰🇭🇻🇳 🫶🏼",
    "rtl": "مرحبا بالعالم \u200fשלום עולם\u200e 123 \u202bنص\u202c",
    "invisible": "zero\u200bwidth\u200cnon\u200djoiner\ufeffbom\u2060word",
    "whitespace": "  two leading, tab\tand CRLF\r\n, two trailing  ",
    "astral": "𝕳𝖊𝖑𝖑𝖔 𠜎𠜱 𓂀 你好",
    "placeholder-lookalikes": "{{ not a param }} {x} \\u00e9 %s $1",
}
VIETNAMESE_FORMS = {"vietnamese-nfc", "vietnamese-nfd"}

T = TypeVar("T")


async def eventually(probe: Callable[[], Awaitable[T | None]], what: str, timeout: float = 20.0) -> T:
    """`probe()` once it answers something truthy; fails after `timeout` seconds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await probe()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def _ok(request: Request) -> Response:
    return Response("ok")


@dataclass
class Live:
    app: Any
    api: httpx.AsyncClient
    tenant: Tenant
    simulators: Simulators
    webhooks: Recorder
    webhook_url: str

    async def launched(self, body: dict[str, Any]) -> dict[str, Any]:
        created = await self.api.post("/api/v1/channel", json=body, headers=self.tenant.headers)
        assert created.status_code == 201, created.text
        channel: dict[str, Any] = created.json()

        async def status() -> bool:
            answer = await self.api.get(
                f"/api/v1/channel/{channel['publicId']}/status", headers=self.tenant.headers
            )
            return bool(answer.json()["status"] == 3)

        await eventually(status, "the channel's launch")
        return channel

    def webhook_bodies(self, kind: int) -> list[dict[str, Any]]:
        bodies = [r.json() for r in self.webhooks.requests]
        return [b for b in bodies if b.get("type") == kind]


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
async def live(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    worker_name: str,
    simulators: Simulators,
) -> AsyncIterator[Live]:
    """The whole system on a database of its own (its workers take every job in it)."""
    database_url = migrated_database(request.param, tmp_path_factory, f"roundtrip_{worker_name}")
    api_socket = bound_socket()
    settings = Settings(
        database_url=database_url,
        data_dir=tmp_path_factory.mktemp("roundtrip-data"),
        secret_key=TEST_SECRET,
        sandbox=True,
        public_url=f"http://127.0.0.1:{api_socket.getsockname()[1]}",
        providers=providers_at(simulators),
    )
    app = create_app(settings, workers=True)
    webhooks = Recorder(Starlette(routes=[Route("/", _ok, methods=["POST"])]))
    async with (
        serving(webhooks, bound_socket()) as webhook_url,
        serving(app, api_socket) as api_url,
        httpx.AsyncClient(base_url=api_url, timeout=10) as api,
    ):
        partner = await create_partner(app, "Round trip partner")
        tenant = await onboard(api, partner, f"Round trip {request.param}")
        yield Live(app, api, tenant, simulators, webhooks, f"{webhook_url}/")


@pytest.fixture(scope="session")
async def viber(live: Live) -> dict[str, Any]:
    return await live.launched(
        {
            "name": "Viber 🇰🇭",
            "applicationId": 1,
            "credentials": {"serviceId": uuid.uuid4().int % 10**9},
            "webhookUrl": live.webhook_url,
        }
    )


@pytest.fixture(scope="session")
async def bot(live: Live) -> dict[str, Any]:
    return await live.launched(
        {
            "name": "Bot ស",
            "applicationId": 10,
            "credentials": {"authToken": f"bot-{uuid.uuid4()}", "senderName": "Bot ស"},
            "webhookUrl": live.webhook_url,
        }
    )


def mismatch(expected: str, candidates: list[str]) -> str:
    forms = {form: unicodedata.is_normalized(form, expected) for form in ("NFC", "NFD")}
    return f"{expected!r} ({forms}) not among {candidates!r}"


async def test_the_samples_really_differ_in_normalisation():
    assert SAMPLES["vietnamese-nfc"] != SAMPLES["vietnamese-nfd"]
    assert unicodedata.is_normalized("NFC", SAMPLES["vietnamese-nfc"])
    assert not unicodedata.is_normalized("NFC", SAMPLES["vietnamese-nfd"])


async def test_inbound_text_and_name_reach_the_type_2_webhook_as_written(live: Live, bot: dict[str, Any]):
    account = bot["publicId"]
    for index, (key, text) in enumerate(SAMPLES.items()):
        name = SAMPLES["khmer"][:20] if key not in VIETNAMESE_FORMS else SAMPLES[key][:40]
        written = await live.api.post(
            f"/sandbox/viber-bot/{account}/inbound",
            json={"name": name, "text": text, "userId": f"writer-{index}"},
            headers=live.tenant.headers,
        )
        assert written.status_code == 200, written.text

    async def all_arrived() -> list[dict[str, Any]] | None:
        bodies = [b for b in live.webhook_bodies(2) if b["publicId"] == account]
        return bodies if len(bodies) >= len(SAMPLES) else None

    bodies = await eventually(all_arrived, "one type 2 webhook per sample")
    texts = [b["message"]["message"] for b in bodies]
    for key, text in SAMPLES.items():
        assert text in texts, mismatch(text, texts)
        [body] = [b for b in bodies if b["message"]["message"] == text]
        assert body["message"]["extra"]["text"] == text
        expected_name = SAMPLES["khmer"][:20] if key not in VIETNAMESE_FORMS else SAMPLES[key][:40]
        assert body["contact"]["name"] == expected_name


async def test_broadcast_text_is_stored_and_reaches_viber_as_written(live: Live, viber: dict[str, Any]):
    account = viber["publicId"]
    expected: dict[str, str] = {}
    for key, text in SAMPLES.items():
        sent = await live.api.post(
            f"/api/v1/channel/{account}/broadcast",
            json={"phone": "85512345670", "message": {"type": "text", "message": text}},
            headers=live.tenant.headers,
        )
        assert sent.status_code == 200, (key, sent.text)
        expected[sent.json()["messageId"]] = text
    # Through placeholders too: values are inserted as they are.
    sent = await live.api.post(
        f"/api/v1/channel/{account}/broadcast",
        json={
            "phone": "85512345671",
            "message": {"type": "text", "message": "{{nfd}}|{{ nfc }}|{{emoji}}"},
            "params": {
                "nfd": SAMPLES["vietnamese-nfd"],
                "nfc": SAMPLES["vietnamese-nfc"],
                "emoji": SAMPLES["emoji-zwj"],
            },
        },
        headers=live.tenant.headers,
    )
    assert sent.status_code == 200, sent.text
    expected[sent.json()["messageId"]] = "|".join(
        [SAMPLES["vietnamese-nfd"], SAMPLES["vietnamese-nfc"], SAMPLES["emoji-zwj"]]
    )

    async with live.app.state.db.read_sessions() as session:
        rows = (await session.execute(select(Message).where(Message.public_id.in_(list(expected))))).scalars()
        stored = {row.public_id: row.content["message"] for row in rows}
    assert stored == expected

    async def all_sent() -> bool:
        for message_id in expected:
            status = await live.api.get(f"/api/v1/message/{message_id}/status", headers=live.tenant.headers)
            assert status.status_code == 200, status.text
            if status.json()["status"] == 1:
                return False
        return True

    await eventually(all_sent, "every message to leave PENDING")
    received = [
        r.json()["message"]["#txt"] for r in live.simulators.received("/viber/vibersrvc/1/send_message")
    ]
    for text in expected.values():
        assert text in received, mismatch(text, received)


async def test_conversation_replies_reach_viber_bot_as_written(live: Live, bot: dict[str, Any]):
    account = bot["publicId"]
    written = await live.api.post(
        f"/sandbox/viber-bot/{account}/inbound",
        json={"name": "Sokha", "text": "hello", "userId": "replies"},
        headers=live.tenant.headers,
    )
    assert written.status_code == 200, written.text
    user_id = written.json()["userId"]

    async def conversation() -> str | None:
        for body in live.webhook_bodies(2):
            if body["publicId"] == account and body["message"]["message"] == "hello":
                return str(body["from"])
        return None

    to = await eventually(conversation, "the inbound webhook of the replying user")
    for key, text in SAMPLES.items():
        sent = await live.api.post(
            f"/api/v1/channel/{account}/conversation",
            json={"to": to, "message": {"type": "text", "message": text}},
            headers=live.tenant.headers,
        )
        assert sent.status_code == 200, (key, sent.text)

    def received() -> list[str]:
        texts = []
        for request in live.simulators.received("/viber-bot/pa/send_message"):
            body = request.json()
            if body.get("receiver") == user_id:
                texts.append(body["text"])
        for request in live.simulators.received("/viber-bot/pa/broadcast_message"):
            body = request.json()
            if user_id in body.get("broadcast_list", []):
                texts.append(body["text"])
        return texts

    async def all_received() -> list[str] | None:
        texts = received()
        return texts if all(text in texts for text in SAMPLES.values()) else None

    try:
        await eventually(all_received, "every reply at the Viber Bot simulator")
    except AssertionError:
        texts = received()
        missing = [mismatch(text, texts) for text in SAMPLES.values() if text not in texts]
        raise AssertionError("\n".join(missing)) from None
