"""ZNS templates: the form and Zalo's rules, the message that sends one, and Zalo's review through the
simulator (submission, idempotent resubmission, edit, verdict webhooks, delete)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from pydantic import TypeAdapter, ValidationError
from tests.providers.viber_harness import Received, Sim, StartSim

from openmmp.providers.base import (
    CallbackRequest,
    Outgoing,
    ProviderContext,
    ProviderError,
    SendOk,
    TemplateEvent,
)
from openmmp.providers.whatsapp.templates import WhatsappFormCreateTemplateMessage
from openmmp.providers.zalo.zns import ZaloZnsProvider
from openmmp.providers.zalo.zns_templates import ZaloZnsFormCreateTemplateMessage
from openmmp.templates.schemas import CreateFormTemplateMessage, TemplateForm

PROVIDER = ZaloZnsProvider()
NAME = PROVIDER.name
FAST = {"template_review_seconds": 0.05}


def form(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": "order_ready",
        "accountId": "0190f5c2-7a3e-7d4b-8c1a-5e6f7a8b9c0d",
        "templateType": 1,
        "tag": 1,
        "title": "Order <order_code>",
        "content": "Hello <customer_name>, your order <order_code> is ready for pick-up.",
        "params": [
            {"name": "customer_name", "type": 1, "sampleValue": "Dara", "maxLength": 30},
            {"name": "order_code", "type": 4, "sampleValue": "4711"},
        ],
        "note": "Sent when an order can be collected",
    }
    return {**base, **changes}


def refusal(template: dict[str, Any]) -> str:
    with pytest.raises(ValueError, match=r"^\w[\w.\[\]]*: ") as caught:
        PROVIDER.template_variables(template)
    return str(caught.value)


class TestTheForm:
    def test_the_templates_endpoint_tells_it_apart_from_the_other_forms(self):
        made = TypeAdapter(TemplateForm).validate_python(form())
        assert isinstance(made, ZaloZnsFormCreateTemplateMessage)
        fields = {f.alias or n for n, f in ZaloZnsFormCreateTemplateMessage.model_fields.items()}
        for other in (WhatsappFormCreateTemplateMessage, CreateFormTemplateMessage):
            theirs = {f.alias or n for n, f in other.model_fields.items()}
            assert len(fields - theirs) >= 5
        assert PROVIDER.template_model is ZaloZnsFormCreateTemplateMessage

    def test_a_broken_zalo_form_is_refused_with_its_own_errors(self):
        with pytest.raises(ValidationError) as caught:
            TypeAdapter(TemplateForm).validate_python(form(tag=9))
        assert [e["loc"] for e in caught.value.errors()] == [("tag",)]

    def test_variables_are_the_params_names_in_order(self):
        assert PROVIDER.template_variables(form()) == ["customer_name", "order_code"]

    def test_the_upstream_body_is_zalos(self):
        body = ZaloZnsFormCreateTemplateMessage.model_validate(form()).upstream()
        assert body == {
            "template_name": "order_ready",
            "template_type": 1,
            "tag": "1",
            "layout": {
                "body": {
                    "components": [
                        {"TITLE": {"value": "Order <order_code>"}},
                        {"PARAGRAPH": {"value": form()["content"]}},
                    ]
                }
            },
            "params": [
                {"type": "1", "name": "customer_name", "sample_value": "Dara"},
                {"type": "4", "name": "order_code", "sample_value": "4711"},
            ],
            "note": "Sent when an order can be collected",
        }

    @pytest.mark.parametrize(
        ("changes", "start"),
        [
            ({"content": "Hi <customer_name>, <order_code> and <extra>"}, "content: <extra> is not declared"),
            ({"content": "Hi <customer_name>", "title": None}, "params: order_code is declared but"),
            ({"content": "x" * 401}, "content: "),
            ({"content": "Hi <customer-name>"}, "content: <customer-name> is not a parameter"),
            ({"title": "<order code>"}, "title: <order code> is not a parameter"),
            ({"tag": 4}, "tag: "),
            ({"templateType": 6}, "templateType: "),
            ({"name": ""}, "name: "),
        ],
    )
    def test_zalos_rules_name_the_field(self, changes: dict[str, Any], start: str):
        assert refusal(form(**changes)).startswith(start)

    def test_a_parameter_declared_twice_is_refused(self):
        params = [*form()["params"], {"name": "order_code", "sampleValue": "4712"}]
        assert refusal(form(params=params)) == "params: order_code is declared twice"

    def test_a_sample_longer_than_its_max_length_is_refused(self):
        params = [{**form()["params"][0], "sampleValue": "D" * 31}, form()["params"][1]]
        assert refusal(form(params=params)).startswith("params[0]: ")

    def test_samples_making_the_message_too_long_are_refused(self):
        params = [{**form()["params"][0], "maxLength": None, "sampleValue": "D" * 380}, form()["params"][1]]
        message = refusal(form(params=params))
        assert message.startswith("params: the content with the samples filled in has")


class TestTheMessage:
    def test_it_sends_zalos_id_with_the_values(self):
        message = PROVIDER.template_message(
            form(), {"customer_name": "Sokha", "order_code": "88"}, template_id="301234"
        )
        assert message == {
            "type": "zalo_zns_template",
            "zaloZnsTemplateParam": {
                "templateId": "301234",
                "templateData": {"customer_name": "Sokha", "order_code": "88"},
            },
        }
        PROVIDER.check_message(message, PROVIDER.sandbox_credentials)

    @pytest.mark.parametrize(
        ("params", "start"),
        [
            ({"customer_name": "Sokha"}, "params.order_code: required"),
            ({"customer_name": "Sokha", "order_code": "1", "x": "y"}, "params.x: not a parameter"),
            ({"customer_name": "S" * 31, "order_code": "1"}, "params.customer_name: at most 30"),
            ({"customer_name": "Sokha", "order_code": "1" * 380}, "params: the message would have"),
        ],
    )
    def test_parameters_zalo_would_refuse_are_named(self, params: dict[str, str], start: str):
        with pytest.raises(ValueError, match=rf"^{re.escape(start)}"):
            PROVIDER.template_message(form(), params, template_id="301234")


# ---- Zalo's copy, through the simulator ------------------------------------------------------------------


def context(sim: Sim) -> ProviderContext:
    return ProviderContext(http=sim.http, base_url=f"{sim.base_url}/{NAME}", public_url="", sandbox=True)


async def channel(sim: Sim) -> dict[str, str]:
    given = {
        "oaId": "8001",
        "appId": "app-8001",
        "accessToken": "token-8001",
        "refreshToken": "refresh-8001",
        "secretKey": "secret-8001",
    }
    await PROVIDER.set_up(context(sim), callback_url=sim.inbox.url, credentials=given)
    return given


def verdicts(sim: Sim, given: dict[str, str]) -> list[TemplateEvent]:
    found: list[TemplateEvent] = []
    for item in sim.inbox.received:
        request = CallbackRequest("POST", {k.lower(): v for k, v in item.headers.items()}, {}, item.body)
        assert PROVIDER.verify(context(sim), request, given)
        found += [e for e in PROVIDER.parse(item.body) if isinstance(e, TemplateEvent)]
    return found


async def verdict(sim: Sim, given: dict[str, str], template_id: str, status: str) -> TemplateEvent:
    def arrived(_: list[Received]) -> bool:
        return any(e.template_id == template_id and e.status == status for e in verdicts(sim, given))

    await sim.inbox.wait_for(arrived)
    return next(e for e in verdicts(sim, given) if e.template_id == template_id and e.status == status)


async def listed(sim: Sim, given: dict[str, str]) -> list[dict[str, Any]]:
    response = await sim.http.get(
        f"{sim.base_url}/{NAME}/template/all?offset=0&limit=100",
        headers={"access_token": given["accessToken"]},
    )
    body = response.json()
    assert body["error"] == 0
    assert body["metadata"]["total"] == len(body["data"])
    data: list[dict[str, Any]] = body["data"]
    return data


class TestReview:
    async def test_an_approved_template_sends_by_the_id_zalo_gave_it(self, start_sim: StartSim):
        sim = await start_sim(options={NAME: FAST})
        given = await channel(sim)
        review = await PROVIDER.submit_template(context(sim), given, form())
        assert (review.status, review.cause) == ("REQUEST", "")
        event = await verdict(sim, given, review.template_id, "APPROVED")
        assert event.template_id == review.template_id

        message = PROVIDER.template_message(
            form(), {"customer_name": "Sokha", "order_code": "88"}, template_id=review.template_id
        )
        [unit] = PROVIDER.plan(context(sim), given, [Outgoing(1, "84987654320", message)])
        assert isinstance((await unit.call())[1], SendOk)

    async def test_a_rejected_template_says_why(self, start_sim: StartSim):
        sim = await start_sim(options={NAME: FAST})
        given = await channel(sim)
        review = await PROVIDER.submit_template(context(sim), given, form(name="please_reject_me"))
        event = await verdict(sim, given, review.template_id, "REJECTED")
        assert event.cause.startswith("Zalo rejected the template: ")

    async def test_a_submission_repeated_after_a_lost_answer_is_the_same_template(self, start_sim: StartSim):
        sim = await start_sim(options={NAME: FAST})
        given = await channel(sim)
        first = await PROVIDER.submit_template(context(sim), given, form())
        again = await PROVIDER.submit_template(context(sim), given, form())
        assert again.template_id == first.template_id
        await verdict(sim, given, first.template_id, "APPROVED")
        later = await PROVIDER.submit_template(context(sim), given, form())
        assert (later.template_id, later.status) == (first.template_id, "APPROVED")
        assert [t["templateId"] for t in await listed(sim, given)] == [first.template_id]

    async def test_another_template_of_the_same_name_is_submitted_anew(self, start_sim: StartSim):
        sim = await start_sim(options={NAME: FAST})
        given = await channel(sim)
        first = await PROVIDER.submit_template(context(sim), given, form())
        other = await PROVIDER.submit_template(context(sim), given, form(tag=2))
        assert other.template_id != first.template_id
        assert len(await listed(sim, given)) == 2

    async def test_an_edit_keeps_the_id_and_is_reviewed_again(self, start_sim: StartSim):
        sim = await start_sim(options={NAME: FAST})
        given = await channel(sim)
        review = await PROVIDER.submit_template(context(sim), given, form())
        await verdict(sim, given, review.template_id, "APPROVED")
        edited = await PROVIDER.edit_template(
            context(sim), given, review.template_id, form(content="Dear <customer_name>: <order_code> waits.")
        )
        assert (edited.template_id, edited.status) == (review.template_id, "REQUEST")

        def approved_twice(_: list[Received]) -> bool:
            return sum(e.status == "APPROVED" for e in verdicts(sim, given)) == 2

        await sim.inbox.wait_for(approved_twice)

    async def test_editing_a_template_zalo_does_not_have_is_refused(self, sim: Sim):
        given = await channel(sim)
        with pytest.raises(ProviderError) as caught:
            await PROVIDER.edit_template(context(sim), given, "123", form())
        assert (caught.value.code, caught.value.retryable) == ("ZALO_-201", False)

    async def test_a_template_zalo_disables_is_rejected_and_no_longer_sends(self, start_sim: StartSim):
        sim = await start_sim(options={NAME: FAST})
        given = await channel(sim)
        review = await PROVIDER.submit_template(context(sim), given, form())
        await verdict(sim, given, review.template_id, "APPROVED")
        response = await sim.post(
            f"/{NAME}/_sandbox/zns/templates/{review.template_id}",
            {"status": "DISABLE", "reason": "Low quality"},
        )
        assert response.status_code == 200, response.content
        event = await verdict(sim, given, review.template_id, "REJECTED")
        assert "disabled" in event.cause and "Low quality" in event.cause
        message = PROVIDER.template_message(
            form(), {"customer_name": "A", "order_code": "1"}, template_id=review.template_id
        )
        [unit] = PROVIDER.plan(context(sim), given, [Outgoing(2, "84987654320", message)])
        outcome = (await unit.call())[2]
        assert isinstance(outcome, ProviderError)
        assert (outcome.code, outcome.retryable) == ("ZALO_-146", False)

    async def test_delete_asks_nothing_of_zalo(self, sim: Sim):
        given = await channel(sim)
        before = (await sim.stats(NAME))["requests"]
        await PROVIDER.delete_template(context(sim), given, "301234", form())
        assert (await sim.stats(NAME))["requests"] == before

    async def test_a_template_zalo_would_refuse_is_refused_before_asking(self, sim: Sim):
        given = await channel(sim)
        with pytest.raises(ValueError, match=r"^content: "):
            await PROVIDER.submit_template(context(sim), given, form(content="Hi <nobody>"))
        assert (await sim.stats(NAME))["requests"] == 0
