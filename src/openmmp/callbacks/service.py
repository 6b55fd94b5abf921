"""Provider callbacks: find the channel, let its provider verify and parse, keep the raw event once, apply.

One route shape serves every provider (`/callbacks/{provider}/{accountId}`); what differs between upstreams
(headers, signatures, handshakes, body formats) is the provider's (`providers.base.Provider`). Status
reports go through the one status machine; a report that overtakes the commit recording its send is kept
UNMATCHED and applied later by `reconcile`. Inbound user events update the conversation and become
`type: 2` webhooks (api.md §5.2); channel events change the channel's status and become `type: 4` webhooks.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from openmmp.callbacks import repository
from openmmp.channels import repository as channels
from openmmp.channels.service import change_status, fingerprint_of, open_credentials
from openmmp.channels.tasks import queue_agent_sync
from openmmp.conversations import repository as conversations
from openmmp.errors import AppError, ErrorCode, NotFound, Unauthenticated
from openmmp.kit.crypto import Keyring
from openmmp.kit.metrics import CALLBACKS
from openmmp.kit.time import now_ms
from openmmp.messages import status as status_machine
from openmmp.models import Channel, Conversation, InboundMessage, Message, MessagePart
from openmmp.models.channel import ChannelStatus
from openmmp.models.message import EventOutcome, MessageStatus
from openmmp.providers.base import (
    CallbackEvent,
    CallbackRejected,
    CallbackReply,
    CallbackRequest,
    CallbackUnverified,
    ChannelEvent,
    Credentials,
    InboundEvent,
    PingEvent,
    Provider,
    ProviderContext,
    StatusEvent,
    TemplateEvent,
)
from openmmp.providers.registry import REGISTRY
from openmmp.queue.notify import WEBHOOKS, notify
from openmmp.settings import CallbackSettings
from openmmp.templates import flows
from openmmp.templates import service as templates
from openmmp.webhooks import service as webhooks

log = structlog.get_logger(__name__)

_STATUS = {"DELIVERED": MessageStatus.DELIVERED, "READ": MessageStatus.READ, "FAIL": MessageStatus.FAIL}
_ERROR_MESSAGE_LENGTH = 500


class CallbackChannelNotFound(NotFound):
    default_name = "accountId"


class NoHandshake(AppError):
    status_code = 405
    code = ErrorCode.BAD_REQUEST
    default_name = "method"


async def _lookup(
    session: AsyncSession,
    keyring: Keyring,
    contexts: Mapping[str, ProviderContext],
    *,
    provider_name: str,
    account_id: str,
    channels: dict[str, Channel | None] | None = None,
) -> tuple[Provider, Channel, ProviderContext, dict[str, Any]]:
    """The provider, channel, context and credentials of a callback; 404 unless the channel is the
    provider's (the same answer for an unknown provider or channel, so nothing is learnt by probing).

    `channels`: the channels this transaction already looked up, by account id (callbacks applied
    together mostly concern a few channels); filled as they are found.
    """
    provider = REGISTRY.by_name(provider_name)
    if channels is not None and account_id in channels:
        channel = channels[account_id]
    else:
        channel = await repository.channel_by_public_id(session, account_id)
        if channels is not None:
            channels[account_id] = channel
    if provider is None or channel is None or channel.application_id != provider.application:
        CALLBACKS.labels(provider.name if provider else "unknown", "unknown_channel").inc()
        raise CallbackChannelNotFound("No such channel")
    return provider, channel, contexts[provider.name], open_credentials(keyring, channel)


async def account_of(
    session: AsyncSession, keyring: Keyring, *, provider_name: str, request: CallbackRequest
) -> str:
    """The accountId of the channel a callback posted to the provider's one URL is for (a provider that
    `routes_by_account`): found by the account the request names, through the channels' identity
    fingerprints. 404 (as for an unknown channel) when there is none; the request is verified afterwards
    with that channel's credentials, so naming another's account gains nothing."""
    provider = REGISTRY.by_name(provider_name)
    named = (
        provider.callback_account(request) if provider is not None and provider.routes_by_account else None
    )
    channel = None
    if provider is not None and named:
        fingerprint = fingerprint_of(keyring, provider.application, Credentials.identity_of(named))
        channel = await channels.by_fingerprint(session, fingerprint)
    if provider is None or channel is None:
        CALLBACKS.labels(provider.name if provider else "unknown", "unknown_channel").inc()
        raise CallbackChannelNotFound("No such channel")
    return channel.public_id


async def apply_status(session: AsyncSession, channel: Channel, event: StatusEvent) -> bool:
    """Apply a delivery report; False when no message carries its token (yet). On a channel whose
    provider sends messages in parts (`Provider.sends_parts`), the report may name one of them."""
    if event.up_to_ms is not None:
        return await _apply_watermark(session, channel, event)
    provider = REGISTRY.for_application(channel.application_id)
    if provider is not None and provider.sends_parts:
        found = await repository.part_for(session, channel.id, event.provider_message_id)
        if found is not None:
            whole = await _part_reported(session, found, event)
            if whole is None:
                return True  # the part's verdict is kept; the message waits for its other parts
            event = whole
    seen = _watermark(event)
    message = await repository.message_for(
        session, channel.id, event.provider_message_id, event.user_id, lock=not seen
    )
    if message is None:
        return False
    change = _change(message, event)
    changes = [change]
    if seen:
        # A read watermark: everything the user has read up to this message.
        earlier = await repository.lock_unread_up_to(session, message)
        changes = [status_machine.Change(m, change.target, change.timestamp, raw=change.raw) for m in earlier]
        changes.append(change)
    await status_machine.apply(session, changes, {channel.id: channel})
    return True


async def _apply_watermark(session: AsyncSession, channel: Channel, event: StatusEvent) -> bool:
    """A watermark by time: the user's messages on the channel accepted up to `event.up_to_ms` that are
    not that far yet take its status. True: the report is applied, whether or not it moved any."""
    assert event.up_to_ms is not None
    if event.user_id is None:
        return True
    target = _STATUS[event.status]
    behind = (
        [MessageStatus.SENT]
        if target == MessageStatus.DELIVERED
        else [MessageStatus.SENT, MessageStatus.DELIVERED]
    )
    rows = await repository.lock_behind_up_to(
        session, channel.id, event.user_id, up_to_ms=event.up_to_ms, statuses=behind
    )
    changes = [_change(message, event) for message in rows]
    if changes:
        await status_machine.apply(session, changes, {channel.id: channel})
    return True


async def _part_reported(session: AsyncSession, part: MessagePart, event: StatusEvent) -> StatusEvent | None:
    """Keep a part's verdict; the report the whole message gets from it (FAIL with the first failed
    part's cause, DELIVERED once every part is), or None while some part has not been reported."""
    message, parts = await repository.lock_parts(session, part.message_id)
    mine = next(p for p in parts if p.id == part.id)
    if mine.status == MessageStatus.SENT:
        failed = _STATUS[event.status] == MessageStatus.FAIL
        mine.status = MessageStatus.FAIL if failed else MessageStatus.DELIVERED
        mine.error_code = event.error_code
        mine.error_message = event.error_message[:_ERROR_MESSAGE_LENGTH] if event.error_message else None
    first_failed = next((p for p in parts if p.status == MessageStatus.FAIL), None)
    if first_failed is None and any(p.status != MessageStatus.DELIVERED for p in parts):
        return None
    assert message.provider_message_id is not None  # recorded with its parts, in one transaction
    return dataclasses.replace(
        event,
        provider_message_id=message.provider_message_id,
        status="FAIL" if first_failed else "DELIVERED",
        error_code=first_failed.error_code if first_failed else None,
        error_message=(
            f"Part {first_failed.number} of {len(parts)}: {first_failed.error_message or 'not delivered'}"
            if first_failed
            else None
        ),
        user_id=None,
        cumulative=False,
    )


