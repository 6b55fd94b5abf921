"""MMP message objects → Zalo OA consultation `message` bodies, and the accept-time refusals."""

from __future__ import annotations

import re
from typing import Any

import pytest

from openmmp.providers.zalo.oa import ZaloOaProvider
from openmmp.providers.zalo.oa_payload import FileRef, OaMessage, file_message, to_oa_message

PROVIDER = ZaloOaProvider()


def body(message: dict[str, Any]) -> dict[str, Any]:
    mapped = to_oa_message(message)
    assert mapped.file is None
    return mapped.message


def refused(message: dict[str, Any], field: str) -> str:
    with pytest.raises(ValueError, match=rf"^{re.escape(field)}: ") as error:
        to_oa_message(message)
    with pytest.raises(ValueError, match=rf"^{re.escape(field)}: "):
        PROVIDER.check_message(message, PROVIDER.sandbox_credentials)
    return str(error.value)


def reply(text: str, data: str | None = None) -> dict[str, Any]:
    found = {"action": "reply", "text": text}
    if data is not None:
        found["postbackData"] = data
    return found


class TestText:
    def test_a_text_is_the_text(self):
        assert body({"type": "text", "message": "Xin chào"}) == {"text": "Xin chào"}

    def test_2000_characters_go_and_2001_are_refused(self):
        assert body({"type": "text", "message": "a" * 2000}) == {"text": "a" * 2000}
        assert "2000" in refused({"type": "text", "message": "a" * 2001}, "message.message")

    def test_an_empty_text_is_refused(self):
        refused({"type": "text", "message": "  "}, "message.message")
        refused({"type": "text"}, "message.message")

    def test_suggestions_become_buttons_under_the_text(self):
        message = {
            "type": "text",
            "message": "How can we help?",
            "suggestions": [
                reply("Balance", "#balance"),
                reply("Cards"),
                {"action": "open-url", "text": "Website", "postbackData": "https://bank.example"},
                {"action": "dial", "text": "Call us", "postbackData": "+84 912 345 678"},
            ],
        }
        assert body(message) == {
            "text": "How can we help?",
            "attachment": {
                "type": "template",
                "payload": {
                    "buttons": [
                        {"title": "Balance", "type": "oa.query.show", "payload": "#balance"},
                        {"title": "Cards", "type": "oa.query.show", "payload": "Cards"},
                        {
                            "title": "Website",
                            "type": "oa.open.url",
                            "payload": {"url": "https://bank.example"},
                        },
                        {
                            "title": "Call us",
                            "type": "oa.open.phone",
                            "payload": {"phone_code": "84912345678"},
                        },
                    ]
                },
            },
        }

    def test_at_most_5_buttons(self):
        message = {"type": "text", "message": "x", "suggestions": [reply(f"b{n}") for n in range(6)]}
        refused(message, "message.suggestions")

    @pytest.mark.parametrize(
        ("suggestion", "field"),
        [
            ({"action": "SHARE_LOCATION", "text": "Where"}, "message.suggestions[0].action"),
            ({"action": "reply", "text": "x" * 101}, "message.suggestions[0].text"),
            ({"action": "reply", "text": ""}, "message.suggestions[0].text"),
            (reply("ok", "p" * 1001), "message.suggestions[0].postbackData"),
            (
                {"action": "open-url", "text": "Site", "postbackData": "ftp://x"},
                "message.suggestions[0].postbackData",
            ),
            ({"action": "open-url", "text": "Site"}, "message.suggestions[0].postbackData"),
            ({"action": "dial", "text": "Call", "postbackData": "12"}, "message.suggestions[0].postbackData"),
            (
                {"action": "dial", "text": "Call", "postbackData": "call me"},
                "message.suggestions[0].postbackData",
            ),
            ("reply", "message.suggestions[0]"),
        ],
    )
    def test_suggestions_zalo_cannot_show_are_refused(self, suggestion: Any, field: str):
        refused({"type": "text", "message": "x", "suggestions": [suggestion]}, field)


class TestPicture:
    def test_a_picture_is_the_media_template_by_url_with_its_caption(self):
        message = {"type": "picture", "fileUrl": "https://cdn.bank.example/a.jpg", "message": "Your card"}
        assert body(message) == {
            "text": "Your card",
            "attachment": {
                "type": "template",
                "payload": {
                    "template_type": "media",
                    "elements": [{"media_type": "image", "url": "https://cdn.bank.example/a.jpg"}],
                },
            },
        }

    def test_without_a_caption_there_is_no_text(self):
        mapped = body({"type": "picture", "fileUrl": "https://cdn.bank.example/a.png"})
        assert "text" not in mapped

    def test_an_image_over_1_mb_and_buttons_are_refused(self):
        url = "https://cdn.bank.example/a.png"
        assert "1 MB" in refused(
            {"type": "picture", "fileUrl": url, "fileSize": 2 * 1024 * 1024}, "message.fileSize"
        )
        refused({"type": "picture", "fileUrl": url, "fileSize": -1}, "message.fileSize")
        refused({"type": "picture", "fileUrl": url, "suggestions": [reply("x")]}, "message.suggestions")
        refused({"type": "picture"}, "message.fileUrl")
        refused({"type": "picture", "fileUrl": "file:///etc/passwd"}, "message.fileUrl")


