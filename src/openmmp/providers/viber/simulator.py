"""A local Viber Business Messages service: `POST /vibersrvc/1/send_message` with upstream's checks.

Always HTTP 200 with `status` (0 = accepted, with `seq` echoed and a `message_token`). Idempotent per
(`service_id`, `seq`): a repeat returns the first token and is counted in `duplicates`. Callbacks go to the
URL registered for the service (`POST /_sandbox/services/{service_id}` `{"callbackUrl"}`, the analogue of a
partner registering its URL with Viber) in the body documented in `providers.viber.callbacks`, signed with
the `callback_secret` knob; with `duplicate_delivered`, `delivered` arrives twice (two devices). Knobs
(`SimulatorConfig.options["viber"]`): see `ViberKnobs`.

Sandbox control: `POST /_sandbox/services/{service_id}`, `POST /_sandbox/inbound` (a user replies:
`{"serviceId", "phone", "text", "trackingData"?}`), `GET /_sandbox/stats`, `POST /_sandbox/faults`.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from openmmp.kit.http import HttpClient
from openmmp.providers.simulation import (
    HeldUntilRegistered,
    HttpSimulator,
    LruMap,
    Outcome,
    SimulatorConfig,
    TokenBucketLimiter,
    edge_fault,
    json_response,
    knobs,
    last_digit,
    now_ms,
    read_json,
    sandbox_error,
)
from openmmp.providers.viber.callbacks import SANDBOX_CALLBACK_SECRET, SIGNATURE_HEADER, sign
from openmmp.providers.viber.errors import STATUS_NAMES

OK = 0
INTERNAL_FAILURE = 1
BAD_SERVICE_ID = 2
BAD_DATA = 3
BAD_MESSAGE_TYPE = 5
BAD_PARAMETERS = 6
NOT_VIBER_USER = 9
TOO_MANY_REQUESTS = 12
BAD_LABEL = 18
INVALID_TTL = 20
INVALID_PHONE_NUMBER = 27
TEMPLATE_VALIDATION_ERROR = 39
SURVEY_VALIDATION = 40
CAROUSEL_VALIDATION = 41

TEXT_TYPES = frozenset({206, 225, 306})
IMAGE_TYPES = frozenset({7, 107, 207, 307})
IMAGE_TEXT_BUTTON_TYPES = frozenset({8, 108, 208, 210})
TEXT_BUTTON_TYPES = frozenset({9, 109, 209})
FILE_TYPES = frozenset({220, 221, 222, 223, 224})
VIDEO_TYPES = frozenset({230, 231, 232, 233})
TEMPLATE_TYPES = frozenset({1701, 1702})
SURVEY_TYPES = frozenset({801, 802})
CAROUSEL_TYPES = frozenset({901})
KNOWN_TYPES = (
    TEXT_TYPES
    | IMAGE_TYPES
    | IMAGE_TEXT_BUTTON_TYPES
    | TEXT_BUTTON_TYPES
    | FILE_TYPES
    | VIDEO_TYPES
    | TEMPLATE_TYPES
    | SURVEY_TYPES
    | CAROUSEL_TYPES
)
LABELS = ("transaction", "promotion")
TEXT_MAX = 1000
CAPTION_MAX = 30
FILE_NAME_MAX = 25
VIDEO_MAX_BYTES = 200 * 1024 * 1024
VIDEO_MAX_DURATION_S = 600
TTL_RANGE = (30, 1_209_600)
IDEMPOTENCY_KEYS = 200_000


@dataclass
class ViberKnobs:
    """The Viber BM simulator's own knobs."""

    requests_per_second: int = 1000
    """Sends accepted per second per service_id; beyond, status 12 (what upstream enforces per partner)."""
    callback_secret: str = SANDBOX_CALLBACK_SECRET
    """Signs callbacks; must be the platform's `OPENMMP_PROVIDERS__VIBER_CALLBACK_SECRET` (the sandbox's
    default when that is unset)."""
    duplicate_delivered: bool = True
    """Report `delivered` once per device (twice), as upstream does."""


class _Refused(Exception):
    def __init__(self, status: int, detail: str | None = None) -> None:
        super().__init__(detail or STATUS_NAMES[status])
        self.status = status
        self.detail = detail


def create_viber_simulator(config: SimulatorConfig, http: HttpClient) -> Starlette:
    """The Viber Business Messages simulator as a Starlette app; `http` sends its callbacks."""
    return _ViberSimulator(config, http).app


