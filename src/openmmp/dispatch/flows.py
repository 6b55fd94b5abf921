"""Dispatch: claim → limit → send → record (architecture.md). Idempotent and crash-safe.

One round claims a batch of dispatch jobs (with a lease), re-reads their messages and skips any that is
no longer PENDING, fails the expired ones, has each channel's provider plan its upstream requests, sends
them within the channel's rate limit, then records every outcome in one transaction: SENT / FAIL through
the status machine, retries as rescheduled jobs, done jobs deleted. A worker killed mid-round loses its
lease and the jobs are claimed again; providers with an idempotency key (`Provider.idempotent`) get the
message id as that key, so the repeated send collapses upstream.

A round is not all-or-nothing: an unexpected error is contained to the channel (while planning: its
messages FAIL with the cause, since credentials that cannot be read will not become readable) or to the
one request (while sending: a retryable error, counted against `max_attempts`), and the outcomes of every
other request are committed. The commit itself is retried while the database is briefly away, within the
lease, so what upstreams accepted is recorded rather than sent again; the answers of upstreams without
an idempotency key are committed as soon as they arrive, without waiting for the round's slowest request,
and no more than `concurrency` such requests are under way or awaiting that commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import structlog
from sqlalchemy import select

from openmmp.callbacks.service import reconcile
from openmmp.channels.limits import channel_limit
from openmmp.channels.renewal import Renewal
from openmmp.channels.service import open_credentials
from openmmp.dispatch.links import Links
from openmmp.kit.crypto import Keyring
from openmmp.kit.db import Database, database_is_away
from openmmp.kit.limits import Limit, Limiter, LimiterUnavailable, reserve_within
from openmmp.kit.metrics import LIMITER_DEFERRED, LIMITER_WAIT, PROVIDER_SEND, children
from openmmp.kit.retry import backoff_ms
from openmmp.kit.time import now_ms
from openmmp.messages import status as status_machine
from openmmp.messages.repository import DISPATCH, record_parts
from openmmp.models import Channel, Job, Message
from openmmp.models.channel import SENDING_STATUSES
from openmmp.models.message import MessageStatus
from openmmp.providers.base import (
    Outcomes,
    Outgoing,
    Provider,
    ProviderContext,
    ProviderError,
    SendOk,
    SendUnit,
)
from openmmp.providers.registry import REGISTRY
from openmmp.queue.sql import Claimer, acknowledge, reschedule
from openmmp.settings import Settings

log = structlog.get_logger(__name__)
_SEND_SECONDS = children(PROVIDER_SEND)
_LIMITER_WAIT = children(LIMITER_WAIT)
_LIMITER_DEFERRED = children(LIMITER_DEFERRED)


_MISSING = ProviderError("INTERNAL_ERROR", "Sending failed inside OpenMMP; retried", retryable=True)
"""The outcome of a message its request said nothing about (it raised, or forgot one)."""


def _stale(outcome: SendOk | ProviderError) -> bool:
    return isinstance(outcome, ProviderError) and outcome.stale_credentials


def send_outcome(results: Outcomes, messages: list[Message]) -> str:
    """The outcome of one upstream request, for metrics: accepted when every message was, else the
    first refusal's kind (rate_limited, retryable or final); error when the call said nothing of one."""
    for message in messages:
        result = results.get(message.id)
        if result is None:
            return "error"
        if isinstance(result, ProviderError):
            if result.rate_limited:
                return "rate_limited"
            return "retryable" if result.retryable else "final"
    return "accepted"


@dataclass
class _Unit:
    """One upstream request of the round, with the channel and messages it is for."""

    channel: Channel
    provider: Provider
    messages: list[Message]
    send: SendUnit


@dataclass
class _Round:
    jobs: dict[int, Job]
    """Claimed jobs by message id."""
    finished: list[int]
    changes: list[status_machine.Change]
    retries: list[tuple[int, int, bool]]
    asked_at: dict[int, int]
    """When each message's upstream request went out, by message id."""
    lease_until: int
    """When the round's claims lapse (epoch ms): past it another worker may send the same jobs."""
    parts: list[tuple[Message, tuple[str, ...]]] = field(default_factory=list)
    """Messages sent as several upstream parts, with each part's id (`SendOk.parts`)."""

    def part(self) -> _Round:
        """An empty round over the same jobs and lease, to be recorded on its own."""
        return _Round(self.jobs, [], [], [], self.asked_at, self.lease_until)

    def absorb(self, other: _Round) -> None:
        """Take over what `other` has to record."""
        self.finished += other.finished
        self.changes += other.changes
        self.retries += other.retries
        self.parts += other.parts


