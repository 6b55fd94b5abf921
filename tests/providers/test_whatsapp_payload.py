"""The pure MMP → Cloud API mapping: bodies per type, and the limits that name the MMP field at fault."""

from __future__ import annotations

import re
from typing import Any

import pytest

from openmmp.providers.whatsapp.client import send_body
from openmmp.providers.whatsapp.payload import graph_media_id, graph_media_url, to_whatsapp_payload
from openmmp.providers.whatsapp.provider import WhatsappProvider

PROVIDER = WhatsappProvider()


def buttons(*titles: str, **extra: Any) -> dict[str, Any]:
    return {
        "type": "FB_WHATSAPP_INTERACTIVE",
        "whatsappInteractive": {
            "type": "button",
            "body": {"text": "Is the delivery slot fine?"},
            "action": {
                "buttons": [
                    {"type": "reply", "reply": {"id": f"b{n}", "title": t}} for n, t in enumerate(titles)
                ]
            },
            **extra,
        },
    }


def listing(sections: list[dict[str, Any]], button: str = "Choose") -> dict[str, Any]:
    return {
        "type": "FB_WHATSAPP_INTERACTIVE",
        "whatsappInteractive": {
            "type": "list",
            "body": {"text": "Pick a branch"},
            "action": {"button": button, "sections": sections},
        },
    }


def rows(count: int, prefix: str = "r") -> list[dict[str, Any]]:
    return [{"id": f"{prefix}{n}", "title": f"Row {prefix}{n}"} for n in range(count)]


def template(**param: Any) -> dict[str, Any]:
    return {"type": "fb_whatsapp_template", "whatsappTemplateParam": {"templateId": "order_ready", **param}}


def refused(content: dict[str, Any]) -> str:
    with pytest.raises(ValueError, match=r"^message") as caught:
        PROVIDER.check_message(content, PROVIDER.sandbox_credentials)
    return str(caught.value)


