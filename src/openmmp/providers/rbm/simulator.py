"""A local RBM: Google's token endpoint, `agentMessages.create` with RBM's checks, Business Communications'
agent management, the RBM API's testers, capabilities and users:batchGet, and signed webhooks.

- `POST /token`: the JWT bearer grant. The assertion must be a well-formed RS256 JWT for the RBM scope or
  the Business Communications scope, addressed to a `/token` URL, issued now and for at most an hour. Its
  signature is checked with the public key the simulator knows for its `iss`: the sandbox service
  account's (built in), the platform's partner account (the `partner_service_account` knob) or one the
  channel's set-up registered; a service account it knows no key of is taken on trust (the sandbox cannot
  know a tenant's key before its set-up has run). Tokens live `token_lifetime_s`, act for the scopes they
  were asked with (another API answers 403 PERMISSION_DENIED), and are forgotten when the simulator
  restarts (the platform then gets a 401 and asks again).
- `POST /v1/phones/{+E.164}/agentMessages?messageId&agentId`: a bearer token it issued, then the shared
  faults, RBM's checks of the AgentMessage (400 INVALID_ARGUMENT naming what is wrong), an agent it made
  that is launched nowhere may message its testers only (403 PERMISSION_DENIED), a rate limit per agent
  (429 RESOURCE_EXHAUSTED with Retry-After), idempotency by (agentId, messageId) (a repeat is 409
  ALREADY_EXISTS and sends nothing), and the sandbox's last digit: 8 is 404 NOT_FOUND (not reachable
  over RCS), 9 two 503 UNAVAILABLE before it goes through.
- Business Communications (its scope; the shared faults apply): `POST /v1/brands`, `POST
  /v1/brands/{brand}/agents` (RBM's checks of the agent: 400 INVALID_ARGUMENT), `GET`/`PATCH
  .../agents/{agent}?updateMask=` (400 FAILED_PRECONDITION for a new hosting region, and for a new use
  case or billing category once a launch was requested), `POST .../agents/{agent}:requestVerification`
  and `GET .../verification` (PENDING, VERIFIED after `launch_review_seconds`), `POST
  .../agents/{agent}:requestLaunch` (only for an agent never launched: 400 FAILED_PRECONDITION
  otherwise), `PATCH .../agents/{agent}/launch` (updateLaunch: the regions it adds, and those rejected
  before, go for review again) and `GET .../launch`, and `GET /v1/regions`: the Google-managed
  `asia-pacific` and `europe` and the carrier-managed regions of Indonesia's and India's carriers that
  the launch forms name. A region asked for goes PENDING and, after `launch_review_seconds`, LAUNCHED,
  or REJECTED for an agent whose displayName contains "[reject]"; each change is an AgentLaunchEvent
  webhook. An agent unknown here (made before a restart: everything is kept in memory) is taken as an
  agent that exists, verified and launched in `asia-pacific`, as sends take it; one under another brand
  than its own is 404 NOT_FOUND.
- The RBM API's management calls (its scope; the shared faults apply): `POST
  /v1/phones/{+E.164}/testers?agentId` invites a test device, which accepts at once (a repeat is 409
  ALREADY_EXISTS, a phone without RCS 404 NOT_FOUND, beyond 20 invitations a day or 200 in all 429
  RESOURCE_EXHAUSTED); `GET /v1/phones/{+E.164}/capabilities?requestId&agentId` answers the features of
  an RCS phone (by the last digit: 8 has no RCS, 404 NOT_FOUND); `POST /v1/users:batchGet` takes at most
  10,000 numbers (400 beyond) and `batch_get_per_minute` calls per service account (429 beyond), and
  answers the RCS numbers as `reachableUsers`, with the sample counts (0 below 500 numbers; the first
  three quarters are the "random" sample).
- Launch gating: an agent this simulator made and that is LAUNCHED in no region may send to its testers
  only (403 PERMISSION_DENIED). Google also refuses such an agent's capability checks of other phones and
  lists it no `reachableUsers`; the simulator does too with `gate_reach_checks`, and otherwise lets a
  sandbox company check its phones before the launch. Any agent it does not know (the sandbox's demo
  agent, or every agent after a restart: it keeps everything in memory) counts as launched, so sending
  works as it always did.
- Webhooks: DELIVERED and READ user events (a TTL_EXPIRATION_REVOKED server event for messages the
  `rates` mode fails later) and AgentLaunchEvents, in Pub/Sub push envelopes signed with
  `X-Goog-Signature` (the `client_token` knob), to the callback URL registered for the agent; those of an
  agent not registered since the start wait for its registration.

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
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
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

from openmmp.kit.crypto import b64url_decode
from openmmp.kit.http import HttpClient
from openmmp.providers.rbm.auth import JWT_BEARER, MANAGEMENT_SCOPE, SCOPE
from openmmp.providers.rbm.callbacks import SANDBOX_CLIENT_TOKEN, SIGNATURE_HEADER, sign
from openmmp.providers.rbm.credentials import TRAFFIC_TYPES, load_rsa_key, parse_service_account
from openmmp.providers.rbm.management import BATCH_GET_MAX, INDIA_REGIONS, INDONESIA_REGIONS, REGION_PREFIX
from openmmp.providers.rbm.sandbox import SANDBOX_CLIENT_EMAIL, SANDBOX_PRIVATE_KEY_PEM
from openmmp.providers.simulation import (
    HeldUntilRegistered,
    HttpSimulator,
    LruMap,
    Outcome,
    SimulatorConfig,
    TokenBucketLimiter,
    hang,
    json_response,
    knobs,
    last_digit,
    read_json,
    sandbox_error,
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
_HEX_COLOR = re.compile(r"^#[0-9A-Fa-f]{6}$")
_SCOPES = frozenset({SCOPE, MANAGEMENT_SCOPE})
AGENTS_KEPT = 10_000
TESTERS_PER_DAY = 20
TESTERS_MAX = 200
SAMPLED_FROM = 500
"""users:batchGet's sample counts are 0 below this many numbers."""
FEATURES = (
    "RICHCARD_STANDALONE",
    "RICHCARD_CAROUSEL",
    "ACTION_CREATE_CALENDAR_EVENT",
    "ACTION_DIAL",
    "ACTION_OPEN_URL",
    "ACTION_SHARE_LOCATION",
    "ACTION_VIEW_LOCATION",
)
"""What an RCS phone of the sandbox can do (capabilities' `features`)."""
_CARRIERS = {
    "telkomsel": "Telkomsel (Indonesia)",
    "indosat": "Indosat Ooredoo Hutchison (Indonesia)",
    "xl": "XL Axiata (Indonesia)",
    "jio": "Jio (India)",
    "airtel": "Airtel (India)",
    "vi": "Vodafone Idea (India)",
}
REGIONS = {
    "asia-pacific": ("Asia Pacific", "GOOGLE_MANAGED"),
    "europe": ("Europe", "GOOGLE_MANAGED"),
    **{
        region: (_CARRIERS[carrier], "CARRIER_MANAGED")
        for carrier, region in {**INDONESIA_REGIONS, **INDIA_REGIONS}.items()
    },
}
"""The regions a launch can ask for: id → (display name, management type)."""
_BILLING = ("CONVERSATIONAL", "BASIC_MESSAGE", "SINGLE_MESSAGE")
_USE_CASES = ("OTP", "TRANSACTIONAL", "PROMOTIONAL", "MULTI_USE")
_HOSTING = ("NORTH_AMERICA", "EUROPE", "ASIA_PACIFIC")
_AGENT_FIELDS = (
    "description",
    "logoUri",
    "heroUri",
    "color",
    "phoneNumbers",
    "emails",
    "websites",
    "privacy",
    "termsConditions",
    "billingConfig",
    "agentUseCase",
    "hostingRegion",
)
_NOT_LAUNCHED = "The agent is not launched: it may reach its testers only."
_UNLAUNCHED = "LAUNCH_STATE_UNLAUNCHED"
_PENDING = "LAUNCH_STATE_PENDING"
_LAUNCHED = "LAUNCH_STATE_LAUNCHED"
_REJECTED = "LAUNCH_STATE_REJECTED"
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
    launch_review_seconds: float = 1.0
    """How long a launch's or a verification's review takes (regions PENDING, then LAUNCHED or REJECTED;
    verification PENDING, then VERIFIED)."""
    batch_get_per_minute: int = 600
    """users:batchGet calls per minute per service account; beyond, 429 RESOURCE_EXHAUSTED."""
    gate_reach_checks: bool = False
    """Capabilities and users:batchGet of an agent launched nowhere as Google documents them: 403
    PERMISSION_DENIED for a phone that is not a tester, no `reachableUsers` (the sample counts still
    estimate reach). Off, they follow the last digit whatever the launch, so that a sandbox company can
    check its phones before its agent is launched."""
    partner_service_account: str = ""
    """The platform's `OPENMMP_PROVIDERS__RBM_PARTNER_SERVICE_ACCOUNT`: the JWTs it signs are checked with
    its public half (the sandbox's built-in account, the default, is known anyway)."""
    management_base_url: str = ""
    regional_base_url: str = ""
    """The platform's options, taken so that both sides share their settings; the simulator serves
    Business Communications and the regional host itself."""