class _ViberSimulator(HttpSimulator):
    def __init__(self, config: SimulatorConfig, http: HttpClient) -> None:
        self._knobs = knobs(config, "viber", ViberKnobs)
        self._limiter = TokenBucketLimiter(capacity=self._knobs.requests_per_second, window_s=1.0)
        self._callback_urls: dict[int, str] = {}
        # Idempotency is behaviour, not a statistic, so it is always on; bounded like upstream's window.
        self._tokens_by_seq: LruMap[tuple[int, int], int] = LruMap(
            max(IDEMPOTENCY_KEYS, config.max_tracked_keys)
        )
        self._sequence = itertools.count(1)
        routes = [
            Route("/vibersrvc/1/send_message", self._send_message, methods=["POST"]),
            Route("/_sandbox/services/{service_id:int}", self._sandbox_service, methods=["POST"]),
            Route("/_sandbox/inbound", self._sandbox_inbound, methods=["POST"]),
        ]
        super().__init__(config, http, routes)
        self._held: HeldUntilRegistered[int] = HeldUntilRegistered(self._scheduler)

    def _token(self) -> int:
        return (int(time.time() * 1000) << 20) | (next(self._sequence) & 0xFFFFF)

    @staticmethod
    def _answer(status: int, seq: Any, detail: str | None = None, **extra: Any) -> Response:
        body: dict[str, Any] = {"status": status, "seq": seq if isinstance(seq, int) else None, **extra}
        if status:
            name = STATUS_NAMES.get(status, "UNKNOWN_STATUS")
            body["status_message"] = f"{name}: {detail}" if detail else name
        return json_response(body)

    async def _send_message(self, request: Request) -> Response:
        self._stats.requests += 1
        raw = await request.body()
        fault = self._faults.take()
        if fault is not None:
            if (edge := await edge_fault(request, fault.kind, self._config, self._stats)) is not None:
                return edge
            if fault.kind == "rate_limit":
                self._stats.rate_limited += 1
                return self._answer(TOO_MANY_REQUESTS, None)
            status = fault.status or BAD_DATA
            self._stats.reject(status)
            return self._answer(status, None, "sandbox fault")

        seq: Any = None
        try:
            if len(raw) > self._config.max_request_bytes:
                raise _Refused(BAD_DATA, "request larger than 30 KB")
            try:
                body = orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                raise _Refused(BAD_DATA, "body is not JSON") from exc
            if not isinstance(body, dict):
                raise _Refused(BAD_DATA, "body is not a JSON object")
            seq = body.get("seq")
            service_id = body.get("service_id")
            if isinstance(service_id, bool) or not isinstance(service_id, int) or service_id <= 0:
                raise _Refused(BAD_SERVICE_ID)
            if isinstance(seq, bool) or not isinstance(seq, int):
                raise _Refused(BAD_PARAMETERS, "seq must be an integer")
            if not self._limiter.try_acquire(str(service_id)):
                self._stats.rate_limited += 1
                return self._answer(TOO_MANY_REQUESTS, seq)
            dest = body.get("dest")
            if not isinstance(dest, str) or not dest.isdigit() or not 8 <= len(dest) <= 15:
                raise _Refused(INVALID_PHONE_NUMBER)
            _validate(body)
        except _Refused as refused:
            self._stats.reject(refused.status)
            return self._answer(refused.status, seq, refused.detail)

        key = (service_id, seq)
        known = self._tokens_by_seq.get(key)
        if known is not None:
            self._stats.duplicates += 1
            return self._answer(OK, seq, message_token=known)
        outcome = self._planner.decide(digit=last_digit(dest), attempt_key=f"{service_id}:{seq}")
        if outcome is Outcome.FINAL_ERROR:
            self._stats.reject(NOT_VIBER_USER)
            return self._answer(NOT_VIBER_USER, seq)
        if outcome is Outcome.RETRYABLE_ERROR:
            self._stats.reject(INTERNAL_FAILURE)
            return self._answer(INTERNAL_FAILURE, seq)
        token = self._token()
        self._tokens_by_seq.set(key, token)
        # Duplicates are answered above from the idempotency map, so stats only see first acceptances.
        self._stats.accept(f"{service_id}:{seq}")
        if service_id in self._callback_urls:
            self._scheduler.spawn(self._lifecycle(service_id, seq, dest, token, outcome))
        else:
            self._held.hold(service_id, lambda: self._lifecycle(service_id, seq, dest, token, outcome))
        return self._answer(OK, seq, message_token=token)

    async def _lifecycle(self, service_id: int, seq: int, dest: str, token: int, outcome: Outcome) -> None:
        latency = self._config.callback_latency_s
        fields = {"message_token": str(token), "seq": seq, "service_id": service_id, "dest": dest}
        await asyncio.sleep(latency)
        if outcome is Outcome.FAILED_LATER:
            await self._callback(service_id, {"event": "expired", **fields})
            return
        await self._callback(service_id, {"event": "delivered", **fields, "device": "smartphone"})
        if self._knobs.duplicate_delivered:
            # Viber reports delivery per device; the core must collapse these.
            await self._callback(service_id, {"event": "delivered", **fields, "device": "desktop"})
        if outcome is Outcome.DELIVERED_AND_SEEN:
            await asyncio.sleep(latency)
            await self._callback(service_id, {"event": "seen", **fields, "device": "smartphone"})

    async def _callback(self, service_id: int, fields: dict[str, Any]) -> None:
        url = self._callback_urls.get(service_id)
        if url is None:
            return
        body = orjson.dumps({**fields, "timestamp": now_ms()})
        await self._scheduler.post(url, body, {SIGNATURE_HEADER: sign(body, self._knobs.callback_secret)})

    # ---- sandbox control ------------------------------------------------------------------------------

    async def _sandbox_service(self, request: Request) -> Response:
        """Register (or with an empty `callbackUrl`, remove) where a service's callbacks go."""
        service_id: int = request.path_params["service_id"]
        try:
            body = await read_json(request)
        except ValueError as exc:
            return sandbox_error(str(exc))
        url = body.get("callbackUrl") if isinstance(body, dict) else None
        if url in (None, ""):
            self._callback_urls.pop(service_id, None)
            self._held.configured(service_id, registered=False)
            return json_response({"serviceId": service_id, "callbackUrl": None})
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            return sandbox_error("callbackUrl must be an http(s) URL")
        self._callback_urls[service_id] = url
        self._held.configured(service_id, registered=True)
        return json_response({"serviceId": service_id, "callbackUrl": url})

    async def _sandbox_inbound(self, request: Request) -> Response:
        """A user replies to a service: a signed `message` callback to the service's URL."""
        try:
            body = await read_json(request)
            if not isinstance(body, dict):
                raise ValueError("body must be a JSON object")
            service_id, phone, text = body.get("serviceId"), body.get("phone"), body.get("text")
            tracking = body.get("trackingData")
            if isinstance(service_id, bool) or not isinstance(service_id, int):
                raise ValueError("serviceId must be an integer")
            if not isinstance(phone, str) or not phone.lstrip("+").isdigit():
                raise ValueError("phone must be E.164 digits")
            if not isinstance(text, str) or not text:
                raise ValueError("text is required")
            if tracking is not None and not isinstance(tracking, str):
                raise ValueError("trackingData must be a string")
        except ValueError as exc:
            return sandbox_error(str(exc))
        url = self._callback_urls.get(service_id)
        token = self._token()
        if url is not None:
            fields: dict[str, Any] = {
                "event": "message",
                "message_token": str(token),
                "seq": 0,
                "service_id": service_id,
                "dest": phone.lstrip("+"),
                "text": text,
            }
            if tracking is not None:
                fields["tracking_data"] = tracking
            self._scheduler.spawn(self._inbound_after_latency(service_id, fields))
        return json_response({"messageToken": str(token), "callbackUrl": url})

    async def _inbound_after_latency(self, service_id: int, fields: dict[str, Any]) -> None:
        await asyncio.sleep(self._config.callback_latency_s)
        await self._callback(service_id, fields)


