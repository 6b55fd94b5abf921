"""The ZNS simulator over real HTTP, driven through the provider: quota, the promotional window, repeated
tracking ids, templates a send needs, sandbox outcomes, expiring tokens and webhooks held for a set-up."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from tests.providers.viber_harness import Received, Sim, StartSim

from openmmp.providers.base import (
    Outgoing,
    ProviderContext,
    ProviderError,
    SendOk,
    SendOutcome,
    StatusEvent,
    TemplateEvent,
)
from openmmp.providers.zalo.zns import ZaloZnsProvider

PROVIDER = ZaloZnsProvider()
NAME = PROVIDER.name
FAST = {"template_review_seconds": 0.05, "consent_answer_seconds": 0.05}
PHONE = "84987654320"
_keys = iter(range(1, 10_000_000))


def context(sim: Sim) -> ProviderContext:
    return ProviderContext(http=sim.http, base_url=f"{sim.base_url}/{NAME}", public_url="", sandbox=True)


def credentials(oa_id: str = "7001") -> dict[str, str]:
    return {
        "oaId": oa_id,
        "appId": f"app-{oa_id}",
        "accessToken": f"token-{oa_id}",
        "refreshToken": f"refresh-{oa_id}",
        "secretKey": f"secret-{oa_id}",
    }


async def channel(sim: Sim, oa_id: str = "7001") -> dict[str, str]:
    """A ZNS channel whose webhooks go to the test's inbox."""
    given = credentials(oa_id)
    await PROVIDER.set_up(context(sim), callback_url=sim.inbox.url, credentials=given)
    return given


def zns(template_id: str = "100001", **data: str) -> dict[str, Any]:
    return {
        "type": "zalo_zns_template",
        "zaloZnsTemplateParam": {"templateId": template_id, "templateData": data or {"name": "Dara"}},
    }


async def send(
    sim: Sim, given: dict[str, str], phone: str = PHONE, content: dict[str, Any] | None = None, key: int = 0
) -> SendOutcome:
    key = key or next(_keys)
    [unit] = PROVIDER.plan(context(sim), given, [Outgoing(key, phone, content or zns())])
    return (await unit.call())[key]


async def refused(sim: Sim, given: dict[str, str], **kwargs: Any) -> ProviderError:
    outcome = await send(sim, given, **kwargs)
    assert isinstance(outcome, ProviderError), outcome
    return outcome


async def raw_send(sim: Sim, token: str, body: dict[str, Any]) -> dict[str, Any]:
    response = await sim.http.post(
        f"{sim.base_url}/{NAME}/message/template", json=body, headers={"access_token": token}
    )
    assert response.status_code == 200, response.content
    answer: dict[str, Any] = response.json()
    return answer


def events(sim: Sim, given: dict[str, str]) -> list[Any]:
    found = []
    for item in sim.inbox.received:
        assert PROVIDER.verify(context(sim), _request(item), given), item.body
        found += PROVIDER.parse(item.body)
    return found


def _request(item: Received) -> Any:
    from openmmp.providers.base import CallbackRequest

    return CallbackRequest("POST", {k.lower(): v for k, v in item.headers.items()}, {}, item.body)


async def delivered(sim: Sim, given: dict[str, str], msg_id: str) -> StatusEvent:
    def has(_: list[Received]) -> bool:
        return any(isinstance(e, StatusEvent) and e.provider_message_id == msg_id for e in events(sim, given))

    await sim.inbox.wait_for(has)
    return next(
        e for e in events(sim, given) if isinstance(e, StatusEvent) and e.provider_message_id == msg_id
    )


async def approved_template(sim: Sim, given: dict[str, str], tag: int, name: str) -> str:
    form = {
        "name": name,
        "templateType": 1,
        "tag": tag,
        "content": "Hello <name>, see our offer",
        "params": [{"name": "name", "sampleValue": "Dara"}],
    }
    review = await PROVIDER.submit_template(context(sim), given, form)

    def decided(_: list[Received]) -> bool:
        return any(
            isinstance(e, TemplateEvent) and e.template_id == review.template_id and e.status == "APPROVED"
            for e in events(sim, given)
        )

    await sim.inbox.wait_for(decided)
    return review.template_id


async def clock(sim: Sim, vietnam_time: str | None) -> None:
    response = await sim.post(f"/{NAME}/_sandbox/zns/clock", {"vietnamTime": vietnam_time})
    assert response.status_code == 200, response.content


