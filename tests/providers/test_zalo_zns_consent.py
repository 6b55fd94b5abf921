"""Zalo's call consent through the provider and the simulator: asking, the user's answers by the sandbox
rule or a knob, Zalo's codes as consent states, the request limit and the 24-hour lapse."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from tests.providers.viber_harness import Sim, StartSim

from openmmp.kit.time import now_ms
from openmmp.providers.base import Consent, ProviderContext, ProviderError
from openmmp.providers.zalo.zns import ZaloZnsProvider
from openmmp.providers.zalo.zns_consent import (
    ZaloCheckConsentResponse,
    ZaloRequestConsentRequest,
    ZaloRequestConsentResponse,
    consent_of,
)

PROVIDER = ZaloZnsProvider()
NAME = PROVIDER.name
FAST = {"consent_answer_seconds": 0.02}
ASK = {"callType": "audio", "reasonCode": 101}
CREDENTIALS = {
    "oaId": "9001",
    "appId": "app-9001",
    "accessToken": "token-9001",
    "refreshToken": "refresh-9001",
    "secretKey": "secret-9001",
}
DAY_MS = 86_400_000


def context(sim: Sim) -> ProviderContext:
    return ProviderContext(http=sim.http, base_url=f"{sim.base_url}/{NAME}", public_url="", sandbox=True)


async def ask(sim: Sim, phone: str, **request: Any) -> Consent:
    return await PROVIDER.request_consent(context(sim), CREDENTIALS, phone, request or ASK)


async def check(sim: Sim, phone: str) -> Consent:
    return await PROVIDER.consent_status(context(sim), CREDENTIALS, phone)


async def settled(sim: Sim, phone: str) -> Consent:
    """The consent once the user had time to answer."""
    await asyncio.sleep(0.1)
    return await check(sim, phone)


class TestTheModels:
    def test_the_request_takes_the_mmp_fields(self):
        made = ZaloRequestConsentRequest.model_validate({"phone": "84987654321", **ASK})
        assert made.model_dump(by_alias=True) == {"phone": "84987654321", **ASK}
        assert PROVIDER.consent_request_model is ZaloRequestConsentRequest

    def test_the_answers_are_consent_answers_under_the_mmp_names(self):
        consent = Consent("84987654321", "REQUESTED", 2, "sent", 1717000000000)
        answer = ZaloRequestConsentResponse.of(consent).model_dump(by_alias=True)
        assert answer == {
            "phone": "84987654321",
            "status": "REQUESTED",
            "code": 2,
            "message": "sent",
            "expiredTime": 1717000000000,
        }
        assert PROVIDER.consent_answer_model is ZaloRequestConsentResponse
        assert PROVIDER.consent_status_model is ZaloCheckConsentResponse

    @pytest.mark.parametrize(
        ("code", "state"),
        [(0, "GRANTED"), (1, "GRANTED"), (2, "REQUESTED"), (3, "REFUSED"), (4, "REFUSED"), (9, "NONE")],
    )
    def test_zalos_codes_are_consent_states(self, code: int, state: str):
        consent = consent_of("84987654321", {"error": code, "message": "m", "expired_time": "1717000000000"})
        assert (consent.state, consent.code, consent.expires_at_ms) == (state, code, 1717000000000)

    def test_over_the_request_limit_is_a_final_error(self):
        with pytest.raises(ProviderError) as caught:
            consent_of("84987654321", {"error": 5, "message": "Over limit"})
        assert (caught.value.code, caught.value.retryable) == ("ZALO_CONSENT_5", False)
        assert "too often" in caught.value.message

    def test_a_negative_code_is_zalos_refusal(self):
        with pytest.raises(ProviderError) as caught:
            consent_of("84987654321", {"error": -216, "message": "Access token is invalid"})
        assert caught.value.stale_credentials


class TestAsking:
    async def test_a_user_asked_grants_and_is_then_already_allowing(self, start_sim: StartSim):
        sim = await start_sim(options={NAME: FAST})
        phone = "84987654320"
        assert (await check(sim, phone)).state == "NONE"
        asked = await ask(sim, phone)
        assert (asked.state, asked.code) == ("REQUESTED", 2)
        assert asked.expires_at_ms is not None
        granted = await settled(sim, phone)
        assert (granted.state, granted.code) == ("GRANTED", 0)
        again = await ask(sim, phone)
        assert (again.state, again.code) == ("GRANTED", 1)

    async def test_a_request_lasts_a_day(self, start_sim: StartSim):
        sim = await start_sim(options={NAME: FAST})
        asked = await ask(sim, "84987654327")
        assert asked.expires_at_ms is not None
        status = await check(sim, "84987654327")
        assert status.expires_at_ms == asked.expires_at_ms
        assert DAY_MS - 60_000 < asked.expires_at_ms - now_ms() <= DAY_MS

    async def test_digit_7_never_answers_and_asking_again_is_the_same_request(self, start_sim: StartSim):
        sim = await start_sim(options={NAME: FAST})
        phone = "84987654327"
        first = await ask(sim, phone)
        pending = await settled(sim, phone)
        assert (pending.state, pending.code) == ("REQUESTED", 2)
        again = await ask(sim, phone)
        assert (again.state, again.expires_at_ms) == ("REQUESTED", first.expires_at_ms)

    async def test_digit_8_refuses(self, start_sim: StartSim):
        sim = await start_sim(options={NAME: FAST})
        await ask(sim, "84987654328")
        refused = await settled(sim, "84987654328")
        assert (refused.state, refused.code) == ("REFUSED", 3)

    async def test_digit_9_fails_twice_in_passing(self, start_sim: StartSim):
        sim = await start_sim(options={NAME: FAST})
        for _ in range(2):
            with pytest.raises(ProviderError) as caught:
                await ask(sim, "84987654329")
            assert caught.value.retryable
        assert (await ask(sim, "84987654329")).state == "REQUESTED"

    async def test_a_blocking_user_stays_blocked(self, start_sim: StartSim):
        sim = await start_sim(options={NAME: {**FAST, "consent_answer": "block"}})
        await ask(sim, "84987654320")
        blocked = await settled(sim, "84987654320")
        assert (blocked.state, blocked.code) == ("REFUSED", 4)
        assert (await ask(sim, "84987654320")).code == 4

    async def test_asking_too_often_is_a_final_error(self, start_sim: StartSim):
        sim = await start_sim(
            options={NAME: {**FAST, "consent_answer": "refuse", "consent_requests_per_day": 2}}
        )
        phone = "84987654320"
        for _ in range(2):
            await ask(sim, phone)
            assert (await settled(sim, phone)).state == "REFUSED"
        with pytest.raises(ProviderError) as caught:
            await ask(sim, phone)
        assert (caught.value.code, caught.value.retryable) == ("ZALO_CONSENT_5", False)

    async def test_a_consent_lapses(self, start_sim: StartSim):
        sim = await start_sim(options={NAME: {**FAST, "consent_expiry_s": 0.3}})
        await ask(sim, "84987654320")
        assert (await settled(sim, "84987654320")).state == "GRANTED"
        await asyncio.sleep(0.35)
        assert (await check(sim, "84987654320")).state == "NONE"

    @pytest.mark.parametrize(
        ("request_", "field"),
        [
            ({"callType": "fax", "reasonCode": 101}, "callType"),
            ({"callType": "video", "reasonCode": 102}, "reasonCode"),
            ({"callType": "video", "reasonCode": True}, "reasonCode"),
        ],
    )
    async def test_a_request_zalo_would_refuse_names_the_field(
        self, sim: Sim, request_: dict[str, Any], field: str
    ):
        with pytest.raises(ValueError, match=rf"^{field}: "):
            await PROVIDER.request_consent(context(sim), CREDENTIALS, "84987654320", request_)
        assert (await sim.stats(NAME))["requests"] == 0

    async def test_an_expired_token_is_stale(self, sim: Sim):
        response = await sim.post(
            f"/{NAME}/_sandbox/zalo/expire", {"accessToken": CREDENTIALS["accessToken"]}
        )
        assert response.status_code == 200
        with pytest.raises(ProviderError) as caught:
            await check(sim, "84987654320")
        assert caught.value.stale_credentials
