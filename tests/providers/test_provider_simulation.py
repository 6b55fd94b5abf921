"""The parts both simulators share: outcomes, limiter, faults, bounded maps, callback tasks and lifespan."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest
from tests.providers.viber_harness import Inbox, serve

from openmmp.kit.http import HttpClient
from openmmp.providers.simulation import (
    CALLBACK_TASK_NAME,
    CallbackScheduler,
    FaultInjector,
    LruMap,
    Outcome,
    OutcomePlanner,
    SimulatorConfig,
    SimulatorStats,
    TokenBucketLimiter,
    create_simulators_app,
    last_digit,
)
from openmmp.providers.viber.client import ViberClient
from openmmp.providers.viber_bot.client import ViberBotClient


def callback_tasks() -> list[asyncio.Task[Any]]:
    return [task for task in asyncio.all_tasks() if task.get_name() == CALLBACK_TASK_NAME and not task.done()]


class TestLastDigit:
    @pytest.mark.parametrize(
        ("value", "digit"), [("85512345678", 8), ("abc7de", 7), ("no digits", 0), ("", 0), (None, 0)]
    )
    def test_the_last_decimal_digit_or_zero(self, value: str | None, digit: int) -> None:
        assert last_digit(value) == digit


class TestOutcomePlanner:
    @pytest.mark.parametrize(
        ("digit", "outcome"),
        [
            *((digit, Outcome.DELIVERED_AND_SEEN) for digit in range(7)),
            (7, Outcome.DELIVERED_ONLY),
            (8, Outcome.FINAL_ERROR),
        ],
    )
    def test_sandbox_digits(self, digit: int, outcome: Outcome) -> None:
        assert OutcomePlanner(SimulatorConfig()).decide(digit=digit, attempt_key="k") is outcome

    def test_digit_9_fails_the_first_two_attempts_of_each_message(self) -> None:
        planner = OutcomePlanner(SimulatorConfig())
        first = [planner.decide(digit=9, attempt_key="a") for _ in range(4)]
        assert first == [Outcome.RETRYABLE_ERROR, Outcome.RETRYABLE_ERROR] + [Outcome.DELIVERED_AND_SEEN] * 2
        assert planner.decide(digit=9, attempt_key="b") is Outcome.RETRYABLE_ERROR

    def test_rates_are_reproducible_from_the_seed_and_roughly_right(self) -> None:
        config = SimulatorConfig(
            mode="rates", seed=42, retryable_error_rate=0.1, fail_rate=0.1, delivered_rate=0.5, read_rate=0.5
        )
        planner, again = OutcomePlanner(config), OutcomePlanner(config)
        first = [planner.decide(digit=0, attempt_key=str(i)) for i in range(4000)]
        assert first == [again.decide(digit=0, attempt_key=str(i)) for i in range(4000)]
        counts = Counter(first)
        assert 300 < counts[Outcome.RETRYABLE_ERROR] < 500
        assert 300 < counts[Outcome.FINAL_ERROR] < 500
        # Of the ~80% accepted: half fail later, the rest split between seen and delivered only.
        assert 1400 < counts[Outcome.FAILED_LATER] < 1800
        assert 600 < counts[Outcome.DELIVERED_AND_SEEN] < 1000
        assert 600 < counts[Outcome.DELIVERED_ONLY] < 1000


class TestTokenBucketLimiter:
    def test_capacity_then_refused_per_key(self) -> None:
        limiter = TokenBucketLimiter(capacity=2, window_s=1000)
        assert [limiter.try_acquire("a") for _ in range(3)] == [True, True, False]
        assert limiter.try_acquire("b")

    async def test_tokens_come_back_over_the_window(self) -> None:
        limiter = TokenBucketLimiter(capacity=1, window_s=0.05)
        assert limiter.try_acquire("a")
        assert not limiter.try_acquire("a")
        await asyncio.sleep(0.06)
        assert limiter.try_acquire("a")

    def test_idle_keys_are_forgotten_beyond_the_key_limit(self) -> None:
        limiter = TokenBucketLimiter(capacity=1, window_s=1e-6, max_keys=10)
        for index in range(100):
            limiter.try_acquire(str(index))
        assert len(limiter._buckets) <= 11


class TestFaultInjector:
    def test_a_fault_without_bounds_hits_exactly_one_request(self) -> None:
        faults = FaultInjector()
        faults.configure({"kind": "http_503"})
        first = faults.take()
        assert first is not None and first.kind == "http_503"
        assert faults.take() is None

    def test_count_requests(self) -> None:
        faults = FaultInjector()
        faults.configure({"kind": "final_error", "count": 3, "status": 6})
        taken = [faults.take() for _ in range(4)]
        assert [fault.status if fault else None for fault in taken] == [6, 6, 6, None]

    async def test_seconds_then_it_ends_by_itself(self) -> None:
        faults = FaultInjector()
        faults.configure({"kind": "timeout", "seconds": 0.03})
        assert all(faults.take() is not None for _ in range(5))
        await asyncio.sleep(0.04)
        assert faults.take() is None

    def test_none_clears(self) -> None:
        faults = FaultInjector()
        faults.configure({"kind": "rate_limit", "seconds": 60})
        faults.configure({"kind": "none"})
        assert faults.take() is None

    @pytest.mark.parametrize(
        "body",
        [
            [],
            {"kind": "boom"},
            {"kind": "http_503", "count": 0},
            {"kind": "http_503", "count": True},
            {"kind": "http_503", "seconds": -1},
            {"kind": "final_error", "status": "x"},
        ],
    )
    def test_malformed_requests_raise_value_error(self, body: Any) -> None:
        with pytest.raises(ValueError, match=r"\w"):
            FaultInjector().configure(body)


class TestBoundedBookkeeping:
    def test_lru_map_keeps_only_the_newest_keys(self) -> None:
        items: LruMap[str, int] = LruMap(3)
        for index in range(10):
            items.set(str(index), index)
        assert len(items) == 3
        assert items.get("0") is None
        assert items.items() == [("7", 7), ("8", 8), ("9", 9)]

    def test_stats_without_key_tracking_keep_no_keys(self) -> None:
        stats = SimulatorStats(SimulatorConfig(track_keys=False))
        assert not stats.accept("a")
        assert not stats.accept("a")
        data = stats.as_json(detail=True, pending_callbacks=0)
        assert (data["accepted"], data["duplicates"], data["acceptedByKey"]) == (2, 0, {})


class TestCallbackScheduler:
    async def test_closing_cancels_pending_callbacks_and_refuses_new_ones(self) -> None:
        config = SimulatorConfig()
        http = HttpClient()
        scheduler = CallbackScheduler(http, config, SimulatorStats(config))
        try:
            scheduler.spawn(asyncio.sleep(30))
            assert scheduler.pending == 1
            await scheduler.aclose()
            assert scheduler.pending == 0
            assert callback_tasks() == []
            late = asyncio.sleep(30)
            scheduler.spawn(late)
            assert scheduler.pending == 0
        finally:
            await http.aclose()


class TestSimulatorsApp:
    async def test_shutdown_cancels_callbacks_still_waiting(self, inbox: Inbox) -> None:
        http = HttpClient()
        config = SimulatorConfig(callback_latency_s=30)
        try:
            async with serve(create_simulators_app(config, http)) as base_url:
                bot = ViberBotClient(http, f"{base_url}/viber-bot")
                await bot.set_webhook(auth_token="t", url=inbox.url)
                await bot.send_message(
                    auth_token="t",
                    sender_name="Shop",
                    sender_avatar=None,
                    receiver="u0=",
                    message={"type": "text", "message": "x"},
                )
                registered = await http.post(
                    f"{base_url}/viber/_sandbox/services/1", json={"callbackUrl": inbox.url}
                )
                assert registered.status_code == 200
                await ViberClient(http, f"{base_url}/viber").send_message(
                    service_id=1,
                    dest="85512345670",
                    seq=1,
                    label=None,
                    message={"type": "text", "message": "x"},
                    ttl=None,
                )
                assert len(callback_tasks()) == 2
            assert callback_tasks() == []
        finally:
            await http.aclose()

    async def test_both_simulators_are_mounted_with_their_own_stats(self, inbox: Inbox) -> None:
        http = HttpClient()
        try:
            async with serve(create_simulators_app(SimulatorConfig(), http)) as base_url:
                for prefix in ("viber-bot", "viber"):
                    response = await http.get(f"{base_url}/{prefix}/_sandbox/stats")
                    assert response.status_code == 200
                    assert set(response.json()) >= {
                        "requests",
                        "accepted",
                        "rejected",
                        "rateLimited",
                        "duplicates",
                        "callbacksSent",
                        "callbacksFailed",
                    }
        finally:
            await http.aclose()
