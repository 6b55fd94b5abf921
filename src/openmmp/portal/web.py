"""What every portal page shares: who is looking (the session cookie), CSRF, rendering, errors.

Pages are server-rendered with Jinja2 (autoescaped); htmx swaps the live parts. A page's route depends on
`ViewerDep` (any signed-in user), `CompanyViewerDep` (a company's pages: the admin's own company, or the
one the operator chose to look at) or `OperatorDep`; a route that changes anything takes the `Csrf`
variant of them, which checks the session's CSRF token (the `csrf` form field or the `X-CSRF-Token`
header htmx sends) and that the request's Origin, when given, is this server's.

A service's error (`AppError`, a pydantic `ValidationError` or a form field FastAPI refused) is shown to
the person as a page, or as an alert fragment for an htmx request: never a JSON body or a 500.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import quote, urlsplit

import structlog
from fastapi import APIRouter, Depends, Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from jinja2 import Environment, PackageLoader, select_autoescape
from pydantic import ValidationError
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.responses import HTMLResponse, RedirectResponse, Response

from openmmp.api_keys.auth import Subject
from openmmp.errors import (
    DATABASE_RETRY_AFTER_S,
    AppError,
    CompanyNotActive,
    Conflict,
    Forbidden,
    validation_items,
)
from openmmp.kit.db import database_is_away, request_database
from openmmp.models import Company, PortalSession, User
from openmmp.models.company import CompanyStatus, UserRole
from openmmp.portal import accounts
from openmmp.providers.applications import Application

log = structlog.get_logger(__name__)

PORTAL = "/portal"
SESSION_COOKIE = "mmp_session"
SIGN_IN_COOKIE = "mmp_signin"  # the sign-in form's CSRF token (double submit: no session yet)
CSRF_HEADER = "x-csrf-token"
COMPANY_HEADER = "x-portal-company"  # the company the page showed, sent back with each change

templates = Environment(
    loader=PackageLoader("openmmp.portal", "templates"),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)


def _when(epoch_ms: int | None) -> str:
    if not epoch_ms:
        return ""
    return datetime.fromtimestamp(epoch_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


templates.filters["when"] = _when
templates.globals["PORTAL"] = PORTAL


def application_name(application_id: int | None) -> str:
    """An application's name (`SMS`), or its number if this platform does not know it."""
    if application_id is None:
        return ""
    try:
        return Application(application_id).name
    except ValueError:
        return str(application_id)


class SignInNeeded(Exception):
    """No session (or an expired one): the person is sent to the sign-in page."""


class CompanyNeeded(Exception):
    """The operator opened a company's page without choosing a company to look at."""


@dataclass(frozen=True)
class Viewer:
    """The signed-in person and the company the pages show (None: an operator who has not chosen)."""

    user: User
    portal_session: PortalSession
    company: Company | None
    token: str

    @property
    def is_operator(self) -> bool:
        return self.user.role == UserRole.OPERATOR

    @property
    def token_hash(self) -> str:
        return self.portal_session.token_hash

    @property
    def csrf(self) -> str:
        return self.portal_session.csrf

    @property
    def subject(self) -> Subject:
        """The company the pages act for, as the services take it (as one of its API keys would)."""
        if self.company is None:
            raise CompanyNeeded
        return Subject(
            company_id=self.company.id,
            company_public_id=self.company.public_id,
            company_type=self.company.type,
            api_key_id=0,
        )


async def _viewer(request: Request) -> Viewer:
    """The signed-in person, read in a session of its own: the request's transaction (if the route takes
    one) is not held for it, and a route calling a service that opens its own sessions takes none (on
    SQLite a request's write transaction would hold the one write connection such a service needs)."""
    token = request.cookies.get(SESSION_COOKIE)
    if token is None:
        raise SignInNeeded
    async with request_database(request).read_sessions() as session:
        found = await accounts.signed_in(session, token)
    if found is None:
        raise SignInNeeded
    portal_session, user, company = found
    viewer = Viewer(user=user, portal_session=portal_session, company=company, token=token)
    request.state.viewer = viewer
    return viewer


def same_origin(request: Request) -> bool:
    """False when the browser says the request comes from another site's page."""
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return origin is None
    return urlsplit(origin).netloc == request.headers.get("host", "")


async def _form_value(request: Request, header: str, field: str) -> str | None:
    """A value a change carries: in a header (htmx, the upload script) or, for a plain form, a field."""
    presented = request.headers.get(header)
    if presented is None and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        value = (await request.form()).get(field)
        presented = value if isinstance(value, str) else None
    return presented


def same_text(presented: str | None, expected: str) -> bool:
    """Constant time; any text (compare_digest refuses strings that are not ASCII)."""
    return presented is not None and hmac.compare_digest(presented.encode(), expected.encode())


async def _checked(request: Request, viewer: Annotated[Viewer, Depends(_viewer)]) -> Viewer:
    presented = await _form_value(request, CSRF_HEADER, "csrf")
    if not same_origin(request) or not presented or not same_text(presented, viewer.csrf):
        raise Forbidden("This form has expired or did not come from the portal; reload the page", name="csrf")
    return viewer


async def _company_viewer(viewer: Annotated[Viewer, Depends(_viewer)]) -> Viewer:
    viewer.subject  # noqa: B018 -- raises CompanyNeeded for an operator who has not chosen a company
    return viewer


