"""All SQL about companies and their users."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from openmmp.models import Company


async def get(session: AsyncSession, company_id: int) -> Company:
    return (await session.execute(select(Company).where(Company.id == company_id))).scalar_one()


async def get_by_public_id(session: AsyncSession, public_id: str) -> Company | None:
    return (await session.execute(select(Company).where(Company.public_id == public_id))).scalar_one_or_none()
