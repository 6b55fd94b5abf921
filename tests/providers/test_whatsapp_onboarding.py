"""WhatsApp's Embedded Signup against the simulator over real HTTP: the sign-up page, the code exchange,
the account and number looked up when the answer leaves them out, the app's subscription and the number's
registration, and a number onboarded so that it sends and its webhooks are signed with the operator's app
secret: in sandbox mode through the simulator's registration, outside it through the webhook override
its set-up sets (to a real callback route that answers Meta's handshake)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
from tests.providers.test_whatsapp_simulator import CallbackRoute, meta_ctx
from tests.providers.viber_harness import AppHost, Sim, StartSim

from openmmp.kit.http import HttpClient
from openmmp.providers.base import (
    CallbackRequest,
    Outgoing,
    ProviderContext,
    ProviderError,
    SandboxUser,
    SendOk,
    StatusEvent,
)
from openmmp.providers.whatsapp.callbacks import callback_verify_token
from openmmp.providers.whatsapp.onboarding import (
    SANDBOX_APP_ID,
    SANDBOX_APP_SECRET,
    SANDBOX_CONFIG_ID,
    OperatorApp,
    SignupClient,
    new_pin,
)
from openmmp.providers.whatsapp.provider import WhatsappCredentials, WhatsappProvider

PROVIDER = WhatsappProvider()
REDIRECT = "https://mmp.example.com/onboard/whatsapp/callback"
READ_PHONE = "85512345670"


def sandbox_ctx(sim: Sim, **options: Any) -> ProviderContext:
    return ProviderContext(sim.http, f"{sim.base_url}/whatsapp", "https://mmp.example.com", True, options)


async def sign_up(
    sim: Sim, ctx: ProviderContext, *, state: str = "opaque-state", **knobs: str
) -> dict[str, str]:
    """Follow the sign-up page as the admin's browser would; the query it sends the browser back with.
    `knobs` are the simulator page's own (`sandbox_numbers=2`, `sandbox_omit_ids=1`, ...)."""
    if not ctx.sandbox:  # Meta's dialog outside sandbox mode: the simulator plays it all the same
        ctx = sandbox_ctx(sim)
    url = PROVIDER.onboarding_url(ctx, state=state, redirect_url=REDIRECT)
    page = await sim.http.get(url + "".join(f"&{name}={value}" for name, value in knobs.items()))
    assert page.status_code == 302, page.content
    location = page.headers["location"]
    assert location.startswith(REDIRECT + "?")
    return dict(parse_qsl(urlsplit(location).query))


@pytest.fixture
async def callback_route(app_host: AppHost, http: HttpClient) -> AsyncIterator[CallbackRoute]:
    async with CallbackRoute.mounted(app_host, http) as route:
        yield route


async def send(ctx: ProviderContext, credentials: dict[str, Any], to: str = READ_PHONE) -> Any:
    [unit] = PROVIDER.plan(ctx, credentials, [Outgoing(1, to, PROVIDER.example_message)])
    return (await unit.call())[1]


