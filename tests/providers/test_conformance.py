"""The provider conformance suite: every registered provider, against its own simulator, over real HTTP.

Parametrised over `REGISTRY.providers`, so registering a provider adds it here. Each test drives the
provider only through the contract (`providers.base.Provider`): `set_up`, `plan` and the units' calls
(the real client), `verify` and `parse` (the real verification code) on the callbacks its simulator sent
to a real receiver, and `sandbox_inbound`. Outcomes follow the sandbox's last-digit rule and the
simulators' shared fault injection (`/_sandbox/faults`), which every simulator serves. A `connected`
provider runs its `Link` to the simulator, and one that `listens` its `listener`, whose sinks put what
arrives in the same receiver: those bodies come from our own connection or server, so nothing verifies
them, and every request over HTTP is refused. E-mail providers get an address ending in the phone's
digits.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
from tests.e2e.harness import wait_until
from tests.providers.viber_harness import Inbox, Received, Sim, StartSim

from openmmp.kit.http import HttpClient
from openmmp.kit.time import now_ms
from openmmp.messages.schemas import MessageType
from openmmp.providers.base import (
    Addressing,
    CallbackEvent,
    CallbackRequest,
    InboundEvent,
    Link,
    Outgoing,
    Provider,
    ProviderContext,
    ProviderError,
    SandboxUser,
    SendOk,
    SendOutcome,
    StatusEvent,
)
from openmmp.providers.registry import REGISTRY

PROVIDERS = REGISTRY.providers
# Phones whose last digit picks the sandbox outcome (README "Sandbox outcomes").
READ_PHONE, DELIVERED_ONLY_PHONE, FINAL_PHONE, FLAKY_PHONE = (
    "85512345670",
    "85512345677",
    "85512345678",
    "85512345679",
)
_keys = iter(range(10_000_000, 20_000_000))
ACCOUNT_ID = "0190f5c2-7a3e-7d4b-8c1a-5e6f7a8b9c0d"


@pytest.fixture(params=PROVIDERS, ids=lambda p: p.name)
def provider(request: pytest.FixtureRequest) -> Provider:
    return request.param  # type: ignore[no-any-return]


@dataclass
class Bench:
    """One provider against its simulator: the context it is handed, its credentials, the callbacks."""

    provider: Provider
    ctx: ProviderContext
    credentials: dict[str, Any]
    sim: Sim
    inbox: Inbox
    link: Link | None = None
    """A `connected` provider's link to its simulator, running for the whole test."""
    sent: dict[str, tuple[str, int]] = field(default_factory=dict)
    """Each message sent: its recipient and when it was sent (epoch ms), by its upstream id, for the
    watermarks by time (`StatusEvent.up_to_ms`) that cover it."""

    @property
    def trusted(self) -> bool:
        """What arrives comes from a connection or a server of ours, not over HTTP."""
        return self.provider.connected or self.provider.listens

    @asynccontextmanager
    async def linked(self, ctx: ProviderContext) -> AsyncIterator[Link | None]:
        """A running link for `ctx` (None for a provider that is not `connected`), stopped at the end;
        for one that `listens`, its listener runs meanwhile."""
        if self.provider.listens:
            async with self._running(self.provider.listener(ctx, self._channel_sink), "the listener"):
                yield None
            return
        if not self.provider.connected:
            yield None
            return

        async def sink(body: bytes) -> str:
            await self.inbox.add(Received(path="link", headers={}, body=body))
            return "applied"

        async with self._running(self.provider.link(ctx, self.credentials, sink), "the link") as link:
            yield link

    async def _channel_sink(self, account_id: str, body: bytes) -> str:
        assert account_id == ACCOUNT_ID
        await self.inbox.add(Received(path="listener", headers={}, body=body))
        return "applied"

    @asynccontextmanager
    async def _running(self, link: Link, what: str) -> AsyncIterator[Link]:
        stop = asyncio.Event()
        running = asyncio.create_task(link.run(stop))
        try:
            await wait_until(lambda: link.up, timeout=5, what=f"{what} up")
            yield link
        finally:
            stop.set()
            await running

    async def set_up(self) -> None:
        if self.provider.needs_setup(sandbox=True):
            await self.provider.set_up(self.ctx, callback_url=self.inbox.url, credentials=self.credentials)

    async def recipient(self, phone: str) -> str:
        """Who to send to for `phone`: the phone itself, or the end user (made to write first) by it."""
        if self.provider.addressing in (Addressing.PHONE, Addressing.BOTH):
            return phone
        if self.provider.addressing == Addressing.EMAIL:
            return f"conformance{phone}@bank.example"
        written = await self.provider.sandbox_inbound(
            self.ctx, self.credentials, SandboxUser(name="Conformance", text="hello", phone=phone)
        )
        return written.user_id

    async def send(self, recipient: str, content: Mapping[str, Any] | None = None) -> SendOutcome:
        key = next(_keys)
        message = Outgoing(key, recipient, content or self.provider.example_message, account_id=ACCOUNT_ID)
        units = self.provider.plan(self.ctx, self.credentials, [message], self.link)
        assert [unit.keys for unit in units] == [(key,)]
        sent_at = now_ms()
        outcomes = await units[0].call()
        assert set(outcomes) == {key}
        outcome = outcomes[key]
        if isinstance(outcome, SendOk):
            self.sent[outcome.provider_message_id] = (recipient, sent_at)
        return outcome

    def request(self, received: Received) -> CallbackRequest:
        return CallbackRequest("POST", {k.lower(): v for k, v in received.headers.items()}, {}, received.body)

    def events(self, received: Sequence[Received] | None = None) -> list[CallbackEvent]:
        """Every callback received so far, verified (each must be) and parsed."""
        events: list[CallbackEvent] = []
        for item in self.inbox.received if received is None else received:
            if not self.trusted:
                assert self.provider.verify(self.ctx, self.request(item), self.credentials), item.body
            events += self.provider.parse(self.provider.readable_body(self.request(item)))
        return events

    def statuses(self, token: str) -> list[StatusEvent]:
        """The reports about the message `token`: naming it, or a watermark by time covering it."""
        return [e for e in self.events() if isinstance(e, StatusEvent) and self._covers(e, token)]

    def _covers(self, event: StatusEvent, token: str) -> bool:
        if event.up_to_ms is None:
            return event.provider_message_id == token
        recipient, sent_at = self.sent.get(token, ("", 0))
        return event.user_id == recipient and sent_at <= event.up_to_ms

    async def wait_statuses(self, token: str, *wanted: str) -> list[StatusEvent]:
        def arrived(_: list[Received]) -> bool:
            return set(wanted) <= {e.status for e in self.statuses(token)}

        await self.inbox.wait_for(arrived)
        return self.statuses(token)


