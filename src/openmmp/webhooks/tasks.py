"""The webhook deliverer: claim due deliveries, POST them signed, record every attempt.

One batch = one claim transaction, concurrent HTTP requests, one transaction recording every outcome
(deliveries, attempt log, endpoint health). Nothing is slept in a row: retries are `next_attempt_at`
values (architecture.md invariant 3), so any process running a deliverer can pick them up.

Delivery is at-least-once: a worker that dies after sending and before recording loses its lease and
the delivery is sent again with the same `webhook-id`, which receivers use to de-duplicate.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from openmmp import __version__
from openmmp.kit.crypto import DecryptionFailed, Keyring
from openmmp.kit.db import Database
from openmmp.kit.http import ADDRESS_REFUSED, HttpClient, HttpUnreachable
from openmmp.kit.metrics import WEBHOOK_DELIVERIES, children
from openmmp.kit.time import now_ms
from openmmp.models.channel import WebhookStatus
from openmmp.models.webhook import DeliveryState
from openmmp.settings import WebhookSettings
from openmmp.webhooks import repository
from openmmp.webhooks.guard import TargetRefused, address_problem, check_target, webhooks_allow_private
from openmmp.webhooks.signing import Signer

__all__ = ["WebhookDeliverer", "retry_delay_ms", "webhooks_allow_private"]

log = structlog.get_logger(__name__)

EXCERPT_BYTES = 2048
ERROR_CHARS = 500
JITTER = 0.10
USER_AGENT = f"OpenMMP-Webhooks/{__version__}"
_DELIVERIES = children(WEBHOOK_DELIVERIES)


def _clean(text: str, limit: int) -> str:
    # PostgreSQL text cannot hold NUL; a receiver's answer can.
    return text[:limit].replace("\x00", "\ufffd")


def retry_delay_ms(settings: WebhookSettings, attempts: int) -> int:
    """Back-off after the `attempts`-th failed attempt: its schedule entry (the last repeats) ± 10 %."""
    schedule = settings.retry_schedule_s
    base = schedule[min(max(attempts, 1), len(schedule)) - 1]
    return max(0, round(base * 1000 * (1 + random.uniform(-JITTER, JITTER))))


@dataclass(slots=True)
class _Outcome:
    delivery: repository.Claimed
    url: str
    attempted_at: int
    finished_at: int
    latency_ms: float
    status_code: int | None = None
    excerpt: str = ""
    error: str | None = None
    reason: str = "none"
    """Why the attempt failed, for metrics: none, http, timeout, connection, refused, config or error."""

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300 and self.error is None


@dataclass(slots=True)
class _Batch:
    """Claimed deliveries with what sending them needs, loaded once for the whole batch."""

    deliveries: list[repository.Claimed]
    endpoints: dict[int, repository.Endpoint]
    signers: dict[int, Signer | DecryptionFailed] = field(default_factory=dict)
    targets: dict[str, asyncio.Task[str | None]] = field(default_factory=dict)
    unstarted: int = 0  # deliveries still waiting for a request slot


_CLAIM_GAP_S = 0.05
"""Shortest time between two claims of one deliverer unless the last one filled its batch."""


class WebhookDeliverer:
    """Delivers due webhooks, from any number of processes at once.

    `deliver_due()` runs one batch (tests, CLI); `run(stop)` loops until `stop` is set. Call `wake()`
    (from the deliverer's event loop) after committing new deliveries to cut the idle sleep short.

    Unless `allow_private`, deliveries go through `http.checked(address_problem)`: a connection to an
    address the guard refuses is never made, whatever the name resolved to when it was checked.
    """

    def __init__(
        self,
        db: Database,
        http: HttpClient,
        keyring: Keyring,
        settings: WebhookSettings,
        *,
        allow_private: bool,
    ) -> None:
        self._db = db
        # The guard's check before a batch and the connection resolve the name separately; this client
        # refuses at connection time, so an answer that changes in between (DNS rebinding) gets nowhere.
        self._http = http if allow_private else http.checked(address_problem)
        self._keyring = keyring
        self._settings = settings
        self._allow_private = allow_private
        self._limit = asyncio.Semaphore(settings.concurrency)
        self._wake = asyncio.Event()
        self._waiting = 0  # claimed deliveries waiting for a request slot
        self._stopping = False  # set when `run` ends: deliveries not yet sent are handed back

    @contextlib.asynccontextmanager
    async def _write(self) -> AsyncIterator[AsyncSession]:
        """A write transaction, committed when the block ends.

        On SQLite, writers of this process already queue for the one write connection (kit.db.Database).
        """
        async with self._db.write_sessions() as session, session.begin():
            yield session

    def wake(self) -> None:
        """New deliveries were committed: look for due work now instead of after the idle sleep."""
        self._wake.set()

    async def deliver_due(self, *, limit: int = 200) -> int:
        """Claim up to `limit` due deliveries, deliver them, record the outcomes; returns how many were
        attempted (deliveries of endpoints that are not active are held, not attempted)."""
        batch = await self._claim(limit)
        if batch is None:
            return 0
        return await self._deliver(batch)

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver until `stop` is set; then finish (and record) the batches in flight.

        A new batch is claimed while fewer than `settings.batches_in_flight` are out and every claimed
        delivery has its request under way: a slow endpoint holds back the batch it is in, not the
        process, and nothing is claimed (leased) long before it can be sent. Idle polls back off from
        `poll_interval_min_s` to `poll_interval_max_s`; `wake()` or a finished batch (its ordering keys'
        next events are now due) end the wait early.
        """
        settings = self._settings
        floor = min(settings.poll_interval_min_s, settings.poll_interval_max_s)
        idle = floor
        in_flight: set[asyncio.Task[int]] = set()
        stopping = asyncio.create_task(stop.wait())

        def room() -> bool:
            return len(in_flight) < settings.batches_in_flight and self._waiting == 0

        gap = min(floor, _CLAIM_GAP_S)
        last_claim, full = -gap, False
        try:
            while not stop.is_set():
                self._wake.clear()
                found = False
                if room():
                    # Every committed status change wakes every worker (a NOTIFY each): after a claim
                    # that did not fill its batch, the next one waits out `gap`, so a flood of wake-ups
                    # becomes a few full claims instead of one near-empty claim per wake-up and worker.
                    pause = gap - (time.monotonic() - last_claim)
                    if not full and pause > 0:
                        await asyncio.sleep(pause)
                    last_claim = time.monotonic()
                    try:
                        batch = await self._claim(settings.batch_size)
                    except Exception:
                        log.exception("webhook_claim_failed")
                        batch = None
                    full = batch is not None and len(batch.deliveries) >= settings.batch_size
                    if batch is not None:
                        found, idle = True, floor
                        task = asyncio.create_task(self._deliver_logged(batch))
                        in_flight.add(task)
                        task.add_done_callback(in_flight.discard)
                        if room():
                            continue
                waking = asyncio.create_task(self._wake.wait())
                # With batches out, look again soon: room opens as their requests get under way.
                timeout = floor if in_flight else idle
                done, _ = await asyncio.wait(
                    {stopping, waking, *in_flight}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
                )
                waking.cancel()
                if done:
                    idle = floor
                elif not found and not in_flight:
                    idle = min(idle * 2, settings.poll_interval_max_s)
        finally:
            # Requests under way finish (within the timeout) and are recorded; the rest of each batch
            # is handed back unsent, so stopping takes one request timeout, not a batch's worth.
            self._stopping = True
            stopping.cancel()
            if in_flight:
                await asyncio.gather(*in_flight, return_exceptions=True)
            self._stopping = False

    async def _deliver_logged(self, batch: _Batch) -> int:
        try:
            return await self._deliver(batch)
        except Exception:
            # The leases run out and another round sends these again (at-least-once).
            log.exception("webhook_batch_failed", deliveries=len(batch.deliveries))
            return 0

    async def _claim(self, limit: int) -> _Batch | None:
        now = now_ms()
        lease_until = now + round(self._settings.lease_s * 1000)
        async with self._write() as session:
            claimed = await repository.claim(
                session, now=now, lease_until=lease_until, limit=limit, skip_locked=not self._db.is_sqlite
            )
            if not claimed:
                return None
            endpoints = await repository.endpoints(session, {c.channel_id for c in claimed})
            inactive = [
                c.id
                for c in claimed
                if c.channel_id in endpoints and endpoints[c.channel_id].status != WebhookStatus.ACTIVATED
            ]
            if inactive:
                # Enqueued while the endpoint was going FAILED: kept with the others, not sent.
                await repository.hold(session, inactive)
        if inactive:
            _DELIVERIES("held", "endpoint_inactive").inc(len(inactive))
        held = set(inactive)
        deliveries = [c for c in claimed if c.id not in held]
        if not deliveries:
            return None
        self._waiting += len(deliveries)
        return _Batch(deliveries, endpoints, unstarted=len(deliveries))

    async def _deliver(self, batch: _Batch) -> int:
        try:
            self._open_secrets(batch)
            results = await asyncio.gather(*(self._attempt(batch, d) for d in batch.deliveries))
        finally:
            self._waiting -= batch.unstarted
            batch.unstarted = 0
        outcomes = [r for r in results if r is not None]
        unsent = [d.id for d, r in zip(batch.deliveries, results, strict=True) if r is None]
        await self._record(outcomes, unsent=unsent)
        return len(outcomes)

    def _open_secrets(self, batch: _Batch) -> None:
        for channel_id, endpoint in batch.endpoints.items():
            if endpoint.secret_ciphertext is None:
                continue
            try:
                batch.signers[channel_id] = Signer(self._keyring.decrypt(endpoint.secret_ciphertext))
            except DecryptionFailed as exc:
                batch.signers[channel_id] = exc

    def _target_check(self, batch: _Batch, url: str) -> asyncio.Task[str | None]:
        """One guard check per URL per batch, shared by the batch's deliveries to it."""
        task = batch.targets.get(url)
        if task is None:
            task = asyncio.ensure_future(self._refusal(url))
            batch.targets[url] = task
        return task

    async def _refusal(self, url: str) -> str | None:
        try:
            await check_target(url, allow_private=self._allow_private)
        except TargetRefused as refused:
            return f"target refused: {refused.message}"
        except Exception as exc:
            log.warning("webhook_target_check_error", error_type=type(exc).__name__)
            return f"target refused: the check failed ({type(exc).__name__})"
        return None

    async def _attempt(self, batch: _Batch, delivery: repository.Claimed) -> _Outcome | None:
        """The outcome of one attempt, or None when the deliverer stopped before it was sent."""
        try:
            await self._limit.acquire()
        finally:
            batch.unstarted -= 1
            self._waiting -= 1
        try:
            if self._stopping:
                return None
            return await self._send(batch, delivery)
        finally:
            self._limit.release()

    async def _send(self, batch: _Batch, delivery: repository.Claimed) -> _Outcome:
        """One attempt (the caller holds a request slot); every failure is an outcome, not an error."""
        endpoint = batch.endpoints.get(delivery.channel_id)
        url = endpoint.url if endpoint is not None and endpoint.url else ""
        started = time.perf_counter()
        attempted_at = now_ms()

        def failed(error: str, reason: str) -> _Outcome:
            finished = now_ms()
            latency = (time.perf_counter() - started) * 1000.0
            cleaned = _clean(error, ERROR_CHARS)
            return _Outcome(delivery, url, attempted_at, finished, latency, error=cleaned, reason=reason)

        if not url:
            return failed("the channel has no webhook URL", "config")
        signer = batch.signers.get(delivery.channel_id)
        if signer is None:
            return failed("the channel has no webhook secret", "config")
        if isinstance(signer, DecryptionFailed):
            return failed("the channel's webhook secret cannot be decrypted with the server secret", "config")
        refusal = await self._target_check(batch, url)
        if refusal is not None:
            return failed(refusal, "refused")
        started = time.perf_counter()
        attempted_at = now_ms()
        headers = signer.headers(
            webhook_id=delivery.public_id, body=delivery.body, timestamp_s=attempted_at // 1000
        )
        headers["user-agent"] = USER_AGENT
        try:
            response = await self._http.post(
                url, content=delivery.body.encode(), headers=headers, timeout=self._settings.timeout_seconds
            )
        except HttpUnreachable as exc:
            if exc.kind == ADDRESS_REFUSED:
                return failed(f"target refused when connecting: {exc.detail}", "refused")
            if exc.timed_out:
                return failed(f"timed out after {self._settings.timeout_seconds:g} s", "timeout")
            return failed(f"connection failed: {exc.kind}", "connection")
        except Exception as exc:
            # Whatever else the client raises (a URL it cannot encode, ...) fails this attempt only: an
            # error escaping here would lose the whole batch's outcomes and send them all again.
            log.warning("webhook_attempt_error", delivery_id=delivery.id, error_type=type(exc).__name__)
            return failed(f"request failed: {type(exc).__name__}", "error")
        latency = (time.perf_counter() - started) * 1000.0
        excerpt = _clean(response.content[:EXCERPT_BYTES].decode("utf-8", errors="replace"), EXCERPT_BYTES)
        return _Outcome(
            delivery,
            url,
            attempted_at,
            now_ms(),
            latency,
            status_code=response.status_code,
            excerpt=excerpt,
            error=None if response.ok else f"HTTP {response.status_code}",
            reason="none" if response.ok else "http",
        )

    async def _record(self, outcomes: Sequence[_Outcome], *, unsent: Sequence[int] = ()) -> None:
        delivered: list[dict[str, Any]] = []
        failed: list[dict[str, Any]] = []
        given_up: list[dict[str, Any]] = []
        attempts: list[dict[str, Any]] = []
        by_channel: dict[int, list[_Outcome]] = {}
        counted: dict[tuple[str, str], int] = {}
        for outcome in outcomes:
            delivery = outcome.delivery
            count = delivery.attempts + 1
            attempts.append(
                {
                    "delivery_id": delivery.id,
                    "url": outcome.url[:2000],
                    "attempted_at": outcome.attempted_at,
                    "status_code": outcome.status_code,
                    "latency_ms": round(outcome.latency_ms, 3),
                    "response_excerpt": outcome.excerpt,
                    "error": outcome.error,
                }
            )
            if outcome.ok:
                kind = "delivered"
                delivered.append(
                    {
                        "id": delivery.id,
                        "state": int(DeliveryState.DELIVERED),
                        "delivered_at": outcome.finished_at,
                        "attempts": count,
                        "lease_until": 0,
                        "last_status_code": outcome.status_code,
                        "last_error": None,
                    }
                )
            elif count >= self._settings.max_attempts:
                # Its life is over: given up, so that the message's later events are not held forever.
                kind = "failed"
                given_up.append(
                    {
                        "id": delivery.id,
                        "state": int(DeliveryState.FAILED),
                        "attempts": count,
                        "lease_until": 0,
                        "last_status_code": outcome.status_code,
                        "last_error": outcome.error,
                    }
                )
            else:
                kind = "retry"
                failed.append(
                    {
                        "id": delivery.id,
                        "attempts": count,
                        "next_attempt_at": outcome.finished_at + retry_delay_ms(self._settings, count),
                        "lease_until": 0,
                        "last_status_code": outcome.status_code,
                        "last_error": outcome.error,
                    }
                )
            by_channel.setdefault(delivery.channel_id, []).append(outcome)
            key = (kind, outcome.reason)
            counted[key] = counted.get(key, 0) + 1
        healthy, restarted, started, failing = _health(by_channel)
        now = now_ms()
        async with self._write() as session:
            await repository.record(
                session, delivered=delivered, failed=failed, given_up=given_up, attempts=attempts
            )
            if given_up:
                log.warning("webhook_deliveries_given_up", delivery_ids=[row["id"] for row in given_up])
            if unsent:
                await repository.release(session, unsent)
            if healthy:
                await repository.clear_failing(session, healthy)
            if restarted:
                await repository.restart_failing(session, restarted)
            if started:
                await repository.start_failing(session, started)
            if failing:
                cutoff = now - round(self._settings.endpoint_failed_after_s * 1000)
                gone = await repository.fail_endpoints(session, failing, failing_before=cutoff)
                if gone:
                    held = await repository.hold_pending(session, gone)
                    log.warning("webhook_endpoints_failed", channel_ids=gone, held=held)
        # Committed: count what was recorded.
        for (kind, reason), amount in counted.items():
            _DELIVERIES(kind, reason).inc(amount)


def _health(
    by_channel: dict[int, list[_Outcome]],
) -> tuple[list[int], list[tuple[int, int]], list[tuple[int, int]], list[int]]:
    """Per channel, the failure streak after this batch, in the order the attempts finished.

    Returns channels whose streak ended (last outcome a success), channels whose streak restarts after
    a success in this batch (id, first failure after it), channels whose streak starts or continues
    (id, first failure), and every channel that ends the batch failing.
    """
    healthy: list[int] = []
    restarted: list[tuple[int, int]] = []
    started: list[tuple[int, int]] = []
    failing: list[int] = []
    for channel_id, outcomes in by_channel.items():
        outcomes.sort(key=lambda o: o.finished_at)
        streak_start: int | None = None
        succeeded = False
        for outcome in outcomes:
            if outcome.ok:
                succeeded, streak_start = True, None
            elif streak_start is None:
                streak_start = outcome.attempted_at
        if streak_start is None:
            healthy.append(channel_id)
            continue
        failing.append(channel_id)
        (restarted if succeeded else started).append((channel_id, streak_start))
    return healthy, restarted, started, failing