def _watermark(event: StatusEvent) -> bool:
    """A read report that covers the user's earlier messages too (Viber Bot's `seen`)."""
    return event.cumulative and _STATUS[event.status] == MessageStatus.READ


def _change(message: Message, event: StatusEvent) -> status_machine.Change:
    """The status change a report asks of `message`."""
    # The upstream's free text is kept as far as the history column holds it.
    error_message = event.error_message[:_ERROR_MESSAGE_LENGTH] if event.error_message else None
    target = _STATUS[event.status]
    return status_machine.Change(
        message, target, event.timestamp_ms, event.error_code, error_message, dict(event.raw)
    )


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
    await flows.note_inbound(session, channel, conversation, event.kind)
    await notify(session, WEBHOOKS)
    await webhooks.enqueue(
        session,
        channel=channel,
        event_type=2,
        body=_inbound_body(channel, conversation, inbound),
        ordering_key=conversation.public_id,
    )


async def challenge(
    session: AsyncSession,
    keyring: Keyring,
    contexts: Mapping[str, ProviderContext],
    *,
    provider: str,
    account_id: str,
    request: CallbackRequest,
) -> CallbackReply:
    """Answer an upstream's GET verification handshake: 405 for providers without one (whatever the
    channel), 404 for an unknown channel, 401 for a wrong token."""
    known = REGISTRY.by_name(provider)
    if known is not None and not known.verifies_with_get:
        raise NoHandshake(f"{known.title} callbacks are POSTs")
    found, _, ctx, credentials = await _lookup(
        session, keyring, contexts, provider_name=provider, account_id=account_id
    )
    try:
        reply = found.challenge(ctx, request, credentials)
    except CallbackUnverified as exc:
        CALLBACKS.labels(found.name, "bad_signature").inc()
        raise Unauthenticated("Verification token is missing or wrong", name="signature") from exc
    CALLBACKS.labels(found.name, "handshake").inc()
    return reply