@pytest.fixture
async def bench(
    provider: Provider, start_sim: StartSim, http: HttpClient, inbox: Inbox
) -> AsyncIterator[Bench]:
    sim = await start_sim()
    ctx = ProviderContext(
        http=http,
        base_url=f"{sim.base_url}/{provider.name}",
        public_url="http://127.0.0.1:9",
        sandbox=True,
    )
    credentials = provider.credentials_model.model_validate(provider.sandbox_credentials).model_dump(
        by_alias=True, exclude_none=True
    )
    bench = Bench(provider, ctx, credentials, sim, inbox)
    await bench.set_up()
    async with bench.linked(ctx) as link:
        bench.link = link
        yield bench


def _reports(provider: Provider) -> tuple[str, ...]:
    """The reports a message to READ_PHONE gets: delivered, then read, as far as the upstream tells."""
    if not provider.reports_delivery:
        return ()
    return ("DELIVERED", "READ") if provider.reports_read else ("DELIVERED",)


class TestDeclarations:
    def test_the_name_fits_a_url_and_a_setting(self, provider: Provider):
        assert re.fullmatch(r"[a-z][a-z0-9-]*", provider.name)
        assert REGISTRY.by_name(provider.name) is provider
        assert REGISTRY.for_application(provider.application) is provider

    def test_message_types_are_mmp_types_and_the_example_is_one_of_them(self, provider: Provider):
        assert provider.message_types
        assert provider.message_types <= {t.value for t in MessageType}
        assert provider.example_message["type"] in provider.message_types
        provider.check_message(provider.example_message, provider.sandbox_credentials)

    def test_the_rate_limit_is_positive(self, provider: Provider):
        limit = provider.rate_limit
        assert limit.requests >= 1
        assert limit.window_seconds > 0
        assert limit.per

    def test_an_upstream_that_reports_reads_reports_deliveries(self, provider: Provider):
        assert provider.reports_delivery or not provider.reports_read

    def test_the_sandbox_credentials_are_valid_credentials(self, provider: Provider):
        provider.credentials_model.model_validate(provider.sandbox_credentials)

    def test_its_options_are_knobs_of_its_simulator(self, provider: Provider, start_sim: StartSim):
        """The platform hands a simulator its operator options as knobs; the simulator must take them."""
        if provider.options_model is None:
            pytest.skip("no options")
        options = provider.options_model().model_dump()
        assert options
        provider.simulator(SimulatorConfigWith({provider.name: options}), HttpClient(timeout=1))


