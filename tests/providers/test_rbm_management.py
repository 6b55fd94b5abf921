"""RBM agents run by the platform, against the simulator over real HTTP: making and editing an agent,
test devices, reach, verification, the three launch forms and the signed AgentLaunchEvents they bring,
and what an agent launched nowhere may send."""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import re
from collections.abc import Mapping
from typing import Any

import orjson
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from tests.e2e.harness import wait_until
from tests.providers.viber_harness import Sim, StartSim

from openmmp.kit.http import HttpClient, HttpResponse
from openmmp.providers.base import (
    AgentState,
    CallbackRequest,
    ChannelEvent,
    Outgoing,
    ProviderContext,
    ProviderError,
    SendOk,
)
from openmmp.providers.rbm import auth
from openmmp.providers.rbm.callbacks import SANDBOX_CLIENT_TOKEN
from openmmp.providers.rbm.credentials import RcsCredentials, parse_service_account
from openmmp.providers.rbm.management import agent_state_of
from openmmp.providers.rbm.provider import RbmProvider
from openmmp.providers.rbm.sandbox import SANDBOX_SERVICE_ACCOUNT_JSON

PROVIDER = RbmProvider()
REVIEW_S = 0.25
"""Long enough that a launch is still PENDING when the request's answer is read back, on a busy machine."""
HELLO = {"type": "text", "message": "Your parcel is on its way"}
TESTER, OTHER, NO_RCS = "85512345671", "85512345672", "85512345678"
_keys = itertools.count(1)

PROFILE: dict[str, Any] = {
    "displayName": "ACME Bank",
    "description": "Card alerts and one-time codes from ACME Bank",
    "logoUri": "https://cdn.acme.example/logo.png",
    "heroUri": "https://cdn.acme.example/hero.png",
    "color": "#1A73E8",
    "phoneNumbers": [{"number": "+855 23 430 999", "label": "Customer service"}],
    "emails": [{"address": "help@acme.example", "label": "Support"}],
    "websites": [{"uri": "https://acme.example", "label": "Home"}],
    "privacyUri": "https://acme.example/privacy",
    "termsConditionsUri": "https://acme.example/terms",
    "billingCategory": "CONVERSATIONAL",
    "agentUseCase": "TRANSACTIONAL",
    "hostingRegion": "ASIA_PACIFIC",
}
QUESTIONNAIRE: dict[str, Any] = {
    "contacts": [{"name": "Dara Sok", "title": "Head of digital", "email": "dara@acme.example"}],
    "optinDescription": "Customers opt in when they turn on card alerts in the app.",
    "triggerDescription": "A card payment, or a login that needs a one-time code.",
    "interactionsDescription": "Alerts with a 'Not me' reply that blocks the card.",
    "optoutDescription": "Replying STOP turns the alerts off.",
    "agentAccessInstructions": "Add your device as a tester and make a payment with the test card.",
}
VERIFICATION = {
    "partnerName": "OpenMMP Operator",
    "partnerEmailAddress": "rbm@operator.example",
    "brandContactName": "Dara Sok",
    "brandContactEmailAddress": "dara@acme.example",
    "brandWebsiteUrl": "https://acme.example",
}
FORMS = {
    "": ({"regions": ["/v1/regions/asia-pacific", "europe"]}, {"asia-pacific", "europe"}),
    "indonesia": (
        {
            "carriers": ["telkomsel", "xl", "telkomsel"],
            "companyRegistrationNumber": "9120001234567",
            "taxId": "012345678901000",
            "picName": "Ayu Lestari",
            "picPhone": "+62 812 3456 7890",
        },
        {"telkomsel-indonesia", "xl-indonesia"},
    ),
    "india": (
        {
            "carriers": ["jio"],
            "dltPrincipalEntityId": "1101234567890123456",
            "gstin": "27AAPFU0939F1ZV",
            "brandRegisteredAddress": "12 Marine Drive, Mumbai 400020",
        },
        {"jio-india"},
    ),
}


