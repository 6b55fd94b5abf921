"""Rules for companies: the operator's partner, onboarding by a partner, profile changes."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from openmmp.api_keys.auth import Subject
from openmmp.api_keys.service import api_keys
from openmmp.companies import repository
from openmmp.companies.schemas import OnboardRequest, UpdateCompanyProfileRequest
from openmmp.kit.crypto import Keyring
from openmmp.models import Company, User
from openmmp.models.company import CompanyType


@dataclass(frozen=True)
class Onboarded:
    company: Company
    admin: User
    api_key: str


class CompanyService:
    async def create_partner(
        self, session: AsyncSession, keyring: Keyring, *, name: str
    ) -> tuple[Company, str]:
        """The operator's partner company (CLI `bootstrap`); returns it and its API key in clear."""
        company = Company(name=name, type=CompanyType.PARTNER)
        session.add(company)
        await session.flush()
        _, key = await api_keys.issue(
            session, keyring, company_id=company.id, name="bootstrap", expires_at=None
        )
        return company, key

    async def onboard(
        self, session: AsyncSession, keyring: Keyring, partner: Subject, *, request: OnboardRequest
    ) -> Onboarded:
        """A partner creates a company with its admin user and first API key, all in one transaction."""
        fields = request.company.model_dump()
        company = Company(type=CompanyType.COMPANY, partner_id=partner.company_id, **fields)
        session.add(company)
        await session.flush()
        admin = User(company_id=company.id, **request.admin.model_dump())
        session.add(admin)
        _, key = await api_keys.issue(
            session, keyring, company_id=company.id, name="default", expires_at=None
        )
        return Onboarded(company=company, admin=admin, api_key=key)

    async def update_profile(
        self, session: AsyncSession, subject: Subject, *, request: UpdateCompanyProfileRequest
    ) -> Company:
        company = await repository.get(session, subject.company_id)
        for field, value in request.model_dump(exclude_unset=True).items():
            setattr(company, field, value)
        await session.flush()
        await session.refresh(company)
        return company


companies = CompanyService()