class TestSending:
    async def test_an_accepted_send_answers_the_msg_id_and_the_quota_left(self, start_sim: StartSim):
        sim = await start_sim(options={NAME: {**FAST, "daily_quota": 10}})
        given = await channel(sim)
        body = {"phone": PHONE, "template_id": "1", "template_data": {"a": "b"}, "tracking_id": "t-1"}
        first = await raw_send(sim, given["accessToken"], body)
        second = await raw_send(sim, given["accessToken"], {**body, "tracking_id": "t-2"})
        assert first["error"] == 0
        assert first["data"]["quota"] == {"dailyQuota": "10", "remainingQuota": "9"}
        assert second["data"]["quota"] == {"dailyQuota": "10", "remainingQuota": "8"}
        assert first["data"]["msg_id"] != second["data"]["msg_id"]

    async def test_a_send_is_delivered_and_never_read(self, sim: Sim):
        given = await channel(sim)
        outcome = await send(sim, given, phone="84987654327")
        assert isinstance(outcome, SendOk)
        event = await delivered(sim, given, outcome.provider_message_id)
        assert event.raw["recipient"] == {"id": "84987654327"}
        assert "ZNS" in {item.headers.get("x-zevent-server") for item in sim.inbox.received}
        await sim.settled(NAME)
        assert {e.status for e in events(sim, given) if isinstance(e, StatusEvent)} == {"DELIVERED"}

    async def test_a_repeated_tracking_id_is_the_first_send_again(self, start_sim: StartSim):
        sim = await start_sim(options={NAME: {**FAST, "daily_quota": 5}})
        given = await channel(sim)
        key = next(_keys)
        first = await send(sim, given, key=key)
        again = await send(sim, given, key=key)
        assert isinstance(first, SendOk) and isinstance(again, SendOk)
        assert again.provider_message_id == first.provider_message_id
        await delivered(sim, given, first.provider_message_id)
        stats = await sim.settled(NAME)
        assert (stats["accepted"], stats["duplicates"], stats["callbacksSent"]) == (1, 1, 1)
        body = {"phone": PHONE, "template_id": "1", "template_data": {}, "tracking_id": "other"}
        answer = await raw_send(sim, given["accessToken"], body)
        assert answer["data"]["quota"]["remainingQuota"] == "3"  # the repeat used none

    async def test_the_phones_last_digit_8_is_a_final_refusal(self, sim: Sim):
        error = await refused(sim, await channel(sim), phone="84987654328")
        assert (error.code, error.retryable) == ("ZALO_-114", False)
        assert "cannot receive" in error.message


class TestQuota:
    async def test_a_used_up_daily_quota_is_a_final_refusal_saying_so(self, start_sim: StartSim):
        sim = await start_sim(options={NAME: {**FAST, "daily_quota": 2}})
        given = await channel(sim)
        assert isinstance(await send(sim, given), SendOk)
        assert isinstance(await send(sim, given), SendOk)
        error = await refused(sim, given)
        assert (error.code, error.retryable, error.rate_limited) == ("ZALO_-144", False, False)
        assert "daily quota" in error.message
        assert isinstance(await send(sim, await channel(sim, "7002")), SendOk)  # each OA has its own


class TestPromotionalWindow:
    async def test_a_promotional_template_goes_by_day_only(self, start_sim: StartSim):
        sim = await start_sim(options={NAME: FAST})
        given = await channel(sim)
        promotion = await approved_template(sim, given, tag=3, name="weekend_offer")
        transaction = await approved_template(sim, given, tag=1, name="order_ready")

        await clock(sim, "22:00")
        error = await refused(sim, given, content=zns(promotion, name="Dara"))
        assert (error.code, error.retryable) == ("ZALO_-234", False)
        assert "07:00 and 22:00 Vietnam time" in error.message
        assert isinstance(await send(sim, given, content=zns(transaction, name="Dara")), SendOk)

        await clock(sim, "06:59")
        assert (await refused(sim, given, content=zns(promotion, name="Dara"))).code == "ZALO_-234"
        await clock(sim, "07:00")
        assert isinstance(await send(sim, given, content=zns(promotion, name="Dara")), SendOk)

    async def test_the_clock_can_be_stopped_by_a_knob(self, start_sim: StartSim):
        sim = await start_sim(options={NAME: {**FAST, "vietnam_time": "23:30"}})
        given = await channel(sim)
        promotion = await approved_template(sim, given, tag=3, name="night_offer")
        assert (await refused(sim, given, content=zns(promotion, name="Dara"))).code == "ZALO_-234"

    async def test_a_bad_time_is_refused_by_the_clock_route(self, sim: Sim):
        response = await sim.post(f"/{NAME}/_sandbox/zns/clock", {"vietnamTime": "25:00"})
        assert response.status_code == 400