def _validate(body: dict[str, Any]) -> None:
    """Upstream's checks after addressing: type, label, TTL and the type's own fields."""
    kind = body.get("type")
    if isinstance(kind, bool) or not isinstance(kind, int) or kind not in KNOWN_TYPES:
        raise _Refused(BAD_MESSAGE_TYPE)
    label = body.get("label")
    if label is not None and label not in LABELS:
        raise _Refused(BAD_LABEL)
    ttl = body.get("ttl")
    if ttl is not None and (
        isinstance(ttl, bool) or not isinstance(ttl, int) or not TTL_RANGE[0] <= ttl <= TTL_RANGE[1]
    ):
        raise _Refused(INVALID_TTL)
    message = body.get("message")
    if message is None:
        message = {}
    if not isinstance(message, dict):
        raise _Refused(BAD_DATA, "message must be an object")

    def text(field: str, limit: int) -> None:
        value = message.get(field)
        if not isinstance(value, str) or not value:
            raise _Refused(BAD_PARAMETERS, f"{field} is required")
        if len(value) > limit:
            raise _Refused(BAD_PARAMETERS, f"{field} longer than {limit} characters")

    if kind in TEXT_TYPES:
        text("#txt", TEXT_MAX)
    elif kind in IMAGE_TYPES:
        text("#img", 2048)
    elif kind in TEXT_BUTTON_TYPES | IMAGE_TEXT_BUTTON_TYPES:
        text("#txt", TEXT_MAX)
        text("#caption", CAPTION_MAX)
        text("#action", 2048)
        if kind in IMAGE_TEXT_BUTTON_TYPES:
            text("#img", 2048)
    elif kind in FILE_TYPES:
        text("#media", 2048)
        text("#fileName", FILE_NAME_MAX)
        if not isinstance(body.get("file_type"), str) or not body["file_type"]:
            raise _Refused(BAD_PARAMETERS, "file_type is required")
    elif kind in VIDEO_TYPES:
        text("#media", 2048)
        size, duration = body.get("file_size"), body.get("duration")
        if isinstance(size, bool) or not isinstance(size, int) or not 0 < size <= VIDEO_MAX_BYTES:
            raise _Refused(BAD_PARAMETERS, "file_size must be 1 byte to 200 MB")
        if duration is not None and (
            isinstance(duration, bool)
            or not isinstance(duration, int)
            or not 0 < duration <= VIDEO_MAX_DURATION_S
        ):
            raise _Refused(BAD_PARAMETERS, "duration must be 1 to 600 seconds")
    elif kind in TEMPLATE_TYPES:
        if not isinstance(body.get("templateId"), str) or not body["templateId"]:
            raise _Refused(TEMPLATE_VALIDATION_ERROR, "templateId is required")
    elif kind in SURVEY_TYPES:
        _validate_survey(body.get("survey"))
    else:
        _validate_carousel(body.get("carousel"))
    if "#txt" in message and (not isinstance(message["#txt"], str) or len(message["#txt"]) > TEXT_MAX):
        raise _Refused(BAD_PARAMETERS, f"#txt longer than {TEXT_MAX} characters")