class TestTheSignupPage:
    def test_outside_sandbox_mode_it_is_metas_dialog_for_the_operators_app(self, sim: Sim):
        ctx = ProviderContext(
            sim.http,
            "https://graph.facebook.com/v22.0",
            "https://mmp.example.com",
            False,
            {"app_id": "4711", "app_secret": "s3cr3t-app", "config_id": "0815"},
        )
        url = urlsplit(PROVIDER.onboarding_url(ctx, state="st ate", redirect_url=REDIRECT))
        assert (url.scheme, url.netloc, url.path) == ("https", "www.facebook.com", "/v22.0/dialog/oauth")
        assert dict(parse_qsl(url.query)) == {
            "client_id": "4711",
            "config_id": "0815",
            "response_type": "code",
            "override_default_response_type": "true",
            "redirect_uri": REDIRECT,
            "state": "st ate",
        }

    def test_outside_sandbox_mode_an_app_not_configured_is_refused(self, sim: Sim):
        ctx = ProviderContext(sim.http, "https://graph.facebook.com/v21.0", "https://x.example", False, {})
        with pytest.raises(ValueError, match=r"not set up .* lacks: app id, app secret, configuration id\)"):
            PROVIDER.onboarding_url(ctx, state="s", redirect_url=REDIRECT)

    def test_in_sandbox_mode_it_is_the_simulators_page_with_the_published_app(self, sim: Sim):
        url = urlsplit(PROVIDER.onboarding_url(sandbox_ctx(sim), state="s", redirect_url=REDIRECT))
        assert f"{url.scheme}://{url.netloc}{url.path}" == f"{sim.base_url}/whatsapp/_sandbox/signup"
        query = dict(parse_qsl(url.query))
        assert (query["client_id"], query["config_id"]) == (SANDBOX_APP_ID, SANDBOX_CONFIG_ID)

    async def test_it_sends_the_browser_back_with_state_a_code_an_account_and_a_number(self, sim: Sim):
        first = await sign_up(sim, sandbox_ctx(sim), state="a/b+c=d")
        second = await sign_up(sim, sandbox_ctx(sim))
        assert first["state"] == "a/b+c=d"
        assert set(first) == {"state", "code", "waba_id", "phone_number_id"}
        assert re.fullmatch(r"\d{15}", first["waba_id"]) and re.fullmatch(r"\d{15}", first["phone_number_id"])
        assert first["code"] != second["code"]
        assert first["phone_number_id"] != second["phone_number_id"]

    async def test_another_app_is_turned_away(self, sim: Sim):
        ctx = sandbox_ctx(sim, app_id="999")
        page = await sim.http.get(PROVIDER.onboarding_url(ctx, state="s", redirect_url=REDIRECT))
        assert page.status_code == 400
        assert "client_id" in page.json()["error"]


