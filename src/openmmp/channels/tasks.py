"""Channel set-up: tell the upstream where to call back, when a channel is saved and at every start; and
the sync of channels whose upstream account the platform runs with that account's state.

A provider that `needs_setup` learns the channel's callback URL (`/callbacks/{provider}/{accountId}`) from
its `set_up` (Viber Bot: `set_webhook`, which pings the URL before answering; that is why this runs after
the channel is committed). A new channel is PROCESSING until this succeeds, then LAUNCH; REJECT with the
cause when the upstream refuses for good. At every start of the workers each channel is set up again
(`queue_setup_at_start`), because an upstream may have forgotten it: the sandbox's in-process simulators
forget everything with the process. A re-set-up never takes a working channel out of LAUNCH for a
passing failure, only for a final refusal.
"""

from __future__ import annotations

from collections.abc import Mapping

import structlog
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from openmmp.channels.service import (
    change_status,
    identity_fingerprint,
    initial_status,
    open_credentials,
    waits_for_its_provider,
)
from openmmp.errors import AppError
from openmmp.kit.crypto import Keyring
from openmmp.kit.db import Database
from openmmp.kit.retry import backoff_ms
from openmmp.kit.time import now_ms
from openmmp.models import Channel, Job
from openmmp.models.channel import SENDING_STATUSES, ChannelStatus
from openmmp.providers.applications import Application
from openmmp.providers.base import ProviderContext, ProviderError
from openmmp.providers.registry import REGISTRY
from openmmp.queue.sql import Claimer, acknowledge, reschedule
from openmmp.settings import ChannelSetupSettings

log = structlog.get_logger(__name__)
KIND = "channel_setup"
SYNC_KIND = "agent_sync"
_SET_UP_STATUSES = (ChannelStatus.PROCESSING, *SENDING_STATUSES)


async def queue_setup_at_start(session: AsyncSession, *, sandbox: bool) -> int:
    """Bring every channel in line with the registry and queue its set-up again; returns the jobs queued.

    Channels an earlier version held in REQUEST because their provider had not landed leave that REQUEST;
    every channel whose provider needs set-up gets one set-up job unless it already has one.
    """
    needing = []
    for provider in REGISTRY.providers:
        status = initial_status(provider.application, sandbox=sandbox)
        await session.execute(
            update(Channel)
            .where(
                Channel.application_id == int(provider.application),
                waits_for_its_provider(provider.application),
            )
            .values(status=status, status_cause=None)
        )
        if provider.needs_setup(sandbox=sandbox):
            needing.append(int(provider.application))
    if not needing:
        return 0
    queued = set((await session.execute(select(Job.channel_id).where(Job.kind == KIND))).scalars())
    rows = await session.execute(
        select(Channel.id, Channel.company_id).where(
            Channel.application_id.in_(needing), Channel.status.in_(_SET_UP_STATUSES)
        )
    )
    jobs = [
        Job(kind=KIND, company_id=company, channel_id=channel)
        for channel, company in rows
        if channel not in queued
    ]
    session.add_all(jobs)
    return len(jobs)


async def fingerprint_identities(session: AsyncSession, keyring: Keyring) -> int:
    """Give channels made before identities were fingerprinted their fingerprint; returns how many.

    A second channel on an account some channel already holds keeps none (and is logged): it was made
    before the rule, and its owner has to be found out by the operator, not by a start-up.
    """
    rows = await session.execute(select(Channel).where(Channel.identity_fingerprint.is_(None)))
    taken = set(
        (
            await session.execute(
                select(Channel.identity_fingerprint).where(Channel.identity_fingerprint.is_not(None))
            )
        ).scalars()
    )
    done = 0
    for channel in rows.scalars():
        try:
            credentials = REGISTRY.credentials_model(Application(channel.application_id)).model_validate(
                open_credentials(keyring, channel)
            )
        except Exception as exc:  # unreadable or outdated credentials: the channel shows it when used
            log.warning(
                "channel_identity_unreadable", channel=channel.public_id, error_type=type(exc).__name__
            )
            continue
        fingerprint = identity_fingerprint(keyring, Application(channel.application_id), credentials)
        if fingerprint is None:
            continue
        if fingerprint in taken:
            log.warning("channel_identity_shared", channel=channel.public_id)
            continue
        channel.identity_fingerprint = fingerprint
        taken.add(fingerprint)
        done += 1
    return done


