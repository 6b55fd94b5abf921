"""What the provider simulators share: configuration, outcomes, faults, stats, rate limits, callbacks.

The simulators are ASGI apps that speak an upstream's protocol (providers.md) so that sandbox mode, the test
suite and the benchmark exercise the real adapters over real HTTP. Two ways to decide what happens to a send:

- **sandbox** (default): by the last digit of the receiver's phone number, so a developer can choose:
  0–6 accepted → delivered → seen · 7 accepted → delivered, never seen · 8 a final error at send ·
  9 the first two attempts of the same message get a retryable error, the third is accepted →
  delivered → seen.
- **rates**: drawn from a `random.Random(seed)`: `retryable_error_rate` of attempts get a retryable error
  and `fail_rate` a final error at send; of the accepted messages, `delivered_rate` are delivered (the
  others get a `failed` / `expired` callback) and of those `read_rate` are seen.

Faults (`POST /_sandbox/faults`) override both for fault tests. Callbacks run as tracked asyncio tasks that
the app's lifespan cancels on shutdown. When mounting a simulator app inside another app, enter its lifespan
(`async with app.router.lifespan_context(app): ...`): Starlette does not run a mounted app's lifespan.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Generic, Literal, Protocol, TypeVar

import orjson
import structlog
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route

from openmmp.kit.http import HttpClient, HttpUnreachable
from openmmp.providers.base import ProviderContext, ProviderError, SandboxUser

logger = structlog.get_logger(__name__)

K = TypeVar("K")
V = TypeVar("V")

MAX_REQUEST_BYTES = 30 * 1024
CALLBACK_TASK_NAME = "openmmp-simulator-callback"


@dataclass
class SimulatorConfig:
    """Knobs every simulator shares, and each provider's own in `options`. Defaults are the sandbox's."""

    mode: Literal["sandbox", "rates"] = "sandbox"
    seed: int | None = None
    # rates mode (each 0..1)
    delivered_rate: float = 0.95
    read_rate: float = 0.6
    fail_rate: float = 0.02
    retryable_error_rate: float = 0.01
    # callbacks
    callback_latency_s: float = 0.05
    callback_retries: int = 5
    callback_retry_base_s: float = 0.2
    callback_timeout_s: float = 5.0
    # upstream behaviour
    max_request_bytes: int = MAX_REQUEST_BYTES
    # faults: how long a "timeout" fault holds a request (it ends early when the client goes away)
    fault_hang_s: float = 30.0
    # bookkeeping: per-key detail (`acceptedByKey`, duplicate detection) costs memory per message
    track_keys: bool = True
    max_tracked_keys: int = 100_000
    options: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Each provider's own knobs, by provider name (e.g. `{"viber": {"requests_per_second": 40}}`)."""


Knobs = TypeVar("Knobs")


def knobs(config: SimulatorConfig, name: str, cls: Callable[..., Knobs]) -> Knobs:
    """Provider `name`'s knobs from `config.options` as its dataclass `cls`; ValueError for unknown ones."""
    given = config.options.get(name, {})
    try:
        return cls(**given)
    except TypeError as exc:
        raise ValueError(f"{name} simulator: {exc}") from exc


class Outcome(Enum):
    """What the simulator does with one send attempt to one receiver."""

    DELIVERED_AND_SEEN = "delivered_and_seen"
    DELIVERED_ONLY = "delivered_only"
    FAILED_LATER = "failed_later"
    FINAL_ERROR = "final_error"
    RETRYABLE_ERROR = "retryable_error"


def last_digit(value: str | None) -> int:
    """The last decimal digit in `value`, or 0 when it has none (sandbox outcome selector)."""
    for char in reversed(value or ""):
        if "0" <= char <= "9":
            return ord(char) - ord("0")
    return 0


def phone_digits(phone: Any) -> str:
    """The digits of a sandbox user's phone (an E.164 number, spaces and dashes allowed), or "" for none.

    Raises ValueError for anything else: the `/_sandbox/inbound` routes answer it as the caller's mistake.
    """
    if phone is None or phone == "":
        return ""
    if not isinstance(phone, str):
        raise ValueError("phone must be a string")
    digits = "".join(ch for ch in phone if ch.isdigit())
    if not 8 <= len(digits) <= 15 or any(ch not in "+0123456789 -" for ch in phone):
        raise ValueError("phone must be an E.164 number (8-15 digits)")
    return digits


