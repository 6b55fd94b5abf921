"""A local RBM: Google's token endpoint, `agentMessages.create` with RBM's checks, and signed webhooks.

- `POST /token`: the JWT bearer grant. The assertion must be a well-formed RS256 JWT for the RBM scope,
  addressed to a `/token` URL, issued now and for at most an hour. Its signature is checked with the
  public key the simulator knows for its `iss`: the sandbox service account's (built in) or one the
  channel's set-up registered; a service account it knows no key of is taken on trust (the sandbox cannot
  know a tenant's key before its set-up has run). Tokens live `token_lifetime_s` and are forgotten when
  the simulator restarts (the platform then gets a 401 and asks again).
- `POST /v1/phones/{+E.164}/agentMessages?messageId&agentId`: a bearer token it issued, then the shared
  faults, RBM's checks of the AgentMessage (400 INVALID_ARGUMENT naming what is wrong), a rate limit per
  agent (429 RESOURCE_EXHAUSTED with Retry-After), idempotency by (agentId, messageId) (a repeat is 409
  ALREADY_EXISTS and sends nothing), and the sandbox's last digit: 8 is 404 NOT_FOUND (not reachable
  over RCS), 9 two 503 UNAVAILABLE before it goes through.
- Webhooks: DELIVERED and READ user events (a TTL_EXPIRATION_REVOKED server event for messages the
  `rates` mode fails later), in Pub/Sub push envelopes signed with `X-Goog-Signature` (the `client_token`
  knob), to the callback URL registered for the agent.

Sandbox control: `POST /_sandbox/agents` `{"agentId", "callbackUrl", "clientEmail"?, "publicKeyPem"?}`
(an empty `callbackUrl` removes it), `POST /_sandbox/inbound` (an end user writes:
`{"agentId", "phone", "text"}`, or `"postbackData"` with `text` for a tapped suggestion, or `"location":
{"latitude", "longitude"}`), `GET /_sandbox/messages/{messageId}` (what it received: `agentId`,
`phone`, `agentMessage`), `GET /_sandbox/stats`, `POST /_sandbox/faults`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import itertools
import re
import secrets
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from openmmp.kit.http import HttpClient
from openmmp.providers.rbm.auth import JWT_BEARER, SCOPE, b64url_decode
from openmmp.providers.rbm.callbacks import SANDBOX_CLIENT_TOKEN, SIGNATURE_HEADER, sign
from openmmp.providers.rbm.credentials import TRAFFIC_TYPES, load_rsa_key
from openmmp.providers.rbm.sandbox import SANDBOX_CLIENT_EMAIL, SANDBOX_PRIVATE_KEY_PEM
from openmmp.providers.simulation import (
    CallbackScheduler,
    FaultInjector,
    HeldUntilRegistered,
    LruMap,
    Outcome,
    OutcomePlanner,
    SimulatorConfig,
    SimulatorStats,
    TokenBucketLimiter,
    faults_response,
    hang,
    json_response,
    knobs,
    last_digit,
    read_json,
    sandbox_error,
    scheduler_lifespan,
    wants_detail,
)

MAX_REQUEST_BYTES = 250 * 1024
CLOCK_SKEW_S = 60
ASSERTION_MAX_LIFETIME_S = 3600
IDEMPOTENCY_KEYS = 200_000
TOKENS_KEPT = 100_000
KEYS_KEPT = 10_000
MESSAGES_KEPT = 1_000

TEXT_MAX = 3072
TITLE_MAX = 200
DESCRIPTION_MAX = 2000
LABEL_MAX = 25
POSTBACK_MAX = 2048
_TTL = re.compile(r"^\d{1,10}(\.\d{1,9})?s$")
_PHONE = re.compile(r"^\+\d{8,15}$")
_DIAL = re.compile(r"^\+\d{3,15}$")
_MESSAGE_ID = re.compile(r"^[A-Za-z0-9_-]{1,100}$")
_ACTIONS = (
    "openUrlAction",
    "dialAction",
    "viewLocationAction",
    "createCalendarEventAction",
    "shareLocationAction",
)


@dataclass
class RbmKnobs:
    """The RBM simulator's own knobs."""

    client_token: str = SANDBOX_CLIENT_TOKEN
    """Signs webhooks; must be the platform's `OPENMMP_PROVIDERS__RBM_CLIENT_TOKEN` (the sandbox's default
    when that is unset)."""
    requests_per_minute: int = 300
    """Messages accepted per minute per agent; beyond, 429 RESOURCE_EXHAUSTED."""
    token_lifetime_s: int = 3600
    """How long an access token it issues is good for (`expires_in`)."""