@pytest.fixture
async def sim(start_sim: StartSim) -> Sim:
    """The simulators, with reviews that take `REVIEW_S`."""
    return await start_sim(options={"rbm": {"launch_review_seconds": REVIEW_S}})


def context(sim: Sim, **options: Any) -> ProviderContext:
    return ProviderContext(sim.http, f"{sim.base_url}/rbm", "http://127.0.0.1:9", True, options)


def launched_elsewhere(agent: str = "bank_agent") -> dict[str, Any]:
    """Credentials of an agent the simulator did not make (the demo channel's kind): launched."""
    return {"agentId": agent, "serviceAccountJson": SANDBOX_SERVICE_ACCOUNT_JSON}


async def new_agent(sim: Sim, **changes: Any) -> dict[str, Any]:
    return await PROVIDER.create_agent(context(sim), {**PROFILE, **changes})


async def send(sim: Sim, credentials: Mapping[str, Any], phone: str) -> Any:
    key = next(_keys)
    [unit] = PROVIDER.plan(context(sim), credentials, [Outgoing(key, phone, HELLO, account_id="channel-1")])
    return (await unit.call())[key]


def launch_form(form: str) -> dict[str, Any]:
    return {**FORMS[form][0], "questionnaire": QUESTIONNAIRE}


async def launched(sim: Sim, credentials: Mapping[str, Any]) -> AgentState:
    """The agent's state once no region is pending any more."""

    async def settled() -> AgentState | None:
        state = await PROVIDER.agent_state(context(sim), credentials)
        return None if "PENDING" in state.launches.values() else state

    found: AgentState = await wait_until(settled, timeout=5, what="the launch's review")
    return found


def channel_events(sim: Sim, credentials: Mapping[str, Any]) -> list[ChannelEvent]:
    """Every webhook received, each verified as the platform verifies it, its channel events parsed."""
    found = []
    for item in sim.inbox.received:
        request = CallbackRequest("POST", {k.lower(): v for k, v in item.headers.items()}, {}, item.body)
        assert PROVIDER.verify(context(sim), request, credentials), item.body
        found += [event for event in PROVIDER.parse(item.body) if isinstance(event, ChannelEvent)]
    return found


async def wait_for_events(
    sim: Sim, credentials: Mapping[str, Any], status: str, count: int
) -> list[ChannelEvent]:
    await sim.inbox.wait_for(
        lambda _: len([e for e in channel_events(sim, credentials) if e.status == status]) >= count
    )
    return channel_events(sim, credentials)


async def management(
    sim: Sim, method: str, path: str, body: Any = None, *, scope: str = auth.MANAGEMENT_SCOPE
) -> HttpResponse:
    """A raw call to the simulator's Business Communications (or, with the RBM scope, RBM API)."""
    account = parse_service_account(SANDBOX_SERVICE_ACCOUNT_JSON)
    token = await auth.fetch_token(sim.http, account, f"{sim.base_url}/rbm/token", scope=scope)
    return await sim.http.request(
        method,
        f"{sim.base_url}/rbm{path}",
        content=None if body is None else orjson.dumps(body),
        headers={"authorization": f"Bearer {token.value}", "content-type": "application/json"},
    )


def agent_path(credentials: Mapping[str, Any]) -> str:
    return f"/v1/brands/{credentials['brandId']}/agents/{credentials['agentId']}"


