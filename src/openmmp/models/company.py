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


class User(IdMixin, Base):
    """A person of a company; today only the admin created at onboarding (portal logins come later)."""

    __tablename__ = "users"
    __table_args__ = (UniqueConstraint("company_id", "email"),)

    company_id: Mapped[int] = mapped_column(Id, ForeignKey("companies.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str] = mapped_column(String(320))
    phone: Mapped[str | None] = mapped_column(String(20))
    role: Mapped[str] = mapped_column(String(20), default="ADMIN")
    created_at: Mapped[int] = mapped_column(BigInteger, default=now_ms)