class LruMap(Generic[K, V]):
    """A dict that forgets its least recently written keys beyond `capacity` (bounded bookkeeping)."""

    def __init__(self, capacity: int) -> None:
        self._capacity = max(1, capacity)
        self._items: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K) -> V | None:
        """The value for `key`, or None (reading does not refresh a key's age)."""
        return self._items.get(key)

    def set(self, key: K, value: V) -> None:
        """Store `value`, making `key` the newest and dropping the oldest keys beyond capacity."""
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self._capacity:
            self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)

    def items(self) -> list[tuple[K, V]]:
        """A snapshot of the pairs, oldest first."""
        return list(self._items.items())


class OutcomePlanner:
    """Decides each send attempt's outcome from the sandbox digit or the configured rates."""

    def __init__(self, config: SimulatorConfig) -> None:
        self._config = config
        self._rng = random.Random(config.seed)
        # Only digit-9 messages are counted, and the map is bounded, so memory stays flat under load.
        self._attempts: LruMap[str, int] = LruMap(config.max_tracked_keys)

    def decide(self, *, digit: int, attempt_key: str) -> Outcome:
        """The outcome of this attempt; `attempt_key` identifies "the same message" across retries."""
        if self._config.mode == "rates":
            return self._by_rates()
        if digit == 8:
            return Outcome.FINAL_ERROR
        if digit == 9:
            attempts = (self._attempts.get(attempt_key) or 0) + 1
            self._attempts.set(attempt_key, attempts)
            return Outcome.RETRYABLE_ERROR if attempts <= 2 else Outcome.DELIVERED_AND_SEEN
        if digit == 7:
            return Outcome.DELIVERED_ONLY
        return Outcome.DELIVERED_AND_SEEN

    def _by_rates(self) -> Outcome:
        config, rng = self._config, self._rng
        draw = rng.random()
        if draw < config.retryable_error_rate:
            return Outcome.RETRYABLE_ERROR
        if draw < config.retryable_error_rate + config.fail_rate:
            return Outcome.FINAL_ERROR
        if rng.random() >= config.delivered_rate:
            return Outcome.FAILED_LATER
        return Outcome.DELIVERED_AND_SEEN if rng.random() < config.read_rate else Outcome.DELIVERED_ONLY


class TokenBucketLimiter:
    """Per-key token buckets: `capacity` requests at once, refilled at `capacity / window_s` per second."""

    def __init__(self, *, capacity: int, window_s: float, max_keys: int = 10_000) -> None:
        self._capacity = float(max(1, capacity))
        self._rate = self._capacity / max(window_s, 1e-9)
        self._max_keys = max_keys
        self._buckets: dict[str, tuple[float, float]] = {}

    def try_acquire(self, key: str) -> bool:
        """Take one token for `key`; False when the caller is over the limit."""
        now = time.monotonic()
        tokens, stamp = self._buckets.get(key, (self._capacity, now))
        tokens = min(self._capacity, tokens + (now - stamp) * self._rate)
        allowed = tokens >= 1.0
        if allowed:
            tokens -= 1.0
        self._buckets[key] = (tokens, now)
        if len(self._buckets) > self._max_keys:
            self._forget_idle(now)
        return allowed

    def _forget_idle(self, now: float) -> None:
        # A bucket that has refilled completely holds no information; dropping it is exact.
        idle = [
            key
            for key, (tokens, stamp) in self._buckets.items()
            if tokens + (now - stamp) * self._rate >= self._capacity
        ]
        for key in idle:
            del self._buckets[key]


FaultKind = Literal["http_503", "timeout", "rate_limit", "final_error", "stale_credentials"]
"""`stale_credentials`: the upstream's answer to credentials that expired (Zalo's -216), served by the
simulators of providers that `refreshes_credentials`."""
_FAULT_KINDS = ("http_503", "timeout", "rate_limit", "final_error", "stale_credentials", "none")


@dataclass
class Fault:
    """An injected failure: `kind`, and for `final_error` the upstream status to answer with (if given)."""

    kind: FaultKind
    status: int | None = None