class TestMakingAnAgent:
    async def test_a_new_agent_is_made_under_a_brand_and_reaches_its_test_devices_only(self, sim: Sim):
        credentials = await new_agent(sim)
        assert set(credentials) == {"agentId", "brandId"}
        assert credentials["agentId"].endswith("_agent")
        assert RcsCredentials.model_validate(credentials).identity() == credentials["agentId"].lower()
        state = await PROVIDER.agent_state(context(sim), credentials)
        assert state == AgentState("ACCEPT", "not launched: reaches its test devices only", "UNVERIFIED", {})

    async def test_the_agent_is_made_with_the_profile_as_rbm_spells_it(self, sim: Sim):
        credentials = await new_agent(sim)
        answer = await management(sim, "GET", agent_path(credentials))
        agent = answer.json()
        assert agent["displayName"] == "ACME Bank"
        rbm = agent["rcsBusinessMessagingAgent"]
        assert rbm["phoneNumbers"] == [
            {"phoneNumber": {"number": "+85523430999"}, "label": "Customer service"}
        ]
        assert rbm["privacy"]["uri"] == "https://acme.example/privacy"
        assert rbm["billingConfig"] == {"billingCategory": "CONVERSATIONAL"}
        assert (rbm["agentUseCase"], rbm["hostingRegion"]) == ("TRANSACTIONAL", "ASIA_PACIFIC")

    @pytest.mark.parametrize(
        ("change", "field"),
        [
            ({"color": "blue"}, "color"),
            ({"logoUri": "http://cdn.acme.example/logo.png"}, "logoUri"),
            ({"phoneNumbers": []}, "phoneNumbers"),
            ({"phoneNumbers": [{"number": "12"}]}, "phoneNumbers[0].number"),
            ({"hostingRegion": "MARS"}, "hostingRegion"),
            ({"displayName": "x" * 101}, "displayName"),
            ({"emails": [{"address": "not-an-address"}]}, "emails[0].address"),
            ({"nickname": "acme"}, "nickname"),
        ],
    )
    async def test_a_profile_rbm_would_refuse_is_a_value_error_naming_the_field(
        self, sim: Sim, change: dict[str, Any], field: str
    ):
        with pytest.raises(ValueError, match=f"^{re.escape(field)}: "):
            await new_agent(sim, **change)
        assert (await sim.stats("rbm"))["rbm"]["agentsCreated"] == 0

    async def test_outside_sandbox_mode_without_a_partner_account_nothing_acts(self, sim: Sim):
        ctx = ProviderContext(sim.http, f"{sim.base_url}/rbm", "http://127.0.0.1:9", False, {})
        with pytest.raises(ProviderError, match="OPENMMP_PROVIDERS__RBM_PARTNER_SERVICE_ACCOUNT") as caught:
            await PROVIDER.create_agent(ctx, PROFILE)
        assert (caught.value.code, caught.value.retryable) == ("RBM_NO_SERVICE_ACCOUNT", False)
        [unit] = PROVIDER.plan(ctx, {"agentId": "acme_agent"}, [Outgoing(7, TESTER, HELLO)])
        outcome = (await unit.call())[7]
        assert isinstance(outcome, ProviderError)
        assert (outcome.code, outcome.retryable) == ("RBM_NO_SERVICE_ACCOUNT", False)

    async def test_the_operators_partner_account_acts_and_its_signature_is_checked(self, start_sim: StartSim):
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
        partner = json.dumps({"client_email": "rbm@operator.iam.gserviceaccount.com", "private_key": pem})
        sim = await start_sim(options={"rbm": {"partner_service_account": partner}})
        ctx = context(sim, partner_service_account=partner)
        credentials = await PROVIDER.create_agent(ctx, PROFILE)
        assert (await PROVIDER.agent_state(ctx, credentials)).status == "ACCEPT"
        # Another key under the partner's name is not the partner.
        impostor = json.dumps(
            {
                **json.loads(partner),
                "private_key": parse_service_account(SANDBOX_SERVICE_ACCOUNT_JSON).private_key_pem,
            }
        )
        with pytest.raises(ProviderError, match="Invalid JWT Signature") as caught:
            await PROVIDER.agent_state(context(sim, partner_service_account=impostor), credentials)
        assert not caught.value.retryable