def SimulatorConfigWith(options: dict[str, dict[str, Any]]) -> Any:
    from openmmp.providers.simulation import SimulatorConfig

    return SimulatorConfig(options=options)


class TestSending:
    async def test_a_send_is_accepted_and_comes_back_delivered_then_read(self, bench: Bench):
        outcome = await bench.send(await bench.recipient(READ_PHONE))
        assert isinstance(outcome, SendOk), outcome
        statuses = await bench.wait_statuses(outcome.provider_message_id, *_reports(bench.provider))
        order = [e.status for e in statuses]
        if bench.provider.reports_read:
            assert order.index("DELIVERED") < order.index("READ")
        else:
            await asyncio.sleep(0.2)
            told = {e.status for e in bench.statuses(outcome.provider_message_id)}
            assert "READ" not in told
            assert bench.provider.reports_delivery or not told

    async def test_a_message_delivered_but_never_read_stops_at_delivered(self, bench: Bench):
        if not bench.provider.reports_read:
            pytest.skip("reports no reads")
        outcome = await bench.send(await bench.recipient(DELIVERED_ONLY_PHONE))
        assert isinstance(outcome, SendOk), outcome
        await bench.wait_statuses(outcome.provider_message_id, "DELIVERED")
        read = READ_PHONE
        marker = await bench.send(await bench.recipient(read))
        assert isinstance(marker, SendOk)
        await bench.wait_statuses(marker.provider_message_id, "READ")  # later callbacks have arrived
        assert "READ" not in {e.status for e in bench.statuses(outcome.provider_message_id)}

    async def test_set_up_again_changes_nothing(self, bench: Bench):
        """Set-up runs at every start: repeating it must not double callbacks or break sending."""
        await bench.set_up()
        await bench.set_up()
        outcome = await bench.send(await bench.recipient(READ_PHONE))
        assert isinstance(outcome, SendOk), outcome
        wanted = _reports(bench.provider)
        statuses = await bench.wait_statuses(outcome.provider_message_id, *wanted)
        keys = {e.status: set() for e in statuses}
        for event in statuses:
            keys[event.status].add(event.dedupe_key)
        assert {status: len(k) for status, k in keys.items()} == dict.fromkeys(wanted, 1)


