from enum import IntEnum

from sqlalchemy import BigInteger, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from openmmp.kit.time import now_ms
from openmmp.models.base import Base, Id, IdMixin


class CompanyType(IntEnum):
    COMPANY = 1
    PARTNER = 2


class CompanyStatus(IntEnum):
    ACTIVE = 1
    INACTIVE = 2


class KycStatus(IntEnum):
    NONE = 0
    PENDING = 1
    APPROVED = 2
    REJECTED = 3


class Company(IdMixin, Base):
    __tablename__ = "companies"

    name: Mapped[str] = mapped_column(String(200))
    type: Mapped[int] = mapped_column(default=CompanyType.COMPANY)
    status: Mapped[int] = mapped_column(default=CompanyStatus.ACTIVE)
    kyc_status: Mapped[int] = mapped_column(default=KycStatus.NONE)
    country: Mapped[str | None] = mapped_column(String(2))
    phone: Mapped[str | None] = mapped_column(String(20))
    email: Mapped[str | None] = mapped_column(String(320))
    address: Mapped[str | None] = mapped_column(String(500))
    website: Mapped[str | None] = mapped_column(String(500))
    industry: Mapped[str | None] = mapped_column(String(100))
    partner_id: Mapped[int | None] = mapped_column(Id, ForeignKey("companies.id"), index=True)
    created_at: Mapped[int] = mapped_column(BigInteger, default=now_ms)
    updated_at: Mapped[int] = mapped_column(BigInteger, default=now_ms, onupdate=now_ms)


class UserRole:
    ADMIN = "ADMIN"  # a company's admin: the portal shows that company only
    OPERATOR = "OPERATOR"  # the platform's operator (a user of a partner company): every company, reviews


class User(IdMixin, Base):
    """A person who signs in to the portal: a company's admin (created at onboarding) or the operator.

    No password until the person follows a one-time set-up link (`openmmp portal link`); only hashes of
    the password (argon2) and of the link's token are kept.
    """

    __tablename__ = "users"
    __table_args__ = (UniqueConstraint("company_id", "email"),)

    company_id: Mapped[int] = mapped_column(Id, ForeignKey("companies.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str] = mapped_column(String(320))
    phone: Mapped[str | None] = mapped_column(String(20))
    role: Mapped[str] = mapped_column(String(20), default=UserRole.ADMIN)
    created_at: Mapped[int] = mapped_column(BigInteger, default=now_ms)
    password_hash: Mapped[str | None] = mapped_column(String(200))
    setup_token_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    setup_expires_at: Mapped[int | None] = mapped_column(BigInteger)


class PortalSession(Base):
    """A signed-in browser: the cookie carries the token, the table only its hash."""

    __tablename__ = "portal_sessions"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(Id, ForeignKey("users.id", ondelete="CASCADE"), index=True)
    csrf: Mapped[str] = mapped_column(String(64), doc="The session's CSRF token, sent back by every form")
    company_id: Mapped[int | None] = mapped_column(
        Id, ForeignKey("companies.id", ondelete="SET NULL"), doc="The company an operator is looking at"
    )
    created_at: Mapped[int] = mapped_column(BigInteger, default=now_ms)
    expires_at: Mapped[int] = mapped_column(BigInteger, index=True)