class TestEditingAnAgent:
    async def test_what_may_change_changes(self, sim: Sim):
        credentials = await new_agent(sim)
        edited = {**PROFILE, "description": "Card alerts", "billingCategory": "BASIC_MESSAGE"}
        await PROVIDER.edit_agent(context(sim), credentials, edited)
        rbm = (await management(sim, "GET", agent_path(credentials))).json()["rcsBusinessMessagingAgent"]
        assert rbm["description"] == "Card alerts"
        assert rbm["billingConfig"] == {"billingCategory": "BASIC_MESSAGE"}

    async def test_the_hosting_region_is_permanent(self, sim: Sim):
        credentials = await new_agent(sim)
        with pytest.raises(
            ValueError, match=r"^hostingRegion: permanent: the agent is hosted in ASIA_PACIFIC"
        ):
            await PROVIDER.edit_agent(context(sim), credentials, {**PROFILE, "hostingRegion": "EUROPE"})

    async def test_once_a_launch_was_requested_use_case_and_billing_stay(self, sim: Sim):
        credentials = await new_agent(sim)
        await PROVIDER.request_launch(context(sim), credentials, "", launch_form(""))
        with pytest.raises(ValueError, match=r"^agentUseCase: fixed once"):
            await PROVIDER.edit_agent(context(sim), credentials, {**PROFILE, "agentUseCase": "PROMOTIONAL"})
        with pytest.raises(ValueError, match=r"^billingCategory: changes only until"):
            await PROVIDER.edit_agent(
                context(sim), credentials, {**PROFILE, "billingCategory": "SINGLE_MESSAGE"}
            )
        await PROVIDER.edit_agent(context(sim), credentials, {**PROFILE, "description": "Still editable"})

    async def test_business_communications_itself_refuses_a_new_hosting_region(self, sim: Sim):
        credentials = await new_agent(sim)
        body = {"rcsBusinessMessagingAgent": {"hostingRegion": "EUROPE"}}
        answer = await management(
            sim,
            "PATCH",
            f"{agent_path(credentials)}?updateMask=rcsBusinessMessagingAgent.hostingRegion",
            body,
        )
        assert answer.status_code == 400
        assert answer.json()["error"]["status"] == "FAILED_PRECONDITION"


class TestTestDevices:
    async def test_a_phone_is_invited_once_and_is_a_tester_after(self, sim: Sim):
        credentials = await new_agent(sim)
        [first] = await PROVIDER.add_testers(context(sim), credentials, [TESTER])
        [again] = await PROVIDER.add_testers(context(sim), credentials, [TESTER])
        assert (first.phone, first.status, again.status) == (TESTER, "INVITED", "EXISTED")

    async def test_a_phone_without_rcs_or_not_a_number_fails_with_a_cause(self, sim: Sim):
        credentials = await new_agent(sim)
        no_rcs, nonsense = await PROVIDER.add_testers(context(sim), credentials, [NO_RCS, "12"])
        assert (no_rcs.status, nonsense.status) == ("FAIL", "FAIL")
        assert "not reachable over RCS" in no_rcs.cause
        assert "E.164" in nonsense.cause


