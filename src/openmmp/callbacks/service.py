"""Provider callbacks: verify over the raw bytes, keep the raw event once, apply it.

Status reports go through the one status machine; a report that overtakes the commit recording its send
is kept UNMATCHED and applied later by `reconcile`. Inbound user events update the conversation and become
`type: 2` webhooks (api.md §5.2).
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any, Literal

import structlog
from prometheus_client import Counter
from sqlalchemy.ext.asyncio import AsyncSession

from openmmp.callbacks import repository
from openmmp.channels.service import open_credentials
from openmmp.conversations import repository as conversations
from openmmp.errors import NotFound, Unauthenticated
from openmmp.kit.crypto import Keyring
from openmmp.kit.time import now_ms
from openmmp.messages import status as status_machine
from openmmp.models import Channel, Conversation, InboundMessage
from openmmp.models.channel import Application
from openmmp.models.message import EventOutcome, MessageStatus
from openmmp.providers.base import CallbackEvent, CallbackRejected, InboundEvent, PingEvent, StatusEvent
from openmmp.providers.viber import callbacks as viber_callbacks
from openmmp.providers.viber_bot import callbacks as viber_bot_callbacks
from openmmp.queue.notify import WEBHOOKS, notify
from openmmp.settings import Settings
from openmmp.webhooks import service as webhooks

log = structlog.get_logger(__name__)
CALLBACKS = Counter("openmmp_callbacks_total", "Provider callbacks received", ["provider", "outcome"])

Provider = Literal["viber", "viber-bot"]
SANDBOX_VIBER_CALLBACK_SECRET = "sandbox-viber-callback-secret"  # noqa: S105 - the simulator's published default


@dataclass(frozen=True)
class _Protocol:
    application: Application
    parse: Callable[[bytes], CallbackEvent]


PROTOCOLS: dict[Provider, _Protocol] = {
    "viber": _Protocol(Application.VIBER, viber_callbacks.parse_callback),
    "viber-bot": _Protocol(Application.VIBER_BOT, viber_bot_callbacks.parse_callback),
}
_STATUS = {"DELIVERED": MessageStatus.DELIVERED, "READ": MessageStatus.READ, "FAIL": MessageStatus.FAIL}
_ERROR_MESSAGE_LENGTH = 500


class CallbackChannelNotFound(NotFound):
    default_name = "accountId"


def viber_callback_secret(settings: Settings) -> str:
    """The partner-level secret signing Viber BM callbacks; the simulator's default in sandbox mode."""
    if settings.providers.viber_callback_secret:
        return settings.providers.viber_callback_secret
    return SANDBOX_VIBER_CALLBACK_SECRET if settings.sandbox else ""


def _verified(
    provider: Provider, channel: Channel, keyring: Keyring, settings: Settings, raw: bytes, sig: str | None
) -> bool:
    if provider == "viber-bot":
        token = str(open_credentials(keyring, channel).get("authToken", ""))
        return bool(token) and viber_bot_callbacks.verify_signature(raw, sig, token)
    secret = viber_callback_secret(settings)
    return bool(secret) and viber_callbacks.verify_signature(raw, sig, secret)


async def apply_status(session: AsyncSession, channel: Channel, event: StatusEvent) -> bool:
    """Apply a delivery report; False when no message carries its token (yet)."""
    target = _STATUS[event.status]
    seen = target == MessageStatus.READ and event.user_id is not None
    message = await repository.message_for(
        session, channel.id, event.provider_message_id, event.user_id, lock=not seen
    )
    if message is None:
        return False
    raw = dict(event.raw)
    # The upstream's free text is kept as far as the history column holds it.
    error_message = event.error_message[:_ERROR_MESSAGE_LENGTH] if event.error_message else None
    changes = [
        status_machine.Change(message, target, event.timestamp_ms, event.error_code, error_message, raw)
    ]
    if seen:
        # Viber's `seen` comes once for everything the user has read up to this message.
        earlier = await repository.lock_unread_up_to(session, message)
        changes = [status_machine.Change(m, target, event.timestamp_ms, raw=raw) for m in earlier] + changes
    await status_machine.apply(session, changes, {channel.id: channel})
    return True


def _inbound_body(channel: Channel, conversation: Conversation, inbound: InboundMessage) -> dict[str, Any]:
    """The `type: 2` body of api.md §5.2, field for field."""
    return {
        "from": conversation.public_id,
        "contact": {
            "avatarUrl": conversation.avatar_url,
            "name": conversation.name,
            "language": conversation.language,
            "country": conversation.country,
            "address": None,
            "phone": conversation.phone or "",
        },
        "messageId": inbound.public_id,
        "message": inbound.content,
        "timestamp": inbound.timestamp,
        "type": 2,
        "channelId": channel.public_id,
        "publicId": channel.public_id,
        "applicationId": channel.application_id,
    }


