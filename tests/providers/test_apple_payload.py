"""MMP messages → Apple Messages for Business messages, and the limits `check_message` enforces (each
naming the MMP field)."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson
import pytest

from openmmp.providers.apple.payload import (
    ATTACHMENT_MARK,
    BID,
    AppleMessage,
    AttachmentRef,
    to_apple,
)
from openmmp.providers.apple.provider import AppleProvider

PROVIDER = AppleProvider()
RID = "0f6bd7f2-4a43-5b5e-8a0e-0b9c1c3f2d11"


def apple(message: dict[str, Any]) -> AppleMessage:
    return to_apple(message, request_identifier=RID)


def refused(message: dict[str, Any]) -> str:
    with pytest.raises(ValueError, match=r"^message\.[A-Za-z\[\]0-9.]+: ") as caught:
        PROVIDER.check_message(message, PROVIDER.sandbox_credentials)
    return str(caught.value)


def suggestions(*texts: str) -> list[dict[str, Any]]:
    return [{"action": "reply", "text": text} for text in texts]


class TestTypes:
    def test_text_is_a_text_body(self):
        assert apple({"type": "text", "message": "Hello Dara"}) == AppleMessage(
            {"type": "text", "body": "Hello Dara"}
        )

    def test_text_with_attachments_marks_each_after_the_text_and_names_the_files(self):
        sent = apple(
            {
                "type": "text_with_attachment",
                "message": "Your documents",
                "attachments": [
                    {
                        "type": "application/pdf",
                        "name": "statement.pdf",
                        "url": "https://cdn.example.com/s.pdf",
                    },
                    {
                        "type": "Image/PNG",
                        "name": "card.png",
                        "url": "https://cdn.example.com/c.png",
                        "size": 9,
                    },
                ],
            }
        )
        assert sent.body == {"type": "text", "body": f"Your documents\n{ATTACHMENT_MARK * 2}"}
        assert sent.attachments == (
            AttachmentRef(
                "message.attachments[0]", "https://cdn.example.com/s.pdf", "statement.pdf", "application/pdf"
            ),
            AttachmentRef("message.attachments[1]", "https://cdn.example.com/c.png", "card.png", "image/png"),
        )

    def test_attachments_without_text_are_marks_only(self):
        sent = apple(
            {
                "type": "text_with_attachment",
                "attachments": [
                    {"type": "image/png", "name": "a.png", "url": "https://cdn.example.com/a.png"}
                ],
            }
        )
        assert sent.body["body"] == ATTACHMENT_MARK

    def test_rich_link_is_titled_by_the_message_else_the_host(self):
        assert apple(
            {"type": "richLink", "richLinkUrl": "https://bank.example/offers", "message": "Offers"}
        ).body == {
            "type": "richLink",
            "richLinkData": {"url": "https://bank.example/offers", "title": "Offers"},
        }
        untitled = apple({"type": "richLink", "richLinkUrl": "https://bank.example/offers"})
        assert untitled.body["richLinkData"]["title"] == "bank.example"

    def test_location_is_a_rich_link_to_apple_maps(self):
        sent = apple(
            {
                "type": "location",
                "location": {"latitude": 11.5564, "longitude": 104.9282, "name": "Branch & ATM"},
            }
        )
        link = sent.body["richLinkData"]
        assert sent.body["type"] == "richLink"
        assert link["title"] == "Branch & ATM"
        url = urlsplit(link["url"])
        assert (url.scheme, url.netloc) == ("https", "maps.apple.com")
        assert parse_qs(url.query) == {"ll": ["11.556400,104.928200"], "q": ["Branch & ATM"]}

    def test_a_location_without_a_name_is_titled_by_its_coordinates(self):
        sent = apple({"type": "location", "location": {"latitude": -1, "longitude": 2}})
        assert sent.body["richLinkData"]["title"] == "-1.000000,2.000000"
        assert "q=" not in sent.body["richLinkData"]["url"]

    def test_quick_reply_items_are_the_suggestions_identified_by_their_postback(self):
        sent = apple(
            {
                "type": "quickReply",
                "message": "Was this helpful?",
                "suggestions": [
                    {"action": "reply", "text": "Yes", "postbackData": "helpful-yes"},
                    {"action": "reply", "text": "No"},
                ],
            }
        )
        assert sent.body == {
            "type": "interactive",
            "interactiveData": {
                "bid": BID,
                "data": {
                    "version": "1.0",
                    "requestIdentifier": RID,
                    "quick-reply": {
                        "summaryText": "Was this helpful?",
                        "items": [
                            {"identifier": "helpful-yes", "title": "Yes"},
                            {"identifier": "No", "title": "No"},
                        ],
                    },
                },
            },
        }

    def test_list_picker_is_one_section_with_bubbles(self):
        sent = apple(
            {
                "type": "listPicker",
                "message": "Pick a branch",
                "allowMultiple": True,
                "listPicker": [
                    {"title": "Riverside", "value": "b1", "subtitle": "Open until 18:00"},
                    {"title": "Airport", "value": "b2"},
                ],
            }
        )
        interactive = sent.body["interactiveData"]
        assert interactive["bid"] == BID
        assert (
            interactive["receivedMessage"]
            == interactive["replyMessage"]
            == {"title": "Pick a branch", "style": "icon"}
        )
        assert interactive["data"] == {
            "version": "1.0",
            "requestIdentifier": RID,
            "listPicker": {
                "sections": [
                    {
                        "title": "Pick a branch",
                        "order": 0,
                        "multipleSelection": True,
                        "items": [
                            {
                                "identifier": "b1",
                                "title": "Riverside",
                                "subtitle": "Open until 18:00",
                                "order": 0,
                                "style": "default",
                            },
                            {"identifier": "b2", "title": "Airport", "order": 1, "style": "default"},
                        ],
                    }
                ]
            },
        }

    def test_single_selection_is_the_default(self):
        sent = apple({"type": "listPicker", "message": "Pick", "listPicker": [{"title": "A", "value": "a"}]})
        assert sent.body["interactiveData"]["data"]["listPicker"]["sections"][0]["multipleSelection"] is False

    def test_the_check_maps_the_providers_example(self):
        PROVIDER.check_message(PROVIDER.example_message, PROVIDER.sandbox_credentials)


class TestLimitsNameTheField:
    @pytest.mark.parametrize(
        ("message", "field"),
        [
            ({"type": "picture", "fileUrl": "https://cdn.example.com/a.png"}, "message.type"),
            ({"type": "text"}, "message.message"),
            ({"type": "text", "message": "x" * 10_001}, "message.message"),
            ({"type": "text", "message": f"a {ATTACHMENT_MARK} b"}, "message.message"),
            ({"type": "text", "message": "hi", "suggestions": suggestions("a", "b")}, "message.suggestions"),
            (
                {
                    "type": "text",
                    "message": "hi",
                    "attachments": [{"type": "image/png", "name": "a", "url": "https://x.example/a"}],
                },
                "message.attachments",
            ),
            ({"type": "text_with_attachment", "message": "hi"}, "message.attachments"),
            (
                {
                    "type": "text_with_attachment",
                    "attachments": [{"type": "image/png", "name": "a", "url": "https://x.example/a"}] * 11,
                },
                "message.attachments",
            ),
            (
                {
                    "type": "text_with_attachment",
                    "attachments": [{"type": "png", "name": "a", "url": "https://x.example/a"}],
                },
                "message.attachments[0].type",
            ),
            (
                {
                    "type": "text_with_attachment",
                    "attachments": [{"type": "image/png", "name": "../a", "url": "https://x.example/a"}],
                },
                "message.attachments[0].name",
            ),
            (
                {
                    "type": "text_with_attachment",
                    "attachments": [{"type": "image/png", "name": "a", "url": "ftp://x.example/a"}],
                },
                "message.attachments[0].url",
            ),
            (
                {
                    "type": "text_with_attachment",
                    "attachments": [
                        {
                            "type": "image/png",
                            "name": "a",
                            "url": "https://x.example/a",
                            "size": 17 * 1024 * 1024,
                        }
                    ],
                },
                "message.attachments[0].size",
            ),
            ({"type": "richLink"}, "message.richLinkUrl"),
            ({"type": "richLink", "richLinkUrl": "javascript:alert(1)"}, "message.richLinkUrl"),
            (
                {"type": "richLink", "richLinkUrl": "https://x.example", "message": "t" * 201},
                "message.message",
            ),
            ({"type": "location"}, "message.location"),
            ({"type": "location", "location": {"latitude": 91, "longitude": 0}}, "message.location.latitude"),
            ({"type": "location", "location": {"latitude": 0}}, "message.location.longitude"),
            ({"type": "quickReply", "suggestions": suggestions("a", "b")}, "message.message"),
            (
                {"type": "quickReply", "message": "Pick", "suggestions": suggestions("only")},
                "message.suggestions",
            ),
            (
                {"type": "quickReply", "message": "Pick", "suggestions": suggestions(*"abcdef")},
                "message.suggestions",
            ),
            (
                {
                    "type": "quickReply",
                    "message": "Pick",
                    "suggestions": [
                        {"action": "open-url", "text": "Site", "postbackData": "https://x.example"},
                        *suggestions("b"),
                    ],
                },
                "message.suggestions[0].action",
            ),
            (
                {"type": "quickReply", "message": "Pick", "suggestions": suggestions("same", "same")},
                "message.suggestions[1]",
            ),
            (
                {"type": "quickReply", "message": "Pick", "suggestions": suggestions("a", "b" * 201)},
                "message.suggestions[1].text",
            ),
            ({"type": "listPicker", "listPicker": [{"title": "A", "value": "a"}]}, "message.message"),
            ({"type": "listPicker", "message": "Pick"}, "message.listPicker"),
            (
                {"type": "listPicker", "message": "Pick", "listPicker": [{"title": "A"}]},
                "message.listPicker[0].value",
            ),
            (
                {"type": "listPicker", "message": "Pick", "listPicker": [{"value": "a"}]},
                "message.listPicker[0].title",
            ),
            (
                {
                    "type": "listPicker",
                    "message": "Pick",
                    "listPicker": [{"title": "A", "value": "a", "image": "https://x.example/a.png"}],
                },
                "message.listPicker[0].image",
            ),
            (
                {
                    "type": "listPicker",
                    "message": "Pick",
                    "listPicker": [{"title": "A", "value": "a"}, {"title": "B", "value": "a"}],
                },
                "message.listPicker[1]",
            ),
            (
                {
                    "type": "listPicker",
                    "message": "Pick",
                    "allowMultiple": "yes",
                    "listPicker": [{"title": "A", "value": "a"}],
                },
                "message.allowMultiple",
            ),
        ],
    )
    def test_refused(self, message: dict[str, Any], field: str):
        assert refused(message).startswith(f"{field}: ")

    def test_interactive_data_over_10_kb_is_refused(self):
        items = [
            {"title": f"{'t' * 190}{i:03}", "value": f"{'v' * 190}{i:03}", "subtitle": "s" * 200}
            for i in range(20)
        ]
        message = {"type": "listPicker", "message": "Pick", "listPicker": items}
        assert refused(message).startswith("message.listPicker: ")
        assert "10 KB" in refused(message)
        small = {**message, "listPicker": items[:12]}
        interactive = apple(small).body["interactiveData"]
        assert len(orjson.dumps(interactive)) <= 10 * 1024
