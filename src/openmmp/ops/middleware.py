"""The one ASGI middleware in front of the API: request id, body limit, access log and metrics.

Written as plain ASGI (not BaseHTTPMiddleware) because it sits on the hot path of every send.
"""

from __future__ import annotations

import asyncio
import codecs
import re
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import structlog
from starlette.routing import Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from openmmp.errors import ErrorCode, RejectedBody, single_error
from openmmp.kit.metrics import REQUEST_LATENCY, REQUESTS, children
from openmmp.kit.paths import API_PREFIX

log = structlog.get_logger("openmmp.http")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
# Route templates, methods and statuses are few: their labelled children are kept.
_requests = children(REQUESTS)
_latency = children(REQUEST_LATENCY)


_UTF8 = codecs.getincrementaldecoder("utf-8")
NOT_UTF8 = "Body must be UTF-8 encoded JSON (RFC 8259 §8.1)"


def _json_declared(content_type: bytes | None) -> bool:
    return content_type is not None and b"json" in content_type.lower()


def route_template(scope: Scope) -> str:
    """The metrics label of a request: its route's template, never the raw path (ids are unbounded)."""
    route: Any = scope.get("route")
    if isinstance(route, Mount):
        return "unmatched"  # a mounted app was reached and none of its routes matched
    template: str = getattr(route, "path", None) or "unmatched"
    if template == "unmatched":
        return template
    # A mounted app's route (the sandbox's simulators at /sim) has its template within that app: prefix
    # the mount's path, which the router added to `root_path` (the mounts here have no parameters).
    root_path: str = scope.get("root_path", "")
    app_root_path: str = scope.get("app_root_path", root_path)
    if len(root_path) > len(app_root_path) and root_path.startswith(app_root_path):
        return root_path[len(app_root_path) :] + template
    # Routes of included routers carry their own path only; label them with the full template.
    if scope["path"].startswith(API_PREFIX + "/") and not template.startswith(API_PREFIX):
        template = API_PREFIX + template
    return template


class _BodyDeadline:
    """When a request's body must have arrived: one timer per request, armed at its first read, which
    cancels a read still waiting when it fires (an `asyncio.timeout` around every read cost a tenth of
    a provider callback's handling). Reads after the whole body (a wait for the client's disconnect)
    have no deadline."""

    def __init__(self, seconds: float) -> None:
        self._loop = asyncio.get_running_loop()
        self._at = self._loop.time() + seconds
        self._timer: asyncio.TimerHandle | None = None
        self._reading: asyncio.Task[Any] | None = None
        self._passed = False
        self._met = False

    def _fire(self) -> None:
        self._passed = True
        if self._reading is not None:
            self._reading.cancel()

    async def read(self, receive: Receive) -> Message:
        """`receive()`; TimeoutError when the deadline passes first."""
        if self._met:
            return await receive()
        if self._passed:
            raise TimeoutError
        if self._timer is None:
            self._timer = self._loop.call_at(self._at, self._fire)
        task = self._reading = asyncio.current_task()
        try:
            return await receive()
        except asyncio.CancelledError:
            # Ours, unless the task was also cancelled for another reason (the server stopping).
            if self._passed and task is not None and task.uncancel() == 0:
                raise TimeoutError from None
            raise
        finally:
            self._reading = None

    def met(self) -> None:
        """The whole body arrived, or the request is over."""
        self._met = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


@dataclass(frozen=True)
class Uploads:
    """Routes that take files rather than API bodies (a campaign's contacts): the POSTs whose path matches
    `path` may be up to `max_bytes` long and take `timeout_seconds` to arrive."""

    path: re.Pattern[str]
    max_bytes: int
    timeout_seconds: float


class RequestMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int,
        body_timeout_seconds: float,
        uploads: Sequence[Uploads] = (),
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.body_timeout_seconds = body_timeout_seconds
        self.uploads = tuple(uploads)

    def _limits(self, scope: Scope) -> tuple[int, float]:
        """The largest body the request may have, and the time it may take to arrive."""
        if scope.get("method") == "POST":
            for upload in self.uploads:
                if upload.path.fullmatch(scope.get("path", "")):
                    return upload.max_bytes, upload.timeout_seconds
        return self.max_body_bytes, self.body_timeout_seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        given = headers.get(b"x-request-id", b"").decode("latin-1")
        request_id = given if _REQUEST_ID.match(given) else uuid.uuid4().hex
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        started = time.perf_counter()
        status = 500
        limit, body_timeout = self._limits(scope)

        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            status = 413
            response = single_error(
                413, ErrorCode.PAYLOAD_TOO_LARGE, "body", f"Request body is larger than {limit} bytes"
            )
            response.headers["x-request-id"] = request_id
            await response(scope, receive, send)
            self._record(scope, status, started)
            return

        received = 0
        # JSON bodies are checked as they arrive: json.loads would also take UTF-16 and UTF-32, and a
        # surrogate encoded in UTF-8, which no client should send and nothing downstream could store. A
        # compressed body (Apple's gzip callbacks) is JSON only once inflated: its reader checks it.
        encoded = headers.get(b"content-encoding", b"identity").strip().lower() != b"identity"
        utf8 = _UTF8() if _json_declared(headers.get(b"content-type")) and not encoded else None

        # The whole body must arrive in time: a client trickling a byte at a time would hold the
        # connection (and the request's resources) for as long as it likes.
        deadline = _BodyDeadline(body_timeout)

        async def limited_receive() -> Message:
            nonlocal received
            try:
                message = await deadline.read(receive)
            except TimeoutError:
                raise RejectedBody(
                    408,
                    ErrorCode.BAD_REQUEST,
                    f"The request body did not arrive within {body_timeout:g} seconds",
                    {"Connection": "close"},  # the rest of the body is not worth waiting for
                ) from None
            if message["type"] == "http.request":
                chunk = message.get("body", b"")
                received += len(chunk)
                if received > limit:
                    raise RejectedBody(
                        413, ErrorCode.PAYLOAD_TOO_LARGE, f"Request body is larger than {limit} bytes"
                    )
                if utf8 is not None:
                    # A raw NUL is never valid JSON, and it is what UTF-16 and UTF-32 look like as UTF-8.
                    try:
                        utf8.decode(chunk, final=not message.get("more_body", False))
                    except UnicodeDecodeError:
                        raise RejectedBody(400, ErrorCode.BAD_REQUEST, NOT_UTF8) from None
                    if b"\x00" in chunk:
                        raise RejectedBody(400, ErrorCode.BAD_REQUEST, NOT_UTF8)
                if not message.get("more_body", False):
                    deadline.met()
            return message

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, limited_receive, send_with_id)
        finally:
            deadline.met()
            self._record(scope, status, started)

    def _record(self, scope: Scope, status: int, started: float) -> None:
        elapsed = time.perf_counter() - started
        template = route_template(scope)
        method = scope["method"]
        _requests(method, template, str(status)).inc()
        _latency(method, template).observe(elapsed)
        state = scope.get("state", {})
        subject = state.get("subject")
        log.info(
            "request",
            method=method,
            # A route whose path carries a secret (a one-time link's token) logs its template instead.
            path=state.get("log_path", scope["path"]),
            route=template,
            status=status,
            duration_ms=round(elapsed * 1000, 2),
            company=getattr(subject, "company_public_id", None),
        )
