"""The operator's list of every company, and the company the operator's pages look at."""

from __future__ import annotations

from fastapi import Request
from starlette.responses import Response

from openmmp.companies import repository as companies_repository
from openmmp.errors import NotFound
from openmmp.kit.db import SessionDep
from openmmp.models.company import CompanyStatus, CompanyType
from openmmp.portal import repository
from openmmp.portal.web import PORTAL, OperatorDep, OperatorEditorDep, portal_router, redirect, render

router = portal_router("/companies")


@router.get("")
async def list_companies(request: Request, session: SessionDep, viewer: OperatorDep) -> Response:
    return render(
        request,
        "companies.html",
        companies=await repository.companies(session),
        partner=CompanyType.PARTNER,
        active=CompanyStatus.ACTIVE,
    )


@router.post("/{public_id}/look")
async def look_at(
    request: Request, session: SessionDep, viewer: OperatorEditorDep, public_id: str
) -> Response:
    """From now on the operator's company pages show this company (the operator may act for it)."""
    company = await companies_repository.get_by_public_id(session, public_id)
    if company is None:
        raise NotFound("No such company", name="company")
    await repository.look_at_company(session, viewer.token_hash, company.id)
    return redirect(request, PORTAL + "/", notice=f"You are looking at {company.name}")
