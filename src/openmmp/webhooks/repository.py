"""All SQL about webhook deliveries. Tenant reads start from `readable(subject)`: the choke point.

The worker's statements (claim, record, endpoint health) are not tenant-scoped: the worker serves every
company, and they only touch rows it claimed or the channels of those rows.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import CursorResult, Select, Table, bindparam, case, exists, func, insert, select, update
from sqlalchemy.orm import aliased

from openmmp.kit.ids import canonical_public_id
from openmmp.models import Channel, WebhookAttempt, WebhookDelivery
from openmmp.models.channel import WebhookStatus
from openmmp.models.webhook import DeliveryState

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from openmmp.api_keys.auth import Subject


def readable(subject: Subject) -> Select[WebhookDelivery]:
    return select(WebhookDelivery).where(WebhookDelivery.company_id == subject.company_id)


async def get(
    session: AsyncSession, subject: Subject, *, channel_id: int, public_id: str
) -> WebhookDelivery | None:
    canonical = canonical_public_id(public_id)
    if canonical is None:
        return None
    statement = readable(subject).where(
        WebhookDelivery.channel_id == channel_id, WebhookDelivery.public_id == canonical
    )
    return (await session.execute(statement)).scalar_one_or_none()


async def page(
    session: AsyncSession,
    subject: Subject,
    *,
    channel_id: int,
    state: DeliveryState | None,
    offset: int,
    limit: int,
) -> tuple[int, list[WebhookDelivery]]:
    """The channel's deliveries, newest first."""
    statement = readable(subject).where(WebhookDelivery.channel_id == channel_id)
    if state is not None:
        statement = statement.where(WebhookDelivery.state == int(state))
    total = (await session.execute(select(func.count()).select_from(statement.subquery()))).scalar_one()
    rows = await session.execute(statement.order_by(WebhookDelivery.id.desc()).offset(offset).limit(limit))
    return total, list(rows.scalars())


async def attempts_of(session: AsyncSession, delivery: WebhookDelivery) -> list[WebhookAttempt]:
    """The attempt log of a delivery the caller already read through `readable`, oldest first."""
    rows = await session.execute(
        select(WebhookAttempt).where(WebhookAttempt.delivery_id == delivery.id).order_by(WebhookAttempt.id)
    )
    return list(rows.scalars())


def _requeue_values(*, state: DeliveryState, now: int) -> dict[str, Any]:
    # A replay starts a fresh retry cycle; the attempt log keeps the history. The lease is left alone so
    # a delivery that is in flight right now is not claimed (and sent) twice at once.
    return {
        "state": int(state),
        "next_attempt_at": now,
        "attempts": 0,
        "delivered_at": None,
    }


async def requeue(
    session: AsyncSession,
    subject: Subject,
    *,
    channel_id: int,
    state: DeliveryState,
    now: int,
    delivery_id: int | None = None,
    created_from: int | None = None,
    created_to: int | None = None,
    only_state: DeliveryState | None = None,
) -> int:
    """Put the channel's matching deliveries back in line (PENDING due now, or HELD); returns how many."""
    chosen = readable(subject).with_only_columns(WebhookDelivery.id)
    chosen = chosen.where(WebhookDelivery.channel_id == channel_id)
    if delivery_id is not None:
        chosen = chosen.where(WebhookDelivery.id == delivery_id)
    if created_from is not None:
        chosen = chosen.where(WebhookDelivery.created_at >= created_from)
    if created_to is not None:
        chosen = chosen.where(WebhookDelivery.created_at <= created_to)
    if only_state is not None:
        chosen = chosen.where(WebhookDelivery.state == int(only_state))
    statement = (
        update(WebhookDelivery)
        .where(WebhookDelivery.id.in_(chosen.scalar_subquery()))
        .values(**_requeue_values(state=state, now=now))
        .execution_options(synchronize_session=False)
    )
    result = cast("CursorResult[Any]", await session.execute(statement))
    return int(result.rowcount)


async def release_held(session: AsyncSession, *, channel_id: int, now: int) -> int:
    """HELD deliveries of a re-activated endpoint become PENDING, due now, with a fresh retry cycle."""
    statement = (
        update(WebhookDelivery)
        .where(WebhookDelivery.channel_id == channel_id, WebhookDelivery.state == int(DeliveryState.HELD))
        .values(state=int(DeliveryState.PENDING), next_attempt_at=now, attempts=0, lease_until=0)
        .execution_options(synchronize_session=False)
    )
    result = cast("CursorResult[Any]", await session.execute(statement))
    return int(result.rowcount)