class TestCompletingTheSignup:
    async def test_it_makes_credentials_of_the_signed_up_number_with_the_operators_app_secret(self, sim: Sim):
        ctx = sandbox_ctx(sim)
        answer = await sign_up(sim, ctx)
        credentials = await PROVIDER.complete_onboarding(ctx, answer, redirect_url=REDIRECT)
        assert WhatsappCredentials.model_validate(credentials).identity() == answer["phone_number_id"]
        assert credentials["phoneNumberId"] == answer["phone_number_id"]
        assert credentials["wabaId"] == answer["waba_id"]
        assert credentials["appSecret"] == SANDBOX_APP_SECRET
        assert credentials["accessToken"] and credentials["accessToken"] != answer["code"]
        assert credentials["webhookOverride"] is True

    async def test_the_onboarded_number_sends_and_its_webhooks_are_signed_with_the_app_secret(self, sim: Sim):
        ctx = sandbox_ctx(sim)
        credentials = await PROVIDER.complete_onboarding(ctx, await sign_up(sim, ctx), redirect_url=REDIRECT)
        await PROVIDER.set_up(ctx, callback_url=sim.inbox.url, credentials=credentials)
        outcome = await send(ctx, credentials)
        assert isinstance(outcome, SendOk), outcome

        def read(_: Any) -> bool:
            return any(
                isinstance(e, StatusEvent) and e.status == "READ"
                for item in sim.inbox.received
                for e in PROVIDER.parse(item.body)
            )

        await sim.inbox.wait_for(read)
        for item in sim.inbox.received:
            request = CallbackRequest("POST", {k.lower(): v for k, v in item.headers.items()}, {}, item.body)
            assert PROVIDER.verify(ctx, request, {"appSecret": SANDBOX_APP_SECRET})

    async def test_a_send_from_the_onboarded_number_with_another_token_is_refused(self, sim: Sim):
        ctx = sandbox_ctx(sim)
        credentials = await PROVIDER.complete_onboarding(ctx, await sign_up(sim, ctx), redirect_url=REDIRECT)
        outcome = await send(ctx, {**credentials, "accessToken": "EAAG-somebody-elses"})
        assert isinstance(outcome, ProviderError)
        assert (outcome.code, outcome.retryable) == ("WHATSAPP_190", False)

    async def test_a_code_is_exchanged_once(self, sim: Sim):
        ctx = sandbox_ctx(sim)
        answer = await sign_up(sim, ctx)
        await PROVIDER.complete_onboarding(ctx, answer, redirect_url=REDIRECT)
        with pytest.raises(ProviderError) as again:
            await PROVIDER.complete_onboarding(ctx, answer, redirect_url=REDIRECT)
        assert (again.value.code, again.value.retryable) == ("WHATSAPP_100", False)
        assert "has been used" in again.value.message

    async def test_an_expired_code_is_refused(self, start_sim: StartSim):
        sim = await start_sim(options={"whatsapp": {"signup_code_ttl_s": 0.01}})
        ctx = sandbox_ctx(sim)
        answer = await sign_up(sim, ctx)
        await asyncio.sleep(0.05)
        with pytest.raises(ProviderError, match="has expired") as expired:
            await PROVIDER.complete_onboarding(ctx, answer, redirect_url=REDIRECT)
        assert not expired.value.retryable

    async def test_the_code_exchange_names_the_redirect_uri_of_the_sign_up(self, sim: Sim):
        ctx = sandbox_ctx(sim)
        answer = await sign_up(sim, ctx)
        with pytest.raises(ProviderError, match="redirect_uri"):
            await PROVIDER.complete_onboarding(ctx, answer, redirect_url=REDIRECT + "/elsewhere")

    async def test_a_wrong_app_secret_is_a_final_refusal(self, sim: Sim):
        answer = await sign_up(sim, sandbox_ctx(sim))
        with pytest.raises(ProviderError, match="client secret") as refused:
            await PROVIDER.complete_onboarding(
                sandbox_ctx(sim, app_secret="not-the-apps-secret"), answer, redirect_url=REDIRECT
            )
        assert not refused.value.retryable

    async def test_the_operators_own_app_works_when_both_sides_are_configured_with_it(
        self, start_sim: StartSim
    ):
        app = {"app_id": "123456789", "app_secret": "operator-app-secret-4711", "config_id": "987654321"}
        sim = await start_sim(options={"whatsapp": app})
        ctx = sandbox_ctx(sim, **app)
        credentials = await PROVIDER.complete_onboarding(ctx, await sign_up(sim, ctx), redirect_url=REDIRECT)
        assert credentials["appSecret"] == "operator-app-secret-4711"
        with pytest.raises(ProviderError):  # the published app is not this simulator's
            await PROVIDER.complete_onboarding(
                sandbox_ctx(sim), await sign_up(sim, ctx), redirect_url=REDIRECT
            )

    async def test_an_upstream_that_fails_is_a_retryable_error(self, sim: Sim):
        ctx = sandbox_ctx(sim)
        answer = await sign_up(sim, ctx)
        await sim.fault("whatsapp", kind="http_503")
        with pytest.raises(ProviderError) as failed:
            await PROVIDER.complete_onboarding(ctx, answer, redirect_url=REDIRECT)
        assert failed.value.retryable

    async def test_an_upstream_that_cannot_be_reached_is_retryable_and_names_no_secret(self, sim: Sim):
        ctx = ProviderContext(sim.http, "http://127.0.0.1:9/whatsapp", "https://x.example", True, {})
        answer = {"code": "AQ-code", "waba_id": "1", "phone_number_id": "2"}
        with pytest.raises(ProviderError) as failed:
            await PROVIDER.complete_onboarding(ctx, answer, redirect_url=REDIRECT)
        assert failed.value.retryable
        assert failed.value.__cause__ is None and failed.value.__suppress_context__
        assert SANDBOX_APP_SECRET not in str(failed.value)