class FaultInjector:
    """Holds the current fault: for the next `count` requests and/or until `seconds` have passed."""

    def __init__(self) -> None:
        self._fault: Fault | None = None
        self._remaining: int | None = None
        self._until: float | None = None

    def configure(self, body: Any) -> dict[str, Any]:
        """Apply a `POST /_sandbox/faults` body; raises ValueError for a malformed one."""
        if not isinstance(body, dict):
            raise ValueError("body must be a JSON object")
        kind = body.get("kind")
        if kind not in _FAULT_KINDS:
            raise ValueError(f"kind must be one of {', '.join(_FAULT_KINDS)}")
        count, seconds, status = body.get("count"), body.get("seconds"), body.get("status")
        if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 1):
            raise ValueError("count must be a positive integer")
        if seconds is not None and (
            isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds <= 0
        ):
            raise ValueError("seconds must be a positive number")
        if status is not None and (isinstance(status, bool) or not isinstance(status, int) or status <= 0):
            raise ValueError("status must be a positive integer")
        if kind == "none":
            self._fault, self._remaining, self._until = None, None, None
            return {"kind": "none"}
        self._fault = Fault(kind=kind, status=status)
        # Without either bound a fault hits exactly one request, never "forever" by accident.
        self._remaining = count if count is not None or seconds is not None else 1
        self._until = time.monotonic() + float(seconds) if seconds is not None else None
        return {"kind": kind, "count": self._remaining, "seconds": seconds, "status": status}

    def take(self) -> Fault | None:
        """The fault for the request being handled now, if any (consumes one of `count`)."""
        fault = self._fault
        if fault is None:
            return None
        if self._until is not None and time.monotonic() >= self._until:
            self._fault = None
            return None
        if self._remaining is not None:
            self._remaining -= 1
            if self._remaining <= 0:
                self._fault = None
        return fault


class SimulatorStats:
    """Counters exposed at `GET /_sandbox/stats`; per-key detail only when `track_keys` is on (bounded)."""

    def __init__(self, config: SimulatorConfig) -> None:
        self.requests = 0
        self.accepted = 0
        self.rejected: dict[int, int] = {}
        self.rate_limited = 0
        self.duplicates = 0
        self.faults_injected = 0
        self.callbacks_sent = 0
        self.callbacks_failed = 0
        self.callback_attempts_failed = 0
        self._by_key: LruMap[str, int] | None = LruMap(config.max_tracked_keys) if config.track_keys else None
        # When each key was first accepted (epoch ms): what the upstream saw of a sender's rate.
        self._first_at: LruMap[str, float] | None = (
            LruMap(config.max_tracked_keys) if config.track_keys else None
        )

    def reject(self, status: int) -> None:
        """Count a refusal with upstream `status`."""
        self.rejected[status] = self.rejected.get(status, 0) + 1

    def accept(self, key: str | None) -> bool:
        """Count an accepted message; True when `key` was accepted before (only known with `track_keys`)."""
        self.accepted += 1
        if self._by_key is None or key is None:
            return False
        times = (self._by_key.get(key) or 0) + 1
        self._by_key.set(key, times)
        if times == 1 and self._first_at is not None:
            self._first_at.set(key, round(time.time() * 1000, 1))
        if times > 1:
            self.duplicates += 1
            return True
        return False

    def as_json(self, *, detail: bool, pending_callbacks: int) -> dict[str, Any]:
        """The `/_sandbox/stats` body; `acceptedByKey` and `acceptedAtByKey` (first acceptance, epoch ms)
        only with `detail`."""
        data: dict[str, Any] = {
            "requests": self.requests,
            "accepted": self.accepted,
            "rejected": {str(code): count for code, count in sorted(self.rejected.items())},
            "rateLimited": self.rate_limited,
            "duplicates": self.duplicates,
            "faultsInjected": self.faults_injected,
            "callbacksSent": self.callbacks_sent,
            "callbacksFailed": self.callbacks_failed,
            "callbackAttemptsFailed": self.callback_attempts_failed,
            "callbacksPending": pending_callbacks,
        }
        if detail:
            data["acceptedByKey"] = dict(self._by_key.items()) if self._by_key is not None else {}
            data["acceptedAtByKey"] = dict(self._first_at.items()) if self._first_at is not None else {}
        return data


