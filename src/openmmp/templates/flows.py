"""Conversation flows: CONVERSATION templates run with end users, step by step on their replies.

Broadcast Template Message with a CONVERSATION template sends its START message and, in the same
transaction, stores the flow (`TemplateFlow`: the steps as they are now, the recipient, the params). Steps
that wait for no reply are sent at once after it, in the same transaction; then the flow WAITs for the
reply to the step sent last, or ends (COMPLETE / ERROR) when that step ends it (flow_graph.py).

A reply is an inbound message of the recipient's conversation on the flow's channel. Recording it
(`note_inbound`, in the callback's own transaction) queues a `flow_reply` job; a worker's `FlowRunner`
then takes the conversation's new inbound messages in order, keeps each as the answer to the step it
replies to and sends the next step, all in one transaction with `replied_up_to` moved past them. So every
state is committed with what caused it: a restart or a SIGKILL at any point leaves either the reply
untaken (the job runs again) or the next step queued (the outbox sends it); a job run twice finds the
replies taken. Each step's send is a Broadcast Message of the company with a `clientMessageId` of its
own (`<flow>.<n>`), with the statuses and webhooks of any send; the replies are `type: 2` webhooks as
every inbound message is.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import structlog
from sqlalchemy import ColumnElement, and_, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from openmmp.api_keys.auth import Subject
from openmmp.errors import AppError, NotFound
from openmmp.kit.crypto import Keyring
from openmmp.kit.db import Database
from openmmp.kit.ids import canonical_public_id
from openmmp.kit.time import now_ms
from openmmp.messages.rendering import param_texts
from openmmp.messages.service import messages
from openmmp.models import (
    Channel,
    Company,
    Conversation,
    InboundMessage,
    Job,
    Message,
    Template,
    TemplateFlow,
)
from openmmp.models.company import CompanyStatus
from openmmp.models.template import FlowStatus
from openmmp.queue.notify import notify
from openmmp.queue.sql import Claimer, acknowledge
from openmmp.templates import flow_graph
from openmmp.templates.service import send_expiry

log = structlog.get_logger(__name__)

KIND = "flow_reply"
NOTIFY_CHANNEL = "openmmp_flows"
ANSWER_LENGTH = 1000
"""The longest answer kept (a reply is cut to it)."""
_CAUSE_LENGTH = 500
_POLL_S = 1.0
_CLAIM_GAP_S = 0.1
_LEASE_MS = 60_000
_BATCH = 100


class FlowNotFound(NotFound):
    default_name = "messageId"


def _subject(company: Company, api_key_id: int) -> Subject:
    return Subject(
        company_id=company.id,
        company_public_id=company.public_id,
        company_type=company.type,
        api_key_id=api_key_id,
    )


def _reply_text(content: Mapping[str, Any]) -> str | None:
    """What the end user answered: the text of their message (a tapped suggestion's text too); None for
    a message without text (a picture alone), which answers nothing."""
    text = content.get("message")
    if not isinstance(text, str) or not text.strip():
        return None
    return text.strip()[:ANSWER_LENGTH]


class _Run:
    """One flow being moved on, in the transaction of `session`."""

    def __init__(self, session: AsyncSession, keyring: Keyring, flow: TemplateFlow, channel: Channel) -> None:
        self.session = session
        self.keyring = keyring
        self.flow = flow
        self.channel = channel
        self.steps = flow_graph.steps(flow.steps)

    def end(self, status: str, cause: str | None) -> None:
        self.flow.status = status
        self.flow.cause = cause[:_CAUSE_LENGTH] if cause else None
        self.flow.updated_at = now_ms()

    async def _recipient(self) -> dict[str, str]:
        """Where the flow's sends go: the conversation (`to`) once there is one, and the phone."""
        found: dict[str, str] = {}
        if self.flow.phone:
            found["phone"] = f"+{self.flow.phone}"
        if self.flow.conversation_id is not None:
            conversation = await self.session.get(Conversation, self.flow.conversation_id)
            if conversation is not None:
                found["to"] = conversation.public_id
        return found

    async def send(self, step: flow_graph.Step, subject: Subject, expire: dict[str, Any] | None) -> None:
        """Queue `step`'s message to the recipient; the flow ends ERROR (with the reason) when the send is
        refused (the channel stopped, an answer makes the message too long, ...)."""
        flow = self.flow
        item: dict[str, Any] = {
            **await self._recipient(),
            "message": dict(step.message),
            "params": {**flow.params, **flow.answers},
            "clientMessageId": f"{flow.public_id}.{len(flow.sent)}",
        }
        if expire is not None:
            item["expire"] = expire
        try:
            [answer] = await messages.broadcast_batch(
                self.session,
                self.keyring,
                subject,
                account_id=self.channel.public_id,
                items=[item],
                whole="step",
            )
        except AppError as exc:
            names = ", ".join(i.name for i in exc.items if i.name)
            self.end(
                FlowStatus.ERROR,
                f"step {step.id!r} could not be sent: {exc.message}" + (f" ({names})" if names else ""),
            )
            return
        if "messageId" not in answer:
            self.end(FlowStatus.ERROR, f"step {step.id!r} could not be sent")
            return
        flow.sent = [*flow.sent, answer["messageId"]]
        flow.step = step.id
        flow.updated_at = now_ms()
        if step.status in flow_graph.ENDS:
            self.end(FlowStatus.COMPLETE if step.status == "COMPLETE" else FlowStatus.ERROR, None)

    async def go_on(self, subject: Subject, expire: dict[str, Any] | None) -> None:
        """Send the steps that follow the last one without waiting for a reply."""
        while self.flow.status == FlowStatus.WAITING:
            following = flow_graph.straight_on(self.steps, self.steps[self.flow.step])
            if following is None:
                return
            await self.send(following, subject, expire)

    async def reply(self, text: str, subject: Subject, expire: dict[str, Any] | None, now: int) -> None:
        """The end user's reply to the step sent last: kept under its `answerId`, then the next step."""
        flow = self.flow
        if flow.expire_at is not None and now > flow.expire_at:
            self.end(FlowStatus.ERROR, "the flow expired before the reply")
            return
        current = self.steps[flow.step]
        assert current.answer_id is not None  # a flow waits only at a step that asks
        flow.answers = {**flow.answers, current.answer_id: text}
        following = flow_graph.after_reply(self.steps, current, text)
        if following is None:
            self.end(FlowStatus.ERROR, f"the reply to step {current.id!r} fits no step")
            return
        await self.send(following, subject, expire)
        await self.go_on(subject, expire)


async def start(
    session: AsyncSession,
    keyring: Keyring,
    subject: Subject,
    *,
    template: Template,
    answers: Sequence[Mapping[str, Any]],
    params: Sequence[Mapping[str, Any]],
) -> None:
    """Store a flow for each START message a Broadcast Template Message just queued (`answers`, with the
    subscribers' `params` in the same order) and send the steps that follow it at once. A replayed send
    (its `clientMessageId` again) has its flow already: nothing more happens."""
    sent = [a["messageId"] for a in answers if "messageId" in a]
    if not sent:
        return
    known = set(
        (
            await session.execute(select(TemplateFlow.message_id).where(TemplateFlow.message_id.in_(sent)))
        ).scalars()
    )
    rows = {
        m.public_id: m
        for m in (await session.execute(select(Message).where(Message.public_id.in_(sent)))).scalars()
    }
    # Replies taken by a flow are inbound messages recorded after it started.
    watermark = (await session.scalar(select(func.max(InboundMessage.id)))) or 0
    now = now_ms()
    start_step = flow_graph.start_of(flow_graph.steps(template.messages))
    for answer, given in zip(answers, params, strict=True):
        message = rows.get(answer.get("messageId", ""))
        if message is None or message.public_id in known:
            continue
        await _end_older(session, message)
        flow = TemplateFlow(
            company_id=subject.company_id,
            channel_id=message.channel_id,
            conversation_id=message.conversation_id,
            phone=message.phone,
            template_public_id=template.public_id,
            message_id=message.public_id,
            api_key_id=subject.api_key_id,
            steps=list(template.messages),
            params=param_texts(given),
            answers={},
            status=FlowStatus.WAITING,
            step=start_step.id,
            sent=[message.public_id],
            replied_up_to=watermark,
            # The template's expiry, as its START message took it (send_expiry).
            expire_at=message.expire_at,
            created_at=now,
            updated_at=now,
        )
        session.add(flow)
        await session.flush()
        channel = await session.get(Channel, message.channel_id)
        assert channel is not None
        run = _Run(session, keyring, flow, channel)
        await run.go_on(subject, send_expiry(template))
    await session.flush()


async def _end_older(session: AsyncSession, message: Message) -> None:
    """A newer flow to the same recipient on the channel ends the one waiting there."""
    who = []
    if message.conversation_id is not None:
        who.append(TemplateFlow.conversation_id == message.conversation_id)
    if message.phone:
        who.append(TemplateFlow.phone == message.phone)
    for condition in who:
        await session.execute(
            update(TemplateFlow)
            .where(
                TemplateFlow.channel_id == message.channel_id,
                TemplateFlow.status == FlowStatus.WAITING,
                condition,
            )
            .values(
                status=FlowStatus.ERROR, cause="a newer flow started with this recipient", updated_at=now_ms()
            )
        )


async def note_inbound(
    session: AsyncSession, channel: Channel, conversation: Conversation, kind: str
) -> None:
    """An end user's inbound message was recorded: bind the flows started by their phone to their
    conversation, and queue the flow's reply job when one waits there."""
    if kind != "message":
        return
    if conversation.phone:
        await session.execute(
            update(TemplateFlow)
            .where(
                TemplateFlow.channel_id == channel.id,
                TemplateFlow.phone == conversation.phone,
                TemplateFlow.status == FlowStatus.WAITING,
                TemplateFlow.conversation_id.is_(None),
            )
            .values(conversation_id=conversation.id)
        )
    waiting = await session.scalar(
        select(TemplateFlow.id)
        .where(
            TemplateFlow.channel_id == channel.id,
            TemplateFlow.conversation_id == conversation.id,
            TemplateFlow.status == FlowStatus.WAITING,
        )
        .limit(1)
    )
    if waiting is None:
        return
    session.add(Job(kind=KIND, company_id=channel.company_id, channel_id=channel.id))
    await notify(session, NOTIFY_CHANNEL)


def _replies(conversation_id: Any, after: Any) -> ColumnElement[bool]:
    """The end user's messages in the conversation past the inbound message `after` (columns or values)."""
    return and_(
        InboundMessage.conversation_id == conversation_id,
        InboundMessage.id > after,
        InboundMessage.kind == "message",
    )


async def _replied(session: AsyncSession, channel_id: int) -> list[int]:
    """The waiting flows of the channel whose conversation has inbound messages they have not taken."""
    newer = (
        select(InboundMessage.id)
        .where(_replies(TemplateFlow.conversation_id, TemplateFlow.replied_up_to))
        .exists()
    )
    statement = select(TemplateFlow.id).where(
        TemplateFlow.channel_id == channel_id,
        TemplateFlow.status == FlowStatus.WAITING,
        TemplateFlow.conversation_id.is_not(None),
        newer,
    )
    return list((await session.execute(statement)).scalars())


async def take_replies(session: AsyncSession, keyring: Keyring, flow_id: int, *, lock: bool) -> None:
    """Move the flow on by each reply it has not taken yet, in order (the flow's row locked)."""
    statement = (
        select(TemplateFlow).where(TemplateFlow.id == flow_id).execution_options(populate_existing=True)
    )
    flow = (await session.execute(statement.with_for_update() if lock else statement)).scalar_one_or_none()
    if flow is None or flow.status != FlowStatus.WAITING or flow.conversation_id is None:
        return
    replies = (
        await session.execute(
            select(InboundMessage.id, InboundMessage.content)
            .where(_replies(flow.conversation_id, flow.replied_up_to))
            .order_by(InboundMessage.id)
        )
    ).all()
    if not replies:
        return
    flow.replied_up_to = replies[-1][0]
    channel = await session.get(Channel, flow.channel_id)
    company = await session.get(Company, flow.company_id)
    assert channel is not None
    assert company is not None
    run = _Run(session, keyring, flow, channel)
    if company.status != CompanyStatus.ACTIVE:
        run.end(FlowStatus.ERROR, "the company is not active")
        return
    template = await session.scalar(select(Template).where(Template.public_id == flow.template_public_id))
    expire = send_expiry(template) if template is not None else None
    subject = _subject(company, flow.api_key_id)
    now = now_ms()
    for _, content in replies:
        if flow.status != FlowStatus.WAITING:
            break
        text = _reply_text(content)
        if text is not None:
            await run.reply(text, subject, expire, now)
    flow.updated_at = now


async def _fail(session: AsyncSession, flow_id: int) -> None:
    """End a flow that failed unexpectedly, past the replies it has now: the company reads only that an
    internal error ended it (the log has the rest)."""
    flow = await session.get(TemplateFlow, flow_id, populate_existing=True)
    if flow is None or flow.conversation_id is None:
        return
    last = await session.scalar(
        select(func.max(InboundMessage.id)).where(InboundMessage.conversation_id == flow.conversation_id)
    )
    flow.replied_up_to = max(flow.replied_up_to, last or 0)
    flow.status, flow.cause, flow.updated_at = FlowStatus.ERROR, "an internal error ended the flow", now_ms()


class FlowRunner:
    """Claims `flow_reply` jobs and moves their channels' flows on (any number of workers at once: each
    flow's row is locked while it moves)."""

    def __init__(self, db: Database, keyring: Keyring, *, on_commit: Callable[[], None]) -> None:
        self.db = db
        self.keyring = keyring
        self.on_commit = on_commit
        self.claimer = Claimer(kind=KIND, lease_ms=_LEASE_MS, skip_locked=not db.is_sqlite)
        self._wake = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    async def run_once(self) -> int:
        """Take the replies of the flows of up to a batch of claimed jobs' channels; returns the jobs."""
        async with self.db.write_sessions() as session, session.begin():
            jobs = await self.claimer.claim(session, limit=_BATCH, now=now_ms())
            if not jobs:
                return 0
            for channel_id in sorted({job.channel_id for job in jobs if job.channel_id is not None}):
                for flow_id in await _replied(session, channel_id):
                    await self._take(session, flow_id)
            await acknowledge(session, [job.id for job in jobs])
        self.on_commit()
        return len(jobs)

    async def _take(self, session: AsyncSession, flow_id: int) -> None:
        """One flow's replies, on a savepoint of their own: a flow that fails unexpectedly ends ERROR (its
        replies taken) instead of holding back every other flow of the batch, again at each retry."""
        try:
            async with session.begin_nested():
                await take_replies(session, self.keyring, flow_id, lock=not self.db.is_sqlite)
        except Exception:
            log.exception("flow_failed", flow_id=flow_id)
            async with session.begin_nested():
                await _fail(session, flow_id)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self._wake.clear()
            try:
                while await self.run_once():
                    pass
            except Exception:
                log.exception("flow_round_failed")
            # Wake-ups come with every send: look again no sooner than this.
            await asyncio.sleep(_CLAIM_GAP_S)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=_POLL_S)


async def get(
    session: AsyncSession, subject: Subject, message_id: str
) -> tuple[TemplateFlow, str, str | None]:
    """The company's flow started by the message `message_id`, with its channel's public id and its
    conversation's (None until the end user writes); 404 otherwise."""
    canonical = canonical_public_id(message_id)
    found = None
    if canonical is not None:
        statement = (
            select(TemplateFlow, Channel.public_id, Conversation.public_id)
            .join(Channel, Channel.id == TemplateFlow.channel_id)
            .outerjoin(Conversation, Conversation.id == TemplateFlow.conversation_id)
            .where(TemplateFlow.company_id == subject.company_id, TemplateFlow.message_id == canonical)
        )
        found = (await session.execute(statement)).first()
    if found is None:
        raise FlowNotFound("No conversation flow was started by this message")
    return found[0], found[1], found[2]
