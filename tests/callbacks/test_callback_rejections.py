"""Provider callbacks that must be rejected or ignored, on both Viber Business Messages and Viber Bot.

Each test takes a snapshot of everything a callback can change (the channel's messages and their history,
its webhook deliveries, its stored raw events, its conversations and inbound messages) and asserts on the
difference, not only on the answer's status code.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update
from tests.conftest import (
    TEST_SECRET,
    VIBER_BOT_CREDENTIALS,
    Tenant,
    asgi_client,
    bot_credentials,
    create_channel,
    running_app,
)

from openmmp.callbacks import service as callbacks
from openmmp.kit.time import now_ms
from openmmp.messages import status as status_machine
from openmmp.models import (
    Channel,
    Conversation,
    InboundMessage,
    Message,
    MessageEvent,
    ProviderEvent,
    WebhookDelivery,
)
from openmmp.models.message import MessageStatus
from openmmp.settings import ProviderSettings, Settings

BM_SECRET = "partner-callback-secret-for-tests"
ANOTHER_BOTS_TOKEN = VIBER_BOT_CREDENTIALS["authToken"]
HOOK_URL = "https://hooks.example/mmp"


@dataclass(frozen=True)
class Provider:
    """What differs between the two upstreams' callbacks."""

    name: str
    application_id: int
    fail_event: str

    @property
    def is_bot(self) -> bool:
        return self.name == "viber-bot"

    def credentials(self) -> dict[str, Any]:
        """A channel's own: a bot token or a Viber BM service belongs to one channel."""
        return bot_credentials() if self.is_bot else {"serviceId": 4711 + uuid.uuid4().int % 10**9}

    def key(self, credentials: dict[str, Any]) -> str:
        """What signs the channel's callbacks: its bot's token, or the partner's Viber BM secret."""
        return str(credentials["authToken"]) if self.is_bot else BM_SECRET

    def status(self, event: str, token: str, user: str, timestamp: int = 1_800_000_000_000) -> dict[str, Any]:
        if self.is_bot:
            return {"event": event, "timestamp": timestamp, "message_token": token, "user_id": user}
        return {
            "event": event,
            "message_token": token,
            "seq": 1,
            "service_id": 4711,
            "dest": user,
            "timestamp": timestamp,
        }

    def inbound(self, token: int, user: str, text: str = "hi") -> dict[str, Any]:
        if self.is_bot:
            return {
                "event": "message",
                "timestamp": now_ms() + token,
                "message_token": token,
                "sender": {"id": user, "name": "Dara", "avatar": "", "country": "KH", "language": "km"},
                "message": {"type": "text", "text": text},
            }
        return {
            "event": "message",
            "message_token": token,
            "seq": 0,
            "service_id": 4711,
            "dest": user,
            "timestamp": now_ms() + token,
            "text": text,
        }


VIBER = Provider("viber", 1, "expired")
VIBER_BOT = Provider("viber-bot", 10, "failed")
PROVIDERS = [pytest.param(VIBER, id="viber"), pytest.param(VIBER_BOT, id="viber-bot")]


def sign(raw: bytes, key: str) -> str:
    return hmac.new(key.encode(), raw, hashlib.sha256).hexdigest()


@pytest.fixture(scope="module")
async def bm_app(settings: Settings) -> AsyncIterator[Any]:
    """The API over the session's database with a Viber BM callback secret configured."""
    configured = Settings(
        database_url=settings.database_url,
        data_dir=settings.data_dir,
        secret_key=TEST_SECRET,
        sandbox=False,
        providers=ProviderSettings(viber_callback_secret=BM_SECRET),
    )
    async with running_app(configured) as application:
        yield application


