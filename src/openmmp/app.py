"""create_app(): the FastAPI factory. The lifespan owns the engine and the outbound HTTP client."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import structlog
from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from openmmp import __version__
from openmmp.api import router as api_router
from openmmp.errors import install_error_handlers
from openmmp.kit.crypto import server_keyring
from openmmp.kit.db import Database, redact_url
from openmmp.kit.http import HttpClient
from openmmp.ops.endpoints import router as ops_router
from openmmp.ops.middleware import RequestMiddleware
from openmmp.settings import Settings
from openmmp.webhooks.docs import document_webhooks

log = structlog.get_logger(__name__)

DESCRIPTION = """
OpenMMP implements the **MMP API**: companies own channels (Viber, Viber Bot, RCS, WhatsApp, Zalo, Apple
Messages for Business, Messenger, SMS, e-mail), broadcast messages to phone numbers and subscribers, follow
every message through PENDING → SENT → DELIVERED → READ or FAIL, and receive signed webhooks.

Authenticate with the header `apiKey: <key>` (`X-API-Key` and `Authorization: Bearer` also work).
Errors always have the body `{"errors": [{"name", "code", "message"}]}`. Times are epoch milliseconds.
"""

TAGS = [
    {"name": "Onboard", "description": "Companies and API keys"},
    {"name": "Channel", "description": "Official accounts and bots"},
    {"name": "Operations", "description": "Health, readiness and metrics"},
]


def _truthful_openapi(app: FastAPI) -> Callable[[], dict[str, Any]]:
    """FastAPI documents validation failures as 422 with its own body; ours are 400 with ErrorBody."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title,
            version=app.version,
            description=app.description,
            routes=app.routes,
            webhooks=app.webhooks.routes,
            tags=app.openapi_tags,
        )
        for operations in schema.get("paths", {}).values():
            for operation in operations.values():
                responses = operation.get("responses", {})
                if responses.pop("422", None) is not None and "400" not in responses:
                    responses["400"] = {
                        "description": "Invalid input",
                        "content": {
                            "application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}
                        },
                    }
        components = schema.get("components", {}).get("schemas", {})
        components.pop("HTTPValidationError", None)
        components.pop("ValidationError", None)
        app.openapi_schema = schema
        return schema

    return openapi


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    keyring = server_keyring(settings.secret_key, settings.data_dir)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        db = Database(settings.resolved_database_url, pool_size=settings.db_pool_size)
        http = HttpClient(timeout=settings.providers.timeout_seconds)
        app.state.db = db
        app.state.http = http
        log.info("started", database=redact_url(db.url), sandbox=settings.sandbox)
        try:
            yield
        finally:
            await http.aclose()
            await db.dispose()

    app = FastAPI(
        title="OpenMMP — MMP API",
        version=__version__,
        description=DESCRIPTION,
        openapi_tags=TAGS,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.keyring = keyring
    install_error_handlers(app)
    app.include_router(api_router)
    app.include_router(ops_router)
    document_webhooks(app)
    app.openapi = _truthful_openapi(app)  # type: ignore[method-assign]
    app.add_middleware(RequestMiddleware, max_body_bytes=settings.max_body_bytes)
    return app