class _ChannelJobs:
    """Jobs of one `kind` about one channel each, claimed in batches."""

    kind: str

    def __init__(
        self,
        db: Database,
        keyring: Keyring,
        contexts: Mapping[str, ProviderContext],
        settings: ChannelSetupSettings,
    ) -> None:
        self.db = db
        self.keyring = keyring
        self.contexts = contexts
        self.settings = settings
        self.claimer = Claimer(
            kind=self.kind, lease_ms=int(settings.lease_seconds * 1000), skip_locked=not db.is_sqlite
        )

    async def _claim(self) -> tuple[list[Job], dict[int, Channel]]:
        """Due jobs, and their channels by id (a deleted channel's job has none)."""
        async with self.db.write_sessions() as session, session.begin():
            jobs = await self.claimer.claim(session, limit=self.settings.batch_size, now=now_ms())
            if not jobs:
                return [], {}
            ids = [j.channel_id for j in jobs]
            found = (await session.execute(select(Channel).where(Channel.id.in_(ids)))).scalars()
            return jobs, {c.id: c for c in found}

    def _again(self, job: Job) -> tuple[int, int, bool]:
        """The reschedule of a job tried once more, after the back-off."""
        delay = backoff_ms(job.attempts + 1, base_s=1, max_s=self.settings.retry_max_seconds)
        return job.id, now_ms() + delay, True


class ChannelSetup(_ChannelJobs):
    kind = KIND

    async def _setup(self, channel: Channel) -> None:
        provider = REGISTRY.for_application(channel.application_id)
        if provider is None:
            return
        ctx = self.contexts[provider.name]
        await provider.set_up(
            ctx,
            callback_url=f"{ctx.public_url}/callbacks/{provider.name}/{channel.public_id}",
            credentials=open_credentials(self.keyring, channel),
        )

    async def run_once(self) -> int:
        jobs, channels = await self._claim()
        if not jobs:
            return 0
        # Per job: "ok", a final cause (REJECT), "" (leave the channel as it is) or None (try again later).
        results: dict[int, str | None] = {}
        for job in jobs:
            channel = channels.get(job.channel_id or -1)
            if channel is None:
                results[job.id] = ""
                continue
            try:
                await self._setup(channel)
                results[job.id] = "ok"
            except (ProviderError, AppError) as exc:
                final = isinstance(exc, ProviderError) and not exc.retryable
                log.warning("channel_setup_failed", channel=channel.public_id, error=str(exc), final=final)
                exhausted = job.attempts + 1 >= self.settings.max_attempts
                if final or (exhausted and channel.status == ChannelStatus.PROCESSING):
                    results[job.id] = str(exc)[:500] or "set-up failed"
                elif exhausted:
                    results[job.id] = ""  # a working channel keeps working; the next start tries again
                else:
                    results[job.id] = None
        async with self.db.write_sessions() as session, session.begin():
            done, retries = [], []
            for job in jobs:
                result = results[job.id]
                if result is None:
                    retries.append(self._again(job))
                    continue
                done.append(job.id)
                fresh = await session.get(Channel, job.channel_id) if result else None
                if fresh is None or fresh.status not in _SET_UP_STATUSES:
                    continue  # gone, or suspended / rejected meanwhile: not this job's to change
                if result != "ok":
                    fresh.status, fresh.status_cause = ChannelStatus.REJECT, result
                elif fresh.status == ChannelStatus.PROCESSING:
                    fresh.status, fresh.status_cause = ChannelStatus.LAUNCH, None
            await reschedule(session, retries)
            await acknowledge(session, done)
        return len(jobs)


async def queue_agent_sync(session: AsyncSession, channel: Channel) -> None:
    """Have the workers record the agent's state as the upstream reports it (once, however many events
    ask before it runs)."""
    queued = await session.scalar(
        select(Job.id).where(Job.kind == SYNC_KIND, Job.channel_id == channel.id).limit(1)
    )
    if queued is None:
        session.add(Job(kind=SYNC_KIND, company_id=channel.company_id, channel_id=channel.id))


class AgentSync(_ChannelJobs):
    """Runs the agent syncs: each asks the upstream for the account's state and records it."""

    kind = SYNC_KIND

    async def run_once(self) -> int:
        jobs, channels = await self._claim()
        if not jobs:
            return 0
        states = {}
        retries = []
        for job in jobs:
            channel = channels.get(job.channel_id or -1)
            provider = REGISTRY.for_application(channel.application_id) if channel is not None else None
            if channel is None or provider is None or not provider.manages_agents:
                continue
            try:
                states[job.id] = await provider.agent_state(
                    self.contexts[provider.name], open_credentials(self.keyring, channel)
                )
            except (ProviderError, ValueError) as exc:
                again = isinstance(exc, ProviderError) and exc.retryable
                again = again and job.attempts + 1 < self.settings.max_attempts
                log.warning("agent_sync_failed", channel=channel.public_id, error=str(exc), again=again)
                if again:
                    retries.append(self._again(job))
        async with self.db.write_sessions() as session, session.begin():
            for job in jobs:
                state = states.get(job.id)
                fresh = await session.get(Channel, job.channel_id) if state is not None else None
                if state is not None and fresh is not None:
                    await change_status(session, fresh, ChannelStatus[state.status], state.cause)
            await reschedule(session, retries)
            retried = {job_id for job_id, _, _ in retries}
            await acknowledge(session, [job.id for job in jobs if job.id not in retried])
        return len(jobs)