@pytest.fixture(scope="module")
async def bm_api(bm_app: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(bm_app) as client:
        yield client


@dataclass
class Sent:
    """A channel with its webhook set and one message SENT upstream under `token` to `user`."""

    provider: Provider
    tenant: Tenant
    account: str
    message_id: str
    token: str
    user: str
    key: str
    """What signs the channel's callbacks."""

    @property
    def path(self) -> str:
        return f"/callbacks/{self.provider.name}/{self.account}"


class Callbacks:
    """Posts raw callback bodies as a provider would, signed or not."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def post(self, path: str, raw: bytes, signature: str | None) -> httpx.Response:
        headers = {"content-type": "application/json"}
        if signature is not None:
            headers["X-Viber-Content-Signature"] = signature
        return await self.client.post(path, content=raw, headers=headers)

    async def signed(
        self, sent: Sent, body: dict[str, Any], *, path: str | None = None, key: str | None = None
    ) -> httpx.Response:
        raw = json.dumps(body).encode()
        return await self.post(path or sent.path, raw, sign(raw, key or sent.key))


@pytest.fixture
def callbacks_client(bm_api: httpx.AsyncClient) -> Callbacks:
    return Callbacks(bm_api)


async def channel_of(
    bm_app: Any, bm_api: httpx.AsyncClient, tenant: Tenant, partner: Tenant, provider: Provider
) -> tuple[str, str]:
    """A launched channel of `provider` whose webhooks are stored for HOOK_URL (nothing delivers them);
    returns its account id and the key that signs its callbacks."""
    credentials = provider.credentials()
    body = {"name": f"{provider.name} channel", "applicationId": provider.application_id}
    created = await create_channel(bm_api, tenant, partner, {**body, "credentials": credentials})
    assert created.status_code == 201, created.text
    account = str(created.json()["publicId"])
    async with bm_app.state.db.write_sessions() as session, session.begin():
        await session.execute(
            update(Channel).where(Channel.public_id == account).values(status=3, webhook_url=HOOK_URL)
        )
    return account, provider.key(credentials)


async def send(
    bm_app: Any, bm_api: httpx.AsyncClient, provider: Provider, tenant: Tenant, account: str, user: str
) -> str:
    """Send one message to `user` through the API; returns its messageId (PENDING)."""
    text = {"type": "text", "message": "hello"}
    if provider.is_bot:
        async with bm_app.state.db.read_sessions() as session:
            statement = (
                select(Conversation.public_id)
                .join(Channel, Channel.id == Conversation.channel_id)
                .where(Conversation.external_id == user, Channel.public_id == account)
            )
            conversation = (await session.execute(statement)).scalar_one()
        response = await bm_api.post(
            f"/api/v1/channel/{account}/conversation",
            json={"to": conversation, "message": text},
            headers=tenant.headers,
        )
    else:
        response = await bm_api.post(
            f"/api/v1/channel/{account}/broadcast",
            json={"phone": user, "message": text},
            headers=tenant.headers,
        )
    assert response.status_code == 200, response.text
    return str(response.json()["messageId"])


async def mark_sent(bm_app: Any, message_id: str, token: str) -> None:
    """Record the send as the dispatcher does when the upstream accepted it under `token`."""
    async with bm_app.state.db.write_sessions() as session, session.begin():
        message = (await session.execute(select(Message).where(Message.public_id == message_id))).scalar_one()
        channel = await session.get(Channel, message.channel_id)
        assert channel is not None
        change = status_machine.Change(message, MessageStatus.SENT, now_ms(), provider_message_id=token)
        await status_machine.apply(session, [change], {channel.id: channel})


@pytest.fixture
def make_sent(
    bm_app: Any,
    bm_api: httpx.AsyncClient,
    callbacks_client: Callbacks,
    new_company: Callable[..., Awaitable[Tenant]],
    partner: Tenant,
) -> Callable[[Provider], Awaitable[Sent]]:
    async def make(provider: Provider) -> Sent:
        tenant = await new_company()
        account, key = await channel_of(bm_app, bm_api, tenant, partner, provider)
        suffix = uuid.uuid4().hex[:8]
        user = f"8551234{int(suffix, 16) % 10**4:04d}" if not provider.is_bot else f"user-{suffix}"
        if provider.is_bot:
            raw = json.dumps(provider.inbound(int(suffix, 16), user)).encode()
            response = await callbacks_client.post(f"/callbacks/viber-bot/{account}", raw, sign(raw, key))
            assert response.status_code == 200, response.text
        message_id = await send(bm_app, bm_api, provider, tenant, account, user)
        token = f"tok-{suffix}"
        await mark_sent(bm_app, message_id, token)
        return Sent(provider, tenant, account, message_id, token, user, key)

    return make


@pytest.fixture(params=PROVIDERS)
async def sent(request: pytest.FixtureRequest, make_sent: Callable[[Provider], Awaitable[Sent]]) -> Sent:
    return await make_sent(request.param)


@dataclass(frozen=True)
class Snapshot:
    """Everything about one channel that a callback may change."""

    messages: dict[str, tuple[int, str | None]]
    history: dict[str, list[tuple[int, str | None]]]
    webhooks: list[tuple[int, dict[str, Any]]]
    events: list[tuple[str, str]]
    conversations: list[tuple[str, bool]]
    inbound: list[str]

    def status_webhooks(self, message_id: str) -> list[int]:
        return [
            body["status"] for kind, body in self.webhooks if kind == 1 and body["messageId"] == message_id
        ]


async def snapshot(bm_app: Any, account: str) -> Snapshot:
    async with bm_app.state.db.read_sessions() as session:
        channel = (await session.execute(select(Channel).where(Channel.public_id == account))).scalar_one()
        messages = list(
            (await session.execute(select(Message).where(Message.channel_id == channel.id))).scalars()
        )
        history: dict[str, list[tuple[int, str | None]]] = {}
        for message in messages:
            rows = await session.execute(
                select(MessageEvent.status, MessageEvent.error_code)
                .where(MessageEvent.message_id == message.id)
                .order_by(MessageEvent.id)
            )
            history[message.public_id] = [(row[0], row[1]) for row in rows]
        webhooks = await session.execute(
            select(WebhookDelivery.event_type, WebhookDelivery.body)
            .where(WebhookDelivery.channel_id == channel.id)
            .order_by(WebhookDelivery.id)
        )
        events = await session.execute(
            select(ProviderEvent.dedupe_key, ProviderEvent.outcome)
            .where(ProviderEvent.channel_id == channel.id)
            .order_by(ProviderEvent.id)
        )
        conversations = await session.execute(
            select(Conversation.external_id, Conversation.subscribed)
            .where(Conversation.channel_id == channel.id)
            .order_by(Conversation.id)
        )
        inbound = await session.execute(
            select(InboundMessage.kind)
            .where(InboundMessage.channel_id == channel.id)
            .order_by(InboundMessage.id)
        )
        return Snapshot(
            messages={m.public_id: (m.status, m.error_code) for m in messages},
            history=history,
            webhooks=[(row[0], json.loads(row[1])) for row in webhooks],
            events=[(row[0], row[1]) for row in events],
            conversations=[(row[0], row[1]) for row in conversations],
            inbound=list(inbound.scalars()),
        )


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert [error["code"] for error in response.json()["errors"]] == [code]


class TestSignatures:
    @pytest.mark.parametrize(
        "signature",
        [
            pytest.param(None, id="unsigned"),
            pytest.param("", id="empty"),
            pytest.param("0" * 64, id="zeros"),
            pytest.param("not-hex", id="garbage"),
        ],
    )
    async def test_an_unsigned_or_garbage_signed_report_is_401_and_changes_nothing(
        self, bm_app: Any, callbacks_client: Callbacks, sent: Sent, signature: str | None
    ):
        before = await snapshot(bm_app, sent.account)
        raw = json.dumps(sent.provider.status("delivered", sent.token, sent.user)).encode()
        assert_error(await callbacks_client.post(sent.path, raw, signature), 401, "NOT_AUTHENTICATE")
        assert await snapshot(bm_app, sent.account) == before

    async def test_a_report_signed_with_another_key_is_401_and_changes_nothing(
        self, bm_app: Any, callbacks_client: Callbacks, sent: Sent
    ):
        before = await snapshot(bm_app, sent.account)
        raw = json.dumps(sent.provider.status("seen", sent.token, sent.user)).encode()
        # Viber BM: another partner's secret. Viber Bot: another bot's token (or the partner secret).
        for key in ("another-key", BM_SECRET if sent.provider.is_bot else ANOTHER_BOTS_TOKEN):
            assert_error(await callbacks_client.post(sent.path, raw, sign(raw, key)), 401, "NOT_AUTHENTICATE")
        assert await snapshot(bm_app, sent.account) == before

    async def test_a_signature_over_another_body_is_401_and_changes_nothing(
        self, bm_app: Any, callbacks_client: Callbacks, sent: Sent
    ):
        before = await snapshot(bm_app, sent.account)
        harmless = json.dumps(sent.provider.status("delivered", "some-other-token", sent.user)).encode()
        forged = json.dumps(sent.provider.status("seen", sent.token, sent.user)).encode()
        assert_error(
            await callbacks_client.post(sent.path, forged, sign(harmless, sent.key)),
            401,
            "NOT_AUTHENTICATE",
        )
        # The same body with one byte more (re-serialised, padded) is another body too.
        valid = sign(forged, sent.key)
        assert_error(await callbacks_client.post(sent.path, forged + b" ", valid), 401, "NOT_AUTHENTICATE")
        assert await snapshot(bm_app, sent.account) == before
        # The untouched body with its own signature is what goes through.
        assert (await callbacks_client.post(sent.path, forged, valid)).status_code == 200
        assert (await snapshot(bm_app, sent.account)).messages[sent.message_id][0] == MessageStatus.READ


def malformed_bodies(provider: Provider, token: str, user: str) -> list[bytes]:
    good = provider.status("delivered", token, user)

    def without(field: str) -> bytes:
        return json.dumps({k: v for k, v in good.items() if k != field}).encode()

    def changed(**fields: Any) -> bytes:
        return json.dumps({**good, **fields}).encode()

    bodies = [
        b"",
        b"{not json",
        b"\xff\xfe\x00",
        b"[1, 2, 3]",
        b'"delivered"',
        b"null",
        without("event"),
        without("message_token"),
        without("timestamp"),
        changed(event=7),
        changed(event="exploded"),
        changed(message_token=""),
        changed(message_token=True),
        changed(message_token={"id": token}),
        changed(timestamp="1800000000000"),
        changed(timestamp=1.5),
        changed(timestamp=None),
    ]
    if provider.is_bot:
        bodies += [
            without("user_id"),
            changed(user_id=42),
            json.dumps({**provider.inbound(1, user), "sender": "someone"}).encode(),
            json.dumps({**provider.inbound(1, user), "message": "hi"}).encode(),
            json.dumps({"event": "subscribed", "timestamp": 1, "message_token": 1}).encode(),
        ]
    else:
        bodies += [json.dumps({**provider.inbound(1, user), "dest": ""}).encode()]
    return bodies


class TestMalformedBodies:
    async def test_every_signed_body_of_the_wrong_shape_is_400_and_changes_nothing(
        self, bm_app: Any, callbacks_client: Callbacks, sent: Sent
    ):
        before = await snapshot(bm_app, sent.account)
        for raw in malformed_bodies(sent.provider, sent.token, sent.user):
            response = await callbacks_client.post(sent.path, raw, sign(raw, sent.key))
            assert response.status_code == 400, (raw, response.text)
            [error] = response.json()["errors"]
            assert (error["name"], error["code"]) == ("body", "BAD_REQUEST"), raw
        assert await snapshot(bm_app, sent.account) == before


class TestReplays:
    async def test_a_status_report_delivered_twice_changes_state_and_webhooks_once(
        self, bm_app: Any, callbacks_client: Callbacks, sent: Sent
    ):
        before = await snapshot(bm_app, sent.account)
        delivered = sent.provider.status("delivered", sent.token, sent.user)
        first = await callbacks_client.signed(sent, delivered)
        assert first.json()["outcome"] == "applied"
        once = await snapshot(bm_app, sent.account)
        assert once.messages[sent.message_id][0] == MessageStatus.DELIVERED
        assert once.history[sent.message_id] == [
            *before.history[sent.message_id],
            (MessageStatus.DELIVERED, None),
        ]
        assert once.status_webhooks(sent.message_id) == [*before.status_webhooks(sent.message_id), 4]
        assert len(once.events) == len(before.events) + 1
        for _ in range(2):
            again = await callbacks_client.signed(sent, delivered)
            assert again.status_code == 200
            assert again.json()["outcome"] == "duplicate"
        assert await snapshot(bm_app, sent.account) == once

    async def test_a_failure_report_delivered_twice_fails_the_message_once(
        self, bm_app: Any, callbacks_client: Callbacks, sent: Sent
    ):
        failed = sent.provider.status(sent.provider.fail_event, sent.token, sent.user)
        assert (await callbacks_client.signed(sent, failed)).json()["outcome"] == "applied"
        once = await snapshot(bm_app, sent.account)
        assert once.messages[sent.message_id][0] == MessageStatus.FAIL
        assert [status for status, _ in once.history[sent.message_id]] == [2, 3]
        assert (await callbacks_client.signed(sent, failed)).json()["outcome"] == "duplicate"
        assert await snapshot(bm_app, sent.account) == once

    async def test_an_inbound_message_delivered_twice_is_one_message_and_one_webhook(
        self, bm_app: Any, callbacks_client: Callbacks, sent: Sent
    ):
        before = await snapshot(bm_app, sent.account)
        reply = sent.provider.inbound(987_654, sent.user, "STOP")
        assert (await callbacks_client.signed(sent, reply)).json()["outcome"] == "inbound"
        once = await snapshot(bm_app, sent.account)
        assert once.inbound == [*before.inbound, "message"]
        assert [kind for kind, _ in once.webhooks] == [*[kind for kind, _ in before.webhooks], 2]
        assert (await callbacks_client.signed(sent, reply)).json()["outcome"] == "duplicate"
        assert await snapshot(bm_app, sent.account) == once

    async def test_viber_bm_delivered_from_a_second_device_is_the_same_event(
        self, bm_app: Any, callbacks_client: Callbacks, make_sent: Callable[[Provider], Awaitable[Sent]]
    ):
        sent = await make_sent(VIBER)
        phone = {
            **VIBER.status("delivered", sent.token, sent.user, 1_800_000_000_000),
            "device": "smartphone",
        }
        desktop = {**phone, "device": "desktop", "timestamp": 1_800_000_000_500}
        assert (await callbacks_client.signed(sent, phone)).json()["outcome"] == "applied"
        once = await snapshot(bm_app, sent.account)
        assert (await callbacks_client.signed(sent, desktop)).json()["outcome"] == "duplicate"
        assert await snapshot(bm_app, sent.account) == once
        assert once.status_webhooks(sent.message_id) == [2, 4]


class TestUnknownMessages:
    async def test_a_report_about_an_unknown_token_is_kept_unmatched_and_changes_no_message(
        self, bm_app: Any, callbacks_client: Callbacks, sent: Sent
    ):
        before = await snapshot(bm_app, sent.account)
        body = sent.provider.status("seen", f"unknown-{uuid.uuid4().hex}", sent.user)
        response = await callbacks_client.signed(sent, body)
        assert response.status_code == 200
        assert response.json()["outcome"] == "unmatched"
        after = await snapshot(bm_app, sent.account)
        assert (after.messages, after.history, after.webhooks) == (
            before.messages,
            before.history,
            before.webhooks,
        )
        assert after.events == [
            *before.events,
            (
                f"seen:{body['message_token']}" + (f":{sent.user}" if sent.provider.is_bot else ""),
                "unmatched",
            ),
        ]

    async def test_a_viber_bot_report_naming_another_user_does_not_touch_the_message(
        self, bm_app: Any, callbacks_client: Callbacks, make_sent: Callable[[Provider], Awaitable[Sent]]
    ):
        sent = await make_sent(VIBER_BOT)
        before = await snapshot(bm_app, sent.account)
        body = VIBER_BOT.status("seen", sent.token, "somebody-else")
        assert (await callbacks_client.signed(sent, body)).json()["outcome"] == "unmatched"
        async with bm_app.state.db.write_sessions() as session, session.begin():
            # The reconciler sees the token on a message; the user still does not match.
            await callbacks.reconcile(session, tokens=[sent.token])
        after = await snapshot(bm_app, sent.account)
        assert (after.messages, after.history, after.webhooks) == (
            before.messages,
            before.history,
            before.webhooks,
        )

    async def test_a_token_of_another_channels_message_changes_nothing_there_or_here(
        self,
        bm_app: Any,
        bm_api: httpx.AsyncClient,
        callbacks_client: Callbacks,
        sent: Sent,
        new_company: Callable[..., Awaitable[Tenant]],
        partner: Tenant,
    ):
        """Another company's channel of the same provider reports the token of `sent`'s message."""
        other_tenant = await new_company()
        other_account, other_key = await channel_of(bm_app, bm_api, other_tenant, partner, sent.provider)
        if sent.provider.is_bot:
            raw = json.dumps(sent.provider.inbound(5, sent.user)).encode()
            await callbacks_client.post(f"/callbacks/viber-bot/{other_account}", raw, sign(raw, other_key))
        mine_before = await snapshot(bm_app, sent.account)
        theirs_before = await snapshot(bm_app, other_account)
        body = sent.provider.status("seen", sent.token, sent.user)
        response = await callbacks_client.signed(
            sent, body, path=f"/callbacks/{sent.provider.name}/{other_account}", key=other_key
        )
        assert response.json()["outcome"] == "unmatched"
        async with bm_app.state.db.write_sessions() as session, session.begin():
            await callbacks.reconcile(session, tokens=[sent.token])
        assert await snapshot(bm_app, sent.account) == mine_before
        theirs = await snapshot(bm_app, other_account)
        assert (theirs.messages, theirs.webhooks) == (theirs_before.messages, theirs_before.webhooks)


class TestUnknownChannels:
    async def test_callbacks_for_channels_that_do_not_exist_here_are_404_and_store_nothing(
        self,
        bm_app: Any,
        bm_api: httpx.AsyncClient,
        callbacks_client: Callbacks,
        sent: Sent,
        new_company: Callable[..., Awaitable[Tenant]],
        partner: Tenant,
    ):
        other = VIBER if sent.provider.is_bot else VIBER_BOT
        wrong_kind, _ = await channel_of(bm_app, bm_api, await new_company(), partner, other)
        before = await snapshot(bm_app, sent.account)
        raw = json.dumps(sent.provider.status("delivered", sent.token, sent.user)).encode()
        for account in (str(uuid.uuid4()), "not-a-uuid", "0", wrong_kind):
            response = await callbacks_client.post(
                f"/callbacks/{sent.provider.name}/{account}", raw, sign(raw, sent.key)
            )
            assert_error(response, 404, "RESOURCE_NOT_FOUND")
            assert response.json()["errors"][0]["name"] == "accountId"
        assert await snapshot(bm_app, sent.account) == before
        assert (await snapshot(bm_app, wrong_kind)).events == []


class TestBackwards:
    async def test_after_read_a_late_delivered_or_failure_is_ignored(
        self, bm_app: Any, callbacks_client: Callbacks, sent: Sent
    ):
        provider = sent.provider
        for event in ("delivered", "seen"):
            assert (
                await callbacks_client.signed(sent, provider.status(event, sent.token, sent.user))
            ).status_code == 200
        read = await snapshot(bm_app, sent.account)
        assert read.messages[sent.message_id] == (MessageStatus.READ, None)
        assert read.status_webhooks(sent.message_id) == [2, 4, 5]
        late = [provider.status("delivered", sent.token, sent.user, 1_800_000_009_000)]
        if not provider.is_bot:
            # Viber BM's dedupe leaves the device out; a late delivered from another device is a repeat.
            late = [{**late[0], "device": "tablet"}]
        late.append(provider.status(provider.fail_event, sent.token, sent.user, 1_800_000_009_000))
        for body in late:
            response = await callbacks_client.signed(sent, body)
            assert response.status_code == 200, response.text
        after = await snapshot(bm_app, sent.account)
        assert (after.messages, after.history, after.webhooks) == (read.messages, read.history, read.webhooks)

    async def test_after_a_failure_no_report_revives_the_message(
        self, bm_app: Any, callbacks_client: Callbacks, sent: Sent
    ):
        provider = sent.provider
        await callbacks_client.signed(sent, provider.status(provider.fail_event, sent.token, sent.user))
        failed = await snapshot(bm_app, sent.account)
        assert failed.messages[sent.message_id][0] == MessageStatus.FAIL
        for event in ("delivered", "seen"):
            response = await callbacks_client.signed(sent, provider.status(event, sent.token, sent.user))
            assert response.status_code == 200, response.text
        after = await snapshot(bm_app, sent.account)
        assert (after.messages, after.history, after.webhooks) == (
            failed.messages,
            failed.history,
            failed.webhooks,
        )

    async def test_after_delivered_a_failure_is_ignored(
        self, bm_app: Any, callbacks_client: Callbacks, sent: Sent
    ):
        provider = sent.provider
        await callbacks_client.signed(sent, provider.status("delivered", sent.token, sent.user))
        delivered = await snapshot(bm_app, sent.account)
        assert delivered.messages[sent.message_id] == (MessageStatus.DELIVERED, None)
        response = await callbacks_client.signed(
            sent, provider.status(provider.fail_event, sent.token, sent.user)
        )
        assert response.status_code == 200
        after = await snapshot(bm_app, sent.account)
        assert (after.messages, after.history, after.webhooks) == (
            delivered.messages,
            delivered.history,
            delivered.webhooks,
        )


class TestOutOfRangeValues:
    """Signed bodies whose values do not fit what OpenMMP stores: refused or clipped, never a 500."""

    async def test_identifiers_and_timestamps_that_cannot_be_stored_are_400_and_change_nothing(
        self, bm_app: Any, callbacks_client: Callbacks, sent: Sent
    ):
        provider = sent.provider
        before = await snapshot(bm_app, sent.account)
        bodies = [
            provider.status("delivered", "9" * 101, sent.user),
            provider.status("delivered", sent.token, sent.user, timestamp=2**63),
            provider.status("delivered", sent.token, sent.user, timestamp=2**64 - 1),
            provider.status("delivered", sent.token, sent.user, timestamp=-1),
            provider.inbound(77, "u" * 201 if provider.is_bot else "8" * 30),
        ]
        if provider.is_bot:
            bodies.append(provider.status("delivered", sent.token, "u" * 201))
        for body in bodies:
            response = await callbacks_client.signed(sent, body)
            assert_error(response, 400, "BAD_REQUEST")
        assert await snapshot(bm_app, sent.account) == before

    async def test_a_long_failure_description_is_clipped(
        self, bm_app: Any, callbacks_client: Callbacks, make_sent: Callable[[Provider], Awaitable[Sent]]
    ):
        sent = await make_sent(VIBER_BOT)
        body = {**VIBER_BOT.status("failed", sent.token, sent.user), "desc": "x" * 5000}
        assert (await callbacks_client.signed(sent, body)).json()["outcome"] == "applied"
        assert (await snapshot(bm_app, sent.account)).messages[sent.message_id] == (
            MessageStatus.FAIL,
            "VIBER_BOT_FAILED",
        )

    async def test_long_profile_fields_of_an_inbound_user_are_clipped_and_a_non_phone_dropped(
        self, bm_app: Any, callbacks_client: Callbacks, make_sent: Callable[[Provider], Awaitable[Sent]]
    ):
        sent = await make_sent(VIBER_BOT)
        user = f"long-{uuid.uuid4().hex}"
        body = VIBER_BOT.inbound(4242, user)
        body["sender"].update(
            name="N" * 500, avatar="https://a.example/" + "a" * 3000, language="l" * 50, country="c" * 50
        )
        body["message"] = {"type": "contact", "contact": {"name": "x", "phone_number": "+" + "1" * 40}}
        response = await callbacks_client.signed(sent, body)
        assert response.status_code == 200, response.text
        after = await snapshot(bm_app, sent.account)
        assert after.inbound[-1] == "message"
        kind, webhook = after.webhooks[-1]
        assert kind == 2
        assert webhook["contact"]["name"] == "N" * 200
        assert (len(webhook["contact"]["avatarUrl"]), webhook["contact"]["language"]) == (2000, "l" * 20)
        assert webhook["contact"]["phone"] == ""
        # The raw upstream message is kept whole.
        assert webhook["message"]["extra"]["contact"]["phone_number"] == "+" + "1" * 40
