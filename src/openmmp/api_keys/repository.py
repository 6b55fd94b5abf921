"""All SQL about API keys."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import Select, func, select

from openmmp.kit.ids import canonical_public_id
from openmmp.models import ApiKey, Company

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from openmmp.api_keys.auth import Subject


def readable(subject: Subject) -> Select[ApiKey]:
    """The one statement every read of a company's keys starts from."""
    return select(ApiKey).where(ApiKey.company_id == subject.company_id)


async def find_by_hash(session: AsyncSession, key_hash: str) -> tuple[ApiKey, Company] | None:
    row = (
        await session.execute(
            select(ApiKey, Company)
            .join(Company, Company.id == ApiKey.company_id)
            .where(ApiKey.key_hash == key_hash)
        )
    ).first()
    return (row[0], row[1]) if row else None


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