async def _company_editor(request: Request, viewer: Annotated[Viewer, Depends(_checked)]) -> Viewer:
    """A change to the company the page showed: refused when the operator has since chosen another one
    (in another tab: the change would land in the wrong company), and for a company no longer active
    (read only, as the API refuses its keys)."""
    company = viewer.company
    if company is None:
        raise CompanyNeeded
    # An admin's company is always theirs: only the operator's choice can change under a page.
    if viewer.is_operator and not same_text(
        await _form_value(request, COMPANY_HEADER, "company"), company.public_id
    ):
        raise Conflict(
            f"You are now looking at {company.name} (chosen in another tab): reload the page", name="company"
        )
    if company.status != CompanyStatus.ACTIVE:
        raise CompanyNotActive("This company is not active: its pages are read only", name="company")
    return viewer


async def _operator(viewer: Annotated[Viewer, Depends(_viewer)]) -> Viewer:
    if not viewer.is_operator:
        raise Forbidden("Only the operator may see this page", name="role")
    return viewer


async def _operator_editor(viewer: Annotated[Viewer, Depends(_checked)]) -> Viewer:
    return await _operator(viewer)


ViewerDep = Annotated[Viewer, Depends(_viewer)]
CsrfViewerDep = Annotated[Viewer, Depends(_checked)]
CompanyViewerDep = Annotated[Viewer, Depends(_company_viewer)]
CompanyEditorDep = Annotated[Viewer, Depends(_company_editor)]
OperatorDep = Annotated[Viewer, Depends(_operator)]
OperatorEditorDep = Annotated[Viewer, Depends(_operator_editor)]


def is_htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


def render(
    request: Request,
    template: str,
    *,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
    **context: Any,
) -> HTMLResponse:
    """The page (or fragment) `template` with the viewer, the request and `context`."""
    viewer: Viewer | None = getattr(request.state, "viewer", None)
    page = templates.get_template(template).render(
        request=request,
        viewer=viewer,
        path=request.url.path,
        notice=_notice(request, viewer),
        **context,
    )
    response = HTMLResponse(page, status_code=status_code, headers=headers)
    response.headers["Cache-Control"] = "no-store"
    return response


def _notice_mac(viewer: Viewer, notice: str) -> str:
    return hmac.new(viewer.csrf.encode(), notice.encode(), hashlib.sha256).hexdigest()[:32]


def _notice(request: Request, viewer: Viewer | None) -> str | None:
    """The notice a redirect of this session carries in the address: signed with the session's secret,
    so a link from elsewhere cannot make a trusted page say what its author wants."""
    notice, mac = request.query_params.get("notice"), request.query_params.get("n", "")
    if notice is None or viewer is None or not same_text(mac, _notice_mac(viewer, notice)):
        return None
    return notice


def wants_fragment(request: Request) -> bool:
    """An htmx request swapping a part of the page; not htmx restoring the whole page from history."""
    return is_htmx(request) and request.headers.get("hx-history-restore-request") != "true"


def redirect(request: Request, url: str, *, notice: str | None = None) -> Response:
    """See another page after a change (303); htmx follows it with a full page load."""
    viewer: Viewer | None = getattr(request.state, "viewer", None)
    if notice and viewer is not None:
        url += ("&" if "?" in url else "?") + f"notice={quote(notice)}&n={_notice_mac(viewer, notice)}"
    if is_htmx(request):
        return Response(status_code=204, headers={"HX-Redirect": url})
    return RedirectResponse(url, status_code=303)


def _problem(request: Request, status_code: int, messages: list[tuple[str, str]]) -> Response:
    if is_htmx(request):
        return render(request, "_errors.html", status_code=status_code, errors=messages)
    return render(request, "error.html", status_code=status_code, errors=messages)


def _validation_messages(errors: Any) -> list[tuple[str, str]]:
    return [(item.name, item.message) for item in validation_items(errors)]


# Scripts only from this server (htmx and the portal's own file); inline styles are allowed for the
# chart's legend. No page may be framed by another site (clickjacking).
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
)
_SECURE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}


class PortalRoute(APIRoute):
    """A portal route: errors become pages, a missing session the sign-in page; secure headers on all."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def portal_handler(request: Request) -> Response:
            response = await _answer(request)
            for name, value in _SECURE_HEADERS.items():
                response.headers.setdefault(name, value)
            return response

        async def _answer(request: Request) -> Response:
            try:
                return await handler(request)
            except SignInNeeded:
                if is_htmx(request) or request.method != "GET":
                    target = f"{PORTAL}/login"
                else:
                    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                    target = f"{PORTAL}/login?next={quote(here)}"
                return redirect(request, target)
            except CompanyNeeded:
                return redirect(request, f"{PORTAL}/companies", notice="Choose a company to look at first")
            except AppError as exc:
                return _problem(request, exc.status_code, [(item.name, item.message) for item in exc.items])
            except RequestValidationError as exc:
                return _problem(request, 400, _validation_messages(exc.errors()))
            except ValidationError as exc:
                return _problem(request, 400, _validation_messages(exc.errors()))
            except (DBAPIError, PoolTimeout, OSError) as exc:
                if not database_is_away(exc):
                    raise
                where = getattr(request.state, "log_path", request.url.path)
                log.warning("database_unavailable", path=where, error_type=type(exc).__name__)
                page = _problem(
                    request, 503, [("database", "The database is unavailable; try again shortly")]
                )
                page.headers["Retry-After"] = str(DATABASE_RETRY_AFTER_S)
                return page

        return portal_handler


def portal_router(prefix: str = "") -> APIRouter:
    """A router of portal pages under /portal{prefix}: HTML only, so not in the OpenAPI document."""
    return APIRouter(prefix=PORTAL + prefix, route_class=PortalRoute, include_in_schema=False)
