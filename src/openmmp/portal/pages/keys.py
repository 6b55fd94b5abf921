"""The company's API keys: the list (never a key itself), a new key shown once, and revoking one."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated

from fastapi import Form, Request
from starlette.responses import Response

from openmmp.api_keys.schemas import CreateAPIKeyRequest
from openmmp.api_keys.service import api_keys
from openmmp.deps import KeyringDep
from openmmp.errors import Invalid
from openmmp.kit.db import SessionDep
from openmmp.kit.schemas import PageNumber
from openmmp.kit.time import now_ms
from openmmp.portal.web import PORTAL, CompanyEditorDep, CompanyViewerDep, portal_router, redirect, render

router = portal_router("/keys")

PAGE_SIZE = 50


def _expiry(day: str) -> int | None:
    """The end of `day` (YYYY-MM-DD, UTC) in epoch ms: a key given that day works until it is over."""
    if not day.strip():
        return None
    try:
        chosen = date.fromisoformat(day.strip())
    except ValueError:
        raise Invalid("must be a date such as 2030-12-31", name="expiredDate") from None
    end = datetime.combine(chosen + timedelta(days=1), time(), tzinfo=UTC)
    return int(end.timestamp() * 1000)


async def _page(
    request: Request,
    session: SessionDep,
    viewer: CompanyViewerDep,
    page: int,
    *,
    new_key: str | None = None,
    new_name: str | None = None,
) -> Response:
    total, keys = await api_keys.list(session, viewer.subject, page=page, size=PAGE_SIZE)
    return render(
        request,
        "keys.html",
        status_code=201 if new_key else 200,
        keys=keys,
        total=total,
        page=page,
        pages=max(1, -(-total // PAGE_SIZE)),
        now=now_ms(),
        new_key=new_key,
        new_name=new_name,
    )


@router.get("")
async def list_keys(
    request: Request, session: SessionDep, viewer: CompanyViewerDep, page: PageNumber = 1
) -> Response:
    return await _page(request, session, viewer, page)


@router.post("")
async def create_key(
    request: Request,
    session: SessionDep,
    viewer: CompanyEditorDep,
    keyring: KeyringDep,
    name: Annotated[str, Form()] = "",
    expired_date: Annotated[str, Form(alias="expiredDate")] = "",
) -> Response:
    """The key in clear is on this answer only: it is never stored, so never shown again."""
    body = CreateAPIKeyRequest.model_validate({"name": name.strip(), "expiredDate": _expiry(expired_date)})
    key, plaintext = await api_keys.issue(
        session, keyring, company_id=viewer.subject.company_id, name=body.name, expires_at=body.expired_date
    )
    return await _page(request, session, viewer, 1, new_key=plaintext, new_name=key.name)


@router.post("/{public_id}/revoke")
async def revoke_key(
    request: Request, session: SessionDep, viewer: CompanyEditorDep, public_id: str
) -> Response:
    key = await api_keys.revoke(session, viewer.subject, public_id=public_id)
    return redirect(request, f"{PORTAL}/keys", notice=f"API key {key.name} revoked: it no longer works")