class TestABadAnswer:
    @pytest.mark.parametrize(
        ("answer", "field"),
        [
            ({"error": "access_denied", "error_description": "Permissions error"}, "error"),
            ({"waba_id": "1", "phone_number_id": "2"}, "code"),
            ({"code": "c", "waba_id": "1/../x", "phone_number_id": "2"}, "waba_id"),
            ({"code": "c", "phone_number_id": "+85512345670"}, "phone_number_id"),
            ({"code": "c" * 3000, "waba_id": "1", "phone_number_id": "2"}, "code"),
        ],
    )
    async def test_is_a_value_error_naming_the_field_and_asks_nothing_upstream(
        self, sim: Sim, answer: dict[str, str], field: str
    ):
        before = (await sim.stats("whatsapp"))["requests"]
        with pytest.raises(ValueError, match=rf"^{field}: "):
            await PROVIDER.complete_onboarding(sandbox_ctx(sim), answer, redirect_url=REDIRECT)
        assert (await sim.stats("whatsapp"))["requests"] == before


def test_a_pin_is_six_random_digits():
    pins = {new_pin() for _ in range(50)}
    assert all(re.fullmatch(r"\d{6}", pin) for pin in pins)
    assert len(pins) > 40


class TestIdsLeftOutOfTheAnswer:
    """Meta's redirect often carries the code alone; the account and number are then looked up with the
    business token (`debug_token`, then the account's `phone_numbers`)."""

    async def test_the_one_account_and_its_one_number_are_found_registered_and_used(self, sim: Sim):
        ctx = sandbox_ctx(sim)
        answer = await sign_up(sim, ctx, sandbox_omit_ids="1")
        assert set(answer) == {"state", "code"}
        credentials = await PROVIDER.complete_onboarding(ctx, answer, redirect_url=REDIRECT)
        assert re.fullmatch(r"\d{15}", credentials["wabaId"])
        assert re.fullmatch(r"\d{15}", credentials["phoneNumberId"])
        listed = await sim.http.get(
            f"{sim.base_url}/whatsapp/{credentials['wabaId']}/phone_numbers",
            headers={"authorization": f"Bearer {credentials['accessToken']}"},
        )
        assert [n["id"] for n in listed.json()["data"]] == [credentials["phoneNumberId"]]
        # Registered through the sign-up: the number now sends with the business token only.
        assert isinstance(await send(ctx, credentials), SendOk)
        other = await send(ctx, {**credentials, "accessToken": "EAAG-somebody-elses"})
        assert isinstance(other, ProviderError) and other.code == "WHATSAPP_190"

    @pytest.mark.parametrize("missing", ["waba_id", "phone_number_id"])
    async def test_only_what_is_missing_is_looked_up(self, sim: Sim, missing: str):
        ctx = sandbox_ctx(sim)
        answer = await sign_up(sim, ctx)
        given = {name: value for name, value in answer.items() if name != missing}
        credentials = await PROVIDER.complete_onboarding(ctx, given, redirect_url=REDIRECT)
        assert (credentials["wabaId"], credentials["phoneNumberId"]) == (
            answer["waba_id"],
            answer["phone_number_id"],
        )

    async def test_several_numbers_with_the_chosen_one_named_is_no_question(self, sim: Sim):
        ctx = sandbox_ctx(sim)
        answer = await sign_up(sim, ctx, sandbox_numbers="3")
        credentials = await PROVIDER.complete_onboarding(ctx, answer, redirect_url=REDIRECT)
        assert credentials["phoneNumberId"] == answer["phone_number_id"]

    async def test_several_numbers_cannot_be_told_apart_a_value_error_naming_phone_number_id(self, sim: Sim):
        ctx = sandbox_ctx(sim)
        answer = await sign_up(sim, ctx, sandbox_numbers="2", sandbox_omit_ids="1")
        with pytest.raises(
            ValueError, match=r"^phone_number_id: required: .* has 2 phone numbers"
        ) as refused:
            await PROVIDER.complete_onboarding(ctx, answer, redirect_url=REDIRECT)
        assert "cannot be told" in str(refused.value)

    async def test_several_accounts_cannot_be_told_apart_a_value_error_naming_waba_id(self, sim: Sim):
        ctx = sandbox_ctx(sim)
        answer = await sign_up(sim, ctx, sandbox_accounts="2", sandbox_omit_ids="1")
        with pytest.raises(ValueError, match=r"^waba_id: required: .* names 2 WhatsApp Business accounts"):
            await PROVIDER.complete_onboarding(ctx, answer, redirect_url=REDIRECT)

    async def test_a_lookup_that_fails_upstream_is_retryable(self, sim: Sim):
        ctx = sandbox_ctx(sim)
        answer = await sign_up(sim, ctx, sandbox_omit_ids="1")
        client = SignupClient(sim.http, ctx.base_url)
        app = OperatorApp.of(ctx)
        token = await client.exchange_code(app, answer["code"], redirect_url=REDIRECT)
        await sim.fault("whatsapp", kind="http_503")
        with pytest.raises(ProviderError) as failed:
            await client.granted_accounts(app, token)
        assert failed.value.retryable
        with pytest.raises(ProviderError) as refused:
            await client.granted_accounts(OperatorApp(app.app_id, "not-the-secret", app.config_id), token)
        assert (refused.value.code, refused.value.retryable) == ("WHATSAPP_190", False)
        with pytest.raises(ProviderError, match="not valid"):
            await client.granted_accounts(app, "EAAG-a-token-meta-never-issued")