class TestReach:
    async def test_capabilities_of_an_rcs_phone_and_of_one_without(self, sim: Sim):
        ctx, credentials = context(sim), launched_elsewhere()
        enabled = await PROVIDER.capabilities(ctx, credentials, TESTER)
        assert enabled.enabled and "RICHCARD_CAROUSEL" in enabled.features
        assert enabled.phone == TESTER
        assert (await PROVIDER.capabilities(ctx, credentials, NO_RCS)).enabled is False

    async def test_in_the_sandbox_an_agent_launched_nowhere_checks_any_phone(self, sim: Sim):
        credentials = await new_agent(sim)
        assert (await PROVIDER.capabilities(context(sim), credentials, OTHER)).enabled
        assert (await PROVIDER.capabilities(context(sim), credentials, NO_RCS)).enabled is False
        assert await PROVIDER.reachable(context(sim), credentials, [OTHER, NO_RCS]) == {OTHER}

    async def test_as_google_gates_them_an_agent_launched_nowhere_asks_only_about_its_testers(
        self, start_sim: StartSim
    ):
        sim = await start_sim(options={"rbm": {"gate_reach_checks": True, "launch_review_seconds": REVIEW_S}})
        credentials = await new_agent(sim)
        await PROVIDER.add_testers(context(sim), credentials, [TESTER])
        assert (await PROVIDER.capabilities(context(sim), credentials, TESTER)).enabled
        with pytest.raises(ProviderError, match="PERMISSION_DENIED") as caught:
            await PROVIDER.capabilities(context(sim), credentials, OTHER)
        assert (caught.value.code, caught.value.retryable) == ("RBM_403", False)
        phones = ["85512345670", TESTER, NO_RCS, "62812345679"]
        assert await PROVIDER.reachable(context(sim), credentials, phones) == frozenset()
        await PROVIDER.request_launch(context(sim), credentials, "", launch_form(""))
        assert (await launched(sim, credentials)).status == "LAUNCH"
        assert await PROVIDER.reachable(context(sim), credentials, phones) == {
            "85512345670",
            TESTER,
            "62812345679",
        }
        assert (await PROVIDER.capabilities(context(sim), credentials, OTHER)).enabled

    async def test_a_batch_reaches_the_rcs_phones(self, sim: Sim):
        phones = ["85512345670", TESTER, NO_RCS, "62812345679"]
        assert await PROVIDER.reachable(context(sim), launched_elsewhere(), phones) == {
            "85512345670",
            TESTER,
            "62812345679",
        }
        assert await PROVIDER.reachable(context(sim), launched_elsewhere(), []) == frozenset()
        with pytest.raises(ValueError, match=r"^phones\[1\]: not an E\.164"):
            await PROVIDER.reachable(context(sim), launched_elsewhere(), [TESTER, "12"])

    async def test_more_than_ten_thousand_numbers_are_refused(self, sim: Sim):
        phones = [f"855{n:09d}" for n in range(10_001)]
        with pytest.raises(ValueError, match=r"^phones: at most 10000"):
            await PROVIDER.reachable(context(sim), launched_elsewhere(), phones)
        answer = await management(
            sim,
            "POST",
            "/v1/users:batchGet",
            {"users": [f"+{p}" for p in phones], "agentId": "bank_agent"},
            scope=auth.SCOPE,
        )
        assert answer.status_code == 400
        assert "at most 10000" in answer.json()["error"]["message"]

    async def test_a_large_batch_has_a_sample_to_estimate_reach(self, sim: Sim):
        users = [f"+855{n:09d}" for n in range(600)]
        answer = await management(
            sim, "POST", "/v1/users:batchGet", {"users": users, "agentId": "bank_agent"}, scope=auth.SCOPE
        )
        body = answer.json()
        assert body["totalRandomSampleUserCount"] == 450
        assert body["reachableRandomSampleUserCount"] == 405
        assert len(body["reachableUsers"]) == 540

    async def test_beyond_the_projects_quota_it_is_rate_limited_and_retryable(self, start_sim: StartSim):
        sim = await start_sim(options={"rbm": {"batch_get_per_minute": 2}})
        for _ in range(2):
            await PROVIDER.reachable(context(sim), launched_elsewhere(), [TESTER])
        with pytest.raises(ProviderError) as caught:
            await PROVIDER.reachable(context(sim), launched_elsewhere(), [TESTER])
        assert (caught.value.code, caught.value.retryable, caught.value.rate_limited) == (
            "RATE_LIMITED",
            True,
            True,
        )


class TestVerification:
    async def test_a_request_is_pending_then_verified_after_the_review(self, sim: Sim):
        credentials = await new_agent(sim)
        state = await PROVIDER.request_verification(context(sim), credentials, VERIFICATION)
        assert state.verification == "PENDING"

        async def verified() -> bool:
            return (await PROVIDER.agent_state(context(sim), credentials)).verification == "VERIFIED"

        await wait_until(verified, timeout=5, what="the verification's review")

    async def test_a_contact_without_an_address_is_a_value_error(self, sim: Sim):
        credentials = await new_agent(sim)
        with pytest.raises(ValueError, match=r"^brandContactEmailAddress: "):
            await PROVIDER.request_verification(
                context(sim), credentials, {**VERIFICATION, "brandContactEmailAddress": "dara"}
            )


