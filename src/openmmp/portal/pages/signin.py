"""Sign in, sign out, and choose a password through a one-time set-up link."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, Form, Request
from starlette.responses import Response

from openmmp.deps import SettingsDep
from openmmp.errors import AppError, Forbidden
from openmmp.kit.db import SessionDep
from openmmp.portal import accounts
from openmmp.portal.web import (
    PORTAL,
    SESSION_COOKIE,
    SIGN_IN_COOKIE,
    CsrfViewerDep,
    portal_router,
    redirect,
    render,
    same_origin,
    same_text,
)
from openmmp.settings import Settings

router = portal_router()
failures = accounts.FailedSignIns()


def _form_token(request: Request) -> str:
    return request.cookies.get(SIGN_IN_COOKIE) or secrets.token_urlsafe(32)


def _secure(request: Request) -> bool:
    """Cookies only over HTTPS when the platform is served over it, whether seen here or only by a TLS
    proxy in front (OPENMMP_PUBLIC_URL says https)."""
    settings: Settings = request.app.state.settings
    return request.url.scheme == "https" or settings.resolved_public_url.startswith("https://")


def _with_form_token(request: Request, response: Response, token: str) -> Response:
    response.set_cookie(
        SIGN_IN_COOKIE,
        token,
        httponly=True,
        samesite="strict",
        path=PORTAL,
        secure=_secure(request),
    )
    return response


def _check_form_token(request: Request, presented: str) -> None:
    expected = request.cookies.get(SIGN_IN_COOKIE, "")
    if not same_origin(request) or not expected or not same_text(presented, expected):
        raise Forbidden("This form has expired; reload the page and try again", name="csrf")


def _safe_next(value: str) -> str:
    """Only a page of the portal (never another site: an open redirect)."""
    if value.startswith(PORTAL + "/") and not value.startswith("//") and "\\" not in value:
        return value
    return PORTAL + "/"


def _signed_in(request: Request, signed: accounts.SignedIn, target: str) -> Response:
    response = redirect(request, target)
    response.set_cookie(
        SESSION_COOKIE,
        signed.token,
        httponly=True,
        samesite="lax",
        path=PORTAL,
        secure=_secure(request),
        max_age=int(signed.portal_session.expires_at - signed.portal_session.created_at) // 1000,
    )
    response.delete_cookie(SIGN_IN_COOKIE, path=PORTAL)
    return response


@router.get("/login")
async def login_page(request: Request, next: str = "") -> Response:
    token = _form_token(request)
    page = render(request, "login.html", csrf=token, next=_safe_next(next), email="", errors=[])
    return _with_form_token(request, page, token)


@router.post("/login")
async def login(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    email: Annotated[str, Form(max_length=320)],
    password: Annotated[str, Form(max_length=accounts.MAX_PASSWORD)],
    csrf: Annotated[str, Form(max_length=100)],
    next: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    _check_form_token(request, csrf)
    try:
        signed = await accounts.sign_in(
            session, failures, email=email, password=password, settings=settings.portal
        )
    except AppError as exc:
        page = render(
            request,
            "login.html",
            status_code=exc.status_code,
            headers=exc.headers,
            csrf=csrf,
            next=_safe_next(next),
            email=email,
            errors=[(exc.name, exc.message)],
        )
        return page
    return _signed_in(request, signed, _safe_next(next))


@router.post("/logout")
async def logout(request: Request, session: SessionDep, viewer: CsrfViewerDep) -> Response:
    await accounts.sign_out(session, viewer.token)
    response = redirect(request, f"{PORTAL}/login")
    response.delete_cookie(SESSION_COOKIE, path=PORTAL)
    return response


async def _hide_token(request: Request) -> None:
    """The link's token is a password until used: the request log shows the route, not the path."""
    request.state.log_path = f"{PORTAL}/setup/{{token}}"


@router.get("/setup/{token}", dependencies=[Depends(_hide_token)])
async def setup_page(request: Request, session: SessionDep, token: str) -> Response:
    user = await accounts.user_of_setup_link(session, token)
    form_token = _form_token(request)
    page = render(request, "setup.html", csrf=form_token, token=token, user=user, errors=[])
    return _with_form_token(request, page, form_token)


@router.post("/setup/{token}", dependencies=[Depends(_hide_token)])
async def setup(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    token: str,
    password: Annotated[str, Form(max_length=accounts.MAX_PASSWORD)],
    repeated: Annotated[str, Form(max_length=accounts.MAX_PASSWORD)],
    csrf: Annotated[str, Form(max_length=100)],
) -> Response:
    _check_form_token(request, csrf)
    try:
        signed = await accounts.set_password(
            session, token, password=password, repeated=repeated, settings=settings.portal
        )
    except AppError as exc:
        if exc.status_code == 404:
            raise
        user = await accounts.user_of_setup_link(session, token)
        return render(
            request,
            "setup.html",
            status_code=400,
            csrf=csrf,
            token=token,
            user=user,
            errors=[(exc.name, exc.message)],
        )
    return _signed_in(request, signed, PORTAL + "/")