class TestTypesMapToCloudApiBodies:
    def test_the_envelope_names_the_product_and_the_recipient(self):
        assert send_body("85512345670", {"type": "text", "message": "Hi"}) == {
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": "85512345670",
            "type": "text",
            "text": {"body": "Hi", "preview_url": False},
        }

    def test_a_text_with_a_link_gets_a_preview(self):
        payload = to_whatsapp_payload({"type": "text", "message": "Track it: https://shop.example/t/1"})
        assert payload["text"]["preview_url"] is True

    def test_a_picture_goes_by_link_with_its_caption(self):
        payload = to_whatsapp_payload(
            {"type": "picture", "fileUrl": "https://cdn.example.com/card.png", "message": "Your card"}
        )
        assert payload == {
            "type": "image",
            "image": {"link": "https://cdn.example.com/card.png", "caption": "Your card"},
        }

    def test_a_video_goes_by_link(self):
        assert to_whatsapp_payload({"type": "video", "fileUrl": "https://cdn.example.com/ad.mp4"}) == {
            "type": "video",
            "video": {"link": "https://cdn.example.com/ad.mp4"},
        }

    def test_a_file_is_a_document_with_its_name(self):
        payload = to_whatsapp_payload(
            {
                "type": "file",
                "fileUrl": "https://cdn.example.com/b.pdf",
                "fileName": "bill.pdf",
                "message": "May",
            }
        )
        assert payload == {
            "type": "document",
            "document": {"link": "https://cdn.example.com/b.pdf", "caption": "May", "filename": "bill.pdf"},
        }

    @pytest.mark.parametrize(
        "url",
        [
            "https://graph.facebook.com/1234567890",
            "https://graph.facebook.com/v21.0/1234567890",
            "https://graph.facebook.com/v19.0/1234567890/",
        ],
    )
    def test_a_graph_api_media_url_goes_by_id(self, url: str):
        payload = to_whatsapp_payload({"type": "picture", "fileUrl": url})
        assert payload == {"type": "image", "image": {"id": "1234567890"}}

    def test_other_urls_on_the_graph_host_go_by_link(self):
        assert graph_media_id("https://graph.facebook.com/v21.0/1234/media") is None
        assert graph_media_id("https://cdn.example.com/1234") is None
        assert graph_media_id(graph_media_url("987")) == "987"

    def test_a_location_keeps_its_name_and_address(self):
        payload = to_whatsapp_payload(
            {
                "type": "location",
                "location": {"latitude": 11.5564, "longitude": 104.9282, "name": "Branch", "address": "St 1"},
            }
        )
        assert payload == {
            "type": "location",
            "location": {"latitude": 11.5564, "longitude": 104.9282, "name": "Branch", "address": "St 1"},
        }

    def test_a_template_with_positional_parameters(self):
        payload = to_whatsapp_payload(template(language="km", header=["Dara"], body=["4711", 3]))
        assert payload == {
            "type": "template",
            "template": {
                "name": "order_ready",
                "language": {"code": "km"},
                "components": [
                    {"type": "header", "parameters": [{"type": "text", "text": "Dara"}]},
                    {
                        "type": "body",
                        "parameters": [{"type": "text", "text": "4711"}, {"type": "text", "text": "3"}],
                    },
                ],
            },
        }

    def test_a_template_with_named_parameters(self):
        payload = to_whatsapp_payload(
            template(
                body=[
                    {"name": "first_name", "text": "Dara"},
                    {"type": "text", "parameter_name": "order", "text": "4711"},
                ]
            )
        )
        assert payload["template"]["components"] == [
            {
                "type": "body",
                "parameters": [
                    {"type": "text", "parameter_name": "first_name", "text": "Dara"},
                    {"type": "text", "parameter_name": "order", "text": "4711"},
                ],
            }
        ]

    def test_a_template_without_language_or_parameters_is_en_us_and_bare(self):
        assert to_whatsapp_payload(template()) == {
            "type": "template",
            "template": {"name": "order_ready", "language": {"code": "en_US"}},
        }

    def test_a_template_header_can_be_a_picture_and_the_body_a_currency(self):
        currency = {"fallback_value": "$10", "code": "USD", "amount_1000": 10000}
        payload = to_whatsapp_payload(
            template(
                header=[{"type": "image", "image": {"link": "https://cdn.example.com/h.png"}}],
                body=[{"type": "currency", "currency": currency}],
            )
        )
        header, body = payload["template"]["components"]
        assert header["parameters"] == [{"type": "image", "image": {"link": "https://cdn.example.com/h.png"}}]
        assert body["parameters"] == [{"type": "currency", "currency": currency}]

    def test_template_buttons_are_quick_replies_or_cloud_api_components(self):
        payload = to_whatsapp_payload(
            template(
                buttons=[
                    "CONFIRM-4711",
                    {"sub_type": "url", "index": 1, "parameters": [{"type": "text", "text": "4711"}]},
                ]
            )
        )
        assert payload["template"]["components"] == [
            {
                "type": "button",
                "sub_type": "quick_reply",
                "index": "0",
                "parameters": [{"type": "payload", "payload": "CONFIRM-4711"}],
            },
            {
                "type": "button",
                "sub_type": "url",
                "index": "1",
                "parameters": [{"type": "text", "text": "4711"}],
            },
        ]

    def test_reply_buttons_are_rebuilt_from_what_the_cloud_api_knows(self):
        content = buttons("Yes", "No", header={"type": "text", "text": "Delivery"}, footer={"text": "Shop"})
        content["whatsappInteractive"]["unknown"] = "dropped"
        assert to_whatsapp_payload(content) == {
            "type": "interactive",
            "interactive": {
                "type": "button",
                "header": {"type": "text", "text": "Delivery"},
                "body": {"text": "Is the delivery slot fine?"},
                "footer": {"text": "Shop"},
                "action": {
                    "buttons": [
                        {"type": "reply", "reply": {"id": "b0", "title": "Yes"}},
                        {"type": "reply", "reply": {"id": "b1", "title": "No"}},
                    ]
                },
            },
        }

    def test_a_list_keeps_its_sections_rows_and_descriptions(self):
        payload = to_whatsapp_payload(
            listing(
                [
                    {"title": "North", "rows": [{"id": "n1", "title": "Toul Kork", "description": "8-17h"}]},
                    {"title": "South", "rows": rows(2, "s")},
                ]
            )
        )
        assert payload["interactive"]["action"] == {
            "button": "Choose",
            "sections": [
                {"title": "North", "rows": [{"id": "n1", "title": "Toul Kork", "description": "8-17h"}]},
                {"title": "South", "rows": rows(2, "s")},
            ],
        }