class _Invalid(Exception):
    """The request breaks one of RBM's rules: 400 INVALID_ARGUMENT with this text."""


class _Refused(Exception):
    """A Google error answer other than INVALID_ARGUMENT (NOT_FOUND, FAILED_PRECONDITION, ...)."""

    def __init__(self, code: int, status: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.status = status
        self.message = message


def _not_found() -> _Refused:
    return _Refused(404, "NOT_FOUND", "Requested entity was not found.")


@dataclass
class _Agent:
    """An agent Business Communications made here, and what became of it."""

    brand_id: str
    agent_id: str
    display_name: str
    profile: dict[str, Any]
    """Its `rcsBusinessMessagingAgent`."""
    verification: str = "VERIFICATION_STATE_UNVERIFIED"
    contact: dict[str, Any] | None = None
    questionnaire: dict[str, Any] | None = None
    launches: dict[str, tuple[str, str]] = field(default_factory=dict)
    """Region name (`/v1/regions/{id}`) → (launch state, when it was set)."""

    @property
    def name(self) -> str:
        return f"brands/{self.brand_id}/agents/{self.agent_id}"

    @property
    def launched(self) -> bool:
        return any(state == _LAUNCHED for state, _at in self.launches.values())

    @property
    def launch_requested(self) -> bool:
        return any(state != _UNLAUNCHED for state, _at in self.launches.values())

    def resource(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "displayName": self.display_name,
            "rcsBusinessMessagingAgent": self.profile,
        }

    def verification_resource(self) -> dict[str, Any]:
        found: dict[str, Any] = {"name": f"{self.name}/verification", "verificationState": self.verification}
        if self.contact is not None:
            found["agentVerificationContact"] = self.contact
        return found

    def launch_resource(self) -> dict[str, Any]:
        details = {
            region: {"launchState": state, "updateTime": at} for region, (state, at) in self.launches.items()
        }
        rbm: dict[str, Any] = {"launchDetails": details}
        if self.questionnaire is not None:
            rbm["questionnaire"] = self.questionnaire
        return {"name": f"{self.name}/launch", "rcsBusinessMessaging": rbm}


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


class _RbmSimulator(HttpSimulator):
    def __init__(self, config: SimulatorConfig, http: HttpClient) -> None:
        self._knobs = knobs(config, "rbm", RbmKnobs)
        self._limiter = TokenBucketLimiter(capacity=self._knobs.requests_per_minute, window_s=60.0)
        self._batch_limiter = TokenBucketLimiter(capacity=self._knobs.batch_get_per_minute, window_s=60.0)
        self._callback_urls: dict[str, str] = {}
        self._keys: LruMap[str, rsa.RSAPublicKey] = LruMap(KEYS_KEPT)
        self._keys.set(SANDBOX_CLIENT_EMAIL, load_rsa_key(SANDBOX_PRIVATE_KEY_PEM).public_key())
        if self._knobs.partner_service_account:
            try:
                partner = parse_service_account(self._knobs.partner_service_account)
                self._keys.set(partner.client_email, partner.private_key().public_key())
            except ValueError as exc:
                raise ValueError(f"rbm simulator: partner_service_account: {exc}") from None
        # Issued tokens → (client_email, expiry on the monotonic clock, scopes).
        self._tokens: LruMap[str, tuple[str, float, frozenset[str]]] = LruMap(TOKENS_KEPT)
        self._brands: LruMap[str, str] = LruMap(AGENTS_KEPT)
        self._agents: LruMap[str, _Agent] = LruMap(AGENTS_KEPT)
        # Test devices by agent id → phone (+E.164) → when invited (epoch s); any agent, known or not.
        self._testers: LruMap[str, dict[str, float]] = LruMap(AGENTS_KEPT)
        # Idempotency is behaviour, not a statistic: always on, bounded like upstream's window.
        self._sent: LruMap[tuple[str, str], str] = LruMap(max(IDEMPOTENCY_KEYS, config.max_tracked_keys))
        # The last messages as received, for `GET /_sandbox/messages/{messageId}` (a few: they are large).
        self._received: LruMap[str, dict[str, Any]] = LruMap(MESSAGES_KEPT)
        self._counts = {
            "tokensIssued": 0,
            "tokensRefused": 0,
            "unauthenticated": 0,
            "management": 0,
            "agentsCreated": 0,
            "testersInvited": 0,
            "batchGets": 0,
        }
        self._pushes = itertools.count(1)
        bc, rbm = MANAGEMENT_SCOPE, SCOPE
        agent = "/v1/brands/{brand}/agents/{agent}"
        routes = [
            Route("/token", self._grant, methods=["POST"]),
            Route("/v1/phones/{phone}/agentMessages", self._agent_message, methods=["POST"]),
            Route("/v1/brands", self._managed(bc, self._create_brand), methods=["POST"]),
            Route("/v1/brands/{brand}/agents", self._managed(bc, self._create_agent), methods=["POST"]),
            # Before the agent's own route, whose {agent} would take ":requestLaunch" too.
            Route(
                f"{agent}:requestVerification",
                self._managed(bc, self._request_verification),
                methods=["POST"],
            ),
            Route(f"{agent}:requestLaunch", self._managed(bc, self._request_launch), methods=["POST"]),
            Route(f"{agent}/verification", self._managed(bc, self._verification), methods=["GET"]),
            Route(f"{agent}/launch", self._managed(bc, self._launch), methods=["GET", "PATCH"]),
            Route(agent, self._managed(bc, self._agent), methods=["GET", "PATCH"]),
            Route("/v1/regions", self._managed(bc, self._regions), methods=["GET"]),
            Route("/v1/phones/{phone}/testers", self._managed(rbm, self._tester), methods=["POST"]),
            Route("/v1/phones/{phone}/capabilities", self._managed(rbm, self._capabilities), methods=["GET"]),
            Route("/v1/users:batchGet", self._managed(rbm, self._batch_get), methods=["POST"]),
            Route("/_sandbox/agents", self._sandbox_agent, methods=["POST"]),
            Route("/_sandbox/inbound", self._sandbox_inbound, methods=["POST"]),
            Route("/_sandbox/messages/{message_id}", self._sandbox_message, methods=["GET"]),
        ]
        super().__init__(config, http, routes)
        self._held: HeldUntilRegistered[str] = HeldUntilRegistered(self._scheduler)

    # ---- the token endpoint ---------------------------------------------------------------------------

    async def _grant(self, request: Request) -> Response:
        form = parse_qs((await request.body()).decode("utf-8", errors="replace"))
        if form.get("grant_type") != [JWT_BEARER]:
            self._counts["tokensRefused"] += 1
            return _oauth_error("unsupported_grant_type", "Invalid grant_type")
        try:
            email, scopes = self._check_assertion((form.get("assertion") or [""])[0])
        except _Invalid as refused:
            self._counts["tokensRefused"] += 1
            return _oauth_error("invalid_grant", str(refused))
        issued = f"sim-rbm-{secrets.token_urlsafe(24)}"
        lifetime = self._knobs.token_lifetime_s
        self._tokens.set(issued, (email, time.monotonic() + lifetime, scopes))
        self._counts["tokensIssued"] += 1
        return json_response({"access_token": issued, "expires_in": lifetime, "token_type": "Bearer"})

    def _check_assertion(self, jwt: str) -> tuple[str, frozenset[str]]:
        """The client_email and the scopes (of those served here) of a valid assertion; `_Invalid` with
        Google's kind of description otherwise."""
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
        scopes = _SCOPES.intersection(scope.split()) if isinstance(scope, str) else frozenset()
        if not scopes:
            raise _Invalid(f"Invalid JWT: scope must include {SCOPE} or {MANAGEMENT_SCOPE}")
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
        return issuer, scopes

    def _bearer(self, request: Request) -> tuple[str, frozenset[str]] | None:
        """The client_email and scopes of the request's live access token, or None."""
        scheme, _, presented = (request.headers.get("authorization") or "").partition(" ")
        if scheme.lower() != "bearer" or not presented:
            return None
        found = self._tokens.get(presented.strip())
        if found is None or time.monotonic() >= found[1]:
            return None
        return found[0], found[2]

    def _unauthorised(self, request: Request, scope: str) -> Response | None:
        """The refusal of a request without a live token for `scope`, or None when it has one."""
        bearer = self._bearer(request)
        if bearer is None:
            self._counts["unauthenticated"] += 1
            self._stats.reject(401)
            return _google_error(401, "UNAUTHENTICATED", "Request had invalid authentication credentials.")
        if scope not in bearer[1]:
            self._stats.reject(403)
            return _google_error(403, "PERMISSION_DENIED", "Request had insufficient authentication scopes.")
        return None

    # ---- agentMessages.create -------------------------------------------------------------------------

    async def _agent_message(self, request: Request) -> Response:
        self._stats.requests += 1
        refused = self._unauthorised(request, SCOPE)
        if refused is not None:
            return refused
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
        except _Invalid as invalid:
            self._stats.reject(400)
            return _google_error(400, "INVALID_ARGUMENT", str(invalid))
        if not self._reaches(agent_id, phone):
            self._stats.reject(403)
            return _google_error(403, "PERMISSION_DENIED", _NOT_LAUNCHED)
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

    async def _push(
        self, agent_id: str, event: dict[str, Any], attributes: dict[str, str] | None = None
    ) -> None:
        """One webhook: `event` (with agentId and sendTime) in a push envelope, signed, to the agent's URL;
        `attributes` are Pub/Sub's, outside the signed data."""
        url = self._callback_urls.get(agent_id)
        if url is None:
            return
        data = orjson.dumps({**event, "agentId": agent_id, "sendTime": _rfc3339()})
        message: dict[str, Any] = {
            "data": base64.b64encode(data).decode("ascii"),
            "messageId": str(next(self._pushes)),
            "publishTime": _rfc3339(),
        }
        if attributes:
            message["attributes"] = attributes
        envelope = {
            "message": message,
            "subscription": f"projects/rbm-{agent_id}/subscriptions/rbm-agent-subscription",
        }
        headers = {SIGNATURE_HEADER: sign(data, self._knobs.client_token)}
        await self._scheduler.post(url, orjson.dumps(envelope), headers)

    # ---- management: Business Communications and the RBM API's testers, capabilities, batchGet -------

    def _managed(
        self, scope: str, handler: Callable[[Request], Awaitable[Response]]
    ) -> Callable[[Request], Awaitable[Response]]:
        """`handler` behind what every management call gets first: a live token for `scope`, then the
        shared faults; `_Invalid` and `_Refused` become Google's error answers."""

        async def endpoint(request: Request) -> Response:
            self._counts["management"] += 1
            refused = self._unauthorised(request, scope)
            if refused is not None:
                return refused
            await request.body()
            fault = self._faults.take()
            if fault is not None:
                return await self._fault(request, fault.kind, fault.status)
            try:
                return await handler(request)
            except _Invalid as invalid:
                return _google_error(400, "INVALID_ARGUMENT", str(invalid))
            except _Refused as refusal:
                return _google_error(refusal.code, refusal.status, refusal.message)

        return endpoint

    def _launched(self, agent_id: str) -> bool:
        """An agent reaches everybody: it is launched in a region, or it is not one this simulator made."""
        agent = self._agents.get(agent_id)
        return agent is None or agent.launched

    def _reaches(self, agent_id: str, phone: str) -> bool:
        """The agent may message `phone` (+E.164): it is launched, or the phone is one of its testers."""
        return self._launched(agent_id) or phone in (self._testers.get(agent_id) or {})

    def _find(self, request: Request) -> _Agent:
        brand_id, agent_id = request.path_params["brand"], request.path_params["agent"]
        agent = self._agents.get(agent_id)
        if agent is None:
            # Made before a restart (everything here is kept in memory) or elsewhere: an agent that
            # exists, verified and launched, as its sends take it; the platform's channels keep working.
            launched = {"/v1/regions/asia-pacific": (_LAUNCHED, _rfc3339())}
            agent = _Agent(brand_id, agent_id, agent_id, {}, "VERIFICATION_STATE_VERIFIED", launches=launched)
            self._agents.set(agent_id, agent)
        if agent.brand_id != brand_id:
            raise _not_found()
        return agent

    async def _create_brand(self, request: Request) -> Response:
        body = await _object(request)
        display_name = _text(body.get("displayName"), "displayName", 100)
        brand_id = str(uuid.uuid4())
        self._brands.set(brand_id, display_name)
        return json_response({"name": f"brands/{brand_id}", "displayName": display_name})

    async def _create_agent(self, request: Request) -> Response:
        brand_id = request.path_params["brand"]
        if self._brands.get(brand_id) is None:
            raise _not_found()
        body = await _object(request)
        display_name = _text(body.get("displayName"), "displayName", 100)
        profile = _rbm_agent(body.get("rcsBusinessMessagingAgent"))
        slug = re.sub(r"[^a-z0-9]+", "-", display_name.lower()).strip("-")[:20] or "agent"
        agent = _Agent(brand_id, f"{slug}_{secrets.token_hex(4)}_agent", display_name, profile)
        self._agents.set(agent.agent_id, agent)
        self._counts["agentsCreated"] += 1
        return json_response(agent.resource())

    async def _agent(self, request: Request) -> Response:
        """Read the agent, or change what `updateMask` names (every field without one)."""
        agent = self._find(request)
        if request.method == "GET":
            return json_response(agent.resource())
        body = await _object(request)
        given = body.get("rcsBusinessMessagingAgent") or {}
        if not isinstance(given, dict):
            raise _Invalid("rcsBusinessMessagingAgent must be an object")
        mask = request.query_params.get("updateMask") or ""
        paths = [path.strip() for path in mask.split(",") if path.strip()] or [
            "displayName",
            *(f"rcsBusinessMessagingAgent.{name}" for name in _AGENT_FIELDS),
        ]
        display_name, profile = agent.display_name, dict(agent.profile)
        for path in paths:
            if path == "displayName":
                display_name = _text(body.get("displayName"), "displayName", 100)
                continue
            parent, _, rest = path.partition(".")
            name = rest.split(".")[0]
            if parent != "rcsBusinessMessagingAgent" or name not in _AGENT_FIELDS:
                raise _Invalid(f"updateMask: unknown field {path}")
            value = given.get(name)
            _may_change(agent, name, value)
            if value is None:
                profile.pop(name, None)
            else:
                profile[name] = value
        agent.profile = _rbm_agent(profile)
        agent.display_name = display_name
        return json_response(agent.resource())

    async def _request_verification(self, request: Request) -> Response:
        agent = self._find(request)
        contact = (await _object(request)).get("agentVerificationContact")
        if not isinstance(contact, dict):
            raise _Invalid("agentVerificationContact is required")
        for name in (
            "partnerName",
            "partnerEmailAddress",
            "brandContactName",
            "brandContactEmailAddress",
            "brandWebsiteUrl",
        ):
            _text(contact.get(name), f"agentVerificationContact.{name}", 2000)
        agent.contact = contact
        if agent.verification != "VERIFICATION_STATE_VERIFIED":
            agent.verification = "VERIFICATION_STATE_PENDING"
            self._scheduler.spawn(self._review_verification(agent.agent_id))
        return json_response(agent.verification_resource())

    async def _review_verification(self, agent_id: str) -> None:
        await asyncio.sleep(self._knobs.launch_review_seconds)
        agent = self._agents.get(agent_id)
        if agent is not None and agent.verification == "VERIFICATION_STATE_PENDING":
            agent.verification = "VERIFICATION_STATE_VERIFIED"

    async def _verification(self, request: Request) -> Response:
        return json_response(self._find(request).verification_resource())

    async def _request_launch(self, request: Request) -> Response:
        agent = self._find(request)
        if agent.launches:
            raise _Refused(
                400,
                "FAILED_PRECONDITION",
                "The agent has a launch already: change it with brands.agents.updateLaunch.",
            )
        launch = (await _object(request)).get("agentLaunch")
        if not isinstance(launch, dict):
            raise _Invalid("agentLaunch is required")
        regions, questionnaire = _rbm_launch(launch, "agentLaunch.rcsBusinessMessaging")
        if questionnaire is None:
            raise _Invalid("agentLaunch.rcsBusinessMessaging.questionnaire is required")
        agent.questionnaire = questionnaire
        self._review(agent, regions)
        return json_response(agent.launch_resource())

    async def _launch(self, request: Request) -> Response:
        """Read the launch, or (updateLaunch) send the regions it adds, and those rejected, for review."""
        agent = self._find(request)
        if request.method == "GET":
            return json_response(agent.launch_resource())
        if not agent.launches:
            raise _Refused(
                400,
                "FAILED_PRECONDITION",
                "The agent has no launch yet: request one with brands.agents.requestLaunch.",
            )
        regions, questionnaire = _rbm_launch(await _object(request), "rcsBusinessMessaging")
        if questionnaire is not None:
            agent.questionnaire = questionnaire
        again = [
            r for r in regions if agent.launches.get(r, (_UNLAUNCHED, ""))[0] in (_UNLAUNCHED, _REJECTED)
        ]
        self._review(agent, again)
        return json_response(agent.launch_resource())

    def _review(self, agent: _Agent, regions: list[str]) -> None:
        """Put `regions` PENDING (each change a webhook) and decide them after the review's time."""
        for region in regions:
            was = agent.launches.get(region, (_UNLAUNCHED, ""))[0]
            agent.launches[region] = (_PENDING, _rfc3339())
            self._announce(agent, region, was, _PENDING)
        if regions:
            self._scheduler.spawn(self._decide(agent.agent_id, regions))

    async def _decide(self, agent_id: str, regions: list[str]) -> None:
        await asyncio.sleep(self._knobs.launch_review_seconds)
        agent = self._agents.get(agent_id)
        if agent is None:
            return
        verdict = _REJECTED if "[reject]" in agent.display_name.lower() else _LAUNCHED
        for region in regions:
            if agent.launches.get(region, (_UNLAUNCHED, ""))[0] == _PENDING:
                agent.launches[region] = (verdict, _rfc3339())
                self._announce(agent, region, _PENDING, verdict)

    def _announce(self, agent: _Agent, region: str, was: str, now: str) -> None:
        """The AgentLaunchEvent of a region's change, to the agent's URL (held until it has one)."""
        name, management = REGIONS[region.removeprefix(REGION_PREFIX)]
        new = now.removeprefix("LAUNCH_STATE_")
        event = {
            "eventId": _event_id(),
            "botDisplayName": agent.display_name,
            "brandId": agent.brand_id,
            "brandDisplayName": self._brands.get(agent.brand_id) or "",
            "regionId": region,
            "oldLaunchState": was.removeprefix("LAUNCH_STATE_"),
            "newLaunchState": new,
            "actingParty": "Google" if management == "GOOGLE_MANAGED" else name,
            "comment": "the display name asks the sandbox to reject it" if now == _REJECTED else "",
        }
        attributes = {
            "business_id": f"{agent.agent_id}@rbm.goog",
            "event_type": new,
            "product": "RBM",
            "type": "agent_launch_event",
        }
        agent_id = agent.agent_id
        if agent_id in self._callback_urls:
            self._scheduler.spawn(self._push(agent_id, event, attributes))
        else:
            self._held.hold(agent_id, lambda: self._push(agent_id, event, attributes))

    async def _regions(self, request: Request) -> Response:
        regions = [
            {"name": f"{REGION_PREFIX}{region}", "displayName": name, "managementType": management}
            for region, (name, management) in REGIONS.items()
        ]
        return json_response({"regions": regions})

    async def _tester(self, request: Request) -> Response:
        phone, agent_id = _phone_and_agent(request)
        if last_digit(phone) == 8:
            raise _Refused(404, "NOT_FOUND", "The user is not RCS enabled.")
        testers = self._testers.get(agent_id) or {}
        if phone in testers:
            raise _Refused(409, "ALREADY_EXISTS", "Tester already exists.")
        day_ago = time.time() - 86_400
        if len(testers) >= TESTERS_MAX or sum(at > day_ago for at in testers.values()) >= TESTERS_PER_DAY:
            raise _Refused(429, "RESOURCE_EXHAUSTED", "Quota exceeded for tester invitations.")
        # The sandbox's devices accept an invitation at once: the agent may message them from now on.
        self._testers.set(agent_id, {**testers, phone: time.time()})
        self._counts["testersInvited"] += 1
        return json_response({"name": f"phones/{phone}/testers", "inviteStatus": "PENDING"})

    async def _capabilities(self, request: Request) -> Response:
        phone, agent_id = _phone_and_agent(request)
        if not request.query_params.get("requestId"):
            raise _Invalid("requestId is required")
        if self._knobs.gate_reach_checks and not self._reaches(agent_id, phone):
            raise _Refused(403, "PERMISSION_DENIED", _NOT_LAUNCHED)
        if last_digit(phone) == 8:
            raise _not_found()
        return json_response({"features": list(FEATURES)})

    async def _batch_get(self, request: Request) -> Response:
        bearer = self._bearer(request)
        if bearer is not None and not self._batch_limiter.try_acquire(bearer[0]):
            self._stats.rate_limited += 1
            raise _Refused(
                429, "RESOURCE_EXHAUSTED", "Quota exceeded for users:batchGet requests per minute."
            )
        body = await _object(request)
        users, agent_id = body.get("users"), body.get("agentId")
        if not isinstance(agent_id, str) or not agent_id:
            raise _Invalid("agentId is required")
        if not isinstance(users, list) or not all(isinstance(u, str) and _PHONE.match(u) for u in users):
            raise _Invalid("users must be a list of E.164 phone numbers")
        if len(users) > BATCH_GET_MAX:
            raise _Invalid(f"users: at most {BATCH_GET_MAX} phone numbers per request ({len(users)} given)")
        self._counts["batchGets"] += 1
        rcs = [user for user in users if last_digit(user) != 8]
        sample = users[: len(users) * 3 // 4] if len(users) >= SAMPLED_FROM else []
        gated = self._knobs.gate_reach_checks and not self._launched(agent_id)
        return json_response(
            {
                # Google: only users on carriers where the agent is launched; the sample regardless.
                "reachableUsers": [] if gated else rcs,
                "totalRandomSampleUserCount": len(sample),
                "reachableRandomSampleUserCount": sum(last_digit(user) != 8 for user in sample),
            }
        )

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


# ---- RBM's checks of management requests ---------------------------------------------------------------


async def _object(request: Request) -> dict[str, Any]:
    try:
        body = orjson.loads(await request.body() or b"{}")
    except orjson.JSONDecodeError as exc:
        raise _Invalid("Invalid JSON payload received") from exc
    if not isinstance(body, dict):
        raise _Invalid("The body must be a JSON object")
    return body


def _text(value: Any, field: str, most: int) -> str:
    _string(value, field, most)
    return str(value)


def _https_uri(value: Any, field: str) -> None:
    if not isinstance(value, str) or not value.startswith("https://"):
        raise _Invalid(f"{field} must be an https URL")


def _phone_and_agent(request: Request) -> tuple[str, str]:
    phone, agent_id = request.path_params["phone"], request.query_params.get("agentId") or ""
    if not _PHONE.match(phone):
        raise _Invalid(f"Invalid phone number: {phone!r} is not E.164")
    if not agent_id:
        raise _Invalid("agentId is required")
    return phone, agent_id


def _rbm_agent(value: Any) -> dict[str, Any]:
    """An `rcsBusinessMessagingAgent` RBM takes, as it was given; `_Invalid` naming what is wrong."""
    if not isinstance(value, dict):
        raise _Invalid("rcsBusinessMessagingAgent is required")
    where = "rcsBusinessMessagingAgent"
    _string(value.get("description"), f"{where}.description", 100)
    for name in ("logoUri", "heroUri"):
        _https_uri(value.get(name), f"{where}.{name}")
    if not isinstance(value.get("color"), str) or not _HEX_COLOR.match(value["color"]):
        raise _Invalid(f"{where}.color must be a hex colour such as #1A73E8")
    phones = value.get("phoneNumbers")
    if not isinstance(phones, list) or not phones:
        raise _Invalid(f"{where}.phoneNumbers needs at least one phone number")
    for n, entry in enumerate(phones):
        number = entry.get("phoneNumber") if isinstance(entry, dict) else None
        if not isinstance(number, dict) or not _PHONE.match(str(number.get("number"))):
            raise _Invalid(f"{where}.phoneNumbers[{n}].phoneNumber.number must be E.164")
    for name, key in (("emails", "address"), ("websites", "uri")):
        entries = value.get(name, [])
        if not isinstance(entries, list) or not all(isinstance(e, dict) and e.get(key) for e in entries):
            raise _Invalid(f"{where}.{name} must be a list of objects with {key}")
    for name in ("privacy", "termsConditions"):
        entry = value.get(name)
        _https_uri(entry.get("uri") if isinstance(entry, dict) else None, f"{where}.{name}.uri")
    billing = value.get("billingConfig")
    if not isinstance(billing, dict) or billing.get("billingCategory") not in _BILLING:
        raise _Invalid(f"{where}.billingConfig.billingCategory must be one of {', '.join(_BILLING)}")
    if value.get("agentUseCase") not in _USE_CASES:
        raise _Invalid(f"{where}.agentUseCase must be one of {', '.join(_USE_CASES)}")
    if value.get("hostingRegion") not in _HOSTING:
        raise _Invalid(f"{where}.hostingRegion must be one of {', '.join(_HOSTING)}")
    return value


def _may_change(agent: _Agent, name: str, value: Any) -> None:
    """Refuse, as Business Communications does, a change of what it keeps."""
    if value == agent.profile.get(name):
        return
    if name == "hostingRegion":
        raise _Refused(400, "FAILED_PRECONDITION", "The agent's hosting region cannot be changed.")
    if name == "agentUseCase" and agent.launch_requested:
        raise _Refused(
            400,
            "FAILED_PRECONDITION",
            "The agent's use case cannot be changed once its launch was requested.",
        )
    if name == "billingConfig" and agent.launch_requested:
        raise _Refused(
            400,
            "FAILED_PRECONDITION",
            "The agent's billing category can be changed only before its launch is requested.",
        )


def _rbm_launch(value: Any, where: str) -> tuple[list[str], dict[str, Any] | None]:
    """The regions (names) and the questionnaire (if any) of an `rcsBusinessMessaging` launch."""
    rbm = value.get("rcsBusinessMessaging") if isinstance(value, dict) else None
    if not isinstance(rbm, dict):
        raise _Invalid(f"{where} is required")
    details = rbm.get("launchDetails")
    if not isinstance(details, dict) or not details:
        raise _Invalid(f"{where}.launchDetails needs at least one region")
    for region in details:
        if region.removeprefix(REGION_PREFIX) not in REGIONS or not region.startswith(REGION_PREFIX):
            raise _Invalid(f"{where}.launchDetails: unknown region {region}")
    questionnaire = rbm.get("questionnaire")
    if questionnaire is None:
        return list(details), None
    if not isinstance(questionnaire, dict):
        raise _Invalid(f"{where}.questionnaire must be an object")
    contacts = questionnaire.get("contacts")
    if not isinstance(contacts, list) or not contacts:
        raise _Invalid(f"{where}.questionnaire.contacts needs at least one contact")
    for n, contact in enumerate(contacts):
        for name in ("name", "title", "email"):
            _string(
                contact.get(name) if isinstance(contact, dict) else None,
                f"{where}.questionnaire.contacts[{n}].{name}",
                200,
            )
    for name in (
        "triggerDescription",
        "interactionsDescription",
        "optoutDescription",
        "agentAccessInstructions",
    ):
        _string(questionnaire.get(name), f"{where}.questionnaire.{name}", DESCRIPTION_MAX)
    return list(details), questionnaire


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
