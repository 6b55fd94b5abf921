"""The SQL outbox queue: fair claims across companies, leases that expire, reschedules (both databases)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import insert, select, text
from tests.pg_stats import analyze, rows_read

from openmmp.models import Company, Job
from openmmp.queue.sql import Claimer, acknowledge, reschedule

NOW = 1_900_000_000_000


async def _company(session: Any, name: str) -> int:
    company = Company(name=name)
    session.add(company)
    await session.flush()
    return company.id


def _jobs(
    company_id: int, count: int, *, priority: int = 0, kind: str = "queue-test"
) -> list[dict[str, Any]]:
    return [
        {
            "kind": kind,
            "company_id": company_id,
            "priority": priority,
            "run_at": NOW - 1000 + i,
            "lease_until": 0,
        }
        for i in range(count)
    ]


class TestClaims:
    async def test_a_flood_from_one_company_does_not_starve_another(self, app):
        db = app.state.db
        async with db.write_sessions() as session, session.begin():
            flood, small = await _company(session, "Flood"), await _company(session, "Small")
            await session.execute(insert(Job), _jobs(flood, 300, kind="fair-test"))
            await session.execute(insert(Job), [{**_jobs(small, 1, kind="fair-test")[0], "run_at": NOW}])
        claimer = Claimer(kind="fair-test", lease_ms=60_000, skip_locked=not db.is_sqlite)
        async with db.write_sessions() as session, session.begin():
            claimed = await claimer.claim(session, limit=20, now=NOW)
        owners = [job.company_id for job in claimed]
        assert len(claimed) == 20
        assert len({job.id for job in claimed}) == 20  # the flood's second share is past its first
        assert small in owners  # the newest job of the small company, ahead of 280 older flood jobs

    async def test_rounds_claiming_at_once_take_each_job_once(self, app):
        """Rounds share one claimer; one that waits for the database while another claims must not see
        the company it serves next as a second lane (that took its jobs twice, and sent them twice)."""
        db = app.state.db
        async with db.write_sessions() as session, session.begin():
            company = await _company(session, "Concurrent")
            await session.execute(insert(Job), _jobs(company, 300, kind="concurrent-test"))
        claimer = Claimer(kind="concurrent-test", lease_ms=60_000, skip_locked=not db.is_sqlite)

        async def one_round() -> list[int]:
            async with db.write_sessions() as session, session.begin():
                return [job.id for job in await claimer.claim(session, limit=200, now=NOW)]

        rounds = await asyncio.gather(*(one_round() for _ in range(4)))
        ids = [job_id for claimed in rounds for job_id in claimed]
        assert len(ids) == len(set(ids)) == 300

    async def test_transactional_before_campaign_within_a_company(self, app):
        db = app.state.db
        async with db.write_sessions() as session, session.begin():
            company = await _company(session, "Mixed")
            await session.execute(insert(Job), _jobs(company, 5, priority=1, kind="priority-test"))
            await session.execute(
                insert(Job), [{**_jobs(company, 1, kind="priority-test")[0], "run_at": NOW}]
            )
        claimer = Claimer(kind="priority-test", lease_ms=60_000, skip_locked=not db.is_sqlite)
        async with db.write_sessions() as session, session.begin():
            [first] = await claimer.claim(session, limit=1, now=NOW)
        assert first.priority == 0

    async def test_a_lease_hides_a_job_until_it_runs_out(self, app):
        db = app.state.db
        async with db.write_sessions() as session, session.begin():
            company = await _company(session, "Lease")
            await session.execute(insert(Job), _jobs(company, 1, kind="lease-test"))
        claimer = Claimer(kind="lease-test", lease_ms=5_000, skip_locked=not db.is_sqlite)
        async with db.write_sessions() as session, session.begin():
            [job] = await claimer.claim(session, limit=10, now=NOW)
        async with db.write_sessions() as session, session.begin():
            assert await claimer.claim(session, limit=10, now=NOW + 4_999) == []
        async with db.write_sessions() as session, session.begin():
            [again] = await claimer.claim(session, limit=10, now=NOW + 5_001)  # its worker died
        assert again.id == job.id

    async def test_reschedule_and_acknowledge(self, app):
        db = app.state.db
        async with db.write_sessions() as session, session.begin():
            company = await _company(session, "Retry")
            await session.execute(insert(Job), _jobs(company, 2, kind="retry-test"))
        claimer = Claimer(kind="retry-test", lease_ms=60_000, skip_locked=not db.is_sqlite)
        async with db.write_sessions() as session, session.begin():
            retried, done = await claimer.claim(session, limit=10, now=NOW)
            await reschedule(session, [(retried.id, NOW + 10_000, True)])
            await acknowledge(session, [done.id])
        async with db.write_sessions() as session, session.begin():
            assert await claimer.claim(session, limit=10, now=NOW + 9_999) == []
            [back] = await claimer.claim(session, limit=10, now=NOW + 10_000)
            rows = (await session.execute(select(Job).where(Job.kind == "retry-test"))).scalars().all()
        assert back.id == retried.id
        assert back.attempts == 1
        assert [row.id for row in rows] == [retried.id]


class TestEveryCompanyWithDueWorkIsServed:
    async def test_1500_companies_are_all_served_though_a_claim_takes_at_most_1000_lanes(self, app):
        db = app.state.db
        async with db.write_sessions() as session, session.begin():
            companies = [await _company(session, f"Many {n}") for n in range(1500)]
            await session.execute(
                insert(Job), [job for c in companies for job in _jobs(c, 1, kind="lanes-test")]
            )
        claimer = Claimer(kind="lanes-test", lease_ms=60_000, skip_locked=not db.is_sqlite, max_lanes=1000)
        served: list[int] = []
        for _ in range(8):  # 1500 jobs, 200 per claim: 8 claims if no company is skipped
            async with db.write_sessions() as session, session.begin():
                served += [job.company_id for job in await claimer.claim(session, limit=200, now=NOW)]
        assert len(served) == len(set(served)) == 1500
        assert set(served) == set(companies)

    async def test_claims_smaller_than_the_lanes_go_round_past_the_highest_company(self, app):
        """One job per claim, three companies: the lanes wrap around after the highest id, and the
        claim that stops there must start the next at the lowest, not fail or skip it."""
        db = app.state.db
        async with db.write_sessions() as session, session.begin():
            companies = [await _company(session, f"Round {n}") for n in range(3)]
            await session.execute(
                insert(Job), [job for c in companies for job in _jobs(c, 4, kind="round-test")]
            )
        claimer = Claimer(kind="round-test", lease_ms=60_000, skip_locked=not db.is_sqlite)
        served = []
        for _ in range(9):
            async with db.write_sessions() as session, session.begin():
                [job] = await claimer.claim(session, limit=1, now=NOW)
            served.append(job.company_id)
        assert served == companies * 3

    async def test_companies_with_only_leased_or_future_jobs_take_no_lane(self, app):
        db = app.state.db
        async with db.write_sessions() as session, session.begin():
            busy = [await _company(session, f"Busy {n}") for n in range(20)]
            waiting = await _company(session, "Waiting")
            await session.execute(
                insert(Job),
                [{**job, "run_at": NOW + 60_000} for c in busy for job in _jobs(c, 3, kind="due-test")],
            )
            await session.execute(insert(Job), _jobs(waiting, 1, kind="due-test"))
        claimer = Claimer(kind="due-test", lease_ms=60_000, skip_locked=not db.is_sqlite, max_lanes=5)
        async with db.write_sessions() as session, session.begin():
            claimed = await claimer.claim(session, limit=10, now=NOW)
        assert [job.company_id for job in claimed] == [waiting]
        async with db.write_sessions() as session, session.begin():
            assert await claimer.claim(session, limit=10, now=NOW) == []  # its job is leased now

    async def test_a_claim_of_a_rare_kind_reads_few_index_entries_behind_a_large_backlog(self, app):
        """The plan, not a timing: `kind` leads the claim index, so the rare kind's claim seeks to it."""
        db = app.state.db
        if not db.is_sqlite:
            pytest.skip("the plan's wording is SQLite's; the index is the same on PostgreSQL")
        async with db.read_sessions() as session:
            plan = await session.execute(
                text(
                    "EXPLAIN QUERY PLAN SELECT MIN(company_id) FROM jobs "
                    "WHERE kind = 'channel_setup' AND company_id > -1"
                )
            )
            detail = " ".join(str(row[-1]) for row in plan)
        assert "ix_jobs_claim" in detail and "kind=?" in detail and "company_id>?" in detail, detail

    async def test_a_claim_on_postgresql_reads_what_it_takes_not_the_backlog(self, app):
        """Rows and index entries the claim's transaction read, by PostgreSQL's own counters: a claim of
        200 behind 30,000 due jobs, with the planner's statistics lagging as after a burst of sends (the
        plans that hashed every due job, or sorted a company's jobs for the tie-break, read them all)."""
        db = app.state.db
        if db.is_sqlite:
            pytest.skip("PostgreSQL's planner and statistics; SQLite's plan is checked above")
        async with db.write_sessions() as session, session.begin():
            companies = [await _company(session, f"Backlog {n}") for n in range(3)]
            for company in companies:
                await session.execute(insert(Job), _jobs(company, 10, kind="backlog-test"))
        await analyze(db, "jobs")  # statistics of a quiet queue ...
        async with db.write_sessions() as session, session.begin():  # ... then a burst
            for company in companies:
                await session.execute(insert(Job), _jobs(company, 10_000, kind="backlog-test"))
        claimer = Claimer(kind="backlog-test", lease_ms=60_000, skip_locked=True)
        async with db.write_sessions() as session, session.begin():
            before = await rows_read(session, "jobs")
            claimed = await claimer.claim(session, limit=200, now=NOW)
            after = await rows_read(session, "jobs")
        assert len(claimed) == 200
        assert after - before < 1_000, f"the claim read {after - before} rows and index entries"