@dataclass(frozen=True, slots=True)
class Prepared:
    """A verified callback, parsed: what `apply_prepared` (or `apply_reports`) stores and applies."""

    provider: Provider
    channel: Channel
    events: list[CallbackEvent]
    text: str

    @property
    def reports_only(self) -> bool:
        """Only delivery reports, a read watermark naming its user: `apply_reports` takes it, unless
        `naming_parts` finds that it names a part of a message (those are resolved one by one)."""
        return all(
            isinstance(event, StatusEvent)
            and event.up_to_ms is None
            and (event.user_id is not None or not _watermark(event))
            for event in self.events
        )


async def prepare(
    session: AsyncSession,
    keyring: Keyring,
    contexts: Mapping[str, ProviderContext],
    *,
    provider: str,
    account_id: str,
    request: CallbackRequest,
    channels: dict[str, Channel | None] | None = None,
    trusted: bool = False,
) -> Prepared:
    """Find the channel, verify and parse a callback; reads only. Raises 404 (unknown channel), 401 (not
    verified) or `CallbackRejected` (unreadable body). `channels`: see `_lookup`; a caller whose
    transaction rolls back part of its work must empty it. `trusted`: it arrived on the provider's
    `Link`, not over HTTP, so there is nothing to verify."""
    found, channel, ctx, credentials = await _lookup(
        session, keyring, contexts, provider_name=provider, account_id=account_id, channels=channels
    )
    if not trusted and not found.verify(ctx, request, credentials):
        CALLBACKS.labels(found.name, "bad_signature").inc()
        raise Unauthenticated("Callback signature is missing or wrong", name="signature")
    body = found.readable_body(request)
    events = list(found.parse(body))
    # Kept as text (PostgreSQL's text holds no NUL): what a replay parses again.
    return Prepared(found, channel, events, body.decode("utf-8", errors="replace").replace("\x00", "\ufffd"))


async def apply_prepared(session: AsyncSession, prepared: Prepared, *, replay_window_ms: int) -> str:
    """Store and apply a prepared callback's events one by one; its outcomes joined by "," (a body may
    carry several events).

    An event with effects beyond status (inbound, channel, template, ping) whose upstream time is older
    than `replay_window_ms` is a replay (its record may have been pruned): it is answered `stale` and
    neither stored nor applied. Status reports need no window: status only moves forward.
    """
    outcomes = []
    stale_before = now_ms() - replay_window_ms
    for event in prepared.events:
        if not isinstance(event, StatusEvent) and event.timestamp_ms < stale_before:
            outcome = "stale"
        else:
            outcome = await _apply(session, prepared.channel, event, prepared.text)
        CALLBACKS.labels(prepared.provider.name, outcome).inc()
        outcomes.append(outcome)
    return ",".join(outcomes)