class _EarlyCommits:
    """Records the answers of upstreams without an idempotency key as soon as they arrive.

    Sending such a message again reaches the user twice, so what the upstream accepted must not wait for
    the round's slowest request (up to the upstream timeout) before it is committed: a crash meanwhile
    would send it again. Answers are committed in groups: one transaction for whatever arrived while the
    previous one ran. What cannot be committed here is left to the round's own commit.
    """

    def __init__(self, dispatcher: Dispatcher, round_: _Round, channels: dict[int, Channel]) -> None:
        self._dispatcher = dispatcher
        self._round = round_
        self._channels = channels
        self._waiting: list[tuple[_Round, asyncio.Future[None]]] = []
        self._flushing: asyncio.Task[None] | None = None

    async def record(self, part: _Round) -> None:
        """Hand `part` over and wait until it is committed (or handed back to the round)."""
        done = asyncio.get_running_loop().create_future()
        self._waiting.append((part, done))
        if self._flushing is None:
            self._flushing = asyncio.create_task(self._flush())
        await done

    async def _flush(self) -> None:
        try:
            while self._waiting:
                batch = self._round.part()
                waiting, self._waiting = self._waiting, []
                try:
                    for part, _ in waiting:
                        batch.absorb(part)
                    await self._dispatcher._commit(batch, self._channels)
                except Exception:
                    log.exception("dispatch_early_commit_failed")
                    self._round.absorb(batch)
                finally:
                    for _, done in waiting:
                        if not done.done():
                            done.set_result(None)
        finally:
            self._flushing = None