class _Invalid(Exception):
    """The AgentMessage breaks one of RBM's rules: 400 INVALID_ARGUMENT with this text."""


def create_rbm_simulator(config: SimulatorConfig, http: HttpClient) -> Starlette:
    """The RBM simulator as a Starlette app; `http` sends its webhooks."""
    return _RbmSimulator(config, http).app


def _google_error(code: int, status: str, message: str, headers: dict[str, str] | None = None) -> Response:
    response = json_response({"error": {"code": code, "message": message, "status": status}}, code)
    response.headers.update(headers or {})
    return response


def _oauth_error(error: str, description: str) -> Response:
    return json_response({"error": error, "error_description": description}, 400)


def _rfc3339(epoch_s: float | None = None) -> str:
    moment = datetime.fromtimestamp(time.time() if epoch_s is None else epoch_s, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class _RbmSimulator:
    def __init__(self, config: SimulatorConfig, http: HttpClient) -> None:
        self._config = config
        self._knobs = knobs(config, "rbm", RbmKnobs)
        self._stats = SimulatorStats(config)
        self._scheduler = CallbackScheduler(http, config, self._stats)
        self._held: HeldUntilRegistered[str] = HeldUntilRegistered(self._scheduler)
        self._faults = FaultInjector()
        self._planner = OutcomePlanner(config)
        self._limiter = TokenBucketLimiter(capacity=self._knobs.requests_per_minute, window_s=60.0)
        self._callback_urls: dict[str, str] = {}
        self._keys: LruMap[str, rsa.RSAPublicKey] = LruMap(KEYS_KEPT)
        self._keys.set(SANDBOX_CLIENT_EMAIL, load_rsa_key(SANDBOX_PRIVATE_KEY_PEM).public_key())
        # Issued tokens → (client_email, expiry on the monotonic clock).
        self._tokens: LruMap[str, tuple[str, float]] = LruMap(TOKENS_KEPT)
        # Idempotency is behaviour, not a statistic: always on, bounded like upstream's window.
        self._sent: LruMap[tuple[str, str], str] = LruMap(max(IDEMPOTENCY_KEYS, config.max_tracked_keys))
        # The last messages as received, for `GET /_sandbox/messages/{messageId}` (a few: they are large).
        self._received: LruMap[str, dict[str, Any]] = LruMap(MESSAGES_KEPT)
        self._counts = {"tokensIssued": 0, "tokensRefused": 0, "unauthenticated": 0}
        self._pushes = itertools.count(1)
        routes = [
            Route("/token", self._grant, methods=["POST"]),
            Route("/v1/phones/{phone}/agentMessages", self._agent_message, methods=["POST"]),
            Route("/_sandbox/agents", self._sandbox_agent, methods=["POST"]),
            Route("/_sandbox/inbound", self._sandbox_inbound, methods=["POST"]),
            Route("/_sandbox/messages/{message_id}", self._sandbox_message, methods=["GET"]),
            Route("/_sandbox/stats", self._sandbox_stats, methods=["GET"]),
            Route("/_sandbox/faults", self._sandbox_faults, methods=["POST"]),
        ]
        self.app = Starlette(routes=routes, lifespan=scheduler_lifespan(self._scheduler))
        self.app.state.simulator = self

    # ---- the token endpoint ---------------------------------------------------------------------------

    async def _grant(self, request: Request) -> Response:
        form = parse_qs((await request.body()).decode("utf-8", errors="replace"))
        if form.get("grant_type") != [JWT_BEARER]:
            self._counts["tokensRefused"] += 1
            return _oauth_error("unsupported_grant_type", "Invalid grant_type")
        try:
            email = self._check_assertion((form.get("assertion") or [""])[0])
        except _Invalid as refused:
            self._counts["tokensRefused"] += 1
            return _oauth_error("invalid_grant", str(refused))
        issued = f"sim-rbm-{secrets.token_urlsafe(24)}"
        lifetime = self._knobs.token_lifetime_s
        self._tokens.set(issued, (email, time.monotonic() + lifetime))
        self._counts["tokensIssued"] += 1
        return json_response({"access_token": issued, "expires_in": lifetime, "token_type": "Bearer"})

    def _check_assertion(self, jwt: str) -> str:
        """The client_email of a valid assertion; `_Invalid` with Google's kind of description otherwise."""
        parts = jwt.split(".")
        if len(parts) != 3:
            raise _Invalid("Invalid JWT: Token must be a short-lived token and in a reasonable timeframe")
        try:
            header = orjson.loads(b64url_decode(parts[0]))
            claims = orjson.loads(b64url_decode(parts[1]))
            signature = b64url_decode(parts[2])
        except (ValueError, binascii.Error) as exc:
            raise _Invalid("Invalid JWT: not base64url JSON") from exc
        if not isinstance(header, dict) or header.get("alg") != "RS256":
            raise _Invalid("Invalid JWT: the algorithm must be RS256")
        if not isinstance(claims, dict):
            raise _Invalid("Invalid JWT: the claims are not an object")
        issuer, audience, scope = claims.get("iss"), claims.get("aud"), claims.get("scope")
        if not isinstance(issuer, str) or "@" not in issuer:
            raise _Invalid("Invalid JWT: iss must be the service account's e-mail")
        if not isinstance(scope, str) or SCOPE not in scope.split():
            raise _Invalid(f"Invalid JWT: scope must include {SCOPE}")
        if not isinstance(audience, str) or not audience.endswith("/token"):
            raise _Invalid("Invalid JWT: aud must be the token endpoint")
        issued, expires = claims.get("iat"), claims.get("exp")
        now = time.time()
        if (
            not isinstance(issued, int)
            or not isinstance(expires, int)
            or issued > now + CLOCK_SKEW_S
            or expires <= now - CLOCK_SKEW_S
            or expires - issued > ASSERTION_MAX_LIFETIME_S
            or expires <= issued
        ):
            raise _Invalid(
                "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe"
            )
        key = self._keys.get(issuer)
        if key is not None:
            signed = f"{parts[0]}.{parts[1]}".encode("ascii")
            try:
                key.verify(signature, signed, padding.PKCS1v15(), hashes.SHA256())
            except InvalidSignature:
                raise _Invalid("Invalid JWT Signature.") from None
        return issuer

    def _bearer(self, request: Request) -> str | None:
        """The client_email of the request's live access token, or None."""
        scheme, _, presented = (request.headers.get("authorization") or "").partition(" ")
        if scheme.lower() != "bearer" or not presented:
            return None
        found = self._tokens.get(presented.strip())
        if found is None or time.monotonic() >= found[1]:
            return None
        return found[0]

    # ---- agentMessages.create -------------------------------------------------------------------------

    async def _agent_message(self, request: Request) -> Response:
        self._stats.requests += 1
        if self._bearer(request) is None:
            self._counts["unauthenticated"] += 1
            self._stats.reject(401)
            return _google_error(401, "UNAUTHENTICATED", "Request had invalid authentication credentials.")
        raw = await request.body()
        fault = self._faults.take()
        if fault is not None:
            return await self._fault(request, fault.kind, fault.status)
        phone = request.path_params["phone"]
        message_id = request.query_params.get("messageId") or ""
        agent_id = request.query_params.get("agentId") or ""
        try:
            if not _PHONE.match(phone):
                raise _Invalid(f"Invalid phone number: {phone!r} is not E.164")
            if not _MESSAGE_ID.match(message_id):
                raise _Invalid("messageId is required (letters, digits, - and _, at most 100)")
            if not agent_id:
                raise _Invalid("agentId is required")
            if len(raw) > MAX_REQUEST_BYTES:
                raise _Invalid("The message is larger than 250 KB")
            try:
                body = orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                raise _Invalid("Invalid JSON payload received") from exc
            _check_agent_message(body)
        except _Invalid as refused:
            self._stats.reject(400)
            return _google_error(400, "INVALID_ARGUMENT", str(refused))
        if not self._limiter.try_acquire(agent_id):
            self._stats.rate_limited += 1
            return _google_error(
                429,
                "RESOURCE_EXHAUSTED",
                "Quota exceeded for the agent's messages per minute.",
                {"retry-after": "1"},
            )
        key = (agent_id, message_id)
        if self._sent.get(key) is not None:
            self._stats.duplicates += 1
            return _google_error(409, "ALREADY_EXISTS", f"Message {message_id} already exists.")
        outcome = self._planner.decide(digit=last_digit(phone), attempt_key=f"{agent_id}:{message_id}")
        if outcome is Outcome.FINAL_ERROR:
            self._stats.reject(404)
            return _google_error(404, "NOT_FOUND", "Requested entity was not found.")
        if outcome is Outcome.RETRYABLE_ERROR:
            self._stats.reject(503)
            return _google_error(503, "UNAVAILABLE", "The service is currently unavailable.")
        self._sent.set(key, phone)
        self._received.set(message_id, {"agentId": agent_id, "phone": phone, "agentMessage": body})
        # Repeats are answered above from the idempotency map, so stats only see first acceptances.
        self._stats.accept(f"{agent_id}:{message_id}")
        if agent_id in self._callback_urls:
            self._scheduler.spawn(self._lifecycle(agent_id, phone, message_id, outcome))
        else:
            self._held.hold(agent_id, lambda: self._lifecycle(agent_id, phone, message_id, outcome))
        return json_response(
            {
                "name": f"phones/{phone}/agentMessages/{message_id}",
                "sendTime": _rfc3339(),
                "contentMessage": body["contentMessage"],
            }
        )

    async def _fault(self, request: Request, kind: str, status: int | None) -> Response:
        self._stats.faults_injected += 1
        if kind == "http_503":
            return _google_error(503, "UNAVAILABLE", "The service is currently unavailable.")
        if kind == "timeout":
            await hang(request, self._config.fault_hang_s)
            return _google_error(504, "DEADLINE_EXCEEDED", "Deadline exceeded.")
        if kind == "rate_limit":
            self._stats.rate_limited += 1
            return _google_error(429, "RESOURCE_EXHAUSTED", "Quota exceeded (sandbox fault).")
        code = status or 400
        self._stats.reject(code)
        return _google_error(code, "INVALID_ARGUMENT" if code == 400 else f"HTTP_{code}", "sandbox fault")

    async def _lifecycle(self, agent_id: str, phone: str, message_id: str, outcome: Outcome) -> None:
        latency = self._config.callback_latency_s
        await asyncio.sleep(latency)
        if outcome is Outcome.FAILED_LATER:
            revoked = {"phoneNumber": phone, "eventType": "TTL_EXPIRATION_REVOKED"}
            await self._push(agent_id, {**revoked, "eventId": _event_id(), "messageId": message_id})
            return
        await self._push(agent_id, self._user_event(agent_id, phone, message_id, "DELIVERED"))
        if outcome is Outcome.DELIVERED_AND_SEEN:
            await asyncio.sleep(latency)
            await self._push(agent_id, self._user_event(agent_id, phone, message_id, "READ"))

    @staticmethod
    def _user_event(agent_id: str, phone: str, message_id: str, kind: str) -> dict[str, Any]:
        return {
            "senderPhoneNumber": phone,
            "eventType": kind,
            "eventId": _event_id(),
            "messageId": message_id,
            "agentId": agent_id,
        }

    async def _push(self, agent_id: str, event: dict[str, Any]) -> None:
        """One webhook: `event` (with agentId and sendTime) in a push envelope, signed, to the agent's URL."""
        url = self._callback_urls.get(agent_id)
        if url is None:
            return
        data = orjson.dumps({**event, "agentId": agent_id, "sendTime": _rfc3339()})
        envelope = {
            "message": {
                "data": base64.b64encode(data).decode("ascii"),
                "messageId": str(next(self._pushes)),
                "publishTime": _rfc3339(),
            },
            "subscription": f"projects/rbm-{agent_id}/subscriptions/rbm-agent-subscription",
        }
        headers = {SIGNATURE_HEADER: sign(data, self._knobs.client_token)}
        await self._scheduler.post(url, orjson.dumps(envelope), headers)

    # ---- sandbox control ------------------------------------------------------------------------------

    async def _sandbox_agent(self, request: Request) -> Response:
        """Register (or with an empty `callbackUrl`, remove) where an agent's webhooks go, and the public
        key of the service account acting for it."""
        try:
            body = await read_json(request)
            if not isinstance(body, dict):
                raise ValueError("body must be a JSON object")
            agent_id, url = body.get("agentId"), body.get("callbackUrl")
            email, public_pem = body.get("clientEmail"), body.get("publicKeyPem")
            if not isinstance(agent_id, str) or not agent_id:
                raise ValueError("agentId is required")
            if url not in (None, "") and (
                not isinstance(url, str) or not url.startswith(("http://", "https://"))
            ):
                raise ValueError("callbackUrl must be an http(s) URL")
            key = _public_key(public_pem) if public_pem is not None else None
            if key is not None and (not isinstance(email, str) or "@" not in email):
                raise ValueError("clientEmail is required with publicKeyPem")
        except ValueError as exc:
            return sandbox_error(str(exc))
        if key is not None and isinstance(email, str):
            self._keys.set(email, key)
        if not url:
            self._callback_urls.pop(agent_id, None)
            self._held.configured(agent_id, registered=False)
            return json_response({"agentId": agent_id, "callbackUrl": None})
        self._callback_urls[agent_id] = str(url)
        self._held.configured(agent_id, registered=True)
        return json_response({"agentId": agent_id, "callbackUrl": url})

    async def _sandbox_inbound(self, request: Request) -> Response:
        """An end user writes to an agent: a signed user message to the agent's URL."""
        try:
            body = await read_json(request)
            if not isinstance(body, dict):
                raise ValueError("body must be a JSON object")
            agent_id, phone = body.get("agentId"), body.get("phone")
            if not isinstance(agent_id, str) or not agent_id:
                raise ValueError("agentId is required")
            if not isinstance(phone, str) or not _PHONE.match("+" + phone.removeprefix("+")):
                raise ValueError("phone must be E.164 digits")
            said = _user_content(body)
        except ValueError as exc:
            return sandbox_error(str(exc))
        url = self._callback_urls.get(agent_id)
        message_id = _event_id()
        if url is not None:
            event = {"senderPhoneNumber": "+" + phone.removeprefix("+"), "messageId": message_id, **said}
            self._scheduler.spawn(self._after_latency(agent_id, event))
        return json_response({"messageId": message_id, "callbackUrl": url})

    async def _after_latency(self, agent_id: str, event: dict[str, Any]) -> None:
        await asyncio.sleep(self._config.callback_latency_s)
        await self._push(agent_id, event)

    async def _sandbox_message(self, request: Request) -> Response:
        """What the simulator received as a message (among the last 1,000 accepted)."""
        found = self._received.get(request.path_params["message_id"])
        return json_response(found) if found is not None else sandbox_error("no such message", 404)

    async def _sandbox_stats(self, request: Request) -> Response:
        data = self._stats.as_json(detail=wants_detail(request), pending_callbacks=self._scheduler.pending)
        return json_response({**data, "rbm": dict(self._counts)})

    async def _sandbox_faults(self, request: Request) -> Response:
        return await faults_response(request, self._faults)


def _event_id() -> str:
    return str(uuid.uuid4())


def _public_key(value: Any) -> rsa.RSAPublicKey:
    if not isinstance(value, str):
        raise ValueError("publicKeyPem must be a PEM public key")
    try:
        key = serialization.load_pem_public_key(value.encode())
    except ValueError as exc:
        raise ValueError("publicKeyPem must be a PEM public key") from exc
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError("publicKeyPem must be an RSA key")
    return key


def _user_content(body: dict[str, Any]) -> dict[str, Any]:
    """What the user sends: text, a tapped suggestion (`postbackData` and its `text`) or a location."""
    text, postback, location = body.get("text"), body.get("postbackData"), body.get("location")
    if location is not None:
        if not isinstance(location, dict) or not all(
            isinstance(location.get(k), int | float) for k in ("latitude", "longitude")
        ):
            raise ValueError("location must be {latitude, longitude}")
        return {"location": {"latitude": location["latitude"], "longitude": location["longitude"]}}
    if not isinstance(text, str) or not text:
        raise ValueError("text is required")
    if postback is not None:
        if not isinstance(postback, str) or not postback:
            raise ValueError("postbackData must be a string")
        return {"suggestionResponse": {"postbackData": postback, "text": text, "type": "REPLY"}}
    return {"text": text}


# ---- RBM's checks of an AgentMessage --------------------------------------------------------------------


def _check_agent_message(body: Any) -> None:
    if not isinstance(body, dict):
        raise _Invalid("The body must be an AgentMessage object")
    content = body.get("contentMessage")
    if not isinstance(content, dict):
        raise _Invalid("contentMessage is required")
    kinds = [k for k in ("text", "contentInfo", "richCard", "uploadedRbmFile") if k in content]
    if len(kinds) != 1:
        raise _Invalid("contentMessage must hold exactly one of text, contentInfo, richCard, uploadedRbmFile")
    if "text" in content:
        _string(content["text"], "contentMessage.text", TEXT_MAX)
    elif "contentInfo" in content:
        _content_info(content["contentInfo"], "contentMessage.contentInfo")
    elif "richCard" in content:
        _rich_card(content["richCard"])
    _suggestions(content.get("suggestions"), "contentMessage.suggestions", 11)
    traffic = body.get("messageTrafficType")
    if traffic is not None and traffic not in TRAFFIC_TYPES:
        raise _Invalid(f"messageTrafficType must be one of {', '.join(TRAFFIC_TYPES)}")
    if "ttl" in body and "expireTime" in body:
        raise _Invalid("Only one of ttl and expireTime may be set")
    ttl = body.get("ttl")
    if ttl is not None and (not isinstance(ttl, str) or not _TTL.match(ttl)):
        raise _Invalid('ttl must be a duration such as "3600s"')


def _string(value: Any, field: str, most: int, *, required: bool = True) -> None:
    if value is None and not required:
        return
    if not isinstance(value, str) or not value:
        raise _Invalid(f"{field} is required")
    if len(value) > most:
        raise _Invalid(f"{field} is longer than {most} characters")


def _content_info(value: Any, field: str) -> None:
    if not isinstance(value, dict):
        raise _Invalid(f"{field} must be an object")
    url = value.get("fileUrl")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise _Invalid(f"{field}.fileUrl must be an http(s) URL")
    thumbnail = value.get("thumbnailUrl")
    if thumbnail is not None and (not isinstance(thumbnail, str) or not thumbnail.startswith("http")):
        raise _Invalid(f"{field}.thumbnailUrl must be an http(s) URL")
    if not isinstance(value.get("forceRefresh", False), bool):
        raise _Invalid(f"{field}.forceRefresh must be a boolean")


def _rich_card(card: Any) -> None:
    if not isinstance(card, dict) or len([k for k in ("standaloneCard", "carouselCard") if k in card]) != 1:
        raise _Invalid("richCard must hold exactly one of standaloneCard, carouselCard")
    standalone = card.get("standaloneCard")
    if standalone is not None:
        if not isinstance(standalone, dict):
            raise _Invalid("standaloneCard must be an object")
        orientation = standalone.get("cardOrientation")
        if orientation not in ("VERTICAL", "HORIZONTAL"):
            raise _Invalid("standaloneCard.cardOrientation must be VERTICAL or HORIZONTAL")
        alignment = standalone.get("thumbnailImageAlignment")
        if orientation == "HORIZONTAL" and alignment not in ("LEFT", "RIGHT"):
            raise _Invalid(
                "standaloneCard.thumbnailImageAlignment must be LEFT or RIGHT for a horizontal card"
            )
        _card_content(
            standalone.get("cardContent"), "standaloneCard.cardContent", vertical=orientation == "VERTICAL"
        )
        return
    carousel = card["carouselCard"]
    if not isinstance(carousel, dict) or carousel.get("cardWidth") not in ("SMALL", "MEDIUM"):
        raise _Invalid("carouselCard.cardWidth must be SMALL or MEDIUM")
    contents = carousel.get("cardContents")
    if not isinstance(contents, list) or not 2 <= len(contents) <= 10:
        raise _Invalid("carouselCard.cardContents must hold 2 to 10 cards")
    for n, content in enumerate(contents):
        _card_content(content, f"carouselCard.cardContents[{n}]", vertical=True)


def _card_content(content: Any, field: str, *, vertical: bool) -> None:
    if not isinstance(content, dict):
        raise _Invalid(f"{field} is required")
    if not any(k in content for k in ("title", "description", "media")):
        raise _Invalid(f"{field} needs a title, a description or media")
    _string(content.get("title"), f"{field}.title", TITLE_MAX, required=False)
    _string(content.get("description"), f"{field}.description", DESCRIPTION_MAX, required=False)
    media = content.get("media")
    if media is not None:
        if not isinstance(media, dict):
            raise _Invalid(f"{field}.media must be an object")
        if vertical and media.get("height") not in ("SHORT", "MEDIUM", "TALL"):
            raise _Invalid(f"{field}.media.height must be SHORT, MEDIUM or TALL")
        _content_info(media.get("contentInfo"), f"{field}.media.contentInfo")
    _suggestions(content.get("suggestions"), f"{field}.suggestions", 4)


def _suggestions(value: Any, field: str, most: int) -> None:
    if value is None:
        return
    if not isinstance(value, list) or len(value) > most:
        raise _Invalid(f"{field} must be a list of at most {most}")
    for n, suggestion in enumerate(value):
        where = f"{field}[{n}]"
        if not isinstance(suggestion, dict) or len([k for k in ("reply", "action") if k in suggestion]) != 1:
            raise _Invalid(f"{where} must hold exactly one of reply, action")
        chip = suggestion.get("reply", suggestion.get("action"))
        if not isinstance(chip, dict):
            raise _Invalid(f"{where} must be an object")
        _string(chip.get("text"), f"{where}.text", LABEL_MAX)
        _string(chip.get("postbackData"), f"{where}.postbackData", POSTBACK_MAX)
        if "action" in suggestion:
            _action(chip, where)


def _action(chip: dict[str, Any], where: str) -> None:
    kinds = [k for k in _ACTIONS if k in chip]
    if len(kinds) != 1:
        raise _Invalid(f"{where}.action must hold exactly one of {', '.join(_ACTIONS)}")
    detail = chip[kinds[0]]
    if not isinstance(detail, dict):
        raise _Invalid(f"{where}.action.{kinds[0]} must be an object")
    if kinds[0] == "openUrlAction":
        url = detail.get("url")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise _Invalid(f"{where}.action.openUrlAction.url must be an http(s) URL")
    elif kinds[0] == "dialAction":
        if not isinstance(detail.get("phoneNumber"), str) or not _DIAL.match(detail["phoneNumber"]):
            raise _Invalid(f"{where}.action.dialAction.phoneNumber must be E.164")
    elif kinds[0] == "viewLocationAction":
        at = detail.get("latLong")
        if at is None and not isinstance(detail.get("query"), str):
            raise _Invalid(f"{where}.action.viewLocationAction needs latLong or query")
        if at is not None and not (
            isinstance(at, dict)
            and isinstance(at.get("latitude"), int | float)
            and isinstance(at.get("longitude"), int | float)
        ):
            raise _Invalid(f"{where}.action.viewLocationAction.latLong needs latitude and longitude")
    elif kinds[0] == "createCalendarEventAction":
        for name in ("startTime", "endTime", "title", "description"):
            if not isinstance(detail.get(name), str) or not detail[name]:
                raise _Invalid(f"{where}.action.createCalendarEventAction.{name} is required")