class CallbackScheduler:
    """Runs callback deliveries as tracked asyncio tasks; `aclose()` cancels whatever is still running."""

    def __init__(self, http: HttpClient, config: SimulatorConfig, stats: SimulatorStats) -> None:
        self._http = http
        self._config = config
        self._stats = stats
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    @property
    def pending(self) -> int:
        """Callback tasks still running (waiting, sending or retrying)."""
        return len(self._tasks)

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run `coro` in the background; after `aclose()` it is dropped instead."""
        if self._closed:
            coro.close()
            return
        task = asyncio.get_running_loop().create_task(coro, name=CALLBACK_TASK_NAME)
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("simulator callback task crashed", exc_info=task.exception())

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> bool:
        """POST one callback, retrying (bounded, growing spacing) until it gets HTTP 200."""
        delay = self._config.callback_retry_base_s
        for attempt in range(self._config.callback_retries + 1):
            try:
                response = await self._http.post(
                    url, content=body, headers=headers, timeout=self._config.callback_timeout_s
                )
                if response.status_code == 200:
                    self._stats.callbacks_sent += 1
                    return True
            except HttpUnreachable:
                pass
            self._stats.callback_attempts_failed += 1
            if attempt < self._config.callback_retries:
                await asyncio.sleep(delay)
                delay *= 2
        self._stats.callbacks_failed += 1
        logger.warning("simulator callback abandoned", url=url, attempts=self._config.callback_retries + 1)
        return False

    async def aclose(self) -> None:
        """Cancel every pending callback and wait until they are gone."""
        self._closed = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)


class HeldUntilRegistered(Generic[K]):
    """Callbacks of the services a simulator has not been told about since it started, held for them.

    An upstream keeps a service's callback URL whatever happens to the platform; a simulator inside
    `openmmp serve --sandbox` forgets it with the process, and the channel's set-up registers it again
    only once the workers have started. A send dispatched in between (a backlog resumed at start) would
    be accepted and never reported. So until a service's first registration its callbacks are held (at
    most `limit` per service) and started when it registers; a service that has been registered, or
    deliberately unregistered, since the start gets what the upstream gives: nothing without a URL.
    """

    def __init__(self, scheduler: CallbackScheduler, limit: int = 10_000) -> None:
        self._scheduler = scheduler
        self._limit = limit
        self._known: set[K] = set()
        self._held: dict[K, list[Callable[[], Coroutine[Any, Any, None]]]] = {}

    def hold(self, key: K, callbacks: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """For a service without a callback URL: keep `callbacks` (made when started) if it was never
        registered since the start."""
        if key in self._known:
            return
        held = self._held.setdefault(key, [])
        if len(held) < self._limit:
            held.append(callbacks)

    def configured(self, key: K, *, registered: bool) -> None:
        """The service's callback URL was set (its held callbacks start) or removed (they are dropped)."""
        self._known.add(key)
        for callbacks in self._held.pop(key, []):
            if registered:
                self._scheduler.spawn(callbacks())