class TestTemplatesASendNeeds:
    async def test_a_template_under_review_or_without_its_parameters_is_refused(self, start_sim: StartSim):
        sim = await start_sim(options={NAME: {**FAST, "template_review_seconds": 30}})
        given = await channel(sim)
        form = {
            "name": "pending_one",
            "templateType": 1,
            "tag": 1,
            "content": "Hi <name>",
            "params": [{"name": "name", "sampleValue": "Dara"}],
        }
        review = await PROVIDER.submit_template(context(sim), given, form)
        error = await refused(sim, given, content=zns(review.template_id, name="Dara"))
        assert (error.code, error.retryable) == ("ZALO_-131", False)
        assert "not approved" in error.message

    async def test_a_missing_parameter_is_refused(self, start_sim: StartSim):
        sim = await start_sim(options={NAME: FAST})
        given = await channel(sim)
        template_id = await approved_template(sim, given, tag=1, name="needs_name")
        error = await refused(sim, given, content=zns(template_id, other="x"))
        assert error.code == "ZALO_-1122"
        assert "missing" in error.message

    async def test_the_templates_knob_limits_the_ids_that_go(self, start_sim: StartSim):
        sim = await start_sim(options={NAME: {**FAST, "templates": "100001, 100002"}})
        given = await channel(sim)
        assert isinstance(await send(sim, given, content=zns("100002")), SendOk)
        assert (await refused(sim, given, content=zns("999"))).code == "ZALO_-131"


class TestTokens:
    async def test_an_expired_token_is_stale_and_renewed_tokens_send_and_report(self, sim: Sim):
        given = await channel(sim)
        response = await sim.post(f"/{NAME}/_sandbox/zalo/expire", {"accessToken": given["accessToken"]})
        assert response.status_code == 200
        error = await refused(sim, given)
        assert (error.code, error.stale_credentials, error.retryable) == ("ZALO_-216", True, False)

        renewed = await PROVIDER.refresh_credentials(context(sim), given)
        assert renewed["accessToken"] != given["accessToken"]
        assert renewed["refreshToken"] != given["refreshToken"]
        outcome = await send(sim, renewed)
        assert isinstance(outcome, SendOk), outcome
        # The renewed token acts for the same OA: its webhook goes where the set-up said.
        await delivered(sim, given, outcome.provider_message_id)
        with pytest.raises(ProviderError) as spent:
            await PROVIDER.refresh_credentials(context(sim), given)
        assert not spent.value.retryable


class TestWebhooks:
    async def test_webhooks_wait_for_the_first_set_up(self, sim: Sim):
        given = credentials("7100")
        outcome = await send(sim, given)
        assert isinstance(outcome, SendOk)
        await asyncio.sleep(0.05)
        assert sim.inbox.received == []
        await PROVIDER.set_up(context(sim), callback_url=sim.inbox.url, credentials=given)
        await delivered(sim, given, outcome.provider_message_id)

    async def test_another_channels_secret_does_not_verify_them(self, sim: Sim):
        given = await channel(sim)
        outcome = await send(sim, given)
        assert isinstance(outcome, SendOk)
        await delivered(sim, given, outcome.provider_message_id)
        other = {**given, "secretKey": "another"}
        assert not any(PROVIDER.verify(context(sim), _request(i), other) for i in sim.inbox.received)

    async def test_a_set_up_without_what_it_needs_is_refused(self, sim: Sim):
        response = await sim.post(f"/{NAME}/_sandbox/webhooks", {"oaId": "1", "callbackUrl": sim.inbox.url})
        assert response.status_code == 400


class TestFaults:
    async def test_rate_limit_and_final_faults_speak_zalos_codes(self, sim: Sim):
        given = await channel(sim)
        await sim.fault(NAME, kind="rate_limit")
        limited = await refused(sim, given)
        assert (limited.code, limited.rate_limited, limited.retryable) == ("ZALO_-32", True, True)
        await sim.fault(NAME, kind="final_error", status=108)
        final = await refused(sim, given)
        assert (final.code, final.retryable) == ("ZALO_-108", False)