class TestErrors:
    async def test_an_upstream_error_is_retryable(self, bench: Bench):
        await bench.sim.fault(bench.provider.name, kind="http_503")
        outcome = await bench.send(await bench.recipient(READ_PHONE))
        assert isinstance(outcome, ProviderError)
        assert outcome.retryable
        assert not outcome.rate_limited
        assert outcome.code

    async def test_no_answer_in_time_is_retryable(self, bench: Bench):
        recipient = await bench.recipient(READ_PHONE)
        impatient = HttpClient(timeout=0.3)
        try:
            ctx = ProviderContext(
                impatient, bench.ctx.base_url, bench.ctx.public_url, True, bench.ctx.options
            )
            async with bench.linked(ctx) as link:
                await bench.sim.fault(bench.provider.name, kind="timeout")
                key = next(_keys)
                [unit] = bench.provider.plan(
                    ctx,
                    bench.credentials,
                    [Outgoing(key, recipient, bench.provider.example_message, account_id=ACCOUNT_ID)],
                    link,
                )
                outcome = (await unit.call())[key]
        finally:
            await impatient.aclose()
        assert isinstance(outcome, ProviderError)
        assert outcome.retryable

    async def test_a_final_refusal_is_final_with_a_cause(self, bench: Bench):
        outcome = await bench.send(await bench.recipient(FINAL_PHONE))
        assert isinstance(outcome, ProviderError)
        assert not outcome.retryable
        assert outcome.code and outcome.message

    async def test_a_passing_failure_is_retryable_and_a_retry_goes_through(self, bench: Bench):
        recipient = await bench.recipient(FLAKY_PHONE)
        key = next(_keys)
        message = Outgoing(key, recipient, bench.provider.example_message, account_id=ACCOUNT_ID)
        outcomes = []
        for _ in range(3):
            [unit] = bench.provider.plan(bench.ctx, bench.credentials, [message], bench.link)
            outcomes.append((await unit.call())[key])
        assert [isinstance(o, ProviderError) and o.retryable for o in outcomes] == [True, True, False]
        assert isinstance(outcomes[2], SendOk)

    async def test_the_rate_limit_answer_is_honoured_never_a_failure(self, bench: Bench):
        await bench.sim.fault(bench.provider.name, kind="rate_limit")
        outcome = await bench.send(await bench.recipient(READ_PHONE))
        assert isinstance(outcome, ProviderError)
        assert outcome.rate_limited
        assert outcome.retryable