async def sandbox_control(
    http: HttpClient,
    url: str,
    body: Mapping[str, Any] | None,
    *,
    simulator: str,
    headers: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """A platform's request to a simulator's `/_sandbox` control routes (set-up, an end user writing, or
    with `body` None a GET, such as where the SMSC simulator listens).

    Any failure is a retryable `ProviderError`: the simulator may still be starting. Returns the answer's
    JSON object.
    """
    try:
        if body is None:
            response = await http.get(url, headers=headers)
        else:
            response = await http.post(url, json=dict(body), headers=headers)
    except HttpUnreachable as exc:
        raise ProviderError(
            "SIMULATOR_UNREACHABLE", f"the {simulator} simulator is not reachable", retryable=True
        ) from exc
    if not response.ok:
        raise ProviderError(
            "SIMULATOR_REFUSED",
            f"the {simulator} simulator answered HTTP {response.status_code}",
            retryable=True,
        )
    answer = response.json()
    return answer if isinstance(answer, dict) else {}


async def sandbox_inbound(
    ctx: ProviderContext,
    body: Mapping[str, Any],
    *,
    simulator: str,
    headers: Mapping[str, str] | None = None,
    registered: str = "webhook",
    missing: str = "the channel's callback URL is not registered",
) -> dict[str, Any]:
    """An end user writes in through the simulator (`POST {base_url}/_sandbox/inbound` with `body`, the
    simulator's own fields); returns its answer.

    A simulator forgets where a channel's callbacks go when it restarts, and the channel's set-up tells it
    again only once the workers run: until then the message would go nowhere. An answer whose `registered`
    field is empty says so, and this raises a retryable `SIMULATOR_NOT_SET_UP` naming what is `missing`
    rather than answer as if the message went in.
    """
    url = f"{ctx.base_url}/_sandbox/inbound"
    answer = await sandbox_control(ctx.http, url, body, simulator=simulator, headers=headers)
    if not answer.get(registered):
        raise ProviderError(
            "SIMULATOR_NOT_SET_UP",
            f"{missing} with the simulator yet (the channel's set-up runs when the workers start); retry "
            "in a few seconds",
            retryable=True,
        )
    return answer


async def sandbox_bot_inbound(
    ctx: ProviderContext, user: SandboxUser, *, simulator: str, headers: Mapping[str, str]
) -> dict[str, Any]:
    """A bot's end user writes in (`sandbox_inbound`); returns the simulator's answer to their text.

    Bots know their users by id only. A user with a phone shares their contact first (the bot platforms'
    share-contact button), so that the platform learns the number, then writes as the user the simulator
    answered with.
    """
    who: dict[str, Any] = {"name": user.name}
    if user.user_id:
        who["userId"] = user.user_id
    missing = "the bot's webhook is not set"
    if user.phone:
        shared = {**who, "phone": user.phone}
        who["userId"] = (
            await sandbox_inbound(ctx, shared, simulator=simulator, headers=headers, missing=missing)
        ).get("userId")
    written = {**who, "text": user.text}
    return await sandbox_inbound(ctx, written, simulator=simulator, headers=headers, missing=missing)


def now_ms() -> int:
    """Epoch milliseconds, the upstreams' time unit."""
    return int(time.time() * 1000)


def json_response(data: Any, status_code: int = 200) -> Response:
    """A JSON response serialised with orjson (the upstreams answer compact JSON)."""
    return Response(orjson.dumps(data), status_code=status_code, media_type="application/json")


def sandbox_error(message: str, status_code: int = 400) -> Response:
    """An error of a `/_sandbox` control route (these are OpenMMP's, not the upstream's)."""
    return json_response({"error": message}, status_code)


async def read_json(request: Request) -> Any:
    """The request body as JSON, or raise ValueError."""
    try:
        return orjson.loads(await request.body())
    except orjson.JSONDecodeError as exc:
        raise ValueError("body is not JSON") from exc


async def hang(request: Request, seconds: float) -> None:
    """Hold a request like a stuck upstream: until `seconds` pass or the client gives up.

    Ending on disconnect keeps the server's shutdown quick and frees the task as soon as the client's own
    timeout has fired.
    """

    async def disconnected() -> None:
        while True:
            message = await request.receive()
            if message["type"] == "http.disconnect":
                return

    watcher = asyncio.ensure_future(disconnected())
    try:
        await asyncio.wait({watcher}, timeout=seconds)
    finally:
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)


async def edge_fault(
    request: Request, kind: str, config: SimulatorConfig, stats: SimulatorStats
) -> Response | None:
    """Count an injected fault of `kind`, and answer it when the upstream's edge would: `http_503` as a
    proxy's plain-text 503, `timeout` as a 504 once the request was held (`hang`). None for the faults
    the upstream answers in its own words (`rate_limit`, `final_error`).
    """
    stats.faults_injected += 1
    if kind == "http_503":
        return Response("Service Unavailable", status_code=503, media_type="text/plain")
    if kind == "timeout":
        await hang(request, config.fault_hang_s)
        return Response("Gateway Timeout", status_code=504, media_type="text/plain")
    return None


def wants_detail(request: Request) -> bool:
    """`GET /_sandbox/stats?detail=1`: the per-key detail (`acceptedByKey`) is asked for."""
    return request.query_params.get("detail") in ("1", "true", "yes")


def stats_response(request: Request, stats: SimulatorStats, scheduler: CallbackScheduler) -> Response:
    """`GET /_sandbox/stats` (add `?detail=1` for `acceptedByKey`)."""
    return json_response(stats.as_json(detail=wants_detail(request), pending_callbacks=scheduler.pending))


