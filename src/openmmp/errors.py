"""Typed errors and the one error body of api.md §1: `{"errors": [{"name", "code", "message"}]}`.

Services raise `AppError` subclasses; the handlers installed by `install_error_handlers` render every
failure (ours, FastAPI's validation, Starlette's routing, anything unexpected) in that one shape.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Any

import orjson
import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import BaseModel
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

from openmmp.kit.db import database_is_away

log = structlog.get_logger(__name__)


class ErrorCode(StrEnum):
    INVALID = "INVALID"
    BAD_REQUEST = "BAD_REQUEST"
    NOT_AUTHENTICATE = "NOT_AUTHENTICATE"
    API_KEY_NOT_FOUND = "API_KEY_NOT_FOUND"
    FORBIDDEN_ERROR = "FORBIDDEN_ERROR"
    RESOURCE_NOT_FOUND = "RESOURCE_NOT_FOUND"
    EXISTED = "EXISTED"
    COMPANY_IS_NOT_ACTIVE = "COMPANY_IS_NOT_ACTIVE"
    NOT_ACCEPTABLE = "NOT_ACCEPTABLE"
    EXPECTATION_FAILED = "EXPECTATION_FAILED"
    TOO_MANY_REQUESTS = "TOO_MANY_REQUESTS"
    PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"
    INTERNAL_SERVER_ERROR = "INTERNAL_SERVER_ERROR"
    SERVICE_UNAVAILABLE = "SERVICE_UNAVAILABLE"


class ErrorItem(BaseModel):
    name: str
    code: ErrorCode
    message: str


class ErrorBody(BaseModel):
    """The body of every 4xx and 5xx answer."""

    errors: list[ErrorItem]


class AppError(Exception):
    """Base of every error a client can cause; rendered with its status code and error code."""

    status_code = 400
    code = ErrorCode.BAD_REQUEST
    default_name = "request"

    def __init__(
        self,
        message: str,
        *,
        name: str | None = None,
        headers: Mapping[str, str] | None = None,
        items: Sequence[ErrorItem] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.name = name or self.default_name
        self.headers = dict(headers or {})
        self.items = list(items) if items else [ErrorItem(name=self.name, code=self.code, message=message)]


class BadRequest(AppError):
    pass


class Invalid(AppError):
    code = ErrorCode.INVALID


class Unauthenticated(AppError):
    status_code = 401
    code = ErrorCode.NOT_AUTHENTICATE
    default_name = "apiKey"


class Forbidden(AppError):
    status_code = 403
    code = ErrorCode.FORBIDDEN_ERROR


class CompanyNotActive(AppError):
    status_code = 403
    code = ErrorCode.COMPANY_IS_NOT_ACTIVE
    default_name = "company"


class NotFound(AppError):
    status_code = 404
    code = ErrorCode.RESOURCE_NOT_FOUND


class Conflict(AppError):
    status_code = 409
    code = ErrorCode.EXISTED


class PayloadTooLarge(AppError):
    status_code = 413
    code = ErrorCode.PAYLOAD_TOO_LARGE
    default_name = "body"


class TooManyRequests(AppError):
    status_code = 429
    code = ErrorCode.TOO_MANY_REQUESTS

    def __init__(self, message: str, *, retry_after_s: int, name: str | None = None) -> None:
        super().__init__(message, name=name, headers={"Retry-After": str(max(1, retry_after_s))})


class ServiceUnavailable(AppError):
    status_code = 503
    code = ErrorCode.SERVICE_UNAVAILABLE
    default_name = "service"


class RejectedBody(StarletteHTTPException):
    """A body refused while it is read (too large, not UTF-8), answered with the error named `body`.

    An HTTPException because FastAPI passes those through its body parsing unchanged and turns anything
    else raised there into a generic 400.
    """

    def __init__(
        self, status_code: int, code: ErrorCode, message: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(status_code=status_code, detail=message, headers=dict(headers or {}))
        self.code = code


def error_response(
    status_code: int, items: Sequence[ErrorItem], headers: Mapping[str, str] | None = None
) -> Response:
    body = orjson.dumps({"errors": [item.model_dump(mode="json") for item in items]})
    return Response(body, status_code=status_code, media_type="application/json", headers=headers)


def single_error(status_code: int, code: ErrorCode, name: str, message: str) -> Response:
    return error_response(status_code, [ErrorItem(name=name, code=code, message=message)])


_DESCRIPTIONS = {
    400: "Invalid input: the body names each bad field (`name`) with code INVALID or BAD_REQUEST.",
    401: "Missing, unknown, expired or revoked API key (NOT_AUTHENTICATE).",
    403: "The key may not do this (FORBIDDEN_ERROR) or its company is not active (COMPANY_IS_NOT_ACTIVE).",
    404: "No such object for this company (RESOURCE_NOT_FOUND); another company's objects look absent.",
    405: "The method is not supported here (BAD_REQUEST).",
    409: "Conflicts with an existing object (EXISTED).",
    413: "Body larger than the configured limit (PAYLOAD_TOO_LARGE).",
    429: "Rate limited (TOO_MANY_REQUESTS); see Retry-After.",
    502: "An upstream provider could not be reached or failed (SERVICE_UNAVAILABLE): nothing was stored.",
    503: "A dependency is unavailable (SERVICE_UNAVAILABLE).",
}


def responses(*status_codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` entries for the error statuses a route can answer."""
    return {code: {"model": ErrorBody, "description": _DESCRIPTIONS[code]} for code in status_codes}