class TestCallbacks:
    async def _one_callback(self, bench: Bench) -> Received:
        """A callback the upstream sent: a delivery report, or an end user's message from an upstream
        that reports no delivery."""
        if not bench.provider.reports_delivery:
            return await self._one_inbound(bench)
        outcome = await bench.send(await bench.recipient(READ_PHONE))
        assert isinstance(outcome, SendOk)
        await bench.wait_statuses(outcome.provider_message_id, "DELIVERED")
        return next(
            item
            for item in bench.inbox.received
            if any(
                isinstance(e, StatusEvent) and bench._covers(e, outcome.provider_message_id)
                for e in bench.events([item])
            )
        )

    async def _one_inbound(self, bench: Bench) -> Received:
        text = f"conformance {next(_keys)}"
        await bench.provider.sandbox_inbound(
            bench.ctx, bench.credentials, SandboxUser(name="Conformance", text=text, phone=READ_PHONE)
        )

        def written(items: list[Received]) -> bool:
            return any(self._says(bench, item, text) for item in items)

        await bench.inbox.wait_for(written)
        return next(item for item in bench.inbox.received if self._says(bench, item, text))

    @staticmethod
    def _says(bench: Bench, item: Received, text: str) -> bool:
        return any(
            isinstance(e, InboundEvent) and e.message.get("message") == text for e in bench.events([item])
        )

    async def test_a_forged_callback_is_refused(self, bench: Bench):
        genuine = await self._one_callback(bench)
        request = bench.request(genuine)
        if bench.trusted:
            # What arrives on the link is trusted as ours; over HTTP even its exact bytes are refused.
            assert not bench.provider.verify(bench.ctx, request, bench.credentials)
            return
        assert bench.provider.verify(bench.ctx, request, bench.credentials)
        if bench.provider.callback_proof == "body":
            tampered = bytearray(genuine.body)
            tampered[len(tampered) // 2] ^= 0x01
            forged = CallbackRequest("POST", request.headers, {}, bytes(tampered))
            assert not bench.provider.verify(bench.ctx, forged, bench.credentials)
        unsigned = CallbackRequest("POST", {"content-type": "application/json"}, {}, genuine.body)
        assert not bench.provider.verify(bench.ctx, unsigned, bench.credentials)

    async def test_a_callback_for_another_channel_is_refused(self, bench: Bench):
        """Signed for one channel (its credentials or the operator's secret), refused by another's."""
        genuine = await self._one_callback(bench)
        other = {**bench.credentials}
        options = {
            name: f"{value}-other" for name, value in bench.ctx.options.items() if isinstance(value, str)
        }
        other_ctx = ProviderContext(bench.ctx.http, bench.ctx.base_url, bench.ctx.public_url, False, options)
        for name, value in other.items():
            if isinstance(value, str):
                other[name] = value + "-other"
        assert not bench.provider.verify(other_ctx, bench.request(genuine), other)

    async def test_a_replayed_callback_is_recognised_as_the_same_event(self, bench: Bench):
        genuine = await self._one_callback(bench)
        first = [e.dedupe_key for e in bench.provider.parse(genuine.body)]  # type: ignore[union-attr]
        again = [e.dedupe_key for e in bench.provider.parse(genuine.body)]  # type: ignore[union-attr]
        assert first == again
        assert all(first)


class TestInbound:
    async def test_an_end_user_writing_becomes_an_inbound_message(self, bench: Bench):
        if not bench.provider.receives_messages:
            pytest.skip("receives no messages")
        text = "Is my card ready? ស្រី 🙂"
        written = await bench.provider.sandbox_inbound(
            bench.ctx, bench.credentials, SandboxUser(name="Sokha", text=text, phone=READ_PHONE)
        )

        def has_it(_: list[Received]) -> bool:
            return any(
                isinstance(e, InboundEvent) and e.message.get("message") == text for e in bench.events()
            )

        await bench.inbox.wait_for(has_it)
        [event] = [
            e for e in bench.events() if isinstance(e, InboundEvent) and e.message.get("message") == text
        ]
        assert event.kind == "message"
        assert event.message["type"] == "text"
        assert event.contact.id == written.user_id
        assert event.dedupe_key
        assert "extra" in event.message


class TestOnboarding:
    """A provider that hands out accounts through a sign-up: its simulator's page sends the browser back
    at once, and what it sent back becomes credentials that send. The others say they have none."""

    REDIRECT = "https://mmp.example.com/onboard/callback"

    async def test_a_signup_ends_in_credentials_that_send(self, bench: Bench):
        provider = bench.provider
        if not provider.onboarding:
            with pytest.raises(NotImplementedError):
                provider.onboarding_url(bench.ctx, state="s", redirect_url=self.REDIRECT)
            with pytest.raises(NotImplementedError):
                await provider.complete_onboarding(bench.ctx, {}, redirect_url=self.REDIRECT)
            return
        page = await bench.sim.http.get(
            provider.onboarding_url(bench.ctx, state="the-state", redirect_url=self.REDIRECT)
        )
        assert page.status_code in (302, 303), page.content
        location = urlsplit(page.headers["location"])
        assert f"{location.scheme}://{location.netloc}{location.path}" == self.REDIRECT
        answer = dict(parse_qsl(location.query))
        assert answer.pop("state") == "the-state"
        credentials = await provider.complete_onboarding(bench.ctx, answer, redirect_url=self.REDIRECT)
        provider.credentials_model.model_validate(credentials)
        onboarded = Bench(provider, bench.ctx, credentials, bench.sim, bench.inbox, bench.link)
        await onboarded.set_up()
        outcome = await onboarded.send(await onboarded.recipient(READ_PHONE))
        assert isinstance(outcome, SendOk), outcome
        await onboarded.wait_statuses(outcome.provider_message_id, *_reports(provider))


class TestExpiringCredentials:
    """A provider whose credentials expire says so (`stale_credentials`) and renews them into credentials
    that send; a refresh token is spent by its use. The others have nothing to renew."""

    async def test_stale_credentials_are_said_and_renewed_ones_send(self, bench: Bench):
        provider = bench.provider
        if not provider.refreshes_credentials:
            with pytest.raises(NotImplementedError):
                await provider.refresh_credentials(bench.ctx, bench.credentials)
            return
        recipient = await bench.recipient(READ_PHONE)
        await bench.sim.fault(provider.name, kind="stale_credentials")
        stale = await bench.send(recipient)
        assert isinstance(stale, ProviderError), stale
        assert stale.stale_credentials
        assert not stale.retryable

        renewed = await provider.refresh_credentials(bench.ctx, bench.credentials)
        provider.credentials_model.model_validate(renewed)
        assert set(renewed) == set(bench.credentials)
        assert renewed != bench.credentials
        fresh = Bench(provider, bench.ctx, renewed, bench.sim, bench.inbox, bench.link)
        outcome = await fresh.send(recipient)
        assert isinstance(outcome, SendOk), outcome

        with pytest.raises(ProviderError) as spent:
            await provider.refresh_credentials(bench.ctx, bench.credentials)
        assert not spent.value.retryable