async def apply_inbound(session: AsyncSession, channel: Channel, event: InboundEvent) -> None:
    contact = event.contact
    now = now_ms()
    phone = "".join(ch for ch in contact.phone if ch.isdigit())
    phone = phone if len(phone) <= 15 else ""  # longer is no E.164 number: keep none rather than a wrong one
    # Two events of a new user can race: create the conversation idempotently, then update it.
    await repository.create_conversation(session, channel, contact.id, now)
    conversation = await conversations.by_external_id(session, channel.id, contact.id)
    assert conversation is not None
    # The user's profile as far as the conversation's columns hold it.
    for field, value, width in (
        ("name", contact.name, 200),
        ("avatar_url", contact.avatar_url, 2000),
        ("language", contact.language, 20),
        ("country", contact.country, 20),
        ("phone", phone, 20),
    ):
        if value:
            setattr(conversation, field, value[:width])
    conversation.subscribed = event.kind != "unsubscribed"
    conversation.updated_at = now
    await session.flush()
    inbound = InboundMessage(
        company_id=channel.company_id,
        channel_id=channel.id,
        conversation_id=conversation.id,
        kind=event.kind,
        content=dict(event.message),
        timestamp=event.timestamp_ms,
    )
    session.add(inbound)
    await session.flush()
    await notify(session, WEBHOOKS)
    await webhooks.enqueue(
        session,
        channel=channel,
        event_type=2,
        body=_inbound_body(channel, conversation, inbound),
        ordering_key=conversation.public_id,
    )


async def receive(
    session: AsyncSession,
    keyring: Keyring,
    settings: Settings,
    *,
    provider: Provider,
    account_id: str,
    raw: bytes,
    signature: str | None,
) -> str:
    """Handle one callback; returns its outcome. Raises 404 (unknown channel) or 401 (bad signature)."""
    protocol = PROTOCOLS[provider]
    channel = await repository.channel_by_public_id(session, account_id)
    if channel is None or channel.application_id != protocol.application:
        CALLBACKS.labels(provider, "unknown_channel").inc()
        raise CallbackChannelNotFound("No such channel")
    if not _verified(provider, channel, keyring, settings, raw, signature):
        CALLBACKS.labels(provider, "bad_signature").inc()
        raise Unauthenticated("Callback signature is missing or wrong", name="signature")
    event = protocol.parse(raw)
    text = raw.decode("utf-8", errors="replace")
    if isinstance(event, PingEvent):
        outcome = EventOutcome.PING
        await repository.record_event(
            session,
            channel_id=channel.id,
            dedupe_key=f"ping:{now_ms()}",
            provider_message_id=None,
            outcome=outcome,
            raw=text,
        )
    elif isinstance(event, StatusEvent):
        event_id = await repository.record_event(
            session,
            channel_id=channel.id,
            dedupe_key=event.dedupe_key,
            provider_message_id=event.provider_message_id,
            outcome=EventOutcome.APPLIED,
            raw=text,
        )
        if event_id is None:
            outcome = "duplicate"
        elif await apply_status(session, channel, event):
            outcome = EventOutcome.APPLIED
        else:
            outcome = EventOutcome.UNMATCHED
            await repository.set_outcome(session, event_id, outcome)
            log.info(
                "callback_unmatched",
                provider=provider,
                channel=channel.public_id,
                token=event.provider_message_id,
            )
    else:
        event_id = await repository.record_event(
            session,
            channel_id=channel.id,
            dedupe_key=event.dedupe_key,
            provider_message_id=None,
            outcome=EventOutcome.INBOUND,
            raw=text,
        )
        if event_id is None:
            outcome = "duplicate"
        else:
            outcome = EventOutcome.INBOUND
            await apply_inbound(session, channel, event)
    CALLBACKS.labels(provider, outcome).inc()
    return outcome


async def reconcile(
    session: AsyncSession,
    *,
    tokens: Collection[str] | None = None,
    max_age_ms: int | None = None,
    limit: int = 500,
) -> int:
    """Apply status reports that overtook the commit recording their send; returns the steps recorded.

    The dispatcher calls it with the tokens it just recorded; the periodic sweep calls it without, and
    with `max_age_ms` also gives up on reports that never matched (logged and counted as unknown).
    """
    recorded = 0
    for event, channel in await repository.matchable(session, tokens=tokens, limit=limit):
        provider: Provider = "viber-bot" if channel.application_id == Application.VIBER_BOT else "viber"
        try:
            parsed = PROTOCOLS[provider].parse(event.raw.encode())
        except CallbackRejected:
            await repository.set_outcome(session, event.id, EventOutcome.UNKNOWN)
            continue
        if isinstance(parsed, StatusEvent) and await apply_status(session, channel, parsed):
            await repository.set_outcome(session, event.id, EventOutcome.APPLIED)
            recorded += 1
    if max_age_ms is not None:
        unknown = await repository.give_up_unmatched(session, older_than=now_ms() - max_age_ms)
        if unknown:
            CALLBACKS.labels("any", "unknown_message").inc(unknown)
            log.warning("callbacks_unknown_message", count=unknown)
    return recorded