def _wire_name(loc: Sequence[int | str]) -> str:
    parts = list(loc)
    if parts and parts[0] in ("body", "query", "path", "header", "cookie"):
        parts = parts[1:]
    name = ""
    for part in parts:
        if isinstance(part, int):
            name += f"[{part}]"
        elif part.startswith("function-after[") or part.startswith("function-"):
            continue
        else:
            name += f".{part}" if name else part
    return name or "body"


def validation_items(errors: Sequence[Any]) -> list[ErrorItem]:
    """Pydantic errors as error items named by wire field (`company.name`, `messages[3].phone`)."""
    items: list[ErrorItem] = []
    for error in errors:
        kind = error.get("type", "")
        name = _wire_name(error.get("loc", ()))
        if kind == "json_invalid":
            items.append(ErrorItem(name="body", code=ErrorCode.BAD_REQUEST, message="Body is not valid JSON"))
            continue
        if kind == "model_attributes_type" and name == "body":
            # FastAPI hands non-JSON content types over as raw bytes, which land here.
            message = "Body must be a JSON object sent with Content-Type: application/json"
            items.append(ErrorItem(name="body", code=ErrorCode.BAD_REQUEST, message=message))
            continue
        message = str(error.get("msg", "Invalid value"))
        if message.startswith("Value error, "):
            message = message[len("Value error, ") :]
        items.append(ErrorItem(name=name, code=ErrorCode.INVALID, message=message))
    return items


async def _app_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, AppError)
    return error_response(exc.status_code, exc.items, exc.headers)


async def _validation_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    return error_response(400, validation_items(exc.errors()))


_HTTP_CODES = {
    401: ErrorCode.NOT_AUTHENTICATE,
    403: ErrorCode.FORBIDDEN_ERROR,
    404: ErrorCode.RESOURCE_NOT_FOUND,
    405: ErrorCode.BAD_REQUEST,
    406: ErrorCode.NOT_ACCEPTABLE,
    408: ErrorCode.BAD_REQUEST,
    413: ErrorCode.PAYLOAD_TOO_LARGE,
    415: ErrorCode.BAD_REQUEST,
    417: ErrorCode.EXPECTATION_FAILED,
    429: ErrorCode.TOO_MANY_REQUESTS,
    503: ErrorCode.SERVICE_UNAVAILABLE,
}


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if isinstance(exc, RejectedBody):
        item = ErrorItem(name="body", code=exc.code, message=exc.detail)
        return error_response(exc.status_code, [item], exc.headers)
    code = _HTTP_CODES.get(exc.status_code, ErrorCode.BAD_REQUEST)
    if exc.status_code == 404:
        message = f"No route {request.url.path}" if exc.detail == "Not Found" else str(exc.detail)
    else:
        message = str(exc.detail)
    return error_response(
        exc.status_code, [ErrorItem(name="request", code=code, message=message)], exc.headers
    )


DATABASE_RETRY_AFTER_S = 2


def retry_after_response(description: str, wait: str) -> dict[str, Any]:
    """An OpenAPI response with the error body and a `Retry-After` header of whole seconds (`wait`)."""
    return {
        "description": description,
        "headers": {"Retry-After": {"description": wait, "schema": {"type": "integer", "minimum": 1}}},
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
    }


_DATABASE_UNAVAILABLE = (
    "The database is unreachable, restarting or busy (SERVICE_UNAVAILABLE): nothing was stored. "
    "Retry after `Retry-After` seconds; a send retried with the same `clientMessageId` is sent once."
)


_NO_DATABASE_PATHS = frozenset({"/healthz", "/metrics"})


def document_database_unavailable(schema: dict[str, Any]) -> None:
    """Declare the 503 on every operation that uses the database (all but liveness and metrics)."""
    for path, operations in schema.get("paths", {}).items():
        if path in _NO_DATABASE_PATHS:
            continue
        for operation in operations.values():
            if isinstance(operation, dict):
                responses = operation.setdefault("responses", {})
                responses.setdefault(
                    "503",
                    retry_after_response(_DATABASE_UNAVAILABLE, "Whole seconds to wait before trying again."),
                )


def _logged_path(request: Request) -> str:
    """The request's path, or its route's template where the path carries a secret (ops/middleware.py)."""
    return str(getattr(request.state, "log_path", request.url.path))


async def _server_error(request: Request, exc: Exception) -> Response:
    log.error("unhandled_error", path=_logged_path(request), error_type=type(exc).__name__, exc_info=exc)
    return single_error(500, ErrorCode.INTERNAL_SERVER_ERROR, "server", "Internal server error")


async def _database_error(request: Request, exc: Exception) -> Response:
    if not database_is_away(exc):
        return await _server_error(request, exc)
    log.warning("database_unavailable", path=_logged_path(request), error_type=type(exc).__name__)
    item = ErrorItem(name="database", code=ErrorCode.SERVICE_UNAVAILABLE, message="Database is unavailable")
    return error_response(503, [item], {"Retry-After": str(DATABASE_RETRY_AFTER_S)})


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(AppError, _app_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    for kind in (DBAPIError, PoolTimeout, OSError):
        app.add_exception_handler(kind, _database_error)
    app.add_exception_handler(Exception, _server_error)
