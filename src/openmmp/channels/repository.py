"""All SQL about channels. Every read starts from `readable(subject)`: the tenant choke point."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import Select, bindparam, func, select

from openmmp.kit.ids import canonical_public_id
from openmmp.models import Channel

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from openmmp.api_keys.auth import Subject


def readable(subject: Subject) -> Select[Channel]:
    return select(Channel).where(Channel.company_id == subject.company_id)


# `readable(subject)` with the company as a parameter, built once: every send looks its channel up.
_GET = select(Channel).where(
    Channel.company_id == bindparam("company_id"), Channel.public_id == bindparam("public_id")
)


async def get(session: AsyncSession, subject: Subject, public_id: str) -> Channel | None:
    canonical = canonical_public_id(public_id)
    if canonical is None:
        return None
    parameters = {"company_id": subject.company_id, "public_id": canonical}
    return (await session.execute(_GET, parameters)).scalar_one_or_none()


async def page(
    session: AsyncSession, subject: Subject, *, application_id: int | None, offset: int, limit: int
) -> tuple[int, list[Channel]]:
    statement = readable(subject)
    if application_id is not None:
        statement = statement.where(Channel.application_id == application_id)
    total = (await session.execute(select(func.count()).select_from(statement.subquery()))).scalar_one()
    rows = await session.execute(statement.order_by(Channel.id).offset(offset).limit(limit))
    return total, list(rows.scalars())


async def all_of(session: AsyncSession, subject: Subject) -> list[Channel]:
    """Every channel of the company, in id order."""
    return list((await session.execute(readable(subject).order_by(Channel.id))).scalars())


async def by_fingerprint(session: AsyncSession, fingerprint: str) -> Channel | None:
    """The channel holding an upstream identity, whichever company's: to refuse a second claim
    (channels.service), and to find the channel of a callback posted to a provider's one URL, which its
    signature proves afterwards (callbacks.service); never returned to an API caller."""
    statement = select(Channel).where(Channel.identity_fingerprint == fingerprint)
    return (await session.execute(statement)).scalar_one_or_none()


async def public_id_taken(session: AsyncSession, public_id: str) -> bool:
    """Whether any channel, whichever company's, has `public_id`: only ever used to refuse making a
    channel with a public id chosen ahead a second time (channels.service), never to read one."""
    statement = select(Channel.id).where(Channel.public_id == public_id)
    return (await session.execute(statement)).first() is not None
