"""Check bulk phones: which of a list of phones an agent-managed channel reaches, as a background task.

Each step checks one batch through `Provider.reachable` (at most `reachability_batch` phones, within the
upstream's quota `reachability_rate`, kept with the workers' shared limiter) and writes its rows of the
result file, a CSV `phone,isRcsEnabled,error` with a row per phone in the order the company gave them; a
phone that was not a valid number when the task was made has its reason in `error`. The checkpoint is the
next phone's index and the counts so far, committed with the rows (tasks/runner.py), so a worker that dies
mid-task leaves the task to resume where the last committed batch ended: no row twice, none missing.
"""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import Mapping
from typing import Any

from openmmp.channels.agents import PHONE_CHECK
from openmmp.channels.service import open_credentials
from openmmp.kit.crypto import Keyring
from openmmp.kit.db import Database
from openmmp.kit.limits import Limit, Limiter, LimiterUnavailable, reserve_within
from openmmp.models import Channel
from openmmp.providers.base import ProviderContext, ProviderError, RateLimit
from openmmp.providers.registry import REGISTRY
from openmmp.tasks.runner import Step, TaskFailed, TaskRetry, TaskRun

HEADER = ("phone", "isRcsEnabled", "error")
MAX_WAIT_S = 5.0
"""A step waits this long at most for the quota; beyond it the task steps aside and comes back then."""


class PhoneCheck:
    type = PHONE_CHECK
    media_type = "text/csv"

    def __init__(
        self, db: Database, keyring: Keyring, contexts: Mapping[str, ProviderContext], limiter: Limiter
    ) -> None:
        self.db = db
        self.keyring = keyring
        self.contexts = contexts
        self.limiter = limiter

    async def step(self, run: TaskRun) -> Step:
        async with self.db.read_sessions() as session, session.begin():
            channel = await session.get(Channel, run.channel_id) if run.channel_id is not None else None
        if channel is None:
            raise TaskFailed("the channel no longer exists")
        provider = REGISTRY.for_application(channel.application_id)
        if provider is None or not provider.manages_agents:
            raise TaskFailed("the channel's application cannot check phones")
        phones: list[list[str]] = run.params["phones"]
        done: dict[str, Any] = dict(run.checkpoint or {"next": 0, "enabled": 0, "disabled": 0, "invalid": 0})
        start = int(done["next"])
        end = start
        batch: list[str] = []
        while end < len(phones) and len(batch) < provider.reachability_batch:
            if len(phones[end]) == 1:
                batch.append(phones[end][0])
            end += 1
        reached: frozenset[str] = frozenset()
        if batch:
            await self._within_quota(provider.name, provider.reachability_rate)
            try:
                reached = await provider.reachable(
                    self.contexts[provider.name],
                    open_credentials(self.keyring, channel),
                    list(dict.fromkeys(batch)),
                )
            except ProviderError as exc:
                if exc.retryable:
                    raise TaskRetry(f"the upstream could not answer: {exc}") from None
                raise TaskFailed(f"the upstream refused: {exc}") from None
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        if start == 0:
            writer.writerow(HEADER)
        for entry in phones[start:end]:
            if len(entry) == 1:
                enabled = entry[0] in reached
                done["enabled" if enabled else "disabled"] += 1
                writer.writerow((entry[0], "true" if enabled else "false", ""))
            else:
                done["invalid"] += 1
                writer.writerow((entry[0], "", entry[1]))
        done["next"] = end
        finished = end >= len(phones)
        summary = {k: done[k] for k in ("enabled", "disabled", "invalid")} | {"total": len(phones)}
        return Step(
            checkpoint=done,
            processed=end,
            output=out.getvalue().encode(),
            finished=finished,
            summary=summary if finished else None,
            total=len(phones),
        )

    async def _within_quota(self, provider_name: str, rate: RateLimit | None) -> None:
        """Book one `reachable` call of the provider's quota (one key for all its channels: the quota is
        the operator's project's); a wait longer than `MAX_WAIT_S` hands the step back for later."""
        if rate is None:
            return
        limit = Limit(rate=rate.requests / rate.window_seconds, burst=1.0)
        try:
            wait = await reserve_within(self.limiter, f"reachability:{provider_name}", limit, MAX_WAIT_S)
        except LimiterUnavailable:
            raise TaskRetry("the shared rate limiter is unavailable") from None
        if wait > MAX_WAIT_S:
            raise TaskRetry("waiting for the upstream's quota", after_s=wait)
        await asyncio.sleep(wait)
