"""The `openmmp` command: serve, migrate, bootstrap, template."""

from __future__ import annotations

import asyncio
import json
import signal
from typing import Annotated, Any
from wsgiref.simple_server import WSGIServer

import structlog
import typer
import uvicorn
import uvloop

from openmmp import demo as demo_data
from openmmp import migrate as migrations
from openmmp.cli import campaigns as campaigns_cli
from openmmp.cli import portal as portal_cli
from openmmp.cli import webhooks as webhooks_cli
from openmmp.cli.config import load_settings as _settings
from openmmp.errors import AppError
from openmmp.kit.crypto import Keyring, server_keyring
from openmmp.kit.db import Database, redact_url
from openmmp.kit.heap import freeze_startup_heap
from openmmp.kit.logs import configure_logging
from openmmp.models.template import TemplateStatus
from openmmp.providers.registry import REGISTRY
from openmmp.settings import Settings

app = typer.Typer(
    help="OpenMMP: a self-hostable multi-channel business messaging platform.", no_args_is_help=True
)
app.add_typer(webhooks_cli.app, name="webhooks")
app.add_typer(campaigns_cli.app, name="campaign")
app.add_typer(portal_cli.app, name="portal")


@app.command()
def migrate() -> None:
    """Create or upgrade the database schema to the latest version."""
    settings = _settings()
    configure_logging(settings.log_level)
    migrations.upgrade(settings.resolved_database_url)
    typer.echo(f"database is up to date: {redact_url(settings.resolved_database_url)}", err=True)


@app.command()
def bootstrap(
    name: Annotated[str, typer.Option(help="The operator's partner company name")],
    as_json: Annotated[bool, typer.Option("--json", help="Print {companyPublicId, apiKey} as JSON")] = False,
) -> None:
    """Create the operator's partner company and print its API key (shown once)."""
    settings = _settings()
    configure_logging(settings.log_level)
    if not name.strip() or len(name) > 200:
        raise typer.BadParameter("name must have 1 to 200 characters", param_hint="--name")
    keyring = server_keyring(settings.secret_key, settings.data_dir)

    async def run() -> tuple[str, str]:
        from openmmp.companies.service import companies

        db = Database(settings.resolved_database_url)
        try:
            async with db.write_sessions() as session, session.begin():
                company, key = await companies.create_partner(session, keyring, name=name.strip())
                return company.public_id, key
        finally:
            await db.dispose()

    public_id, key = asyncio.run(run())
    if as_json:
        typer.echo(json.dumps({"companyPublicId": public_id, "apiKey": key}))
    else:
        typer.echo(f"Partner company {public_id} created.\nAPI key (shown once, keep it safe): {key}")


template_app = typer.Typer(
    help="Message templates waiting for the operator's review (those their upstream does not review).",
    no_args_is_help=True,
)
app.add_typer(template_app, name="template")


def _review(template_id: str, *, approve: bool, cause: str | None) -> None:
    """Approve or reject a template as the operator: any company's, as a partner key would its own."""
    settings = _settings()
    configure_logging(settings.log_level)

    async def run() -> tuple[str, int]:
        from openmmp.templates import service as templates

        db = Database(settings.resolved_database_url)
        try:
            async with db.write_sessions() as session, session.begin():
                template, _ = await templates.operator_review(
                    session, public_id=template_id, approve=approve, cause=cause
                )
                return template.public_id, template.status
        finally:
            await db.dispose()

    try:
        public_id, status = asyncio.run(run())
    except AppError as exc:
        typer.echo(f"{template_id}: {exc.message}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"Template {public_id} is {TemplateStatus(status).name}.")


_CAUSE = typer.Option(help="Why, in a sentence the company reads (the `cause` of its type 3 webhook)")


@template_app.command("approve")
def approve_template(
    template_id: Annotated[str, typer.Argument(help="The template's publicId")],
    cause: Annotated[str | None, _CAUSE] = None,
) -> None:
    """Approve a template waiting for review (REQUEST): it can be sent from now on."""
    _review(template_id, approve=True, cause=cause)


@template_app.command("reject")
def reject_template(
    template_id: Annotated[str, typer.Argument(help="The template's publicId")],
    cause: Annotated[str, _CAUSE] = "Rejected by the operator",
) -> None:
    """Reject a template waiting for review (REQUEST)."""
    _review(template_id, approve=False, cause=cause)


@template_app.command("list")
def list_templates(
    status: Annotated[
        int | None,
        typer.Option(min=0, max=3, help="Only this status: 0 DRAFT, 1 REQUEST, 2 APPROVED, 3 REJECTED"),
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="At most this many, oldest first")] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line")] = False,
) -> None:
    """Every company's templates, oldest first: `--status 1` is the queue to review."""
    settings = _settings()
    configure_logging(settings.log_level)

    async def run() -> list[dict[str, Any]]:
        from openmmp.templates import service as templates

        db = Database(settings.resolved_database_url)
        try:
            async with db.read_sessions() as session, session.begin():
                found = await templates.operator_list(
                    session, status=None if status is None else TemplateStatus(status), limit=limit
                )
        finally:
            await db.dispose()
        return [
            {
                "publicId": template.public_id,
                "status": template.status,
                "applicationId": template.application_id,
                "companyPublicId": company,
                "accountId": account,
                "name": template.name,
                "reviewedUpstream": template.upstream is not None,
            }
            for template, account, company in found
        ]

    for item in asyncio.run(run()):
        if as_json:
            typer.echo(json.dumps(item))
            continue
        who = "upstream" if item["reviewedUpstream"] else "operator"
        typer.echo(
            f"{item['publicId']}  {TemplateStatus(item['status']).name:<8}  "
            f"application={item['applicationId']}  company={item['companyPublicId']}  "
            f"account={item['accountId'] or '-'}  reviewer={who}  {item['name']}"
        )