# --- the worker ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Claimed:
    id: int
    public_id: str
    channel_id: int
    body: str
    attempts: int


@dataclass(frozen=True, slots=True)
class Endpoint:
    channel_id: int
    url: str | None
    secret_ciphertext: str | None
    status: int


def _due() -> Select[int, str, int, str, int]:
    earlier = aliased(WebhookDelivery)
    # `state + 0`: the earlier deliveries of a key are read from `ix_webhook_deliveries_order` alone. On
    # the bare column PostgreSQL, whose statistics lag behind a burst, ANDed it with the whole PENDING
    # range of `ix_webhook_deliveries_due` for every candidate: 13 s per claim with 18,000 pending.
    blocked = exists().where(
        earlier.ordering_key == WebhookDelivery.ordering_key,
        earlier.id < WebhookDelivery.id,
        (earlier.state + 0) == int(DeliveryState.PENDING),
    )
    return (
        select(
            WebhookDelivery.id,
            WebhookDelivery.public_id,
            WebhookDelivery.channel_id,
            WebhookDelivery.body,
            WebhookDelivery.attempts,
        )
        .where(
            WebhookDelivery.state == int(DeliveryState.PENDING),
            WebhookDelivery.next_attempt_at <= bindparam("now"),
            WebhookDelivery.lease_until < bindparam("now"),
            ~blocked,
        )
        .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id)
        .limit(bindparam("limit"))
    )


# Built once: workers claim many times a second, and building this statement (an aliased EXISTS) cost
# more CPU than PostgreSQL spent running it.
_DUE = _due()
_DUE_SKIP_LOCKED = _due().with_for_update(skip_locked=True, of=WebhookDelivery)
_LEASE = (
    update(WebhookDelivery)
    .where(WebhookDelivery.id.in_(bindparam("ids", expanding=True)))
    .values(lease_until=bindparam("lease_until"))
    .execution_options(synchronize_session=False)
)


async def claim(
    session: AsyncSession, *, now: int, lease_until: int, limit: int, skip_locked: bool
) -> list[Claimed]:
    """Lease up to `limit` due deliveries, oldest due first, at most one per ordering key.

    Due: PENDING, `next_attempt_at <= now`, lease expired, and no earlier delivery with the same
    ordering key still PENDING (claimed or not): a message's events go out strictly in order. On
    PostgreSQL rows other workers are claiming are skipped (SKIP LOCKED); on SQLite the caller's write
    transaction (BEGIN IMMEDIATE) already excludes other claimers.
    """
    statement = _DUE_SKIP_LOCKED if skip_locked else _DUE
    due = await session.execute(statement, {"now": now, "limit": limit})
    claimed = [Claimed(*row) for row in due.all()]
    if claimed:
        await session.execute(_LEASE, {"ids": [c.id for c in claimed], "lease_until": lease_until})
    return claimed


async def endpoints(session: AsyncSession, channel_ids: Collection[int]) -> dict[int, Endpoint]:
    """The webhook endpoint of each channel, in one query."""
    rows = await session.execute(
        select(Channel.id, Channel.webhook_url, Channel.webhook_secret, Channel.webhook_status).where(
            Channel.id.in_(list(channel_ids))
        )
    )
    return {row[0]: Endpoint(*row) for row in rows.all()}


async def hold(session: AsyncSession, delivery_ids: Sequence[int]) -> None:
    """Claimed deliveries whose endpoint is not active: kept, not sent, lease released."""
    await session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.id.in_(list(delivery_ids)))
        .values(state=int(DeliveryState.HELD), lease_until=0)
        .execution_options(synchronize_session=False)
    )


async def release(session: AsyncSession, delivery_ids: Sequence[int]) -> None:
    """Claimed deliveries that were not sent: their lease ends, any worker may take them now."""
    await session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.id.in_(list(delivery_ids)))
        .values(lease_until=0)
        .execution_options(synchronize_session=False)
    )


async def record(
    session: AsyncSession,
    *,
    delivered: Sequence[dict[str, Any]],
    failed: Sequence[dict[str, Any]],
    given_up: Sequence[dict[str, Any]],
    attempts: Sequence[dict[str, Any]],
) -> None:
    """Write a batch's outcomes: one executemany per kind (ORM bulk UPDATE by primary key, bulk INSERT).

    `delivered` rows: id, state, delivered_at, attempts, lease_until, last_status_code, last_error.
    `failed` rows: id, attempts, next_attempt_at, lease_until, last_status_code, last_error — the state
    is not touched, so a delivery HELD meanwhile (its endpoint went FAILED) stays HELD.
    `given_up` rows: id, state (FAILED), attempts, lease_until, last_status_code, last_error.
    """
    for rows in (delivered, given_up):
        if rows:
            await session.execute(update(WebhookDelivery), list(rows))
    if failed:
        await session.execute(update(WebhookDelivery), list(failed))
    if attempts:
        await session.execute(insert(WebhookAttempt), list(attempts))