class TestFile:
    def test_a_file_is_uploaded_first_then_sent_by_its_token(self):
        mapped = to_oa_message(
            {"type": "file", "fileUrl": "https://cdn.bank.example/s/statement.pdf", "fileSize": 1000}
        )
        assert mapped == OaMessage(
            file_message(""), FileRef(url="https://cdn.bank.example/s/statement.pdf", name="statement.pdf")
        )
        assert file_message("tok") == {"attachment": {"type": "file", "payload": {"token": "tok"}}}

    def test_the_file_name_given_is_the_upload_s(self):
        mapped = to_oa_message(
            {"type": "file", "fileUrl": "https://x.example/d?id=1", "fileName": "Hợp đồng.docx"}
        )
        assert mapped.file == FileRef(url="https://x.example/d?id=1", name="Hợp đồng.docx")

    def test_what_zalo_cannot_send_as_a_file_is_refused(self):
        url = "https://cdn.bank.example/s.pdf"
        assert "PDF, DOC and DOCX" in refused(
            {"type": "file", "fileUrl": url, "fileName": "photo.png"}, "message.fileName"
        )
        assert "5 MB" in refused(
            {"type": "file", "fileUrl": url, "fileSize": 6 * 1024 * 1024}, "message.fileSize"
        )
        refused({"type": "file", "fileUrl": url, "message": "see attached"}, "message.message")
        refused({"type": "file", "fileUrl": url, "suggestions": [reply("x")]}, "message.suggestions")


class TestRichCard:
    def test_one_card_is_a_list_of_one_with_its_and_the_message_s_suggestions_as_buttons(self):
        message = {
            "type": "rich_card",
            "richCards": [
                {
                    "title": "Card ready",
                    "description": "Pick it up at the branch",
                    "image": "https://cdn.bank.example/card.png",
                    "suggestions": [reply("Pick up", "PICKUP")],
                }
            ],
            "suggestions": [
                {"action": "open-url", "text": "Branches", "postbackData": "https://bank.example/b"}
            ],
        }
        assert body(message) == {
            "attachment": {
                "type": "template",
                "payload": {
                    "template_type": "list",
                    "elements": [
                        {
                            "title": "Card ready",
                            "subtitle": "Pick it up at the branch",
                            "image_url": "https://cdn.bank.example/card.png",
                        }
                    ],
                    "buttons": [
                        {"title": "Pick up", "type": "oa.query.show", "payload": "PICKUP"},
                        {
                            "title": "Branches",
                            "type": "oa.open.url",
                            "payload": {"url": "https://bank.example/b"},
                        },
                    ],
                },
            }
        }

    def test_several_cards_take_one_suggestion_each_as_their_default_action(self):
        message = {
            "type": "rich_card",
            "richCards": [
                {
                    "title": "Savings",
                    "suggestions": [
                        {"action": "open-url", "text": "Open", "postbackData": "https://s.example"}
                    ],
                },
                {"title": "Loans", "suggestions": [reply("Loans", "#loans")]},
                {"title": "Cards"},
            ],
        }
        elements = body(message)["attachment"]["payload"]["elements"]
        assert elements == [
            {"title": "Savings", "default_action": {"type": "oa.open.url", "url": "https://s.example"}},
            {"title": "Loans", "default_action": {"type": "oa.query.show", "payload": "#loans"}},
            {"title": "Cards"},
        ]
        assert "buttons" not in body(message)["attachment"]["payload"]

    def test_limits(self):
        card = {"title": "t"}
        refused({"type": "rich_card", "richCards": [card] * 6}, "message.richCards")
        refused({"type": "rich_card", "richCards": []}, "message.richCards")
        refused(
            {"type": "rich_card", "richCards": [{"description": "no title"}]}, "message.richCards[0].title"
        )
        refused({"type": "rich_card", "richCards": [{"title": "t" * 101}]}, "message.richCards[0].title")
        refused(
            {"type": "rich_card", "richCards": [{"title": "t", "description": "d" * 501}]},
            "message.richCards[0].description",
        )
        refused(
            {"type": "rich_card", "richCards": [{"title": "t", "image": "nope"}]},
            "message.richCards[0].image",
        )
        refused({"type": "rich_card", "richCards": ["card"]}, "message.richCards[0]")
        two = [card, {"title": "u", "suggestions": [reply("a"), reply("b")]}]
        assert "one suggestion" in refused(
            {"type": "rich_card", "richCards": two}, "message.richCards[1].suggestions"
        )
        many = {"title": "t", "suggestions": [reply(f"c{n}") for n in range(3)]}
        refused(
            {"type": "rich_card", "richCards": [many], "suggestions": [reply(f"m{n}") for n in range(3)]},
            "message.suggestions",
        )
        refused({"type": "rich_card", "richCards": [card], "message": "text"}, "message.message")


@pytest.mark.parametrize("kind", ["video", "location", "zalo_zns_template", ""])
def test_other_types_are_refused(kind: str):
    refused({"type": kind, "message": "x"}, "message.type")


def test_the_example_message_passes():
    PROVIDER.check_message(PROVIDER.example_message, PROVIDER.sandbox_credentials)