def _validate_survey(survey: Any) -> None:
    options = survey.get("options") if isinstance(survey, dict) else None
    if (
        not isinstance(options, list)
        or not 2 <= len(options) <= 10
        or not all(isinstance(option, str) and 0 < len(option) <= 50 for option in options)
    ):
        raise _Refused(SURVEY_VALIDATION, "survey.options must be 2-10 strings of at most 50 characters")


def _validate_carousel(carousel: Any) -> None:
    items = carousel.get("items") if isinstance(carousel, dict) else None
    if not isinstance(items, list) or not 2 <= len(items) <= 5:
        raise _Refused(CAROUSEL_VALIDATION, "carousel.items must hold 2-5 items")
    for item in items:
        if not isinstance(item, dict):
            raise _Refused(CAROUSEL_VALIDATION, "carousel items must be objects")
        title, image = item.get("title"), item.get("imageUrl")
        if not isinstance(title, str) or not 2 <= len(title) <= 38:
            raise _Refused(CAROUSEL_VALIDATION, "item title must be 2-38 characters")
        if not isinstance(image, str) or not image:
            raise _Refused(CAROUSEL_VALIDATION, "item imageUrl is required")
        for key, limit, required in (("primaryButton", 10, True), ("secondaryButton", 12, False)):
            button = item.get(key)
            if button is None and not required:
                continue
            if (
                not isinstance(button, dict)
                or not isinstance(button.get("label"), str)
                or not 0 < len(button["label"]) <= limit
                or not isinstance(button.get("actionUrl"), str)
                or not button["actionUrl"]
            ):
                raise _Refused(
                    CAROUSEL_VALIDATION, f"item {key} needs a label of at most {limit} and an actionUrl"
                )