class TestLaunching:
    @pytest.mark.parametrize("form", list(FORMS), ids=["regions", "indonesia", "india"])
    async def test_each_form_goes_pending_then_a_signed_launch_event_says_launched(self, sim: Sim, form: str):
        credentials = await new_agent(sim)
        await PROVIDER.set_up(context(sim), callback_url=sim.inbox.url, credentials=credentials)
        regions = FORMS[form][1]
        state = await PROVIDER.request_launch(context(sim), credentials, form, launch_form(form))
        assert state.status == "ACCEPT"
        assert state.launches == dict.fromkeys(regions, "PENDING")
        assert state.cause == f"not launched: launch pending review in {', '.join(sorted(regions))}"
        found = await wait_for_events(sim, credentials, "LAUNCH", len(regions))
        assert {e.cause for e in found if e.status == "LAUNCH"} == {f"{r}: LAUNCHED" for r in regions}
        assert {e.cause for e in found if e.status == "ACCEPT"} == {f"{r}: PENDING" for r in regions}
        assert (await launched(sim, credentials)).status == "LAUNCH"

    async def test_the_regional_forms_carry_their_registration_in_the_questionnaire(self, sim: Sim):
        credentials = await new_agent(sim)
        await PROVIDER.request_launch(context(sim), credentials, "indonesia", launch_form("indonesia"))
        launch = (await management(sim, "GET", f"{agent_path(credentials)}/launch")).json()
        instructions = launch["rcsBusinessMessaging"]["questionnaire"]["agentAccessInstructions"]
        assert instructions.startswith(QUESTIONNAIRE["agentAccessInstructions"])
        assert "NIB 9120001234567; NPWP 012345678901000; person in charge Ayu Lestari, +6281234567890" in (
            instructions
        )
        assert set(launch["rcsBusinessMessaging"]["launchDetails"]) == {
            "/v1/regions/telkomsel-indonesia",
            "/v1/regions/xl-indonesia",
        }

    async def test_a_launch_the_reviewers_reject_is_rejected(self, sim: Sim):
        credentials = await new_agent(sim, displayName="ACME Bank [reject]")
        await PROVIDER.set_up(context(sim), callback_url=sim.inbox.url, credentials=credentials)
        await PROVIDER.request_launch(context(sim), credentials, "india", launch_form("india"))
        [rejected] = [e for e in await wait_for_events(sim, credentials, "REJECT", 1) if e.status == "REJECT"]
        assert rejected.cause.startswith("jio-india: REJECTED (")
        state = await launched(sim, credentials)
        assert (state.status, state.cause) == ("REJECT", "launch rejected in jio-india")

    async def test_events_of_an_agent_set_up_after_its_launch_wait_for_its_set_up(self, sim: Sim):
        credentials = await new_agent(sim)
        await PROVIDER.request_launch(context(sim), credentials, "", launch_form(""))
        assert (await launched(sim, credentials)).status == "LAUNCH"
        assert sim.inbox.received == []
        await PROVIDER.set_up(context(sim), callback_url=sim.inbox.url, credentials=credentials)
        await sim.inbox.wait_for(lambda received: len(received) >= 4)
        found = channel_events(sim, credentials)
        assert sorted(e.status for e in found) == ["ACCEPT", "ACCEPT", "LAUNCH", "LAUNCH"]

    async def test_a_later_launch_adds_its_regions_to_the_first(self, sim: Sim):
        credentials = await new_agent(sim)
        await PROVIDER.request_launch(context(sim), credentials, "", launch_form(""))
        await launched(sim, credentials)
        state = await PROVIDER.request_launch(context(sim), credentials, "india", launch_form("india"))
        assert state.status == "LAUNCH"
        assert state.cause == "launched in asia-pacific, europe; launch pending review in jio-india"
        assert (await launched(sim, credentials)).launches == {
            "asia-pacific": "LAUNCHED",
            "europe": "LAUNCHED",
            "jio-india": "LAUNCHED",
        }

    @pytest.mark.parametrize(
        ("form", "change", "complaint"),
        [
            ("", {"regions": ["mars"]}, "^regions: RBM offers no region mars"),
            ("", {"regions": []}, "^regions: "),
            ("indonesia", {"carriers": ["smartfren"]}, r"^carriers\[0\]: "),
            ("indonesia", {"taxId": "01.234.567.8-901.000"}, "^taxId: "),
            ("india", {"gstin": "27aapfu0939f1zv"}, "^gstin: "),
            ("india", {"dltPrincipalEntityId": "123"}, "^dltPrincipalEntityId: "),
        ],
    )
    async def test_a_launch_request_rbm_would_refuse_is_a_value_error(
        self, sim: Sim, form: str, change: dict[str, Any], complaint: str
    ):
        credentials = await new_agent(sim)
        with pytest.raises(ValueError, match=complaint):
            await PROVIDER.request_launch(context(sim), credentials, form, {**launch_form(form), **change})
        assert (await PROVIDER.agent_state(context(sim), credentials)).launches == {}

    async def test_a_questionnaire_without_contacts_and_an_unknown_form_are_refused(self, sim: Sim):
        credentials = await new_agent(sim)
        request = {**launch_form(""), "questionnaire": {**QUESTIONNAIRE, "contacts": []}}
        with pytest.raises(ValueError, match=r"^questionnaire\.contacts: "):
            await PROVIDER.request_launch(context(sim), credentials, "", request)
        with pytest.raises(ValueError, match=r"^form: no launch form 'brazil'"):
            await PROVIDER.request_launch(context(sim), credentials, "brazil", launch_form(""))


