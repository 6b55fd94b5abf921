"""WhatsApp templates on the provider contract: the form Meta reviews and its rules, a submission to the
simulator over real HTTP and Meta's answers (a repeated one answered with the template Meta has), the
review's signed `message_template_status_update` webhook read as a `TemplateEvent`, editing (in place, or
replacing a renamed template) and deleting, Meta's recategorisation (`template_category_update`), which
parameters a send gives, and the message that sends an approved template (refused with Meta's 132001
while it is still pending, once rejected, or once deleted)."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Mapping
from typing import Any

import pytest
from tests.providers.test_whatsapp_onboarding import REDIRECT, sandbox_ctx, sign_up
from tests.providers.test_whatsapp_simulator import Number, number_on
from tests.providers.viber_harness import Sim, StartSim

from openmmp.providers.base import (
    CallbackRequest,
    ProviderContext,
    ProviderError,
    SendOk,
    TemplateEvent,
    TemplateReview,
)
from openmmp.providers.whatsapp.provider import WhatsappProvider
from openmmp.providers.whatsapp.templates import WhatsappFormCreateTemplateMessage, form

PROVIDER = WhatsappProvider()


def template_message(template: Mapping[str, Any], params: Mapping[str, str]) -> dict[str, Any]:
    """The send of an approved `template`: Meta sends it by its name, whatever its id."""
    return PROVIDER.template_message(template, params, template_id="1234567890")


ACCOUNT_ID = "0190f5c2-7a3e-7d4b-8c1a-5e6f7a8b9c0d"
PHONE = "85512345670"
FAST_REVIEW = {"whatsapp": {"template_review_seconds": 0.05}}

HEADER = {"type": "HEADER", "format": "TEXT", "text": "Card {{1}}", "example": {"header_text": ["4711"]}}
BODY = {
    "type": "BODY",
    "text": "Hello {{1}}, your card {{2}} is ready.",
    "example": {"body_text": [["Dara", "4711"]]},
}
FOOTER = {"type": "FOOTER", "text": "Your bank"}
BUTTONS = {
    "type": "BUTTONS",
    "buttons": [
        {"type": "QUICK_REPLY", "text": "Thanks"},
        {
            "type": "URL",
            "text": "Track it",
            "url": "https://bank.example/cards/{{1}}",
            "example": ["https://bank.example/cards/4711"],
        },
        {"type": "COPY_CODE", "example": "WELCOME10"},
    ],
}
CARD_READY: dict[str, Any] = {
    "name": "card_ready",
    "accountId": ACCOUNT_ID,
    "category": "UTILITY",
    "language": "en_US",
    "components": [HEADER, BODY, FOOTER, BUTTONS],
}
CARD_PARAMS = {"header.1": "4711", "1": "Dara", "2": "4711", "button.1": "4711", "button.2": "DARA10"}
PROMO: dict[str, Any] = {
    "name": "promo",
    "category": "MARKETING",
    "language": "en_US",
    "parameterFormat": "NAMED",
    "components": [
        {
            "type": "header",
            "format": "text",
            "text": "Hi {{first_name}}",
            "example": {"header_text_named_params": [{"param_name": "first_name", "example": "Dara"}]},
        },
        {
            "type": "body",
            "text": "Dear {{first_name}}, {{offer}} until {{end_date}}.",
            "example": {
                "body_text_named_params": [
                    {"param_name": "first_name", "example": "Dara"},
                    {"param_name": "offer", "example": "10% off"},
                    {"param_name": "end_date", "example": "Friday"},
                ]
            },
        },
    ],
}


def template(base: dict[str, Any] = CARD_READY, **changes: Any) -> dict[str, Any]:
    return {**copy.deepcopy(base), **changes}


def body_only(text: str, *samples: str, **more: Any) -> dict[str, Any]:
    """A template whose one component is a body with `text` and, when given, one row of samples."""
    body: dict[str, Any] = {"type": "BODY", "text": text}
    if samples:
        body["example"] = {"body_text": [list(samples)]}
    return template(components=[body], **more)


async def number_of_an_account(start_sim: StartSim, **knobs: Any) -> Number:
    """A set-up number at a simulator whose review takes 50 ms unless `knobs` say otherwise."""
    sim = await start_sim(options={"whatsapp": {"template_review_seconds": 0.05, **knobs}})
    made = number_on(sim)
    await made.set_up()
    return made


def template_events(number: Number, template_id: str) -> list[TemplateEvent]:
    """The template events about `template_id` so far (verified with the number's app secret, parsed)."""
    return [e for e in number.events() if isinstance(e, TemplateEvent) and e.template_id == template_id]


async def decisions(number: Number, template_id: str, count: int = 1) -> list[TemplateEvent]:
    """The review's verdicts on `template_id`, once `count` of them arrived."""

    def decided(_: Any) -> bool:
        return len([e for e in template_events(number, template_id) if e.status is not None]) >= count

    await number.sim.inbox.wait_for(decided)
    return [e for e in template_events(number, template_id) if e.status is not None]


async def decision(number: Number, template_id: str) -> TemplateEvent:
    """The review's verdict on `template_id`, once its webhook arrived."""
    [found] = await decisions(number, template_id)
    return found


async def reviewed(number: Number, submission: dict[str, Any]) -> TemplateReview:
    return await PROVIDER.submit_template(number.ctx, number.credentials, submission)


async def submitted(number: Number, submission: dict[str, Any]) -> str:
    return (await reviewed(number, submission)).template_id


async def edited(number: Number, template_id: str, submission: dict[str, Any]) -> TemplateReview:
    return await PROVIDER.edit_template(number.ctx, number.credentials, template_id, submission)


async def deleted(number: Number, template_id: str, submission: dict[str, Any]) -> None:
    await PROVIDER.delete_template(number.ctx, number.credentials, template_id, submission)


async def listed(number: Number, query: str = "") -> dict[str, Any]:
    waba = number.credentials["wabaId"]
    headers = {"authorization": f"Bearer {number.credentials['accessToken']}"}
    response = await number.sim.http.get(
        f"{number.sim.base_url}/whatsapp/{waba}/message_templates{query}", headers=headers
    )
    assert response.status_code == 200, response.content
    answer: dict[str, Any] = response.json()
    return answer


class TestTheProviderDeclaresIt:
    def test_meta_reviews_whatsapp_templates_in_the_mmp_apis_form(self):
        assert PROVIDER.reviews_templates is True
        assert PROVIDER.template_model is WhatsappFormCreateTemplateMessage
        assert PROVIDER.template_model.__name__ == "WhatsappFormCreateTemplateMessage"


class TestTheForm:
    def test_a_template_goes_to_meta_in_metas_form_without_the_channel(self):
        made = form(CARD_READY)
        assert made.account_id == ACCOUNT_ID
        assert made.upstream() == {
            "name": "card_ready",
            "language": "en_US",
            "category": "UTILITY",
            "components": [HEADER, BODY, FOOTER, BUTTONS],
        }

    def test_named_parameters_are_declared_and_types_are_taken_in_either_case(self):
        upstream = form(PROMO).upstream()
        assert upstream["parameter_format"] == "NAMED"
        assert [c["type"] for c in upstream["components"]] == ["HEADER", "BODY"]
        assert upstream["components"][0]["format"] == "TEXT"

    def test_the_wire_names_are_the_mmp_apis_camel_case_outside_and_metas_inside(self):
        dumped = form(PROMO).model_dump(by_alias=True, exclude_none=True)
        assert {"parameterFormat", "components"} <= set(dumped)
        assert "header_text_named_params" in dumped["components"][0]["example"]

    @pytest.mark.parametrize(
        ("submission", "field", "words"),
        [
            (template(name="Card Ready"), "name", "pattern"),
            (template(name="x" * 513), "name", "512"),
            (template(category="PROMOTION"), "category", "MARKETING"),
            (template(language="English"), "language", "pattern"),
            (template(accountId="a" * 37), "accountId", "36"),
            (template(parameterFormat="BOTH"), "parameterFormat", "NAMED"),
            (template(components=[]), "components", "at least 1"),
            (body_only("x" * 1025), "components[0].text", "1024"),
            (template(components=[FOOTER]), "components", "BODY component is required"),
            (template(components=[BODY, BODY]), "components[1].type", "one BODY"),
            (
                template(components=[{**HEADER, "text": "x" * 61, "example": None}, BODY]),
                "components[0].text",
                "at most 60",
            ),
            (
                template(components=[{**HEADER, "text": "{{1}} and {{2}}"}, BODY]),
                "components[0].text",
                "at most one variable",
            ),
            (
                template(components=[{"type": "HEADER", "format": "IMAGE"}, BODY]),
                "components[0].example.header_handle",
                "sample",
            ),
            (template(components=[BODY, {**FOOTER, "text": "x" * 61}]), "components[1].text", "60"),
            (
                template(components=[BODY, {**FOOTER, "text": "Ref {{1}}"}]),
                "components[1].text",
                "no variables",
            ),
            (body_only("Hi {{1}}, card {{3}}", "a", "b"), "components[0].text", "without gaps"),
            (body_only("Hi {{2}}, card {{1}}", "a", "b"), "components[0].text", "in order"),
            (body_only("Hi {{1}}, card {{1}}", "a", "b"), "components[0].text", "twice"),
            (body_only("Hi {{1}}, {{first_name}}", "a", "b"), "components[0].text", "named variable"),
            (
                body_only("Hi {{first_name}}, card {{1}}", "a", "b", parameterFormat="NAMED"),
                "components[0].text",
                "positional variable",
            ),
            (body_only("Hi {{First Name}}", "a"), "components[0].text", "not a variable"),
            (body_only("Hi {{1}"), "components[0].text", "braces"),
            (body_only("Hi {{1}} and {{2}}", "only one"), "components[0].example.body_text", "2 variables"),
            (body_only("Hi {{1}}"), "components[0].example.body_text", "sample"),
            (
                template(
                    components=[
                        BODY,
                        {"type": "BUTTONS", "buttons": [{"type": "QUICK_REPLY", "text": "x"}] * 11},
                    ]
                ),
                "components[1].buttons",
                "10",
            ),
            (
                template(components=[BODY, {"type": "BUTTONS", "buttons": [BUTTONS["buttons"][1]] * 3}]),
                "components[1].buttons[2]",
                "at most 2 URL",
            ),
            (
                template(
                    components=[
                        BODY,
                        {"type": "BUTTONS", "buttons": [{"type": "QUICK_REPLY", "text": "x" * 26}]},
                    ]
                ),
                "components[1].buttons[0].text",
                "25",
            ),
            (
                template(
                    components=[
                        BODY,
                        {
                            "type": "BUTTONS",
                            "buttons": [{**BUTTONS["buttons"][1], "url": "https://b.example/{{1}}/x"}],
                        },
                    ]
                ),
                "components[1].buttons[0].url",
                "at the end",
            ),
            (
                template(
                    components=[
                        BODY,
                        {"type": "BUTTONS", "buttons": [{"type": "PHONE_NUMBER", "text": "Call"}]},
                    ]
                ),
                "components[1].buttons[0].phone_number",
                "required",
            ),
            (
                template(
                    components=[
                        BODY,
                        {"type": "BUTTONS", "buttons": [{"type": "COPY_CODE", "example": "x" * 16}]},
                    ]
                ),
                "components[1].buttons[0].example",
                "15",
            ),
            (
                template(components=[{**BODY, "bodyText": "camelCase is not Meta's"}]),
                "components[0].bodyText",
                "not permitted",
            ),
        ],
    )
    def test_what_meta_would_refuse_is_refused_naming_the_field(
        self, submission: dict[str, Any], field: str, words: str
    ):
        with pytest.raises(ValueError, match=r"^(\S+): (.*)$") as refused:
            form(submission)
        where, _, message = str(refused.value).partition(": ")
        assert where == field
        assert words in message

    def test_the_model_itself_refuses_too_as_the_core_validates_a_request_body(self):
        with pytest.raises(ValueError, match="without gaps"):
            WhatsappFormCreateTemplateMessage.model_validate(body_only("Hi {{1}}, card {{3}}", "a", "b"))

    def test_every_documented_kind_of_component_is_taken(self):
        location = {"type": "HEADER", "format": "LOCATION"}
        image = {"type": "HEADER", "format": "IMAGE", "example": {"header_handle": ["4::aW1hZ2U="]}}
        phone = {"type": "PHONE_NUMBER", "text": "Call us", "phone_number": "+85512345678"}
        for header in (location, image):
            form(template(components=[header, BODY, {"type": "BUTTONS", "buttons": [phone]}]))


class TestVariables:
    def test_positional_ones_are_named_as_meta_numbers_them_per_component(self):
        assert PROVIDER.template_variables(CARD_READY) == ["header.1", "1", "2", "button.1", "button.2"]

    def test_named_ones_are_their_names_once_even_when_header_and_body_share_one(self):
        assert PROVIDER.template_variables(PROMO) == ["first_name", "offer", "end_date"]

    def test_a_media_header_wants_its_medium_and_a_location_header_its_place(self):
        image = {"type": "HEADER", "format": "IMAGE", "example": {"header_handle": ["4::aW1hZ2U="]}}
        assert PROVIDER.template_variables(template(components=[image, BODY])) == ["header.image", "1", "2"]
        location = {"type": "HEADER", "format": "LOCATION"}
        assert PROVIDER.template_variables(
            template(components=[location, FOOTER, body_only("Hi")["components"][0]])
        ) == [
            "header.latitude",
            "header.longitude",
            "header.name",
            "header.address",
        ]

    def test_a_template_without_variables_wants_none(self):
        assert PROVIDER.template_variables(body_only("Your card is ready.")) == []


class TestTheMessage:
    def test_positional_parameters_go_in_the_shape_the_send_path_takes(self):
        message = template_message(CARD_READY, CARD_PARAMS)
        assert message == {
            "type": "fb_whatsapp_template",
            "whatsappTemplateParam": {
                "templateId": "card_ready",
                "language": "en_US",
                "header": ["4711"],
                "body": ["Dara", "4711"],
                "buttons": [
                    {"sub_type": "url", "index": 1, "parameters": [{"type": "text", "text": "4711"}]},
                    {
                        "sub_type": "copy_code",
                        "index": 2,
                        "parameters": [{"type": "coupon_code", "coupon_code": "DARA10"}],
                    },
                ],
            },
        }
        PROVIDER.check_message(message, {})

    def test_named_parameters_go_as_name_and_text_pairs(self):
        params = {"first_name": "Dara", "offer": "10% off", "end_date": "Friday"}
        message = template_message(PROMO, params)
        assert message["whatsappTemplateParam"]["header"] == [{"name": "first_name", "text": "Dara"}]
        assert message["whatsappTemplateParam"]["body"] == [
            {"name": "first_name", "text": "Dara"},
            {"name": "offer", "text": "10% off"},
            {"name": "end_date", "text": "Friday"},
        ]
        PROVIDER.check_message(message, {})

    def test_media_and_location_headers_go_as_cloud_api_parameter_objects(self):
        image = {"type": "HEADER", "format": "IMAGE", "example": {"header_handle": ["4::aW1hZ2U="]}}
        made = template_message(
            template(components=[image, BODY]),
            {"header.image": "https://cdn.bank.example/card.png", "1": "Dara", "2": "4711"},
        )
        assert made["whatsappTemplateParam"]["header"] == [
            {"type": "image", "image": {"link": "https://cdn.bank.example/card.png"}}
        ]
        PROVIDER.check_message(made, {})
        place = {"header.latitude": "11.5564", "header.longitude": "104.9282", "header.name": "Branch"}
        located = template_message(
            template(
                components=[{"type": "HEADER", "format": "LOCATION"}, body_only("Come by")["components"][0]]
            ),
            {**place, "header.address": "1 Norodom Blvd"},
        )
        assert located["whatsappTemplateParam"]["header"] == [
            {
                "type": "location",
                "location": {
                    "latitude": 11.5564,
                    "longitude": 104.9282,
                    "name": "Branch",
                    "address": "1 Norodom Blvd",
                },
            }
        ]
        PROVIDER.check_message(located, {})

    @pytest.mark.parametrize(
        ("params", "field", "words"),
        [
            ({k: v for k, v in CARD_PARAMS.items() if k != "2"}, "params.2", "required"),
            ({**CARD_PARAMS, "1": "   "}, "params.1", "required"),
            ({**CARD_PARAMS, "header.1": "x" * 61}, "params.header.1", "at most 60"),
            ({**CARD_PARAMS, "1": "x" * 1025}, "params.1", "at most 1024"),
            ({**CARD_PARAMS, "1": "Dara\nSok"}, "params.1", "new lines"),
            ({**CARD_PARAMS, "1": "Dara     Sok"}, "params.1", "four spaces"),
            ({**CARD_PARAMS, "button.2": "A-CODE-THAT-IS-TOO-LONG"}, "params.button.2", "at most 15"),
            ({**CARD_PARAMS, "3": "extra"}, "params.3", "not a variable"),
        ],
    )
    def test_a_parameter_meta_would_refuse_is_refused_naming_it(
        self, params: dict[str, str], field: str, words: str
    ):
        with pytest.raises(ValueError, match=r"^(\S+): (.*)$") as refused:
            template_message(CARD_READY, params)
        where, _, message = str(refused.value).partition(": ")
        assert where == field
        assert words in message

    def test_a_media_header_wants_an_http_url_and_a_location_numbers(self):
        image = {"type": "HEADER", "format": "IMAGE", "example": {"header_handle": ["4::aW1hZ2U="]}}
        with pytest.raises(ValueError, match=r"^params\.header\.image: .*http"):
            template_message(
                template(components=[image, BODY]), {"header.image": "ftp://x", "1": "a", "2": "b"}
            )
        located = template(components=[{"type": "HEADER", "format": "LOCATION"}, BODY])
        place = {
            "header.latitude": "north",
            "header.longitude": "1",
            "header.name": "a",
            "header.address": "b",
        }
        with pytest.raises(ValueError, match=r"^params\.header\.latitude: must be a number"):
            template_message(located, {**place, "1": "a", "2": "b"})
        with pytest.raises(ValueError, match=r"^params\.header\.latitude: must be between -90 and 90"):
            template_message(located, {**place, "header.latitude": "91", "1": "a", "2": "b"})


class TestSubmitting:
    async def test_meta_takes_it_and_names_it_and_it_waits_for_review(self, start_sim: StartSim):
        number = await number_of_an_account(start_sim, template_review_seconds=30)
        template_id = await submitted(number, CARD_READY)
        assert template_id.isdigit()
        [entry] = (await listed(number, "?name=card_ready"))["data"]
        assert (entry["id"], entry["status"], entry["language"]) == (template_id, "PENDING", "en_US")
        assert entry["components"] == CARD_READY["components"]

    async def test_the_approval_arrives_signed_and_is_read_as_a_template_event(self, start_sim: StartSim):
        number = await number_of_an_account(start_sim)
        template_id = await submitted(number, CARD_READY)
        event = await decision(number, template_id)  # verified with the number's app secret
        assert (event.status, event.cause) == ("APPROVED", "APPROVED")
        webhook = next(item.json() for item in number.sim.inbox.received)
        assert webhook["object"] == "whatsapp_business_account"
        [entry] = webhook["entry"]
        assert entry["id"] == number.credentials["wabaId"]
        [change] = entry["changes"]
        assert change["field"] == "message_template_status_update"
        assert change["value"]["message_template_name"] == "card_ready"
        assert change["value"]["message_template_language"] == "en_US"
        assert (await listed(number))["data"][0]["status"] == "APPROVED"

    async def test_a_repeat_of_the_webhook_is_the_same_event(self, start_sim: StartSim):
        number = await number_of_an_account(start_sim)
        await decision(number, await submitted(number, CARD_READY))
        raw = number.sim.inbox.received[0].body
        assert PROVIDER.parse(raw)[0].dedupe_key == PROVIDER.parse(raw)[0].dedupe_key
        request = CallbackRequest("POST", {}, {}, raw)
        assert not PROVIDER.verify(number.ctx, request, number.credentials)  # unsigned: refused

    async def test_a_rejection_comes_with_metas_reason_as_the_cause(self, start_sim: StartSim):
        number = await number_of_an_account(start_sim)
        template_id = await submitted(number, template(name="reject_me"))
        event = await decision(number, template_id)
        assert (event.status, event.cause) == ("REJECTED", "REJECTED: INVALID_FORMAT")
        [entry] = (await listed(number, "?name=reject_me"))["data"]
        assert (entry["status"], entry["rejected_reason"]) == ("REJECTED", "INVALID_FORMAT")

    async def test_another_template_under_a_name_the_account_has_in_that_language_is_refused_for_good(
        self, sim: Sim
    ):
        number = number_on(sim)
        await number.set_up()
        await submitted(number, CARD_READY)
        for other in (body_only("Your card is ready."), template(category="MARKETING")):
            with pytest.raises(ProviderError) as duplicate:
                await submitted(number, other)
            assert (duplicate.value.code, duplicate.value.retryable) == ("WHATSAPP_2388024", False)
            assert "another name" in duplicate.value.message
            assert "en_US" in duplicate.value.message  # Meta's own words come along
        assert await submitted(number, template(language="km"))  # another language is another template

    async def test_the_same_template_again_is_the_one_meta_has_as_after_a_lost_answer(
        self, start_sim: StartSim
    ):
        number = await number_of_an_account(start_sim, template_review_seconds=30)
        first = await reviewed(number, CARD_READY)
        assert first == TemplateReview(first.template_id, "REQUEST", "")
        assert await reviewed(number, CARD_READY) == first
        # The same template written with types in lower case is still the same one.
        lower = template(components=[{**c, "type": c["type"].lower()} for c in CARD_READY["components"]])
        assert await reviewed(number, lower) == first
        assert [t["id"] for t in (await listed(number, "?name=card_ready"))["data"]] == [first.template_id]

    async def test_submitted_again_after_the_verdict_it_comes_with_the_verdict(self, start_sim: StartSim):
        number = await number_of_an_account(start_sim)
        approved = await submitted(number, CARD_READY)
        rejected = await submitted(number, template(name="reject_me"))
        await decision(number, approved)
        await decision(number, rejected)
        assert await reviewed(number, CARD_READY) == TemplateReview(approved, "APPROVED", "")
        assert await reviewed(number, template(name="reject_me")) == TemplateReview(
            rejected, "REJECTED", "REJECTED: INVALID_FORMAT"
        )

    async def test_what_the_provider_refuses_never_reaches_meta(self, sim: Sim):
        number = number_on(sim)
        await number.set_up()
        with pytest.raises(ValueError, match=r"^components\[0\]\.text: "):
            await submitted(number, body_only("Hi {{2}}", "x"))
        assert (await sim.stats("whatsapp"))["requests"] == 0

    async def test_meta_refuses_the_same_rules_with_100_naming_the_field(self, sim: Sim):
        number = number_on(sim)
        await number.set_up()
        waba = number.credentials["wabaId"]
        upstream = form(CARD_READY).upstream()
        upstream["components"][1]["text"] = "Hello {{1}}, card {{3}}"
        response = await sim.post(
            f"/whatsapp/{waba}/message_templates",
            upstream,
            headers={"authorization": f"Bearer {number.credentials['accessToken']}"},
        )
        error = response.json()["error"]
        assert (response.status_code, error["code"]) == (400, 100)
        assert error["error_data"]["details"].startswith("components[1].text: ")

    async def test_an_account_the_token_cannot_see_is_a_final_refusal(self, sim: Sim):
        number = number_on(sim)
        await number.set_up()
        stranger = {**number.credentials, "wabaId": "777000111222333"}
        with pytest.raises(ProviderError) as refused:
            await PROVIDER.submit_template(number.ctx, stranger, CARD_READY)
        assert (refused.value.code, refused.value.retryable) == ("WHATSAPP_100", False)
        assert "777000111222333" in refused.value.message

    async def test_another_sign_ups_token_is_refused(self, sim: Sim):
        ctx = sandbox_ctx(sim)
        mine = await PROVIDER.complete_onboarding(ctx, await sign_up(sim, ctx), redirect_url=REDIRECT)
        theirs = await PROVIDER.complete_onboarding(ctx, await sign_up(sim, ctx), redirect_url=REDIRECT)
        with pytest.raises(ProviderError) as refused:
            await PROVIDER.submit_template(ctx, {**mine, "accessToken": theirs["accessToken"]}, CARD_READY)
        assert (refused.value.code, refused.value.retryable) == ("WHATSAPP_200", False)
        with pytest.raises(ProviderError) as no_token:
            await PROVIDER.submit_template(ctx, {**mine, "accessToken": "EAAG-made-up"}, CARD_READY)
        assert (no_token.value.code, no_token.value.retryable) == ("WHATSAPP_200", False)

    async def test_server_trouble_and_no_answer_can_be_tried_again(self, sim: Sim):
        number = number_on(sim)
        await number.set_up()
        await sim.fault("whatsapp", kind="http_503")
        with pytest.raises(ProviderError) as unavailable:
            await submitted(number, CARD_READY)
        assert (unavailable.value.code, unavailable.value.retryable) == ("WHATSAPP_HTTP_503", True)
        nowhere = ProviderContext(sim.http, "http://127.0.0.1:9", "http://127.0.0.1:9", True)
        with pytest.raises(ProviderError) as unreachable:
            await PROVIDER.submit_template(nowhere, number.credentials, CARD_READY)
        assert unreachable.value.retryable
        assert await submitted(number, CARD_READY)  # and once Meta answers, it goes

    async def test_a_decision_before_any_number_of_the_account_has_a_url_waits_for_one(
        self, start_sim: StartSim
    ):
        sim = await start_sim(options=FAST_REVIEW)
        ctx = sandbox_ctx(sim)
        credentials = await PROVIDER.complete_onboarding(ctx, await sign_up(sim, ctx), redirect_url=REDIRECT)
        number = Number(sim, credentials, iter(range(1, 100)))
        template_id = await submitted(number, CARD_READY)
        await sim.settled("whatsapp")
        assert (await listed(number))["data"][0]["status"] == "APPROVED"
        assert sim.inbox.received == []  # decided, but nobody to tell yet
        await number.set_up()
        assert (await decision(number, template_id)).status == "APPROVED"


class TestListing:
    async def test_the_account_lists_its_templates_in_metas_pages(self, sim: Sim):
        number = number_on(sim)
        await number.set_up()
        ids = [await submitted(number, template(name=f"card_{n}")) for n in range(3)]
        first = await listed(number, "?limit=2")
        assert [t["id"] for t in first["data"]] == ids[:2]
        after = first["paging"]["cursors"]["after"]
        assert "next" in first["paging"]
        second = await listed(number, f"?limit=2&after={after}")
        assert [t["id"] for t in second["data"]] == ids[2:]
        assert "next" not in second["paging"]
        assert [t["name"] for t in (await listed(number, "?name=card_1"))["data"]] == ["card_1"]
        assert (await listed(number, "?name=none_such"))["data"] == []


def reworded(base: dict[str, Any] = CARD_READY, **changes: Any) -> dict[str, Any]:
    """`base` with another body text (its samples kept), and `changes`."""
    components = copy.deepcopy(base["components"])
    components[1]["text"] = "Hi {{1}}, card {{2}} can be picked up."
    return template(base, components=components, **changes)


def headers_of(number: Number) -> dict[str, str]:
    return {"authorization": f"Bearer {number.credentials['accessToken']}"}


class TestEditing:
    async def test_meta_edits_it_in_place_and_reviews_it_again(self, start_sim: StartSim):
        number = await number_of_an_account(start_sim)
        template_id = await submitted(number, CARD_READY)
        await decision(number, template_id)
        edit = reworded(category="MARKETING")
        assert await edited(number, template_id, edit) == TemplateReview(template_id, "REQUEST", "")
        [entry] = (await listed(number, "?name=card_ready"))["data"]
        assert (entry["id"], entry["status"], entry["category"]) == (template_id, "PENDING", "MARKETING")
        assert entry["components"][1]["text"] == "Hi {{1}}, card {{2}} can be picked up."
        first, again = await decisions(number, template_id, 2)
        assert (first.status, again.status) == ("APPROVED", "APPROVED")
        assert (await listed(number, "?name=card_ready"))["data"][0]["status"] == "APPROVED"

    async def test_an_edit_while_it_is_being_reviewed_starts_the_review_over(self, start_sim: StartSim):
        number = await number_of_an_account(start_sim, template_review_seconds=1.0)
        template_id = await submitted(number, CARD_READY)
        await asyncio.sleep(0.4)
        await edited(number, template_id, reworded())
        await asyncio.sleep(0.7)  # the first review's time is over, but it was of the old text
        assert (await listed(number, "?name=card_ready"))["data"][0]["status"] == "PENDING"
        assert [e.status for e in await decisions(number, template_id)] == ["APPROVED"]
        await number.sim.settled("whatsapp")
        assert len(template_events(number, template_id)) == 1

    async def test_a_new_name_is_a_new_template_and_the_old_one_is_deleted(self, start_sim: StartSim):
        number = await number_of_an_account(start_sim)
        old_id = await submitted(number, CARD_READY)
        await decision(number, old_id)
        renamed = template(name="card_ready_v2")
        review = await edited(number, old_id, renamed)
        assert review.template_id != old_id
        assert review.status == "REQUEST"
        assert (await listed(number, "?name=card_ready"))["data"] == []
        [entry] = (await listed(number, "?name=card_ready_v2"))["data"]
        assert (entry["id"], entry["status"]) == (review.template_id, "PENDING")
        assert (await decision(number, review.template_id)).status == "APPROVED"
        gone = await number.refused(PHONE, template_message(CARD_READY, CARD_PARAMS))
        assert gone.code == "WHATSAPP_132001"
        assert await number.sent(PHONE, template_message(renamed, CARD_PARAMS))
        # Repeated after a lost answer: the old one is gone, the new one is the answer.
        assert await edited(number, old_id, renamed) == TemplateReview(review.template_id, "APPROVED", "")

    async def test_another_language_replaces_only_that_template(self, start_sim: StartSim):
        number = await number_of_an_account(start_sim, template_review_seconds=30)
        english = await submitted(number, CARD_READY)
        french = await submitted(number, template(language="fr"))
        khmer = await edited(number, english, template(language="km"))
        assert khmer.template_id not in (english, french)
        languages = {t["language"]: t["id"] for t in (await listed(number, "?name=card_ready"))["data"]}
        assert languages == {"fr": french, "km": khmer.template_id}

    async def test_a_template_meta_does_not_have_is_a_final_refusal(self, sim: Sim):
        number = number_on(sim)
        await number.set_up()
        with pytest.raises(ProviderError) as refused:
            await edited(number, "123456789012345", CARD_READY)
        assert (refused.value.code, refused.value.retryable) == ("WHATSAPP_100", False)
        assert "123456789012345" in refused.value.message

    async def test_what_meta_refuses_to_edit_is_100(self, sim: Sim):
        number = number_on(sim)
        await number.set_up()
        template_id = await submitted(number, CARD_READY)
        for body, words in (
            ({"name": "card_ready_v2"}, "name: only a template's category and components"),
            ({}, "nothing to edit"),
            ({"category": "PROMOTION"}, "category: "),
            ({"components": [FOOTER]}, "BODY component is required"),
        ):
            response = await sim.post(f"/whatsapp/{template_id}", body, headers=headers_of(number))
            error = response.json()["error"]
            assert (response.status_code, error["code"]) == (400, 100), body
            assert words in error["error_data"]["details"]
        [entry] = (await listed(number))["data"]
        assert entry["components"] == CARD_READY["components"]

    async def test_meta_reads_a_template_by_its_id(self, sim: Sim):
        number = number_on(sim)
        await number.set_up()
        template_id = await submitted(number, CARD_READY)
        response = await sim.http.get(f"{sim.base_url}/whatsapp/{template_id}", headers=headers_of(number))
        assert response.status_code == 200
        assert {k: response.json()[k] for k in ("id", "name", "language", "status")} == {
            "id": template_id,
            "name": "card_ready",
            "language": "en_US",
            "status": "PENDING",
        }
        unknown = await sim.http.get(f"{sim.base_url}/whatsapp/123456789012345", headers=headers_of(number))
        assert (unknown.status_code, unknown.json()["error"]["error_subcode"]) == (400, 33)

    async def test_server_trouble_can_be_tried_again(self, sim: Sim):
        number = number_on(sim)
        await number.set_up()
        template_id = await submitted(number, CARD_READY)
        await sim.fault("whatsapp", kind="http_503")
        with pytest.raises(ProviderError) as unavailable:
            await edited(number, template_id, reworded())
        assert (unavailable.value.code, unavailable.value.retryable) == ("WHATSAPP_HTTP_503", True)
        assert (await edited(number, template_id, reworded())).template_id == template_id


class TestDeleting:
    async def test_it_is_gone_and_never_goes_again(self, start_sim: StartSim):
        number = await number_of_an_account(start_sim)
        template_id = await submitted(number, CARD_READY)
        await decision(number, template_id)
        message = template_message(CARD_READY, CARD_PARAMS)
        assert await number.sent(PHONE, message)
        await deleted(number, template_id, CARD_READY)
        assert (await listed(number, "?name=card_ready"))["data"] == []
        assert [t["id"] for t in (await listed(number, "?status=DELETED"))["data"]] == [template_id]
        refused = await number.refused(PHONE, message)
        assert (refused.code, refused.retryable) == ("WHATSAPP_132001", False)
        assert "DELETED" in refused.message

    async def test_deleting_it_again_or_one_meta_never_had_is_fine(self, sim: Sim):
        number = number_on(sim)
        await number.set_up()
        template_id = await submitted(number, CARD_READY)
        await deleted(number, template_id, CARD_READY)
        await deleted(number, template_id, CARD_READY)
        await deleted(number, "123456789012345", template(name="never_submitted"))

    async def test_meta_says_so_when_it_has_no_such_template(self, sim: Sim):
        number = number_on(sim)
        await number.set_up()
        waba = number.credentials["wabaId"]
        response = await sim.http.request(
            "DELETE",
            f"{sim.base_url}/whatsapp/{waba}/message_templates?name=card_ready&hsm_id=123456789012345",
            headers=headers_of(number),
        )
        error = response.json()["error"]
        assert (response.status_code, error["code"], error["error_subcode"]) == (400, 100, 2593002)
        assert error["error_user_title"] == "Message template not found"

    async def test_only_that_language_is_deleted_and_its_name_is_free_again(self, sim: Sim):
        number = number_on(sim)
        await number.set_up()
        english = await submitted(number, CARD_READY)
        french = await submitted(number, template(language="fr"))
        await deleted(number, english, CARD_READY)
        assert [t["id"] for t in (await listed(number, "?name=card_ready"))["data"]] == [french]
        again = await submitted(number, CARD_READY)
        assert again not in (english, french)

    async def test_a_refusal_stands_and_server_trouble_can_be_tried_again(self, sim: Sim):
        ctx = sandbox_ctx(sim)
        mine = await PROVIDER.complete_onboarding(ctx, await sign_up(sim, ctx), redirect_url=REDIRECT)
        theirs = await PROVIDER.complete_onboarding(ctx, await sign_up(sim, ctx), redirect_url=REDIRECT)
        template_id = (await PROVIDER.submit_template(ctx, mine, CARD_READY)).template_id
        with pytest.raises(ProviderError) as refused:
            await PROVIDER.delete_template(
                ctx, {**mine, "accessToken": theirs["accessToken"]}, template_id, CARD_READY
            )
        assert (refused.value.code, refused.value.retryable) == ("WHATSAPP_200", False)
        await sim.fault("whatsapp", kind="http_503")
        with pytest.raises(ProviderError) as unavailable:
            await PROVIDER.delete_template(ctx, mine, template_id, CARD_READY)
        assert (unavailable.value.code, unavailable.value.retryable) == ("WHATSAPP_HTTP_503", True)
        await PROVIDER.delete_template(ctx, mine, template_id, CARD_READY)
        waba = mine["wabaId"]
        response = await sim.http.get(
            f"{sim.base_url}/whatsapp/{waba}/message_templates",
            headers={"authorization": f"Bearer {mine['accessToken']}"},
        )
        assert response.json()["data"] == []


class TestRecategorising:
    async def test_meta_moves_a_promotional_utility_template_to_marketing_after_approving_it(
        self, start_sim: StartSim
    ):
        number = await number_of_an_account(start_sim)
        template_id = await submitted(number, template(name="card_promo"))

        def recategorised(_: Any) -> bool:
            return any(e.changes for e in template_events(number, template_id))

        await number.sim.inbox.wait_for(recategorised)
        approval, change = template_events(number, template_id)
        assert (approval.status, approval.changes) == ("APPROVED", {})
        assert (change.status, change.changes) == (None, {"category": "MARKETING"})
        assert change.cause == "Meta changed the category from UTILITY to MARKETING"
        assert change.dedupe_key != approval.dedupe_key
        [webhook] = [
            item.json()["entry"][0]["changes"][0]
            for item in number.sim.inbox.received
            if item.json()["entry"][0]["changes"][0]["field"] == "template_category_update"
        ]
        assert webhook["value"]["previous_category"] == "UTILITY"
        assert webhook["value"]["message_template_name"] == "card_promo"
        [entry] = (await listed(number, "?name=card_promo"))["data"]
        assert (entry["status"], entry["category"]) == ("APPROVED", "MARKETING")

    async def test_other_templates_keep_their_category(self, start_sim: StartSim):
        number = await number_of_an_account(start_sim)
        marketing = await submitted(number, template(name="card_promo", category="MARKETING"))
        utility = await submitted(number, CARD_READY)
        await decision(number, marketing)
        await decision(number, utility)
        await number.sim.settled("whatsapp")
        assert not [e for e in number.events() if isinstance(e, TemplateEvent) and e.changes]
        categories = {t["name"]: t["category"] for t in (await listed(number))["data"]}
        assert categories == {"card_promo": "MARKETING", "card_ready": "UTILITY"}


class TestSendingIt:
    async def test_it_goes_once_approved_and_is_refused_with_132001_while_pending(self, start_sim: StartSim):
        number = await number_of_an_account(start_sim, template_review_seconds=0.5)
        template_id = await submitted(number, CARD_READY)
        message = template_message(CARD_READY, CARD_PARAMS)
        PROVIDER.check_message(message, number.credentials)
        pending = await number.refused(PHONE, message)
        assert (pending.code, pending.retryable) == ("WHATSAPP_132001", False)
        assert "PENDING" in pending.message
        await decision(number, template_id)
        wamid = await number.sent(PHONE, message)
        got = await number.sim.http.get(f"{number.sim.base_url}/whatsapp/_sandbox/messages/{wamid}")
        sent = got.json()["request"]["template"]
        assert (sent["name"], sent["language"]) == ("card_ready", {"code": "en_US"})
        assert sent["components"][1] == {
            "type": "body",
            "parameters": [{"type": "text", "text": "Dara"}, {"type": "text", "text": "4711"}],
        }

    async def test_a_named_template_goes_with_its_names(self, start_sim: StartSim):
        number = await number_of_an_account(start_sim)
        await decision(number, await submitted(number, PROMO))
        params = {"first_name": "Dara", "offer": "10% off", "end_date": "Friday"}
        assert await number.sent(PHONE, template_message(PROMO, params))

    async def test_a_rejected_one_never_goes(self, start_sim: StartSim):
        number = await number_of_an_account(start_sim)
        rejected = template(name="reject_card")
        await decision(number, await submitted(number, rejected))
        refused = await number.refused(PHONE, template_message(rejected, CARD_PARAMS))
        assert (refused.code, refused.retryable) == ("WHATSAPP_132001", False)
        assert "REJECTED" in refused.message

    async def test_parameters_that_do_not_fit_are_meta_s_132000(self, start_sim: StartSim):
        number = await number_of_an_account(start_sim)
        await decision(number, await submitted(number, CARD_READY))
        message = template_message(CARD_READY, CARD_PARAMS)
        message["whatsappTemplateParam"]["body"] = ["Dara"]
        refused = await number.refused(PHONE, message)
        assert (refused.code, refused.retryable) == ("WHATSAPP_132000", False)
        assert "body: the parameters given (text) do not match the template's variables (text, text)" in (
            refused.message
        )

    async def test_an_approved_template_goes_beside_the_names_the_number_is_configured_with(
        self, start_sim: StartSim
    ):
        number = await number_of_an_account(start_sim, templates="hello_world")
        await decision(number, await submitted(number, CARD_READY))
        assert isinstance(await number.send(PHONE, template_message(CARD_READY, CARD_PARAMS)), SendOk)
        other = {"type": "fb_whatsapp_template", "whatsappTemplateParam": {"templateId": "promo"}}
        assert (await number.refused(PHONE, other)).code == "WHATSAPP_132001"
