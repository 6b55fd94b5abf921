"""`openmmp webhooks listen`: a tiny receiver to watch a channel's webhooks arrive (the README's tour).

Prints one line per event on stdout and answers 204; with `--secret` (repeatable: one per channel) it
checks the Standard Webhooks signature first and answers 401 to anything signed with none of them.
"""

from __future__ import annotations

import sys
from datetime import datetime
from typing import Annotated, Any

import orjson
import typer
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from openmmp.webhooks.signing import SignatureInvalid, Signer, check

app = typer.Typer(help="Webhook tools.", no_args_is_help=True)

_TEXT_CHARS = 80


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def describe(event: Any) -> str:
    """The interesting part of a webhook body, in a few words."""
    if not isinstance(event, dict):
        return "(not a JSON object)"
    kind = event.get("type")
    if kind == 1:
        return f"type=1 message={event.get('messageId')} status={event.get('status')} {event.get('cause')}"
    if kind == 2:
        message = _object(event.get("message"))
        text = " ".join(str(message.get("message") or "").split())
        if len(text) > _TEXT_CHARS:
            text = text[: _TEXT_CHARS - 1] + "…"
        return f"type=2 from={event.get('from')} {message.get('type')}: {text}"
    if kind in (3, 4):
        what = "template" if kind == 3 else "channel"
        item = _object(event.get(what))
        return f"type={kind} {what}={item.get('publicId')} status={item.get('status')} {item.get('cause')}"
    return f"type={kind}"


def _checked(secrets: list[str], body: bytes, headers: Any) -> Any:
    """The event, verified with whichever of `secrets` signed it; SignatureInvalid when none did."""
    problem: SignatureInvalid | None = None
    for secret in secrets:
        try:
            return check(secret, body, headers)
        except SignatureInvalid as exc:
            problem = exc
    assert problem is not None
    raise problem


def receiver(secrets: list[str]) -> Starlette:
    """The receiver app: POST to any path. With `secrets`, only what one of them signed is accepted."""

    async def receive(request: Request) -> Response:
        body = await request.body()
        moment = datetime.now().strftime("%H:%M:%S.%f")[:-3]
        webhook_id = request.headers.get("webhook-id", "-")
        if secrets:
            try:
                event = _checked(secrets, body, request.headers)
            except SignatureInvalid as exc:
                print(f"{moment} {webhook_id} REFUSED bad signature: {exc}", file=sys.stderr, flush=True)
                return PlainTextResponse("bad signature", status_code=401)
        else:
            try:
                event = orjson.loads(body)
            except orjson.JSONDecodeError:
                event = None
        print(f"{moment} {webhook_id} {describe(event)}", flush=True)
        return Response(status_code=204)

    return Starlette(routes=[Route("/{path:path}", receive, methods=["POST"])])


@app.command()
def listen(
    port: Annotated[int, typer.Option(help="Port to listen on")] = 9000,
    host: Annotated[str, typer.Option(help="Interface to listen on")] = "127.0.0.1",
    secret: Annotated[
        list[str] | None,
        typer.Option(
            help="A channel's whsec_ secret: check signatures, answer 401 to bad ones. Repeat it for "
            "several channels: a webhook signed with any of them is accepted",
        ),
    ] = None,
) -> None:
    """Receive webhooks on http://HOST:PORT/ (any path) and print one line per event."""
    secrets = secret or []
    for value in secrets:
        try:
            Signer(value)
        except Exception as exc:
            raise typer.BadParameter("must be whsec_ followed by base64", param_hint="--secret") from exc
        if not value.startswith("whsec_"):
            raise typer.BadParameter("must start with whsec_", param_hint="--secret")
    checking = (
        f"checking signatures ({len(secrets)} secret{'s' if len(secrets) > 1 else ''})"
        if secrets
        else "NOT checking signatures (give --secret)"
    )
    typer.echo(f"listening on http://{host}:{port}/ ({checking}); Ctrl-C stops", err=True)
    uvicorn.run(receiver(secrets), host=host, port=port, log_level="warning", access_log=False)
