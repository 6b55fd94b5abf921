from fastapi import APIRouter

from openmmp.api_keys.auth import CompanyKey, PartnerKey
from openmmp.companies.schemas import (
    OnboardRequest,
    OnboardResponse,
    UpdateCompanyProfileRequest,
    UpdateCompanyProfileResponse,
)
from openmmp.companies.service import companies
from openmmp.deps import KeyringDep
from openmmp.errors import responses
from openmmp.kit.db import SessionDep

router = APIRouter(prefix="/onboard", tags=["Onboard"])


@router.post(
    "",
    summary="Onboard new Company and Company's Admin",
    description="Partner API keys only. Creates the company, its admin user and its first API key.",
    status_code=201,
    response_model=OnboardResponse,
    responses=responses(400, 401, 403, 413),
)
async def onboard(
    body: OnboardRequest, partner: PartnerKey, session: SessionDep, keyring: KeyringDep
) -> OnboardResponse:
    done = await companies.onboard(session, keyring, partner, request=body)
    return OnboardResponse(
        company_id=done.company.public_id,
        company_public_id=done.company.public_id,
        admin_user_id=done.admin.public_id,
        api_key=done.api_key,
    )


@router.post(
    "/company-profile",
    summary="Update company profile",
    response_model=UpdateCompanyProfileResponse,
    responses=responses(400, 401, 403, 413),
)
async def update_company_profile(
    body: UpdateCompanyProfileRequest, subject: CompanyKey, session: SessionDep
) -> UpdateCompanyProfileResponse:
    company = await companies.update_profile(session, subject, request=body)
    return UpdateCompanyProfileResponse(
        public_id=company.public_id,
        name=company.name,
        country=company.country,
        phone=company.phone,
        email=company.email,
        address=company.address,
        website=company.website,
        industry=company.industry,
        status=company.status,
        kyc_status=company.kyc_status,
        created_date=company.created_at,
        updated_date=company.updated_at,
    )
