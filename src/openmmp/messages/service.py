"""Rules for sending: checks, placeholders, addressing, idempotency, and the message + job insert.

A send is durable when this transaction commits: the message row and its dispatch job are written
together (architecture.md invariant 1), before the answer leaves.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import orjson
from pydantic import ValidationError
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from openmmp.api_keys.auth import Subject
from openmmp.channels.service import channels, open_credentials
from openmmp.conversations import repository as conversations
from openmmp.errors import (
    AppError,
    BadRequest,
    Conflict,
    ErrorCode,
    ErrorItem,
    Invalid,
    NotFound,
    validation_items,
)
from openmmp.kit.crypto import Keyring
from openmmp.kit.db import Database
from openmmp.kit.ids import new_public_id
from openmmp.kit.phone import normalise_phone
from openmmp.kit.schemas import CHECKED_STORABLE
from openmmp.kit.time import now_ms
from openmmp.messages import repository
from openmmp.messages import status as status_machine
from openmmp.messages.batching import SendBatcher
from openmmp.messages.capabilities import check_content
from openmmp.messages.rendering import render
from openmmp.messages.schemas import (
    BroadcastResponseMessage,
    Expire,
    FallbackLeg,
    HistoryItem,
    ResponseStatusMessage,
    SendConversationMessage,
    SendMessageBroadcast,
    StatusError,
)
from openmmp.models import Channel
from openmmp.models.channel import SENDING_STATUSES
from openmmp.models.message import CAUSES, MessageStatus, Priority
from openmmp.providers.applications import Application
from openmmp.providers.base import Addressing, Provider
from openmmp.providers.registry import REGISTRY


class MessageNotFound(NotFound):
    default_name = "messageId"


class ChannelCannotSend(AppError):
    code = ErrorCode.NOT_ACCEPTABLE
    default_name = "accountId"


@dataclass(frozen=True)
class _Prepared:
    """A checked send, ready to insert."""

    row: dict[str, Any]
    request_hash: str


@dataclass
class _Context:
    channel: Channel
    provider: Provider
    credentials: dict[str, Any]
    keyring: Keyring
    fallback_channels: dict[str, tuple[Channel, Provider, dict[str, Any]]] = field(default_factory=dict)
    """Channels a fallback names, looked up once per call (a batch names the same ones again)."""

    @property
    def application(self) -> Application:
        return self.provider.application


def _request_hash(channel: Channel, body: dict[str, Any]) -> str:
    canonical = orjson.dumps({"channel": channel.public_id, "body": body}, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(canonical).hexdigest()


def _expire_at(expire: Expire | None, now: int) -> int | None:
    """The absolute expiry in epoch ms, if any."""
    if expire is None:
        return None
    if expire.type == "TTL":
        assert expire.ttl is not None
        return now + expire.ttl * 1000
    assert expire.expire_time is not None
    if expire.expire_time <= now:
        raise Invalid("expireTime is already in the past", name="expire.expireTime")
    return expire.expire_time


def _answer(
    channel: Channel,
    message_id: str,
    client_message_id: str,
    request_id: str | None,
    phone: str | None,
    email: str | None,
    created_at: int,
) -> dict[str, Any]:
    """A send's BroadcastResponseMessage with its wire names (tests hold it to the schema). A replay
    gets this same original answer (status PENDING)."""
    return {
        "messageId": message_id,
        "clientMessageId": client_message_id,
        "requestId": request_id,
        "phone": phone,
        "status": int(MessageStatus.PENDING),
        "cause": CAUSES[MessageStatus.PENDING],
        "applicationId": channel.application_id,
        "publicId": channel.public_id,
        "createdDate": created_at,
    } | ({"email": email} if email is not None else {})


async def _check_window(
    session: AsyncSession,
    ctx: _Context,
    content: dict[str, Any],
    phone: str | None,
    conversation_id: int | None,
    now: int,
) -> None:
    """A 400 for a free-form message to an end user outside the provider's customer-service window
    (`Provider.session_window_seconds`): the upstream would refuse it (WhatsApp's 131047)."""
    window = ctx.provider.session_window_seconds
    if window is None or content.get("type") in ctx.provider.window_free_types:
        return
    wrote = await conversations.last_written_at(
        session, ctx.channel.id, conversation_id=conversation_id, phone=phone
    )
    if wrote is None or now - wrote > window * 1000:
        hours = f"{window / 3600:g}-hour"
        since = "has never written to this channel" if wrote is None else "last wrote more than that ago"
        allowed = ", ".join(sorted(ctx.provider.window_free_types)) or "none"
        raise Invalid(
            f"outside the {hours} customer-service window (the end user {since}): only a template may "
            f"start the conversation ({allowed})",
            name="message.type",
        )


def _send_fields(provider: Provider, body: dict[str, Any]) -> dict[str, Any]:
    """The send's fields besides `message` that go into the content (`Provider.send_fields`); a 400 for
    one the channel does not take."""
    given: dict[str, Any] = {name: body[name] for name in ("subject", "html") if name in body}
    for name in given:
        if name not in provider.send_fields:
            raise Invalid(f"{provider.application.name} channels take no {name}", name=name)
    return given


def _email_of(provider: Provider | None, recipient: str) -> str | None:
    """The address a message went to, on channels that send e-mail."""
    return recipient if provider is not None and provider.addressing == Addressing.EMAIL else None


class MessageService:
    async def _context(
        self, session: AsyncSession, keyring: Keyring, subject: Subject, account_id: str
    ) -> _Context:
        channel = await channels.get(session, subject, public_id=account_id)
        provider = REGISTRY.for_application(channel.application_id)
        if provider is None:
            raise ChannelCannotSend("This version of OpenMMP does not know the channel's application")
        if channel.status not in SENDING_STATUSES:
            raise ChannelCannotSend("The channel is not launched (status must be LAUNCH or ACCEPT)")
        return _Context(channel, provider, open_credentials(keyring, channel), keyring)

    async def _recipient(
        self,
        session: AsyncSession,
        ctx: _Context,
        *,
        phone: str | None,
        to: str | None,
        email: str | None = None,
    ) -> tuple[str | None, str, int | None]:
        """(normalised phone, upstream address, conversation id) for a send. An e-mail's phone is only
        where a fallback goes."""
        default_region = ctx.channel.settings.get("defaultCountry")
        normalised = None
        if phone is not None:
            try:
                normalised = normalise_phone(phone, default_region)
            except ValueError as exc:
                raise Invalid(str(exc), name="phone") from exc
        addressing = ctx.provider.addressing
        if (addressing == Addressing.EMAIL) != (email is not None):
            if email is None:
                raise Invalid(f"required on {ctx.application.name} channels", name="email")
            raise Invalid(f"{ctx.application.name} channels do not send to e-mail addresses", name="email")
        if email is not None:
            return normalised, email, None
        if addressing == Addressing.PHONE or (addressing == Addressing.BOTH and to is None):
            if normalised is None:
                raise Invalid(f"required on {ctx.application.name} channels", name="phone")
            return normalised, normalised, None
        if to is not None:
            conversation = await conversations.get_on_channel(session, ctx.channel.id, to)
            if conversation is None:
                raise Invalid("no such conversation on this channel", name="to")
        elif normalised is not None:
            conversation = await conversations.latest_with_phone(session, ctx.channel.id, normalised)
            if conversation is None:
                raise Invalid(
                    "no end user with this phone has talked to this channel yet; use to", name="phone"
                )
        else:
            raise Invalid(f"phone or to is required on {ctx.application.name} channels", name="to")
        return conversation.phone, conversation.external_id, conversation.id

    async def _prepare(
        self,
        session: AsyncSession,
        ctx: _Context,
        subject: Subject,
        request: SendMessageBroadcast | SendConversationMessage,
        *,
        phone: str | None,
        now: int,
        priority: Priority = Priority.TRANSACTIONAL,
    ) -> _Prepared:
        body = request.model_dump(mode="json", by_alias=True, exclude_none=True)
        content = render({**body["message"], **_send_fields(ctx.provider, body)}, request.params)
        expire_at = _expire_at(request.expire, now)
        check_content(ctx.provider, content, ctx.credentials)
        normalised, recipient, conversation_id = await self._recipient(
            session, ctx, phone=phone, to=request.to, email=getattr(request, "email", None)
        )
        await _check_window(session, ctx, content, normalised, conversation_id, now)
        public_id = new_public_id()
        fallback = await self._fallback(session, ctx, subject, request, body, normalised, public_id)
        request_hash = _request_hash(ctx.channel, body)
        row = {
            "public_id": public_id,
            "company_id": subject.company_id,
            "channel_id": ctx.channel.id,
            "conversation_id": conversation_id,
            "client_message_id": request.client_message_id or new_public_id(),
            "request_id": request.request_id,
            "request_hash": request_hash,
            "phone": normalised,
            "recipient": recipient,
            "content": content,
            "status": int(MessageStatus.PENDING),
            "priority": int(priority),
            "attempts": 0,
            "expire_at": expire_at,
            "created_at": now,
            "updated_at": now,
            "parent_id": None,
            "fallback": fallback,
        }
        return _Prepared(row, request_hash)

    async def _fallback(
        self,
        session: AsyncSession,
        ctx: _Context,
        subject: Subject,
        request: SendMessageBroadcast | SendConversationMessage,
        body: dict[str, Any],
        phone: str | None,
        root: str,
    ) -> dict[str, Any] | None:
        """The send's fallback plan (its own, else its channel's default) as the first leg (`root`, its
        public id) carries it, each channel checked now: it is the company's, can send to a phone, and
        takes the message. None when there is none."""
        given = getattr(request, "fallback", None)
        after = getattr(request, "fallback_after_seconds", None)
        if given is not None:
            targets = [
                (c.account_id, body["fallback"]["channels"][n].get("message"))
                for n, c in enumerate(given.channels)
            ]
        else:
            default = ctx.channel.settings.get("fallback")
            if not default:
                return None
            targets = [(c["accountId"], None) for c in default["channels"]]
            after = after or default.get("fallbackAfterSeconds")
        if not ctx.provider.reports_delivery:
            raise Invalid(
                f"{ctx.application.name} reports no delivery: a fallback would always go", name="fallback"
            )
        if phone is None:
            raise Invalid("a fallback goes to the recipient's phone: give phone", name="phone")
        rest = []
        for n, (account_id, message) in enumerate(targets):
            name = f"fallback.channels[{n}]"
            channel, provider, credentials = await self._fallback_channel(
                session, ctx, subject, account_id, name
            )
            content = render(message or body["message"], request.params)
            try:
                check_content(provider, content, credentials)
            except Invalid as exc:
                items = [
                    ErrorItem(name=f"{name}.{item.name}", code=item.code, message=item.message)
                    for item in exc.items
                ]
                raise Invalid(items[0].message, items=items) from exc
            rest.append({"accountId": channel.public_id, "message": content})
        return {"leg": 0, "root": root, "rest": rest, "afterSeconds": after}

    async def _fallback_channel(
        self, session: AsyncSession, ctx: _Context, subject: Subject, account_id: str, name: str
    ) -> tuple[Channel, Provider, dict[str, Any]]:
        known = ctx.fallback_channels.get(account_id)
        if known is not None:
            return known
        try:
            channel = await channels.get(session, subject, public_id=account_id)
        except NotFound as exc:
            raise Invalid("no such channel", name=f"{name}.accountId") from exc
        provider = REGISTRY.for_application(channel.application_id)
        if provider is None:
            raise Invalid("this channel cannot send yet", name=f"{name}.accountId")
        if channel.id == ctx.channel.id:
            raise Invalid("the channel of the send itself", name=f"{name}.accountId")
        if provider.addressing in (Addressing.CONVERSATION, Addressing.EMAIL):
            where = "conversations" if provider.addressing == Addressing.CONVERSATION else "e-mail addresses"
            raise Invalid(
                f"{provider.application.name} channels send to {where}, not to a phone",
                name=f"{name}.accountId",
            )
        found = (channel, provider, open_credentials(ctx.keyring, channel))
        ctx.fallback_channels[account_id] = found
        return found

    async def _store(
        self, session: AsyncSession, ctx: _Context, subject: Subject, prepared: list[_Prepared | AppError]
    ) -> list[dict[str, Any] | AppError]:
        """Insert the new sends; answer replays with their original response and conflicts with 409s.

        Answers are BroadcastResponseMessage as they go on the wire (a batch answers up to 1,000)."""
        client_ids = [p.row["client_message_id"] for p in prepared if isinstance(p, _Prepared)]
        existing = await repository.by_client_ids(session, subject.company_id, client_ids)
        results: list[dict[str, Any] | AppError | None] = []
        fresh: list[tuple[int, _Prepared]] = []
        seen_in_call: dict[str, _Prepared] = {}
        for index, item in enumerate(prepared):
            if isinstance(item, AppError):
                results.append(item)
                continue
            client_id = item.row["client_message_id"]
            original = existing.get(client_id)
            earlier = seen_in_call.get(client_id)
            same_as = original.request_hash if original else (earlier.request_hash if earlier else None)
            if same_as is not None and same_as != item.request_hash:
                results.append(
                    Conflict("clientMessageId was already used with another body", name="clientMessageId")
                )
            elif original is not None:
                results.append(
                    _answer(
                        ctx.channel,
                        original.public_id,
                        original.client_message_id,
                        original.request_id,
                        original.phone,
                        _email_of(ctx.provider, original.recipient),
                        original.created_at,
                    )
                )
            elif earlier is not None:
                results.append(None)
                fresh.append((index, earlier))
            else:
                seen_in_call[client_id] = item
                results.append(None)
                fresh.append((index, item))
        rows = list({id(p): p.row for _, p in fresh}.values())
        if rows:
            ids = await repository.insert_with_jobs(session, rows)
            await repository.insert_fallback_timers(session, rows, ids)
            status_machine.count_steps(session, ctx.channel.application_id, MessageStatus.PENDING, len(rows))
        by_client = {row["client_message_id"]: row for row in rows}
        final: list[dict[str, Any] | AppError] = []
        for index, result in enumerate(results):
            if result is None:
                item = prepared[index]
                assert isinstance(item, _Prepared)
                row = by_client[item.row["client_message_id"]]
                final.append(
                    _answer(
                        ctx.channel,
                        row["public_id"],
                        row["client_message_id"],
                        row["request_id"],
                        row["phone"],
                        _email_of(ctx.provider, row["recipient"]),
                        row["created_at"],
                    )
                )
            else:
                final.append(result)
        return final

    async def send(
        self,
        db: Database,
        sends: SendBatcher,
        keyring: Keyring,
        subject: Subject,
        *,
        account_id: str,
        request: SendMessageBroadcast | SendConversationMessage,
    ) -> BroadcastResponseMessage:
        """Broadcast Message, or Send Conversation Message: its checks in a read session of its own, its
        writes in `sends`' next batch (messages/batching.py)."""
        async with db.read_sessions() as reads:
            ctx = await self._context(reads, keyring, subject, account_id)
            phone = None
            if isinstance(request, SendMessageBroadcast):
                phone = request.phone
            elif ctx.provider.addressing in (Addressing.PHONE, Addressing.EMAIL):
                raise ChannelCannotSend(
                    f"{ctx.application.name} channels have no conversations; use broadcast"
                )
            prepared = await self._prepare(reads, ctx, subject, request, phone=phone, now=now_ms())

        async def store(session: AsyncSession) -> dict[str, Any] | AppError:
            [result] = await self._store(session, ctx, subject, [prepared])
            return result

        try:
            result = await sends.store(store)
        except IntegrityError as exc:
            # What was checked changed before the write: the channel deleted, or the same
            # clientMessageId stored by another API process at the same moment.
            raise Conflict(
                "The send could not be stored as it was checked (the channel changed, or the same "
                "clientMessageId arrived at once); send it again",
                name="accountId",
            ) from exc
        if isinstance(result, AppError):
            raise result
        return BroadcastResponseMessage.model_validate(result)

    async def broadcast_batch(
        self,
        session: AsyncSession,
        keyring: Keyring,
        subject: Subject,
        *,
        account_id: str,
        items: list[dict[str, Any]],
        only: Addressing | None = None,
        whole: str | None = None,
        priority: Priority = Priority.TRANSACTIONAL,
    ) -> list[dict[str, Any]]:
        """Each item on its own: a bad one becomes `{errors}` at its place, the others are sent.

        The answer is BroadcastBatchResponse's `messages` as they go on the wire. `only`: the channel
        must address its receivers so (Send Mail takes e-mail channels only), else a 400. `whole`: all
        or nothing instead (a template's subscribers): one bad item is a 400 naming each fault as
        `{whole}[i].<field>`, and nothing is sent. `priority`: CAMPAIGN for a campaign's sends, which every
        transactional send overtakes in the outbox."""
        ctx = await self._context(session, keyring, subject, account_id)
        if only is not None and ctx.provider.addressing != only:
            raise Invalid(f"a {ctx.application.name} channel does not send to {only.value}", name="accountId")
        now = now_ms()
        prepared: list[_Prepared | AppError] = []
        for raw in items:
            try:
                # The batch's body was checked whole (RequestModel): its items need not be walked again.
                request = SendMessageBroadcast.model_validate(raw, context={CHECKED_STORABLE: True})
                prepared.append(
                    await self._prepare(
                        session, ctx, subject, request, phone=request.phone, now=now, priority=priority
                    )
                )
            except ValidationError as exc:
                prepared.append(Invalid("invalid item", items=validation_items(exc.errors())))
            except AppError as exc:
                prepared.append(exc)
        if whole is not None:
            faults = [
                item.model_copy(
                    update={"name": f"{whole}[{i}].{item.name}" if item.name else f"{whole}[{i}]"}
                )
                for i, p in enumerate(prepared)
                if isinstance(p, AppError)
                for item in p.items
            ]
            if faults:
                raise Invalid(f"{len(faults)} {whole} cannot be sent; nothing was", items=faults)
        results = await self._store(session, ctx, subject, prepared)
        return [
            {"errors": [i.model_dump(mode="json") for i in r.items]} if isinstance(r, AppError) else r
            for r in results
        ]

    async def status(
        self,
        session: AsyncSession,
        subject: Subject,
        *,
        message_id: str | None,
        client_message_id: str | None,
    ) -> ResponseStatusMessage:
        if message_id is None and client_message_id is None:
            raise BadRequest("give messageId or clientMessageId", name="clientMessageId")
        found = await repository.find(
            session, subject, public_id=message_id, client_message_id=client_message_id
        )
        if found is None:
            raise MessageNotFound("No such message")
        message, channel = found
        history = [
            HistoryItem(
                status=MessageStatus.PENDING,
                cause=CAUSES[MessageStatus.PENDING],
                timestamp=message.created_at,
            )
        ]
        history += [
            HistoryItem(status=e.status, cause=CAUSES[MessageStatus(e.status)], timestamp=e.timestamp)
            for e in await repository.history(session, message.id)
        ]
        error = None
        if message.error_code:
            error = StatusError(code=message.error_code, message=message.error_message or "")
        plan = message.fallback or {}
        legs = None
        if plan and message.parent_id is None:
            legs = [
                FallbackLeg(
                    message_id=leg.public_id,
                    public_id=leg_channel.public_id,
                    application_id=leg_channel.application_id,
                    status=leg.status,
                    cause=CAUSES[MessageStatus(leg.status)],
                    timestamp=leg.updated_at,
                )
                for leg, leg_channel in await repository.legs_of(session, message.id)
            ]
        return ResponseStatusMessage(
            parent_message_id=plan.get("root") if message.parent_id is not None else None,
            fallback=legs,
            message_id=message.public_id,
            client_message_id=message.client_message_id,
            phone=message.phone,
            email=_email_of(REGISTRY.for_application(channel.application_id), message.recipient),
            status=message.status,
            cause=CAUSES[MessageStatus(message.status)],
            application_id=channel.application_id,
            public_id=channel.public_id,
            created_date=message.created_at,
            timestamp=message.updated_at,
            error=error,
            history=history,
        )


messages = MessageService()