class Dispatcher:
    def __init__(
        self,
        db: Database,
        keyring: Keyring,
        settings: Settings,
        contexts: Mapping[str, ProviderContext],
        limiter: Limiter,
        *,
        on_commit: Callable[[], None] = lambda: None,
        links: Links | None = None,
    ) -> None:
        """`links`: the process's connections to `connected` upstreams (their channels send through them)."""
        self.db = db
        self.on_commit = on_commit
        self.links = links
        self.keyring = keyring
        self.renewal = Renewal(db, keyring)
        self.settings = settings
        self.contexts = contexts
        self.limiter = limiter
        self.claimer = Claimer(
            kind=DISPATCH,
            lease_ms=int(settings.dispatch.lease_seconds * 1000),
            skip_locked=not db.is_sqlite,
        )
        self._semaphore = asyncio.Semaphore(settings.dispatch.concurrency)
        self._unrecorded = asyncio.Semaphore(settings.dispatch.concurrency)
        """Units of upstreams without an idempotency key from their request until their answers are
        committed (`_EarlyCommits`)."""
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """New work was committed: stop idling."""
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Dispatch until `stop` is set, with `rounds_in_flight` rounds under way at once.

        One round waits for its slowest send and then for its commit; meanwhile the others claim and
        send, so the upstream and the database are both kept busy. Each round has its own lease.
        """
        await asyncio.gather(*(self._rounds(stop) for _ in range(self.settings.dispatch.rounds_in_flight)))

    async def _rounds(self, stop: asyncio.Event) -> None:
        idle = self.settings.dispatch.poll_min_seconds
        while not stop.is_set():
            try:
                done = await self.run_once()
            except Exception:
                log.exception("dispatch_round_failed")
                done = 0
            if done:
                idle = self.settings.dispatch.poll_min_seconds
                continue
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=idle)
            idle = min(self.settings.dispatch.poll_max_seconds, idle * 2)

    async def run_once(self) -> int:
        """One claim → send → record round; returns how many jobs it handled."""
        now = now_ms()
        async with self.db.write_sessions() as session, session.begin():
            jobs = await self.claimer.claim(session, limit=self.settings.dispatch.batch_size, now=now)
            if not jobs:
                return 0
            message_ids = [j.message_id for j in jobs if j.message_id is not None]
            messages = {
                m.id: m
                for m in (await session.execute(select(Message).where(Message.id.in_(message_ids)))).scalars()
            }
            channel_ids = {m.channel_id for m in messages.values()}
            channels = {
                c.id: c
                for c in (await session.execute(select(Channel).where(Channel.id.in_(channel_ids)))).scalars()
            }
        round_ = _Round(
            jobs={}, finished=[], changes=[], retries=[], asked_at={}, lease_until=now + self.claimer.lease_ms
        )
        to_send: dict[int, list[Message]] = defaultdict(list)
        for job in jobs:
            message = messages.get(job.message_id or -1)
            if message is None or message.status != MessageStatus.PENDING:
                round_.finished.append(job.id)  # already handled by an earlier round: nothing to do
                continue
            round_.jobs[message.id] = job
            channel = channels[message.channel_id]
            if message.expire_at is not None and message.expire_at <= now:
                self._fail(round_, message, "EXPIRED", "The message expired before it could be sent", now)
            elif channel.status not in SENDING_STATUSES:
                self._fail(round_, message, "CHANNEL_NOT_ACTIVE", "The channel is not launched", now)
            else:
                to_send[channel.id].append(message)
        units: list[_Unit] = []
        for channel_id, pending in to_send.items():
            units += self._plan(round_, channels[channel_id], pending, now)
        early = _EarlyCommits(self, round_, channels)

        async def send(unit: _Unit) -> None:
            if not await self._wait_for_limit(unit, round_):
                return  # handed back to the queue for later
            if unit.provider.idempotent:
                results = await self._call(unit, round_)
                for message in unit.messages:
                    self._record(round_, message, results[message.id])
                return
            # What such an upstream accepted and we have not recorded, a crash would send again: a unit
            # holds a place from its request until its answers are committed, so that those stay within
            # `concurrency` however long the commits take.
            async with self._unrecorded:
                results = await self._call(unit, round_)
                part = round_.part()
                for message in unit.messages:
                    self._record(part, message, results[message.id])
                await early.record(part)

        await asyncio.gather(*(send(unit) for unit in units))
        await self._commit(round_, channels)
        return len(jobs)

    def _plan(self, round_: _Round, channel: Channel, pending: list[Message], now: int) -> list[_Unit]:
        """The channel's upstream requests; its messages FAIL with the cause when there can be none."""
        provider = REGISTRY.for_application(channel.application_id)
        if provider is None:
            for message in pending:
                self._fail(
                    round_, message, "NOT_SUPPORTED", "Sending on this application is not available", now
                )
            return []
        outgoing = [Outgoing(m.id, m.recipient, m.content, m.expire_at, channel.public_id) for m in pending]
        try:
            credentials = open_credentials(self.keyring, channel)
            link = self.links.get(channel, provider) if provider.connected and self.links else None
            planned = provider.plan(self.contexts[provider.name], credentials, outgoing, link)
        except Exception as exc:
            # Credentials that cannot be read or lack a field will not get better by waiting.
            log.exception("dispatch_plan_failed", channel=channel.public_id, error_type=type(exc).__name__)
            text = f"The channel's credentials cannot be used ({type(exc).__name__})"
            for message in pending:
                self._fail(round_, message, "CHANNEL_CREDENTIALS", text, now)
            return []
        by_id = {m.id: m for m in pending}
        units = [_Unit(channel, provider, [by_id[key] for key in unit.keys], unit) for unit in planned]
        planned_ids = {m.id for unit in units for m in unit.messages}
        for message in pending:
            if message.id not in planned_ids:
                self._fail(round_, message, "NOT_PLANNED", "The provider planned no request for it", now)
        return units

    async def _wait_for_limit(self, unit: _Unit, round_: _Round) -> bool:
        """Wait for the unit's turn within its rate limits; False when it was handed back for later."""
        limit = channel_limit(unit.channel, unit.provider, self.settings)
        max_wait = self.settings.dispatch.max_limit_wait_seconds
        recipient = self._recipient_limit(unit)
        try:
            if recipient is not None:
                # A recipient's limit is seconds apart (WhatsApp's pair rate): never waited out in a round.
                wait = await reserve_within(self.limiter, *recipient, max_wait=0.0)
                if wait > 0:
                    _LIMITER_DEFERRED(unit.provider.name, "recipient").inc()
                    self._hand_back(round_, unit, now_ms() + int(wait * 1000))
                    return False
            wait = await reserve_within(self.limiter, f"channel:{unit.channel.id}", limit, max_wait)
        except LimiterUnavailable:
            # Without the shared limit we cannot know what is safe: pause this channel's sending.
            _LIMITER_DEFERRED(unit.provider.name, "limiter_unavailable").inc()
            wait = self.settings.dispatch.limiter_unavailable_pause_seconds
            self._hand_back(round_, unit, now_ms() + int(wait * 1000))
            return False
        if wait > max_wait:
            # Over the limit for longer than we hold the lease comfortably: hand the jobs back for later
            # (their slot was not kept, or the schedule would run ahead and nothing would be sent again).
            _LIMITER_DEFERRED(unit.provider.name, "over_max_wait").inc()
            if recipient is not None:
                with contextlib.suppress(LimiterUnavailable):
                    await self.limiter.reserve(*recipient, cost=-1)
            self._hand_back(round_, unit, now_ms() + int(wait * 1000))
            return False
        _LIMITER_WAIT(unit.provider.name).observe(wait)
        if wait > 0:
            await asyncio.sleep(wait)
        return True

    async def _call(self, unit: _Unit, round_: _Round) -> Outcomes:
        """Send the unit within a slot of `concurrency`, again with renewed credentials where the upstream
        found them stale: its outcome per message id."""
        async with self._semaphore:
            # SENT is when we asked: the upstream accepted it after this and reports delivery later.
            for message in unit.messages:
                round_.asked_at[message.id] = now_ms()
            started = time.perf_counter()
            try:
                results = await unit.send.call()
            except Exception as exc:
                log.exception(
                    "dispatch_send_failed", channel=unit.channel.public_id, error_type=type(exc).__name__
                )
                results = {}
            _SEND_SECONDS(unit.provider.name, send_outcome(results, unit.messages)).observe(
                time.perf_counter() - started
            )
            # A message the call said nothing about (it raised, or forgot one) is retried: attempts bound it.
            outcomes = {m.id: results.get(m.id, _MISSING) for m in unit.messages}
            if unit.provider.refreshes_credentials and any(map(_stale, outcomes.values())):
                outcomes |= await self._send_renewed(unit, outcomes)
        return outcomes

    async def _send_renewed(self, unit: _Unit, results: Outcomes) -> Outcomes:
        """Send again, with renewed credentials, what the upstream refused because the channel's were
        stale (an expired access token). Renewal is one at a time per channel (channels/renewal.py): a
        unit that comes second gets the credentials the first one stored. Called within the unit's slot."""
        stale = [m for m in unit.messages if _stale(results[m.id])]
        ctx = self.contexts[unit.provider.name]
        try:
            credentials, _ = await self.renewal.renew(unit.channel, unit.provider, ctx)
        except ProviderError as exc:
            text = f"The upstream refused the channel's credentials, and renewing them failed: {exc.message}"
            refused = ProviderError("CHANNEL_CREDENTIALS", text, retryable=exc.retryable)
            return {m.id: refused for m in stale}
        except Exception as exc:
            log.exception(
                "dispatch_renewal_failed", channel=unit.channel.public_id, error_type=type(exc).__name__
            )
            return {m.id: _MISSING for m in stale}
        outgoing = [
            Outgoing(m.id, m.recipient, m.content, m.expire_at, unit.channel.public_id) for m in stale
        ]
        again: Outcomes = {}
        try:
            for planned in unit.provider.plan(ctx, credentials, outgoing):
                again.update(await planned.call())
        except Exception as exc:
            log.exception(
                "dispatch_send_failed", channel=unit.channel.public_id, error_type=type(exc).__name__
            )
        outcomes: Outcomes = {}
        for message in stale:
            outcome = again.get(message.id, _MISSING)
            if isinstance(outcome, ProviderError) and outcome.stale_credentials:
                # Refused even with credentials just renewed: waiting will not make them better.
                text = f"{outcome.message} (with credentials just renewed)"
                outcome = ProviderError(outcome.code, text, retryable=False)
            outcomes[message.id] = outcome
        return outcomes

    def _recipient_limit(self, unit: _Unit) -> tuple[str, Limit] | None:
        """The limiter key and limit to the unit's one recipient, when its provider has such a limit."""
        rate = unit.provider.recipient_rate
        recipients = {m.recipient for m in unit.messages}
        if rate is None or len(recipients) != 1:
            return None
        limit = Limit(
            rate=self.settings.limits.safety * rate.requests / rate.window_seconds,
            burst=float(max(1, unit.provider.recipient_burst)),
        )
        return f"recipient:{unit.channel.id}:{recipients.pop()}", limit

    @staticmethod
    def _hand_back(round_: _Round, unit: _Unit, run_at: int) -> None:
        for message in unit.messages:
            round_.retries.append((round_.jobs[message.id].id, run_at, False))

    def _fail(self, round_: _Round, message: Message, code: str, text: str, now: int) -> None:
        round_.changes.append(status_machine.Change(message, MessageStatus.FAIL, now, code, text))
        round_.finished.append(round_.jobs[message.id].id)

    def _record(self, round_: _Round, message: Message, outcome: SendOk | ProviderError) -> None:
        now = now_ms()
        job = round_.jobs[message.id]
        dispatch = self.settings.dispatch
        if isinstance(outcome, SendOk):
            asked = round_.asked_at.get(message.id, now)
            round_.changes.append(
                status_machine.Change(
                    message, MessageStatus.SENT, asked, provider_message_id=outcome.provider_message_id
                )
            )
            if outcome.parts:
                round_.parts.append((message, outcome.parts))
            round_.finished.append(job.id)
            return
        if not outcome.retryable:
            self._fail(round_, message, outcome.code, outcome.message, now)
            return
        if outcome.rate_limited:
            # A limited job waits; it never fails for that reason (architecture.md invariant 5).
            delay = int((outcome.retry_after or dispatch.rate_limited_delay_seconds) * 1000)
            round_.retries.append((job.id, now + delay, False))
            return
        attempts = job.attempts + 1
        run_at = now + backoff_ms(
            attempts, base_s=dispatch.retry_base_seconds, max_s=dispatch.retry_max_seconds
        )
        if message.expire_at is not None and message.expire_at <= run_at:
            self._fail(round_, message, "EXPIRED", f"Expired while the upstream failed: {outcome.code}", now)
        elif attempts >= dispatch.max_attempts:
            self._fail(round_, message, outcome.code, outcome.message, now)
        else:
            round_.retries.append((job.id, run_at, True))

    async def _commit(self, round_: _Round, channels: dict[int, Channel]) -> None:
        """Record the round; while the database is away, try again as long as the lease holds."""
        delay = 0.1
        while True:
            try:
                await self._write(round_, channels)
                break
            except Exception as exc:
                if not database_is_away(exc) or now_ms() + int(delay * 1000) >= round_.lease_until:
                    raise
                log.warning("dispatch_commit_retried", error_type=type(exc).__name__)
                await asyncio.sleep(delay)
                delay = min(2.0, delay * 2)
        if round_.changes:
            self.on_commit()

    async def _write(self, round_: _Round, channels: dict[int, Channel]) -> None:
        async with self.db.write_sessions() as session, session.begin():
            ids = [c.message.id for c in round_.changes]
            fresh = {}
            if ids:
                # Locked: a report applied between this read and our update would be overwritten by a
                # stale step (DELIVERED back to SENT, where nothing would ever move it again).
                statement = select(Message).where(Message.id.in_(ids)).order_by(Message.id).with_for_update()
                fresh = {m.id: m for m in (await session.execute(statement)).scalars()}
            changes = [
                status_machine.Change(
                    fresh[c.message.id],
                    c.target,
                    c.timestamp,
                    c.error_code,
                    c.error_message,
                    c.raw,
                    c.provider_message_id,
                )
                for c in round_.changes
                if c.message.id in fresh
            ]
            await status_machine.apply(session, changes, channels)
            tokens = [c.provider_message_id for c in changes if c.provider_message_id is not None]
            if round_.parts:
                await record_parts(session, round_.parts)
                tokens += [token for _, parts in round_.parts for token in parts]
            if tokens:
                # Callbacks are often faster than this commit: apply the ones that arrived meanwhile.
                await reconcile(session, tokens=tokens)
            await reschedule(session, round_.retries)
            await acknowledge(session, round_.finished)
