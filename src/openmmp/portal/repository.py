"""All SQL of the portal's sign-in: users by e-mail or set-up token, browser sessions."""

from __future__ import annotations

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from openmmp.models import Company, PortalSession, User
from openmmp.models.company import CompanyStatus, CompanyType, UserRole


async def users_by_email(session: AsyncSession, email: str) -> list[User]:
    """Every user with exactly this e-mail address, whatever its case; oldest first. (Never a LIKE: a `%`
    typed as the address would match everyone.)"""
    found = await session.scalars(
        select(User).where(func.lower(User.email) == email.lower()).order_by(User.id)
    )
    return list(found)


async def user_by_setup_token(session: AsyncSession, token_hash: str) -> User | None:
    found: User | None = await session.scalar(select(User).where(User.setup_token_hash == token_hash))
    return found


async def session_with_user(
    session: AsyncSession, token_hash: str, now: int
) -> tuple[PortalSession, User, Company] | None:
    """The signed-in session of this token, its user and the user's company, unless expired."""
    row = (
        await session.execute(
            select(PortalSession, User, Company)
            .join(User, User.id == PortalSession.user_id)
            .join(Company, Company.id == User.company_id)
            .where(PortalSession.token_hash == token_hash, PortalSession.expires_at > now)
        )
    ).first()
    return None if row is None else (row[0], row[1], row[2])


async def add_session(session: AsyncSession, portal_session: PortalSession) -> None:
    session.add(portal_session)
    await session.flush()


async def delete_session(session: AsyncSession, token_hash: str) -> None:
    await session.execute(delete(PortalSession).where(PortalSession.token_hash == token_hash))


async def delete_expired_sessions(session: AsyncSession, now: int) -> None:
    await session.execute(delete(PortalSession).where(PortalSession.expires_at <= now))


async def delete_sessions_of(session: AsyncSession, user_id: int) -> None:
    """Sign a user out everywhere (a new password)."""
    await session.execute(delete(PortalSession).where(PortalSession.user_id == user_id))


async def look_at_company(session: AsyncSession, token_hash: str, company_id: int | None) -> None:
    await session.execute(
        update(PortalSession).where(PortalSession.token_hash == token_hash).values(company_id=company_id)
    )


async def company(session: AsyncSession, company_id: int) -> Company | None:
    return await session.get(Company, company_id)


async def companies(session: AsyncSession) -> list[Company]:
    """Every company, for the operator's list: active first, then by name."""
    found = await session.scalars(
        select(Company).order_by(Company.status != CompanyStatus.ACTIVE, Company.name, Company.id)
    )
    return list(found)


async def operators(session: AsyncSession) -> list[User]:
    found = await session.scalars(select(User).where(User.role == UserRole.OPERATOR).order_by(User.id))
    return list(found)


async def first_partner(session: AsyncSession) -> Company | None:
    found: Company | None = await session.scalar(
        select(Company).where(Company.type == CompanyType.PARTNER).order_by(Company.id).limit(1)
    )
    return found


async def users_without_password(session: AsyncSession, emails: tuple[str, ...]) -> list[User]:
    found = await session.scalars(
        select(User).where(User.password_hash.is_(None), User.email.in_(emails)).order_by(User.id)
    )
    return list(found)