class TestSendingBeforeTheLaunch:
    async def test_an_agent_launched_nowhere_reaches_its_testers_only(self, sim: Sim):
        credentials = await new_agent(sim)
        await PROVIDER.add_testers(context(sim), credentials, [TESTER])
        refused = await send(sim, credentials, OTHER)
        assert isinstance(refused, ProviderError)
        assert (refused.code, refused.retryable) == ("RBM_403", False)
        assert refused.message.startswith("PERMISSION_DENIED: the agent may not message this user")
        assert isinstance(await send(sim, credentials, TESTER), SendOk)

    async def test_once_launched_it_reaches_everybody(self, sim: Sim):
        credentials = await new_agent(sim)
        await PROVIDER.request_launch(context(sim), credentials, "", launch_form(""))
        await launched(sim, credentials)
        assert isinstance(await send(sim, credentials, OTHER), SendOk)


class TestWhatTheUpstreamDoesNotKnow:
    async def test_an_agent_under_another_brand_is_a_final_error_saying_so(self, sim: Sim):
        credentials = {**await new_agent(sim), "brandId": "b-1"}
        agent = credentials["agentId"]
        with pytest.raises(ProviderError, match=f"knows no agent brands/b-1/agents/{agent}") as caught:
            await PROVIDER.agent_state(context(sim), credentials)
        assert (caught.value.code, caught.value.retryable) == ("RBM_AGENT_NOT_FOUND", False)

    async def test_an_agent_made_before_the_simulator_restarted_is_launched(self, sim: Sim):
        """The simulator keeps agents in memory: one it no longer knows is taken as it takes its sends."""
        state = await PROVIDER.agent_state(context(sim), {"agentId": "older_agent", "brandId": "b-2"})
        assert (state.status, state.verification, dict(state.launches)) == (
            "LAUNCH",
            "VERIFIED",
            {"asia-pacific": "LAUNCHED"},
        )

    async def test_an_agent_without_its_brand_cannot_be_managed(self, sim: Sim):
        with pytest.raises(ValueError, match=r"^credentials\.brandId: required"):
            await PROVIDER.agent_state(context(sim), launched_elsewhere())

    async def test_the_demo_agent_still_sends_to_anybody(self, sim: Sim):
        assert isinstance(await send(sim, PROVIDER.sandbox_credentials, OTHER), SendOk)


class TestGoogleErrors:
    @pytest.mark.parametrize(
        ("kind", "code", "rate_limited"),
        [("rate_limit", "RATE_LIMITED", True), ("http_503", "RBM_503", False)],
    )
    async def test_rate_limits_and_outages_are_retryable(
        self, sim: Sim, kind: str, code: str, rate_limited: bool
    ):
        await sim.fault("rbm", kind=kind)
        with pytest.raises(ProviderError) as caught:
            await new_agent(sim)
        assert (caught.value.code, caught.value.retryable, caught.value.rate_limited) == (
            code,
            True,
            rate_limited,
        )

    async def test_a_token_for_messaging_does_not_manage_agents(self, sim: Sim):
        answer = await management(sim, "GET", "/v1/regions", scope=auth.SCOPE)
        assert answer.status_code == 403
        assert answer.json()["error"]["message"] == "Request had insufficient authentication scopes."


