from fastapi import APIRouter

from openmmp.api_keys.auth import CompanyKey
from openmmp.api_keys.schemas import APIKeyInfo, CreateAPIKeyRequest, CreateAPIKeyResponse
from openmmp.api_keys.service import api_keys
from openmmp.deps import KeyringDep
from openmmp.errors import responses
from openmmp.kit.db import SessionDep
from openmmp.kit.schemas import Page, PageNumber, PageSize, PublicId
from openmmp.models import ApiKey

router = APIRouter(prefix="/onboard/api-key", tags=["Onboard"])


def _info(key: ApiKey) -> APIKeyInfo:
    return APIKeyInfo(
        public_id=key.public_id,
        name=key.name,
        hint=key.hint,
        expired_date=key.expires_at,
        created_date=key.created_at,
    )


@router.post(
    "",
    summary="Create a new API key",
    status_code=201,
    response_model=CreateAPIKeyResponse,
    responses=responses(400, 401, 403, 413),
)
async def create_api_key(
    body: CreateAPIKeyRequest, subject: CompanyKey, session: SessionDep, keyring: KeyringDep
) -> CreateAPIKeyResponse:
    key, plaintext = await api_keys.issue(
        session, keyring, company_id=subject.company_id, name=body.name, expires_at=body.expired_date
    )
    return CreateAPIKeyResponse(
        public_id=key.public_id, name=key.name, api_key=plaintext, expired_date=key.expires_at
    )


@router.get(
    "",
    summary="List the company's API keys (never the keys themselves)",
    response_model=Page[APIKeyInfo],
    responses=responses(400, 401, 403),
)
async def list_api_keys(
    subject: CompanyKey, session: SessionDep, page: PageNumber = 1, size: PageSize = 20
) -> Page[APIKeyInfo]:
    total, keys = await api_keys.list(session, subject, page=page, size=size)
    return Page[APIKeyInfo](total=total, page=page, size=size, items=[_info(k) for k in keys])


@router.delete(
    "/{publicId}",
    summary="Revoke an API key",
    response_model=APIKeyInfo,
    responses=responses(401, 403, 404),
)
async def revoke_api_key(public_id: PublicId, subject: CompanyKey, session: SessionDep) -> APIKeyInfo:
    return _info(await api_keys.revoke(session, subject, public_id=public_id))
