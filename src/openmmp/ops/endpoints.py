"""Operations: liveness, readiness and Prometheus metrics. Public by construction (no auth alias)."""

from __future__ import annotations

import asyncio
import time

import structlog
from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import bindparam, case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from openmmp.errors import ServiceUnavailable, responses
from openmmp.kit.db import Database, request_database
from openmmp.kit.http import HttpClient, HttpUnreachable
from openmmp.kit.metrics import BACKLOG, Backlog, JobBacklog, merge_exposition
from openmmp.kit.schemas import ResponseModel
from openmmp.kit.time import now_ms
from openmmp.models import Job
from openmmp.settings import Settings
from openmmp.webhooks import repository as webhooks

log = structlog.get_logger(__name__)
router = APIRouter(tags=["Operations"])

BACKLOG_TIMEOUT_SECONDS = 3.0
"""A scrape reads the backlog for at most this long; then /metrics answers without it (backlog_up 0)."""


class Health(ResponseModel):
    status: str


@router.get("/healthz", summary="The process is up", response_model=Health)
async def healthz() -> Health:
    return Health(status="ok")


@router.get("/readyz", summary="The database answers", response_model=Health, responses=responses(503))
async def readyz(request: Request) -> Health:
    db = request_database(request)
    try:
        await db.ping()
    except Exception as exc:
        raise ServiceUnavailable("Database is not reachable", name="database") from exc
    return Health(status="ready")


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text format"}},
)
async def metrics(request: Request) -> Response:
    await read_backlog(request_database(request), request.app.state.settings)
    own = generate_latest()
    workers: list[str] = request.app.state.worker_metrics
    if not workers:
        return Response(own, media_type=CONTENT_TYPE_LATEST)
    http: HttpClient = request.app.state.http
    texts = await asyncio.gather(*(_scrape(http, url) for url in workers))
    merged = merge_exposition([own.decode(), *(text for text in texts if text is not None)])
    return Response(merged, media_type=CONTENT_TYPE_LATEST)


WORKER_SCRAPE_TIMEOUT_SECONDS = 2.0


async def _scrape(http: HttpClient, url: str) -> str | None:
    """A worker process's metrics (`openmmp serve`'s children); None while it cannot answer (starting,
    restarting): its counters are then missing from this scrape, which Prometheus reads as a reset."""
    try:
        response = await http.get(url, timeout=WORKER_SCRAPE_TIMEOUT_SECONDS)
    except HttpUnreachable:
        log.warning("worker_metrics_unavailable", url=url)
        return None
    if not response.ok:
        log.warning("worker_metrics_unavailable", url=url, status=response.status_code)
        return None
    return response.content.decode()


# --- the backlog, read at each scrape -------------------------------------------------------------

# Both statements read `ix_jobs_due` (kind, run_at). The first reads nothing but the index. A claim moves
# `run_at` and `lease_until` to the end of its lease and a retry sets `lease_until` to 0, so a job not
# due yet is leased when the two are equal; only rows due within the longest lease are looked at for that.
_JOBS = select(
    Job.kind,
    func.count(),
    func.coalesce(func.sum(case((Job.run_at <= bindparam("now"), 1), else_=0)), 0),
    func.min(Job.run_at),
).group_by(Job.kind)
_LEASED = (
    select(Job.kind, func.count())
    .where(
        Job.kind.in_(bindparam("kinds", expanding=True)),
        Job.run_at > bindparam("now"),
        Job.run_at <= bindparam("until"),
        Job.lease_until == Job.run_at,
    )
    .group_by(Job.kind)
)
_kinds_seen: set[str] = set()
"""Kinds this process has reported: an emptied queue reports 0 rather than no series at all."""


async def _jobs(session: AsyncSession, *, now: int, lease_ms: int) -> dict[str, JobBacklog]:
    """The outbox queue's backlog per kind."""
    rows = (await session.execute(_JOBS, {"now": now})).all()
    leased: dict[str, int] = {}
    if rows:
        found = await session.execute(
            _LEASED, {"kinds": [row[0] for row in rows], "now": now, "until": now + lease_ms}
        )
        leased = {kind: int(count) for kind, count in found.all()}
    backlog = {}
    for kind, total, due, oldest in rows:
        waiting = int(total) - int(due)
        taken = min(leased.get(kind, 0), waiting)
        age = max(0, now - int(oldest)) / 1000 if due else 0.0
        backlog[kind] = JobBacklog(int(due), waiting - taken, taken, age)
    return backlog


async def read_backlog(db: Database, settings: Settings) -> None:
    """Read the backlog for this scrape. When the database cannot answer in time, `openmmp_backlog_up`
    says 0 and no backlog is reported (no stale values): /metrics still answers with the rest."""
    started = time.perf_counter()
    now = now_ms()
    lease_ms = int(max(settings.dispatch.lease_seconds, settings.channel_setup.lease_seconds) * 1000)
    try:
        async with asyncio.timeout(BACKLOG_TIMEOUT_SECONDS), db.read_sessions() as session:
            jobs = await _jobs(session, now=now, lease_ms=lease_ms)
            deliveries = await webhooks.backlog(session, now=now)
    except Exception as exc:
        log.warning("metrics_backlog_unavailable", error_type=type(exc).__name__)
        BACKLOG.last = Backlog(up=False)
        return
    _kinds_seen.update(jobs)
    empty = JobBacklog(0, 0, 0, 0.0)
    BACKLOG.last = Backlog(
        up=True,
        read_seconds=time.perf_counter() - started,
        jobs={kind: jobs.get(kind, empty) for kind in _kinds_seen},
        webhooks=deliveries,
    )