def _portal_lines(base: str, links: dict[str, str]) -> str:
    lines = [f"  Portal: {base}/portal"]
    for email in demo_data.PORTAL_PEOPLE:
        if email in links:
            lines.append(f"    {email}: choose a password at {links[email]}")
        else:
            lines.append(f"    {email}: sign in with the password you chose")
    return "\n".join(lines)


def _banner(demo: demo_data.Demo, base: str, links: dict[str, str]) -> str:
    first = demo.channels.get(REGISTRY.providers[0].application.name, "<accountId>")
    return f"""
  OpenMMP sandbox is ready at {base}  (API docs: {base}/docs)

  Demo API key:  {demo.api_key}
  Demo channels: {", ".join(f"{k}={v}" for k, v in sorted(demo.channels.items()))}

  Try it:
    curl -s {base}/api/v1/channel/{first} -H 'apiKey: {demo.api_key}'

{_portal_lines(base, links)}
"""


def _sandbox_demo(settings: Settings, keyring: Keyring) -> demo_data.Demo:
    """The demo data: created on the first sandbox start, then read back from the data folder."""
    saved = demo_data.load_saved(settings.data_dir)

    async def ensure() -> demo_data.Demo:
        db = Database(settings.resolved_database_url)
        try:
            return await demo_data.ensure_demo(db, keyring, saved)
        finally:
            await db.dispose()

    demo = asyncio.run(ensure())
    if demo != saved:
        demo_data.save(settings.data_dir, demo)
    return demo


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Interface to listen on")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on")] = None,
    sandbox: Annotated[
        bool | None, typer.Option("--sandbox/--no-sandbox", help="Built-in simulators and demo data")
    ] = None,
    workers: Annotated[
        bool, typer.Option("--workers/--no-workers", help="Also run dispatch and webhook delivery")
    ] = True,
    worker_processes: Annotated[
        int,
        typer.Option(
            min=0,
            help="Worker processes started (and restarted) by this one, each on a core of its own; "
            "0 runs the workers inside the API's process",
        ),
    ] = 1,
) -> None:
    """Serve the API (and, in sandbox mode, the provider simulators and demo data)."""
    overrides: dict[str, object] = {}
    if host is not None:
        overrides["host"] = host
    if port is not None:
        overrides["port"] = port
    if sandbox is not None:
        overrides["sandbox"] = sandbox
    settings = _settings(**overrides)
    configure_logging(settings.log_level)
    from openmmp.app import create_app

    application = create_app(settings, workers=workers, worker_processes=worker_processes)
    freeze_startup_heap()
    if settings.sandbox:
        demo = _sandbox_demo(settings, application.state.keyring)
        links = asyncio.run(portal_cli.sandbox_links(settings, demo_data.PORTAL_PEOPLE))
        typer.echo(_banner(demo, f"http://{settings.host}:{settings.port}", links), err=True)
    uvicorn.run(application, host=settings.host, port=settings.port, log_config=None, access_log=False)


@app.command()
def worker(
    wake_stdin: Annotated[
        bool,
        typer.Option(
            "--wake-stdin",
            hidden=True,
            help="Started by `openmmp serve`: woken by bytes on stdin, stopped by its end (not by SIGINT)",
        ),
    ] = False,
) -> None:
    """Run dispatch, webhook delivery and the sweeps only (any number of these, on any host).

    With OPENMMP_METRICS_PORT it also serves its Prometheus metrics at http://{host}:{metrics_port}/metrics
    (there is no API here to scrape).
    """
    settings = _settings()
    configure_logging(settings.log_level)
    keyring = server_keyring(settings.secret_key, settings.data_dir)

    async def run() -> None:
        from openmmp.kit.http import HttpClient
        from openmmp.workers import Workers, follow_wake_pipe

        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        if wake_stdin:
            # Ctrl-C reaches the whole process group: the parent stops first and then ends the pipe.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        else:
            loop.add_signal_handler(signal.SIGINT, stop.set)
        # After the signal handlers: once its metrics answer, a signal stops the process cleanly.
        metrics_server = _serve_metrics(settings) if settings.metrics_port else None
        db = Database(settings.resolved_database_url, pool_size=settings.db_pool_size)
        http = HttpClient(timeout=settings.providers.timeout_seconds)
        runner = Workers(db, http, keyring, settings)
        freeze_startup_heap()
        if wake_stdin:
            await follow_wake_pipe(runner.wake, stop)
        try:
            await runner.run(stop)
        finally:
            await http.aclose()
            await db.dispose()
            if metrics_server is not None:
                await asyncio.to_thread(metrics_server.shutdown)
                metrics_server.server_close()

    # The event loop `serve` gets from uvicorn: a worker's time is mostly sockets and scheduling.
    uvloop.run(run())