class TestAcceptTimeChecksNameTheField:
    @pytest.mark.parametrize(
        ("content", "field"),
        [
            ({"type": "text"}, "message.message: required"),
            ({"type": "text", "message": "x" * 4097}, "message.message: at most 4096"),
            ({"type": "picture"}, "message.fileUrl: required"),
            ({"type": "picture", "fileUrl": "ftp://x.example/a.png"}, "message.fileUrl: must be an absolute"),
            (
                {"type": "video", "fileUrl": "https://x.example/a.mp4", "message": "c" * 1025},
                "message.message: at most 1024",
            ),
            ({"type": "location"}, "message.location: required"),
            ({"type": "location", "location": {"latitude": 91, "longitude": 0}}, "message.location.latitude"),
            (
                {"type": "text", "message": "Hi", "suggestions": [{"action": "reply", "text": "Yes"}]},
                "message.suggestions: ",
            ),
        ],
    )
    def test_plain_types(self, content: dict[str, Any], field: str):
        assert refused(content).startswith(field)

    def test_reply_buttons_are_one_to_three(self):
        assert refused(buttons()).startswith("message.whatsappInteractive.action.buttons: 1 to 3")
        assert refused(buttons("a", "b", "c", "d")).startswith(
            "message.whatsappInteractive.action.buttons: 1 to 3"
        )
        PROVIDER.check_message(buttons("a", "b", "c"), {})

    def test_a_reply_button_title_is_at_most_20_characters(self):
        PROVIDER.check_message(buttons("x" * 20), {})
        assert refused(buttons("ok", "x" * 21)).startswith(
            "message.whatsappInteractive.action.buttons[1].reply.title: at most 20"
        )

    def test_reply_buttons_are_told_apart(self):
        assert "same reply.title" in refused(buttons("Yes", "Yes"))

    def test_the_body_and_the_footer_have_their_limits(self):
        content = buttons("Yes", footer={"text": "f" * 61})
        assert refused(content).startswith("message.whatsappInteractive.footer.text: at most 60")
        content = buttons("Yes")
        content["whatsappInteractive"]["body"] = {"text": "b" * 1025}
        assert refused(content).startswith("message.whatsappInteractive.body.text: at most 1024")
        content["whatsappInteractive"]["body"] = {}
        assert refused(content).startswith("message.whatsappInteractive.body.text: required")

    def test_a_list_has_at_most_ten_rows_in_all(self):
        PROVIDER.check_message(
            listing([{"title": "A", "rows": rows(5, "a")}, {"title": "B", "rows": rows(5, "b")}]), {}
        )
        too_many = listing([{"title": "A", "rows": rows(6, "a")}, {"title": "B", "rows": rows(5, "b")}])
        assert refused(too_many).startswith("message.whatsappInteractive.action.sections: at most 10 rows")

    @pytest.mark.parametrize(
        ("sections", "button", "field"),
        [
            ([{"title": "x" * 25, "rows": rows(1)}], "Choose", "action.sections[0].title: at most 24"),
            (
                [{"rows": [{"id": "1", "title": "t" * 25}]}],
                "Choose",
                "action.sections[0].rows[0].title: at most 24",
            ),
            (
                [{"rows": [{"id": "1", "title": "t", "description": "d" * 73}]}],
                "Choose",
                "action.sections[0].rows[0].description: at most 72",
            ),
            ([{"rows": rows(1)}], "b" * 21, "action.button: at most 20"),
            ([{"rows": rows(1)}, {"rows": rows(1, "x")}], "Choose", "action.sections[0].title: required"),
            (
                [{"title": "A", "rows": rows(1)}, {"title": "B", "rows": rows(1)}],
                "Choose",
                "action.sections: two",
            ),
            ([], "Choose", "action.sections: 1 to 10"),
        ],
    )
    def test_list_limits(self, sections: list[dict[str, Any]], button: str, field: str):
        assert refused(listing(sections, button)).startswith(f"message.whatsappInteractive.{field}")

    def test_a_list_header_is_text_only(self):
        content = listing([{"rows": rows(1)}])
        content["whatsappInteractive"]["header"] = {
            "type": "image",
            "image": {"link": "https://x.example/a.png"},
        }
        assert refused(content).startswith("message.whatsappInteractive.header.type: text")

    def test_only_buttons_and_lists(self):
        content = buttons("Yes")
        content["whatsappInteractive"]["type"] = "product"
        assert refused(content).startswith("message.whatsappInteractive.type: button (reply buttons) or list")
        assert refused({"type": "FB_WHATSAPP_INTERACTIVE"}).startswith(
            "message.whatsappInteractive: required"
        )

    @pytest.mark.parametrize(
        ("param", "field"),
        [
            ({"templateId": "Order Ready"}, "templateId: the template's name"),
            ({"templateId": ""}, "templateId: required"),
            ({"templateId": "t", "language": "english please"}, "language: a WhatsApp language code"),
            ({"templateId": "t", "header": ["a", "b"]}, "header: a template header takes one parameter"),
            ({"templateId": "t", "header": ["h" * 61]}, "header[0]: at most 60"),
            ({"templateId": "t", "body": ["Dara", {"name": "code", "text": "1"}]}, "body: either every text"),
            ({"templateId": "t", "body": [{"name": "Bad Name", "text": "1"}]}, "body[0].name"),
            (
                {"templateId": "t", "body": [{"type": "image", "image": {"link": "https://x.example/a"}}]},
                "body[0].type",
            ),
            (
                {"templateId": "t", "body": [{"name": "a", "text": "1"}, {"name": "a", "text": "2"}]},
                "body: two",
            ),
            ({"templateId": "t", "buttons": [{"sub_type": "call"}]}, "buttons[0].sub_type"),
            (
                {
                    "templateId": "t",
                    "buttons": [{"sub_type": "url", "parameters": [{"type": "payload", "payload": "x"}]}],
                },
                "buttons[0].parameters[0].type: a url button takes a text parameter",
            ),
            (
                {
                    "templateId": "t",
                    "buttons": [
                        {
                            "sub_type": "copy_code",
                            "parameters": [{"type": "coupon_code", "coupon_code": "C" * 16}],
                        }
                    ],
                },
                "buttons[0].parameters[0].coupon_code: at most 15",
            ),
            ({"templateId": "t", "buttons": ["p"] * 11}, "buttons: at most 10"),
        ],
    )
    def test_template_parameters(self, param: dict[str, Any], field: str):
        message = refused({"type": "fb_whatsapp_template", "whatsappTemplateParam": param})
        assert message.startswith(f"message.whatsappTemplateParam.{field}"), message

    def test_every_message_names_a_field_before_its_words(self):
        assert re.match(r"^message(\.[A-Za-z]+|\[\d+\])*: ", refused(buttons("a" * 30)))

    def test_the_example_is_a_template_that_goes_outside_the_window(self):
        assert PROVIDER.example_message["type"] in PROVIDER.window_free_types
        PROVIDER.check_message(PROVIDER.example_message, {})