async def faults_response(request: Request, faults: FaultInjector) -> Response:
    """`POST /_sandbox/faults`: set or clear the fault."""
    try:
        applied = faults.configure(await read_json(request))
    except ValueError as exc:
        return sandbox_error(str(exc))
    return json_response(applied)


class SocketSimulator(Protocol):
    """A simulator speaking its upstream's protocol on a TCP port of its own (an SMSC, an SMTP server)."""

    address: tuple[str, int]
    faults: FaultInjector

    async def stop(self) -> None: ...

    def stats_json(self, *, detail: bool) -> Mapping[str, Any]: ...


def socket_simulator_app(
    simulator: SocketSimulator,
    start: Callable[[], Awaitable[object]],
    *,
    event: str,
    routes: list[BaseRoute],
) -> Starlette:
    """The app of a `SocketSimulator`: its lifespan `start`s it (logging `event` with where it listens)
    and stops it; its routes are the controls every such simulator has (`GET /_sandbox/address`, `GET
    /_sandbox/stats`, `POST /_sandbox/faults`) and its own `routes`."""

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        await start()
        host, port = simulator.address
        logger.info(event, host=host, port=port)
        try:
            yield
        finally:
            await simulator.stop()

    async def address(_request: Request) -> Response:
        host, port = simulator.address
        return json_response({"host": host, "port": port})

    async def stats(request: Request) -> Response:
        return json_response(simulator.stats_json(detail=wants_detail(request)))

    async def faults(request: Request) -> Response:
        return await faults_response(request, simulator.faults)

    app = Starlette(
        routes=[
            Route("/_sandbox/address", address, methods=["GET"]),
            Route("/_sandbox/stats", stats, methods=["GET"]),
            Route("/_sandbox/faults", faults, methods=["POST"]),
            *routes,
        ],
        lifespan=lifespan,
    )
    app.state.simulator = simulator
    return app


def scheduler_lifespan(
    scheduler: CallbackScheduler,
) -> Callable[[Starlette], AbstractAsyncContextManager[None]]:
    """A Starlette lifespan that cancels the scheduler's callbacks when the app shuts down."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await scheduler.aclose()

    return lifespan


class HttpSimulator:
    """An upstream's simulator as a Starlette app (`app`): what every one keeps (its config and stats, the
    scheduler of its callbacks, its faults and the planner of its outcomes), and the sandbox routes every
    one answers after its own `routes` (`GET /_sandbox/stats`, `POST /_sandbox/faults`)."""

    def __init__(self, config: SimulatorConfig, http: HttpClient, routes: Sequence[BaseRoute]) -> None:
        self._config = config
        self._stats = SimulatorStats(config)
        self._scheduler = CallbackScheduler(http, config, self._stats)
        self._faults = FaultInjector()
        self._planner = OutcomePlanner(config)
        shared = [
            Route("/_sandbox/stats", self._sandbox_stats, methods=["GET"]),
            Route("/_sandbox/faults", self._sandbox_faults, methods=["POST"]),
        ]
        self.app = Starlette(routes=[*routes, *shared], lifespan=scheduler_lifespan(self._scheduler))
        self.app.state.simulator = self

    async def _sandbox_stats(self, request: Request) -> Response:
        return stats_response(request, self._stats, self._scheduler)

    async def _sandbox_faults(self, request: Request) -> Response:
        return await faults_response(request, self._faults)


def create_simulators_app(config: SimulatorConfig, http: HttpClient) -> Starlette:
    """Every registered provider's simulator in one app, each at `/{provider name}` (e.g. `/viber-bot`).

    `http` sends the callbacks and stays the caller's to close. The app's lifespan runs every simulator's
    lifespan (cancelling pending callbacks on shutdown). Raises ValueError for knobs of an unknown provider.
    """
    # Imported here: the registry imports the providers, whose simulators import this module.
    from openmmp.providers.registry import REGISTRY

    unknown = sorted(set(config.options) - {p.name for p in REGISTRY.providers})
    if unknown:
        raise ValueError(f"no simulator is named {', '.join(unknown)}")
    simulators = {provider.name: provider.simulator(config, http) for provider in REGISTRY.providers}

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            for simulator in simulators.values():
                await stack.enter_async_context(simulator.router.lifespan_context(simulator))
            yield

    return Starlette(
        routes=[Mount(f"/{name}", app=simulator) for name, simulator in simulators.items()],
        lifespan=lifespan,
    )