def _serve_metrics(settings: Settings) -> WSGIServer:
    """Prometheus metrics at http://{host}:{metrics_port}/metrics, from a thread of their own."""
    from prometheus_client import start_http_server

    try:
        server, _ = start_http_server(settings.metrics_port, addr=settings.host)
    except OSError as exc:
        typer.echo(
            f"OpenMMP cannot serve metrics on {settings.host}:{settings.metrics_port}: {exc}", err=True
        )
        raise typer.Exit(2) from None
    structlog.get_logger(__name__).info(
        "metrics_serving", host=settings.host, port=settings.metrics_port, path="/metrics"
    )
    return server


def _knobs(assignments: list[str]) -> dict[str, dict[str, Any]]:
    """`--set viber.requests_per_second=40` → `{"viber": {"requests_per_second": 40}}` (values as JSON,
    else as text)."""
    knobs: dict[str, dict[str, Any]] = {}
    for assignment in assignments:
        target, equals, raw = assignment.partition("=")
        provider, dot, knob = target.partition(".")
        if not equals or not dot or not provider or not knob:
            raise typer.BadParameter(f"{assignment!r}: expected PROVIDER.KNOB=VALUE", param_hint="--set")
        try:
            value = json.loads(raw)
        except ValueError:
            value = raw
        knobs.setdefault(provider, {})[knob] = value
    return knobs


@app.command()
def simulate(
    host: Annotated[str, typer.Option(help="Interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on")] = 9100,
    latency: Annotated[float, typer.Option(help="Seconds before each callback")] = 0.05,
    mode: Annotated[str, typer.Option(help="sandbox (outcome by last digit) or rates")] = "sandbox",
    delivered_rate: Annotated[float, typer.Option(help="rates mode: share delivered")] = 0.95,
    read_rate: Annotated[float, typer.Option(help="rates mode: share of delivered that are read")] = 0.6,
    fail_rate: Annotated[float, typer.Option(help="rates mode: share refused at send")] = 0.02,
    retryable_error_rate: Annotated[float, typer.Option(help="rates mode: share of retryable errors")] = 0.01,
    track_keys: Annotated[
        bool, typer.Option(help="Count sends per idempotency key (memory per message)")
    ] = True,
    callback_retries: Annotated[
        int, typer.Option(min=0, help="Retries of a callback that fails, 0.2 s apart and doubling")
    ] = 5,
    callback_connections: Annotated[
        int,
        typer.Option(
            min=1,
            help="Callbacks in flight at once, over all providers (a real upstream calls back from many "
            "servers: raise it to measure the platform rather than this limit)",
        ),
    ] = 64,
    knob: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="A provider simulator's own knob, PROVIDER.KNOB=VALUE (repeatable), e.g. "
            "viber.requests_per_second=40, viber.duplicate_delivered=false, viber-bot.window_s=10",
        ),
    ] = None,
) -> None:
    """Serve every provider's simulator on its own port, each at /{provider} (e.g. /viber, /viber-bot)."""
    settings = _settings()
    configure_logging(settings.log_level)
    from openmmp.kit.http import HttpClient
    from openmmp.providers.simulation import SimulatorConfig, create_simulators_app

    if mode not in ("sandbox", "rates"):
        raise typer.BadParameter("sandbox or rates", param_hint="--mode")
    options = settings.providers.simulator_options()
    for provider, values in _knobs(knob or []).items():
        options[provider] = {**options.get(provider, {}), **values}
    config = SimulatorConfig(
        mode="rates" if mode == "rates" else "sandbox",
        callback_latency_s=latency,
        delivered_rate=delivered_rate,
        read_rate=read_rate,
        fail_rate=fail_rate,
        retryable_error_rate=retryable_error_rate,
        track_keys=track_keys,
        callback_retries=callback_retries,
        options=options,
    )
    try:
        application = create_simulators_app(
            config, HttpClient(timeout=10.0, max_connections=callback_connections)
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--set") from exc
    freeze_startup_heap()
    uvicorn.run(application, host=host, port=port, log_config=None, access_log=False)


def main() -> None:
    app()