def launch_push(state: str, *, event_id: str = "ev-1", region: str = "/v1/regions/jio-india") -> bytes:
    data = orjson.dumps(
        {
            "eventId": event_id,
            "agentId": "acme_agent",
            "regionId": region,
            "oldLaunchState": "PENDING",
            "newLaunchState": state,
            "comment": "",
            "sendTime": "2026-02-01T10:00:00Z",
        }
    )
    return orjson.dumps(
        {
            "message": {
                "attributes": {"type": "agent_launch_event", "event_type": state},
                "data": base64.b64encode(data).decode(),
                "messageId": "1",
                "publishTime": "2026-02-01T10:00:01Z",
            },
            "subscription": "projects/p/subscriptions/s",
        }
    )


class TestLaunchEvents:
    @pytest.mark.parametrize(
        ("state", "status"),
        [
            ("LAUNCHED", "LAUNCH"),
            ("SUSPENDED", "SUSPEND"),
            ("REJECTED", "REJECT"),
            ("PENDING", "ACCEPT"),
            ("UNLAUNCHED", "ACCEPT"),
            ("PENDING_UNLAUNCH", "ACCEPT"),
        ],
    )
    def test_each_launch_state_is_a_channel_status_naming_the_region(self, state: str, status: str):
        [event] = PROVIDER.parse(launch_push(state))
        assert isinstance(event, ChannelEvent)
        assert (event.status, event.cause, event.timestamp_ms) == (
            status,
            f"jio-india: {state}",
            1769940000000,
        )

    def test_a_repeat_is_the_same_event_and_another_change_is_not(self):
        [first], [repeat], [other] = (
            PROVIDER.parse(launch_push("LAUNCHED")),
            PROVIDER.parse(launch_push("LAUNCHED")),
            PROVIDER.parse(launch_push("LAUNCHED", event_id="ev-2")),
        )
        assert first.dedupe_key == repeat.dedupe_key != other.dedupe_key

    def test_a_state_openmmp_does_not_know_yields_nothing(self):
        assert PROVIDER.parse(launch_push("LAUNCH_STATE_UNSPECIFIED")) == []

    def test_it_is_verified_for_the_agent_it_names(self):
        body = launch_push("LAUNCHED")
        data = base64.b64decode(orjson.loads(body)["message"]["data"])
        signature = base64.b64encode(
            hmac.new(SANDBOX_CLIENT_TOKEN.encode(), data, hashlib.sha512).digest()
        ).decode()
        request = CallbackRequest("POST", {"x-goog-signature": signature}, {}, body)
        ctx = ProviderContext(HttpClient(timeout=1), "http://rbm.invalid", "http://127.0.0.1:9", True)
        assert PROVIDER.verify(ctx, request, {"agentId": "acme_agent"})
        assert not PROVIDER.verify(ctx, request, {"agentId": "other_agent"})


class TestTheAgentsState:
    @pytest.mark.parametrize(
        ("launches", "status", "cause"),
        [
            ({"a": "SUSPENDED", "b": "SUSPENDED"}, "SUSPEND", "suspended in a, b"),
            ({"a": "SUSPENDED", "b": "LAUNCHED"}, "LAUNCH", "launched in b"),
            ({"a": "REJECTED", "b": "PENDING"}, "ACCEPT", "not launched: launch pending review in b"),
            ({"a": "REJECTED", "b": "UNLAUNCHED"}, "REJECT", "launch rejected in a"),
            ({"a": "PENDING_UNLAUNCH"}, "ACCEPT", "unlaunch pending review in a"),
        ],
    )
    def test_the_status_follows_the_regions(self, launches: dict[str, str], status: str, cause: str):
        assert agent_state_of("VERIFIED", launches) == AgentState(status, cause, "VERIFIED", launches)