class TestOutsideSandboxMode:
    """The platform's steps against the simulator as Meta: the channel's set-up then sets the number's
    webhook override to the channel's callback URL, after Meta's handshake with it."""

    async def onboarded(self, sim: Sim, **knobs: str) -> dict[str, Any]:
        ctx = meta_ctx(sim)
        return await PROVIDER.complete_onboarding(
            ctx, await sign_up(sim, ctx, **knobs), redirect_url=REDIRECT
        )

    async def test_the_number_gets_its_override_and_its_webhooks_come_to_the_channel(
        self, sim: Sim, callback_route: CallbackRoute
    ):
        ctx = meta_ctx(sim)
        credentials = await self.onboarded(sim, sandbox_omit_ids="1")
        url = callback_route.channel(credentials)
        await PROVIDER.set_up(ctx, callback_url=url, credentials=credentials)
        [handshake] = callback_route.handshakes
        assert handshake["hub.verify_token"] == callback_verify_token(SANDBOX_APP_SECRET)

        outcome = await send(ctx, credentials)
        assert isinstance(outcome, SendOk), outcome
        # The route verifies each webhook with the channel's appSecret: the operator app's.
        assert await callback_route.wait_statuses(url, outcome.provider_message_id, "READ") == [
            "DELIVERED",
            "READ",
        ]
        user = SandboxUser(name="Dara", text="Hello, new number", phone="85512345660")
        await PROVIDER.sandbox_inbound(ctx, credentials, user)
        await callback_route.wait_for(lambda: callback_route.inbound(url) == ["Hello, new number"])
        assert sim.inbox.received == []

    async def test_a_token_that_may_not_manage_the_number_is_final_with_what_it_lacks(
        self, sim: Sim, callback_route: CallbackRoute
    ):
        mine, theirs = await self.onboarded(sim), await self.onboarded(sim)
        borrowed = {**mine, "accessToken": theirs["accessToken"]}
        with pytest.raises(ProviderError) as refused:
            await PROVIDER.set_up(
                meta_ctx(sim), callback_url=callback_route.channel(mine), credentials=borrowed
            )
        assert (refused.value.code, refused.value.retryable) == ("WHATSAPP_200", False)
        assert "needs the whatsapp_business_management permission" in refused.value.message
        assert "set webhookOverride to false" in refused.value.message
        assert callback_route.handshakes == []
        assert theirs["accessToken"] not in refused.value.message

    async def test_the_same_channel_without_the_override_asks_nothing_of_meta(
        self, sim: Sim, callback_route: CallbackRoute
    ):
        credentials = {**(await self.onboarded(sim)), "webhookOverride": False}
        before = (await sim.stats("whatsapp"))["requests"]
        await PROVIDER.set_up(
            meta_ctx(sim), callback_url=callback_route.channel(credentials), credentials=credentials
        )
        assert (await sim.stats("whatsapp"))["requests"] == before
        assert callback_route.handshakes == []
