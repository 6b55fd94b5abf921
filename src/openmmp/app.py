"""create_app(): the FastAPI factory. The lifespan owns the engine and the outbound HTTP client."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import structlog
from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from openmmp import __version__
from openmmp.api import router as api_router
from openmmp.api_keys import ratelimit
from openmmp.callbacks.batching import CallbackReceiver
from openmmp.callbacks.endpoints import router as callbacks_router
from openmmp.campaigns.endpoints import CONTACTS_UPLOAD
from openmmp.channels.agent_endpoints import AGENT_TAGS
from openmmp.channels.consent_endpoints import CONSENT_TAGS
from openmmp.channels.endpoints import onboard_router
from openmmp.errors import document_database_unavailable, install_error_handlers
from openmmp.kit.crypto import server_keyring
from openmmp.kit.db import Database, redact_url
from openmmp.kit.direct import DirectApp
from openmmp.kit.http import HttpClient
from openmmp.messages.batching import SendBatcher
from openmmp.ops.docs import install_docs
from openmmp.ops.endpoints import router as ops_router
from openmmp.ops.middleware import RequestMiddleware, Uploads
from openmmp.portal.pages import campaigns as portal_campaigns
from openmmp.portal.routes import install_portal
from openmmp.providers.simulation import SimulatorConfig, create_simulators_app
from openmmp.sandbox import router as sandbox_router
from openmmp.settings import Settings
from openmmp.webhooks.docs import document_webhooks
from openmmp.workers import WorkerProcesses, Workers

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
    *AGENT_TAGS,
    *CONSENT_TAGS,
    {"name": "Background Task", "description": "Long work done in the background: progress and result file"},
    {"name": "Webhooks", "description": "The channel's webhook deliveries: log, attempts and replay"},
    {"name": "Message", "description": "Broadcast, conversation replies and message status"},
    {"name": "Template", "description": "Message templates: review by the operator or the upstream, preview"},
    {
        "name": "Bulk Campaign",
        "description": "Campaigns of one template to many contacts: create, list, progress",
    },
    {"name": "Callbacks", "description": "Where upstream providers report (signed by the provider)"},
    {"name": "Sandbox", "description": "Sandbox mode only: play an end user"},
    {"name": "Operations", "description": "Health, readiness and metrics"},
]


def _truthful_openapi(app: FastAPI) -> Callable[[], dict[str, Any]]:
    """FastAPI documents validation failures as 422 with its own body; ours are 400 with ErrorBody.

    Every operation taking an API key also answers 429 with `Retry-After` (its key's request budget), and
    every operation that uses the database 503 with `Retry-After` while the database is away.
    """

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
        ratelimit.document(schema)
        document_database_unavailable(schema)
        components = schema.get("components", {}).get("schemas", {})
        components.pop("HTTPValidationError", None)
        components.pop("ValidationError", None)
        app.openapi_schema = schema
        return schema

    return openapi


def _worker_env(settings: Settings) -> dict[str, str]:
    """The worker processes' environment: this one's, with what `openmmp serve` may have set by option."""
    return {
        **os.environ,
        "OPENMMP_HOST": settings.host,
        "OPENMMP_PORT": str(settings.port),
        "OPENMMP_SANDBOX": "true" if settings.sandbox else "false",
    }


def _worker_metrics_ports(settings: Settings, count: int) -> list[int]:
    """OPENMMP_METRICS_PORT + n for worker process n when it is set, else ports free now."""
    if settings.metrics_port:
        return [settings.metrics_port + n for n in range(count)]
    ports = []
    for _ in range(count):
        with socket.socket() as probe:
            probe.bind((settings.host, 0))
            ports.append(probe.getsockname()[1])
    return ports


def _reachable(host: str) -> str:
    """How this machine reaches a server listening on `host` (an unspecified address: on loopback)."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host  # a name
    if address.is_unspecified:
        address = ipaddress.ip_address("127.0.0.1" if address.version == 4 else "::1")
    return str(address) if address.version == 4 else f"[{address}]"


def create_app(
    settings: Settings | None = None, *, workers: bool = False, worker_processes: int = 0
) -> FastAPI:
    """The API app. `workers=True` also runs dispatch and webhook delivery: in `worker_processes` child
    processes (`openmmp worker` reading this process's environment, with the settings' host, port and
    sandbox mode), or with 0 in this process."""
    settings = settings or Settings()
    keyring = server_keyring(settings.secret_key, settings.data_dir)
    simulators = None
    simulator_http = HttpClient(timeout=10.0)
    if settings.sandbox:
        config = SimulatorConfig(options=settings.providers.simulator_options())
        simulators = create_simulators_app(config, simulator_http)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        db = Database(settings.resolved_database_url, pool_size=settings.db_pool_size)
        http = HttpClient(timeout=settings.providers.timeout_seconds)
        app.state.db = db
        app.state.http = http
        app.state.wake_workers = lambda: None
        app.state.worker_metrics = []
        app.state.api_rate_limiter = api_rate_limiter = ratelimit.build(settings)
        app.state.sends = SendBatcher(db, on_commit=lambda: app.state.wake_workers())
        app.state.callbacks = CallbackReceiver(
            db,
            keyring,
            settings.provider_contexts(http),
            settings.callbacks,
            on_commit=lambda: app.state.wake_workers(),
        )
        log.info("started", database=redact_url(db.url), sandbox=settings.sandbox, workers=workers)
        async with contextlib.AsyncExitStack() as stack:
            stack.push_async_callback(db.dispose)
            stack.push_async_callback(http.aclose)
            stack.push_async_callback(simulator_http.aclose)
            stack.push_async_callback(api_rate_limiter.aclose)
            if simulators is not None:
                await stack.enter_async_context(simulators.router.lifespan_context(simulators))
            if workers and worker_processes:
                ports = _worker_metrics_ports(settings, worker_processes)
                children = WorkerProcesses(_worker_env(settings), ports)
                await children.start()
                app.state.wake_workers = children.wake
                host = _reachable(settings.host)
                app.state.worker_metrics = [f"http://{host}:{port}/metrics" for port in ports]
                stack.push_async_callback(children.stop)
            elif workers:
                runner = Workers(db, http, keyring, settings)
                app.state.wake_workers = runner.wake
                stop = asyncio.Event()
                task = asyncio.create_task(runner.run(stop), name="openmmp-workers")

                async def stop_workers() -> None:
                    stop.set()
                    await task

                stack.push_async_callback(stop_workers)
            yield

    app = DirectApp(
        title="OpenMMP — MMP API",
        version=__version__,
        description=DESCRIPTION,
        openapi_tags=TAGS,
        lifespan=lifespan,
        docs_url=None,  # ops/docs.py serves /docs with local assets
        redoc_url=None,
        # OpenMMP's own Prometheus metrics and logs describe every request (docs/metrics.md); FastAPI's
        # OpenTelemetry hooks would look for providers on every request (a tenth of a callback's cost).
        telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
    )
    app.state.settings = settings
    app.state.keyring = keyring
    install_error_handlers(app)
    # Routes are matched in order, one by one: the providers' callbacks (two or three per message) first.
    app.include_router(callbacks_router)
    app.include_router(api_router)
    app.include_router(onboard_router)
    app.include_router(ops_router)
    install_docs(app)
    install_portal(app)
    if simulators is not None:
        app.include_router(sandbox_router)
        app.mount("/sim", simulators)
    document_webhooks(app)
    app.openapi = _truthful_openapi(app)  # type: ignore[method-assign]
    max_body, body_timeout = settings.max_body_bytes, settings.body_timeout_seconds
    files = settings.campaigns
    uploads = [
        Uploads(CONTACTS_UPLOAD, files.max_upload_bytes, files.upload_timeout_seconds),
        Uploads(
            portal_campaigns.CONTACTS_UPLOAD,
            files.max_upload_bytes + portal_campaigns.UPLOAD_FORM_BYTES,
            files.upload_timeout_seconds,
        ),
    ]
    app.add_middleware(
        RequestMiddleware, max_body_bytes=max_body, body_timeout_seconds=body_timeout, uploads=uploads
    )
    # The providers' callbacks (two or three per message) skip the rest of the stack (kit/direct.py).
    app.serve_direct(
        lambda direct: RequestMiddleware(direct, max_body_bytes=max_body, body_timeout_seconds=body_timeout)
    )
    return app
