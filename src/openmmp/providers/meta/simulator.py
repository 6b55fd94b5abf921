"""What the simulators of Meta's products share: the Graph API's plumbing, faults and signed webhooks.

Each simulator (`GraphSimulator`) keeps its own routes, checks, error words and webhook bodies; here are
the parts Meta's platform has in common:

- every call is counted, and a fault from `POST /_sandbox/faults` is answered before anything else:
  `http_503` and `timeout` as an edge proxy would, `rate_limit` with the product's throughput code,
  `final_error` with the fault's `status` as the error code (else the product's undeliverable code);
- a call's token is `Authorization: Bearer`, its body a JSON object (else 100);
- errors are Meta's envelope, `{"error": {"message": "(#<code>) <words>", "type": "OAuthException",
  "code", "error_subcode"?, "fbtrace_id"}}` and what the product adds;
- webhooks are `{"object", "entry": [entry]}` signed with `X-Hub-Signature-256` keyed by the app secret;
- the sandbox control routes: `POST /_sandbox/webhooks` (the app's webhook settings: where a Page's or a
  number's webhooks go, and the app secret that signs them), `POST /_sandbox/inbound` (an end user writes),
  `GET /_sandbox/messages/{id}` (the request the product got), `GET /_sandbox/stats` and
  `POST /_sandbox/faults`.
"""

from __future__ import annotations

import hashlib
import itertools
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from openmmp.kit.http import HttpClient
from openmmp.providers.meta.webhooks import SIGNATURE_HEADER, sign
from openmmp.providers.simulation import (
    HeldUntilRegistered,
    HttpSimulator,
    LruMap,
    SimulatorConfig,
    edge_fault,
    json_response,
    sandbox_error,
)

INVALID_PARAMETER = 100


class Refused(Exception):
    """A request the Graph API answers with an error envelope (`subcode`: its `error_subcode`;
    `user_title` and `user_message`: its words for people, `error_user_title` and `error_user_msg`)."""

    def __init__(
        self,
        code: int,
        details: str = "",
        *,
        subcode: int | None = None,
        user_title: str = "",
        user_message: str = "",
    ) -> None:
        super().__init__(details or f"error {code}")
        self.code = code
        self.details = details
        self.subcode = subcode
        self.user_title = user_title
        self.user_message = user_message


class GraphSimulator(HttpSimulator, ABC):
    """A simulator of a Meta product's Graph API."""

    webhook_object: ClassVar[str]
    """The `object` of the product's webhooks."""
    fault_rate_limit: ClassVar[int]
    """The error code a `rate_limit` fault answers."""
    fault_final_error: ClassVar[int]
    """The error code a `final_error` fault without a `status` answers."""

    def __init__(self, config: SimulatorConfig, http: HttpClient, routes: Sequence[BaseRoute]) -> None:
        self._wrote: LruMap[str, float] = LruMap(config.max_tracked_keys)
        """When each end user last wrote to a Page or number (epoch seconds), by `{its id}:{user}`."""
        self._messages: LruMap[str, dict[str, Any]] = LruMap(config.max_tracked_keys)
        """The requests that sent each message, by its id (while `track_keys`)."""
        self._sequence = itertools.count(1)
        sandbox = [
            Route("/_sandbox/webhooks", self._sandbox_webhooks, methods=["POST"]),
            Route("/_sandbox/inbound", self._sandbox_inbound, methods=["POST"]),
            Route("/_sandbox/messages/{message_id}", self._sandbox_message, methods=["GET"]),
        ]
        super().__init__(config, http, [*sandbox, *routes])
        self._held: HeldUntilRegistered[str] = HeldUntilRegistered(self._scheduler)
        """Webhooks of a Page or number that has nowhere to send them yet, by its id."""

    @abstractmethod
    def _error(self, refused: Refused) -> Response:
        """The product's answer refusing a call (`_envelope`, with its HTTP status)."""

    @abstractmethod
    async def _sandbox_webhooks(self, request: Request) -> Response:
        """Configure (or with an empty `callbackUrl`, remove) where a Page's or a number's webhooks go."""

    @abstractmethod
    async def _sandbox_inbound(self, request: Request) -> Response:
        """An end user writes in: their window opens and, when there is a callback URL, a webhook follows."""

    async def _faulted(self, request: Request) -> Response | None:
        """Count a call; the answer to an injected fault when one is due (before anything else is checked)."""
        self._stats.requests += 1
        fault = self._faults.take()
        if fault is None:
            return None
        if (edge := await edge_fault(request, fault.kind, self._config, self._stats)) is not None:
            return edge
        if fault.kind == "rate_limit":
            self._stats.rate_limited += 1
            return self._error(Refused(self.fault_rate_limit, "sandbox fault"))
        return self._error(Refused(fault.status or self.fault_final_error, "sandbox fault"))

    def _envelope(self, refused: Refused, words: str) -> dict[str, Any]:
        """The `error` object of Meta's envelope for `refused`, its message `(#<code>) <words>`; the error
        is counted in the stats."""
        self._stats.reject(refused.code)
        error: dict[str, Any] = {
            "message": f"(#{refused.code}) {words}",
            "type": "OAuthException",
            "code": refused.code,
            "fbtrace_id": self._trace(),
        }
        if refused.subcode is not None:
            error["error_subcode"] = refused.subcode
        return error

    def _trace(self) -> str:
        """An envelope's `fbtrace_id`."""
        return f"Sim{next(self._sequence)}"

    async def _deliver(self, url: str, app_secret: str, entry: Mapping[str, Any]) -> None:
        """POST a webhook of one entry, signed with `app_secret` as Meta signs them."""
        body = orjson.dumps({"object": self.webhook_object, "entry": [entry]})
        headers = {SIGNATURE_HEADER: sign(body, app_secret), "content-type": "application/json"}
        await self._scheduler.post(url, body, headers)

    async def _sandbox_message(self, request: Request) -> Response:
        found = self._messages.get(request.path_params["message_id"])
        if found is None:
            return sandbox_error("no such message (or key tracking is off)", 404)
        return json_response(found)


def webhook_settings(body: Any, id_field: str) -> tuple[str, str | None, str]:
    """What a `POST /_sandbox/webhooks` body sets for the Page or number its `id_field` names: the id, the
    callback URL (None: remove it) and the app secret that signs the webhooks ("" with no URL).

    Raises ValueError for a body the route refuses.
    """
    if not isinstance(body, dict):
        raise ValueError("body must be a JSON object")
    key, url, secret = body.get(id_field), body.get("callbackUrl"), body.get("appSecret")
    if not isinstance(key, str) or not key:
        raise ValueError(f"{id_field} is required")
    if url not in (None, "") and (not isinstance(url, str) or not url.startswith(("http://", "https://"))):
        raise ValueError("callbackUrl must be an http(s) URL")
    if url and (not isinstance(secret, str) or not secret):
        raise ValueError("appSecret is required: webhooks are signed with it")
    return key, url or None, str(secret) if url else ""


def bearer(request: Request) -> str | None:
    """The token of the request's `Authorization: Bearer <token>`, or None."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def json_object(raw: bytes) -> dict[str, Any]:
    """A request's body as the Graph API reads it: a JSON object, or 100."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise Refused(INVALID_PARAMETER, "the body is not JSON") from exc
    if not isinstance(body, dict):
        raise Refused(INVALID_PARAMETER, "the body is not a JSON object")
    return body


def payload_hash(body: Mapping[str, Any]) -> str:
    """What makes "the same message" for digit-9 retries and duplicate stats: the body as sent, whoever it
    goes to."""
    return hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]
