"""Who is calling: the API key → company resolution every authenticated route depends on."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader

from openmmp.api_keys import repository
from openmmp.deps import KeyringDep
from openmmp.errors import CompanyNotActive, Forbidden, TooManyRequests, Unauthenticated
from openmmp.kit.crypto import api_key_well_formed
from openmmp.kit.db import SessionDep, request_database
from openmmp.kit.time import now_ms
from openmmp.models.company import CompanyStatus, CompanyType

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from openmmp.api_keys.ratelimit import ApiRateLimiter


@dataclass(frozen=True, slots=True)
class Subject:
    """The authenticated caller: one company, through one of its keys."""

    company_id: int
    company_public_id: str
    company_type: int
    api_key_id: int

    @property
    def is_partner(self) -> bool:
        return self.company_type == CompanyType.PARTNER


_api_key_header = APIKeyHeader(
    name="apiKey",
    auto_error=False,
    description="The company's API key. `X-API-Key: <key>` and `Authorization: Bearer <key>` also work.",
)


def _presented_key(request: Request, api_key: str | None) -> str | None:
    if api_key:
        return api_key
    alias = request.headers.get("x-api-key")
    if alias:
        return alias
    authorization = request.headers.get("authorization", "")
    scheme, _, credentials = authorization.partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    return None


def _standing(found: repository.PresentedKey) -> Subject:
    """The caller `found` stands for, once its key and its company are checked to be in force now."""
    now = now_ms()
    if found.revoked_at is not None or (found.expires_at is not None and found.expires_at <= now):
        raise Unauthenticated("API key is revoked or expired")
    if found.company_status != CompanyStatus.ACTIVE:
        raise CompanyNotActive("The company of this API key is not active")
    return Subject(
        company_id=found.company_id,
        company_public_id=found.company_public_id,
        company_type=found.company_type,
        api_key_id=found.key_id,
    )


async def subject_of_key(session: AsyncSession, api_key_id: int) -> Subject:
    """The caller a key stands for now, checked as a request with it would be: for work the key asked
    for that is finished later without it (an onboarding token used after the sign-up). A key revoked or
    expired since, or a company no longer active, raises as authenticating would (401, 403)."""
    found = await repository.find_by_id(session, api_key_id)
    if found is None:
        raise Unauthenticated("API key is not valid")
    return _standing(found)


async def _authenticate(
    request: Request,
    session: SessionDep,
    keyring: KeyringDep,
    api_key: Annotated[str | None, Security(_api_key_header)],
) -> Subject:
    presented = _presented_key(request, api_key)
    if presented is None:
        raise Unauthenticated("API key required in the apiKey header")
    if not api_key_well_formed(presented):
        raise Unauthenticated("API key is not valid")
    digest = keyring.hash_api_key(presented)
    if request.method in ("GET", "HEAD"):
        found = await repository.find_by_hash(session, digest)
    else:
        # A request that may write looks its key up in a read session of its own: the write connection,
        # and on SQLite the write lock, are taken only for its writes (a send's in its batch).
        async with request_database(request).read_sessions() as reads:
            found = await repository.find_by_hash(reads, digest)
    if found is None:
        raise Unauthenticated("API key is not valid")
    subject = _standing(found)
    request.state.subject = subject
    # After the checks above, so only real keys get a budget (their number bounds the limiter's memory).
    limiter: ApiRateLimiter = request.app.state.api_rate_limiter
    wait = await limiter.admit(found.key_public_id)
    if wait > 0:
        retry_after = max(1, math.ceil(wait))
        raise TooManyRequests(
            f"Too many requests for this API key; retry in {retry_after} s",
            retry_after_s=retry_after,
            name="apiKey",
        )
    return subject


async def _require_partner(subject: Annotated[Subject, Depends(_authenticate)]) -> Subject:
    if not subject.is_partner:
        raise Forbidden("Only a partner company's API key may do this", name="apiKey")
    return subject


CompanyKey = Annotated[Subject, Depends(_authenticate)]
PartnerKey = Annotated[Subject, Depends(_require_partner)]