async def naming_parts(session: AsyncSession, callbacks: list[Prepared]) -> set[int]:
    """The positions of the callbacks (of providers that send in parts) whose reports name a part of a
    message: `apply_status` resolves those one by one; `apply_reports` takes the rest."""
    tokens = {
        (callback.channel.id, event.provider_message_id)
        for callback in callbacks
        if callback.provider.sends_parts
        for event in callback.events
        if isinstance(event, StatusEvent)
    }
    parts = await repository.tokens_of_parts(session, tokens)
    return {
        n
        for n, callback in enumerate(callbacks)
        if any(
            isinstance(event, StatusEvent) and (callback.channel.id, event.provider_message_id) in parts
            for event in callback.events
        )
    }


async def apply_reports(session: AsyncSession, callbacks: list[Prepared]) -> list[str]:
    """Store and apply the delivery reports of several callbacks at once (each `reports_only`); each
    callback's outcomes as `apply_prepared` gives them. A handful of statements for all: their raw events
    in one insert, their messages (and for read watermarks the users' unread ones) in one read, their
    steps through the status machine together. Reports about one message are applied in the order they
    came."""
    rows: list[dict[str, Any]] = []
    first: dict[tuple[int, str], int] = {}  # (channel, dedupe key) → its row: a repeat in the same batch
    placed: list[list[tuple[StatusEvent, int | None]]] = []
    for callback in callbacks:
        mine: list[tuple[StatusEvent, int | None]] = []
        for event in callback.events:
            assert isinstance(event, StatusEvent)
            key = (callback.channel.id, event.dedupe_key[:300])
            if key in first:
                mine.append((event, None))
                continue
            first[key] = len(rows)
            mine.append((event, len(rows)))
            rows.append(
                {
                    "channel_id": callback.channel.id,
                    "dedupe_key": key[1],
                    "provider_message_id": event.provider_message_id,
                    "outcome": EventOutcome.APPLIED,
                    "raw": callback.text,
                }
            )
        placed.append(mine)
    stored = await repository.record_events(session, rows)
    event_ids = [stored.get((row["channel_id"], row["dedupe_key"])) for row in rows]
    fresh = {
        (row["channel_id"], row["provider_message_id"])
        for row, id_ in zip(rows, event_ids, strict=True)
        if id_
    }
    # The users of the new read watermarks: their unread messages are read (and locked) with the rest.
    users: set[tuple[int, str]] = set()
    for callback, mine in zip(callbacks, placed, strict=True):
        for event, row in mine:
            if row is not None and event_ids[row] and _watermark(event) and event.user_id is not None:
                users.add((callback.channel.id, event.user_id))
    found, unread = await repository.messages_by_token(session, fresh, users)
    changes: list[status_machine.Change] = []
    unmatched: list[int] = []
    answers: list[str] = []
    for callback, mine in zip(callbacks, placed, strict=True):
        outcomes = []
        for event, row in mine:
            event_id = None if row is None else event_ids[row]
            if event_id is None:
                outcome = "duplicate"
            elif (change := _report_change(callback.channel, event, found)) is not None:
                if _watermark(event):
                    # A read watermark: everything the user has read up to this message (`apply_status`).
                    user = (callback.channel.id, change.message.recipient)
                    changes += [
                        status_machine.Change(m, change.target, change.timestamp, raw=change.raw)
                        for m in unread.get(user, [])
                        if m.id < change.message.id
                    ]
                changes.append(change)
                outcome = EventOutcome.APPLIED
            else:
                unmatched.append(event_id)
                log.info(
                    "callback_unmatched", channel=callback.channel.public_id, token=event.provider_message_id
                )
                outcome = EventOutcome.UNMATCHED
            CALLBACKS.labels(callback.provider.name, outcome).inc()
            outcomes.append(outcome)
        answers.append(",".join(outcomes))
    await repository.set_outcomes(session, unmatched, EventOutcome.UNMATCHED)
    await status_machine.apply(session, changes, {c.channel.id: c.channel for c in callbacks})
    return answers


