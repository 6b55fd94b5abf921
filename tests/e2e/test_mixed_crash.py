"""The process running the workers is SIGKILLed during 500 mixed Viber BM and Viber Bot messages.

Nothing is lost (every message final), Viber BM accepted each `seq` once, and Viber Bot — which has no
idempotency key — received next to nothing twice: its answers are committed as soon as they arrive, so
only what was in flight or awaiting its commit at the instant of the kill can go out again. The kill is
timed while one Viber BM request hangs, which holds its round open for seconds: before answers were
committed early, the Viber Bot messages that round had sent were all sent again after the restart (74).

What was at risk is measured, not guessed: between the kill and the restart, the messages the simulator
accepted less those the database records as sent. Only those may be sent again, and a worker process
holds no more than `concurrency` such requests under way or awaiting their commit, however slow the
commits (on a loaded machine they piled up behind them: 45 at risk). It runs `alone` (`make test`).
"""

from __future__ import annotations

import asyncio
import random

import httpx
import pytest
from tests.e2e.conftest import Launcher
from tests.e2e.harness import FINAL, SIMULATOR_ARGS, System, wait_until

from openmmp.models.message import MessageStatus
from openmmp.settings import DispatchSettings

pytestmark = [pytest.mark.e2e, pytest.mark.alone, pytest.mark.timeout(600)]
EACH = 250
IN_FLIGHT = DispatchSettings().concurrency
"""Requests to an upstream without an idempotency key one worker process has under way or awaiting
their commit at once: the most that can be accepted upstream and not yet recorded."""


@pytest.fixture(params=["sqlite", "postgresql"])
async def crash_system(request: pytest.FixtureRequest, launch: Launcher) -> System:
    return await launch(
        launch.database(request.param, "mixed_crash"),
        workers=0 if request.param == "sqlite" else 1,
        simulator_args=[*SIMULATOR_ARGS, "--set", "viber.duplicate_delivered=false"],
    )


async def test_a_kill_loses_nothing_and_sends_next_to_nothing_twice(crash_system: System):
    system = crash_system
    async with httpx.AsyncClient(base_url=system.api, timeout=60) as api:
        company = await system.onboard(api)
        viber = await system.viber_channel(api, company, webhooks=False)
        token = f"crash-bot-{random.randrange(10**9)}"
        bot = await system.channel(
            api, company, 10, {"authToken": token, "senderName": "Crash"}, webhooks=False
        )
        phones = [f"85512{n:05d}7" for n in range(EACH)]  # 7: accepted and delivered, never read
        for phone in phones:  # each end user shares their phone with the bot, so it can address them by it
            wrote = await api.post(
                f"/sandbox/{bot['publicId']}/inbound",
                json={"name": "Crash", "text": "hi", "phone": phone},
                headers=company.headers,
            )
            assert wrote.status_code == 200, wrote.text

        async def users_known() -> bool:
            [[known]] = await system.sql(
                "SELECT count(*) FROM conversations c JOIN channels ch ON ch.id = c.channel_id "
                "WHERE ch.public_id = :p AND c.phone <> ''",
                p=bot["publicId"],
            )
            return int(known) == EACH

        await wait_until(users_known, timeout=120, what="every bot user known by phone")
        ids: dict[str, list[str]] = {}
        for channel in (viber, bot):
            # Every Viber Bot text differs, so each is a request of its own (no shared broadcast).
            items = [
                {"phone": phone, "message": {"type": "text", "message": f"crash test {n}"}}
                for n, phone in enumerate(phones)
            ]
            response = await api.post(
                f"/api/v1/channel/{channel['publicId']}/broadcast/batch",
                json={"messages": items},
                headers=company.headers,
            )
            assert response.status_code == 200, response.text
            ids[channel["publicId"]] = [m["messageId"] for m in response.json()["messages"]]

        async with httpx.AsyncClient(base_url=system.sim) as sim:

            async def both_under_way() -> bool:
                bm = (await sim.get("/viber/_sandbox/stats")).json()["accepted"]
                vb = (await sim.get("/viber-bot/_sandbox/stats")).json()["accepted"]
                return bool(bm > 20 and vb > 20)

            await wait_until(both_under_way, timeout=60, what="both channels sending")
            await sim.post("/viber/_sandbox/faults", json={"kind": "timeout", "count": 1})
            await asyncio.sleep(0.5)
            await system.kill_workers()
            seen: list[int] = []

            async def accepted_settled() -> int | None:
                """Distinct Viber Bot acceptances once what was on the wire at the kill has arrived."""
                stats = (await sim.get("/viber-bot/_sandbox/stats")).json()
                seen.append(stats["accepted"] - stats["duplicates"])
                return seen[-1] if len(seen) > 1 and seen[-1] == seen[-2] else None

            accepted = await wait_until(
                accepted_settled, timeout=30, interval=1.0, what="acceptances settled"
            )
            [[recorded]] = await system.sql(
                "SELECT count(*) FROM messages m JOIN channels c ON c.id = m.channel_id "
                "WHERE c.public_id = :p AND m.status <> :pending",
                p=bot["publicId"],
                pending=int(MessageStatus.PENDING),
            )
            at_risk = accepted - int(recorded)
            by_status = await system.sql(
                "SELECT m.status, count(*) FROM messages m JOIN channels c ON c.id = m.channel_id "
                "WHERE c.public_id = :p GROUP BY m.status",
                p=bot["publicId"],
            )
            assert 0 <= at_risk <= IN_FLIGHT, (
                f"{accepted} Viber Bot messages accepted, {recorded} recorded; by status: {by_status}"
            )
            await system.restart_workers()

            for account, sent in ids.items():

                async def all_final(account: str = account) -> dict[str, int] | None:
                    statuses = await system.statuses(account)
                    return statuses if all(s in FINAL for s in statuses.values()) else None

                statuses = await wait_until(all_final, timeout=300, interval=1.0, what="every message final")
                assert set(statuses) == set(sent)
                assert set(statuses.values()) == {4}, statuses  # DELIVERED, each of them
            assert await system.outbox_breaches() == {
                "pending messages without a job": 0,
                "jobs without a message": 0,
            }
            bm = (await sim.get("/viber/_sandbox/stats", params={"detail": 1})).json()
            ours = {k: v for k, v in bm["acceptedByKey"].items() if k.startswith(f"{viber['_serviceId']}:")}
            assert len(ours) == EACH
            assert set(ours.values()) == {1}  # each seq accepted exactly once
            vb = (await sim.get("/viber-bot/_sandbox/stats", params={"detail": 1})).json()
            sends = [v for k, v in vb["acceptedByKey"].items()]
            assert len(sends) == EACH
            twice = sum(v - 1 for v in sends)
            assert twice <= at_risk, f"{twice} Viber Bot messages were sent again, {at_risk} were at risk"
    print(f"Viber Bot messages at risk at the kill: {at_risk}, sent again: {twice}")