_channels = cast(Table, Channel.__table__)


async def clear_failing(session: AsyncSession, channel_ids: Sequence[int]) -> None:
    """The endpoints answered: their failure streak ends."""
    await session.execute(
        update(_channels)
        .where(_channels.c.id.in_(list(channel_ids)), _channels.c.webhook_failing_since.is_not(None))
        .values(webhook_failing_since=None)
    )


async def restart_failing(session: AsyncSession, since: Sequence[tuple[int, int]]) -> None:
    """(channel id, time): a streak that started after a success in this batch replaces the old one."""
    await session.execute(
        update(_channels)
        .where(_channels.c.id == bindparam("b_id"))
        .values(webhook_failing_since=bindparam("b_since")),
        [{"b_id": channel_id, "b_since": moment} for channel_id, moment in since],
    )


async def start_failing(session: AsyncSession, since: Sequence[tuple[int, int]]) -> None:
    """(channel id, time): a failure starts a streak unless one is already running."""
    await session.execute(
        update(_channels)
        .where(_channels.c.id == bindparam("b_id"), _channels.c.webhook_failing_since.is_(None))
        .values(webhook_failing_since=bindparam("b_since")),
        [{"b_id": channel_id, "b_since": moment} for channel_id, moment in since],
    )


async def fail_endpoints(
    session: AsyncSession, channel_ids: Sequence[int], *, failing_before: int
) -> list[int]:
    """ACTIVATED endpoints failing since `failing_before` or earlier go FAILED; returns their channel ids."""
    rows = await session.execute(
        update(_channels)
        .where(
            _channels.c.id.in_(list(channel_ids)),
            _channels.c.webhook_status == int(WebhookStatus.ACTIVATED),
            _channels.c.webhook_failing_since.is_not(None),
            _channels.c.webhook_failing_since <= failing_before,
        )
        .values(webhook_status=int(WebhookStatus.FAILED))
        .returning(_channels.c.id)
    )
    return [row[0] for row in rows.all()]


async def hold_pending(session: AsyncSession, channel_ids: Sequence[int]) -> int:
    """Every PENDING delivery of these (now FAILED) endpoints is kept, not sent."""
    result = cast(
        "CursorResult[Any]",
        await session.execute(
            update(WebhookDelivery)
            .where(
                WebhookDelivery.channel_id.in_(list(channel_ids)),
                WebhookDelivery.state == int(DeliveryState.PENDING),
            )
            .values(state=int(DeliveryState.HELD), lease_until=0)
            .execution_options(synchronize_session=False)
        ),
    )
    return int(result.rowcount)


_INSERT_DELIVERIES = insert(cast(Table, WebhookDelivery.__table__))


async def insert_deliveries(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """Insert delivery rows in one Core statement, in list order (ids keep each ordering key's order)."""
    if rows:
        await session.execute(_INSERT_DELIVERIES, rows)


# --- the backlog (GET /metrics) -------------------------------------------------------------------

_BACKLOG = (
    select(
        WebhookDelivery.state,
        func.count(),
        func.coalesce(func.sum(case((WebhookDelivery.next_attempt_at <= bindparam("now"), 1), else_=0)), 0),
    )
    .where(WebhookDelivery.state.in_([int(DeliveryState.PENDING), int(DeliveryState.HELD)]))
    .group_by(WebhookDelivery.state)
)


async def backlog(session: AsyncSession, *, now: int) -> dict[str, int]:
    """Deliveries not delivered yet: {"due", "scheduled", "held"}. Two ranges of `ix_webhook_deliveries_due`
    (state, next_attempt_at), read from the index alone.

    "due" also holds the deliveries being sent right now (their lease is not in the index) and those
    waiting behind an earlier event of the same message (ordering), which a failing endpoint holds back.
    """
    counts = {"due": 0, "scheduled": 0, "held": 0}
    for state, total, due in (await session.execute(_BACKLOG, {"now": now})).all():
        if state == DeliveryState.HELD:
            counts["held"] = int(total)
        else:
            counts["due"], counts["scheduled"] = int(due), int(total) - int(due)
    return counts