async def _apply(session: AsyncSession, channel: Channel, event: CallbackEvent, text: str) -> str:
    """Store one event's raw callback once and apply it; returns its outcome."""
    token = event.provider_message_id or None if isinstance(event, StatusEvent) else None
    outcome = {
        StatusEvent: EventOutcome.APPLIED,
        InboundEvent: EventOutcome.INBOUND,
        ChannelEvent: EventOutcome.CHANNEL,
        TemplateEvent: EventOutcome.TEMPLATE,
        PingEvent: EventOutcome.PING,
    }[type(event)]
    event_id = await repository.record_event(
        session,
        channel_id=channel.id,
        dedupe_key=event.dedupe_key,
        provider_message_id=token,
        outcome=outcome,
        raw=text,
    )
    if event_id is None:
        return "duplicate"
    if isinstance(event, StatusEvent):
        if await apply_status(session, channel, event):
            return EventOutcome.APPLIED
        await repository.set_outcome(session, event_id, EventOutcome.UNMATCHED)
        log.info("callback_unmatched", channel=channel.public_id, token=event.provider_message_id)
        return EventOutcome.UNMATCHED
    if isinstance(event, InboundEvent):
        await apply_inbound(session, channel, event)
    elif isinstance(event, ChannelEvent):
        await apply_channel(session, channel, event)
    elif isinstance(event, PingEvent):
        pass  # the upstream checked that we answer; keeping it once is all there is to do
    elif not await templates.apply_event(session, channel, event):
        # About a template the channel's company does not have (any more) under that upstream id.
        log.info("callback_template_unmatched", channel=channel.public_id, template=event.template_id)
    return outcome


def _report_change(
    channel: Channel, event: StatusEvent, found: Mapping[tuple[int, str], list[Message]]
) -> status_machine.Change | None:
    """The status change a report asks for, as `apply_status` makes it; None when no message matches."""
    candidates = found.get((channel.id, event.provider_message_id), [])
    if event.user_id is not None:
        candidates = [m for m in candidates if m.recipient == event.user_id]
    # The latest, should the upstream have handed the token out before (as `message_for` takes it).
    return _change(candidates[-1], event) if candidates else None


async def prune_events(session: AsyncSession, settings: CallbackSettings) -> int:
    """Delete raw events older than the retention (a batch per call); returns how many."""
    older_than = now_ms() - int(settings.event_retention_days * 86_400_000)
    return await repository.prune(session, older_than=older_than, limit=settings.prune_batch)


async def apply_channel(session: AsyncSession, channel: Channel, event: ChannelEvent) -> None:
    """The upstream changed the channel's state: record it and tell the company (`type: 4`, api.md §5.3).

    For an account the platform runs (an RCS agent) the event tells of one part of it (a region): the
    workers ask the upstream for the whole account's state instead (channels/tasks.py `AgentSync`).
    """
    provider = REGISTRY.for_application(channel.application_id)
    if provider is not None and provider.manages_agents:
        await queue_agent_sync(session, channel)
        return
    await change_status(
        session,
        channel,
        ChannelStatus[event.status],
        event.cause[:_ERROR_MESSAGE_LENGTH] or None,
        timestamp_ms=event.timestamp_ms,
    )


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
        provider = REGISTRY.for_application(channel.application_id)
        try:
            parsed = provider.parse(event.raw.encode()) if provider is not None else []
        except CallbackRejected:
            parsed = []
        report = next(
            (e for e in parsed if isinstance(e, StatusEvent) and e.dedupe_key[:300] == event.dedupe_key), None
        )
        if report is None:
            await repository.set_outcome(session, event.id, EventOutcome.UNKNOWN)
            continue
        if await apply_status(session, channel, report):
            await repository.set_outcome(session, event.id, EventOutcome.APPLIED)
            recorded += 1
    if max_age_ms is not None:
        unknown = await repository.give_up_unmatched(session, older_than=now_ms() - max_age_ms)
        if unknown:
            CALLBACKS.labels("any", "unknown_message").inc(unknown)
            log.warning("callbacks_unknown_message", count=unknown)
    return recorded
