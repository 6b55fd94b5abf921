"""All SQL about API keys."""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

from sqlalchemy import Select, bindparam, func, select

from openmmp.kit.ids import canonical_public_id
from openmmp.models import ApiKey, Company

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from openmmp.api_keys.auth import Subject


def readable(subject: Subject) -> Select[ApiKey]:
    """The one statement every read of a company's keys starts from."""
    return select(ApiKey).where(ApiKey.company_id == subject.company_id)


class PresentedKey(NamedTuple):
    """What authenticating a request needs to know about a key and its company."""

    key_id: int
    key_public_id: str
    revoked_at: int | None
    expires_at: int | None
    company_id: int
    company_public_id: str
    company_type: int
    company_status: int


# Built once: every authenticated request runs it, and building the expression costs more than the query.
_PRESENTED = select(
    ApiKey.id,
    ApiKey.public_id,
    ApiKey.revoked_at,
    ApiKey.expires_at,
    Company.id,
    Company.public_id,
    Company.type,
    Company.status,
).join(Company, Company.id == ApiKey.company_id)
_BY_HASH = _PRESENTED.where(ApiKey.key_hash == bindparam("key_hash"))
_BY_ID = _PRESENTED.where(ApiKey.id == bindparam("key_id"))


async def find_by_hash(session: AsyncSession, key_hash: str) -> PresentedKey | None:
    row = (await session.execute(_BY_HASH, {"key_hash": key_hash})).first()
    return PresentedKey(*row) if row else None


async def find_by_id(session: AsyncSession, key_id: int) -> PresentedKey | None:
    """A key by its internal id (named by something the server sealed, never by a client)."""
    row = (await session.execute(_BY_ID, {"key_id": key_id})).first()
    return PresentedKey(*row) if row else None


async def get_active(session: AsyncSession, subject: Subject, public_id: str) -> ApiKey | None:
    canonical = canonical_public_id(public_id)
    if canonical is None:
        return None
    statement = readable(subject).where(ApiKey.public_id == canonical, ApiKey.revoked_at.is_(None))
    return (await session.execute(statement)).scalar_one_or_none()


async def list_active(
    session: AsyncSession, subject: Subject, *, offset: int, limit: int
) -> tuple[int, list[ApiKey]]:
    base = readable(subject).where(ApiKey.revoked_at.is_(None))
    total = (await session.execute(select(func.count()).select_from(base.subquery()))).scalar_one()
    rows = await session.execute(base.order_by(ApiKey.id).offset(offset).limit(limit))
    return total, list(rows.scalars())
