"""MMP messages → Bot API calls, and the limits `check_message` enforces (each naming the MMP field)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from openmmp.providers.telegram.client import BotRequest, to_telegram_request, utf16_length
from openmmp.providers.telegram.provider import TelegramProvider

PROVIDER = TelegramProvider()
PICTURE = "https://cdn.example.com/card.jpg"


def request(message: dict[str, Any]) -> BotRequest:
    return to_telegram_request(message)


class TestTypesMapToMethods:
    def test_text_becomes_send_message(self):
        assert request({"type": "text", "message": "Hello Dara"}) == BotRequest(
            "sendMessage", {"text": "Hello Dara"}
        )

    @pytest.mark.parametrize(
        ("kind", "method", "field"),
        [
            ("picture", "sendPhoto", "photo"),
            ("video", "sendVideo", "video"),
            ("file", "sendDocument", "document"),
        ],
    )
    def test_media_go_by_url_with_the_message_as_caption(self, kind: str, method: str, field: str):
        sent = request({"type": kind, "fileUrl": PICTURE, "message": "Your receipt"})
        assert sent == BotRequest(method, {field: PICTURE, "caption": "Your receipt"})

    def test_media_without_a_caption_send_none(self):
        assert request({"type": "picture", "fileUrl": PICTURE}).params == {"photo": PICTURE}

    def test_thumbnail_and_file_name_are_not_sent_since_telegram_takes_them_only_uploaded(self):
        sent = request(
            {
                "type": "file",
                "fileUrl": "https://cdn.example.com/statement.pdf",
                "fileName": "statement.pdf",
                "fileSize": 1024,
                "thumbnailUrl": PICTURE,
            }
        )
        assert sent.params == {"document": "https://cdn.example.com/statement.pdf"}


class TestSuggestionsBecomeAnInlineKeyboard:
    def test_reply_is_callback_data_and_open_url_a_url_one_button_a_row(self):
        sent = request(
            {
                "type": "text",
                "message": "Pick one",
                "suggestions": [
                    {"action": "reply", "text": "Yes", "postbackData": "answer=yes"},
                    {"action": "reply", "text": "No"},
                    {"action": "open-url", "text": "Site", "postbackData": "https://bank.example"},
                ],
            }
        )
        assert sent.params["reply_markup"] == {
            "inline_keyboard": [
                [{"text": "Yes", "callback_data": "answer=yes"}],
                [{"text": "No", "callback_data": "No"}],
                [{"text": "Site", "url": "https://bank.example"}],
            ]
        }

    def test_no_suggestions_means_no_keyboard(self):
        assert "reply_markup" not in request({"type": "text", "message": "hi", "suggestions": []}).params

    def test_media_carry_a_keyboard_too(self):
        sent = request(
            {"type": "video", "fileUrl": PICTURE, "suggestions": [{"action": "reply", "text": "More"}]}
        )
        assert sent.params["reply_markup"] == {
            "inline_keyboard": [[{"text": "More", "callback_data": "More"}]]
        }


class TestRichCards:
    def test_a_card_with_an_image_is_a_photo_with_a_bold_title_and_its_buttons_first(self):
        sent = request(
            {
                "type": "rich_card",
                "richCards": [
                    {
                        "title": "Gold card 🙂",
                        "description": "No annual fee",
                        "image": PICTURE,
                        "suggestions": [{"action": "reply", "text": "Apply", "postbackData": "apply"}],
                    }
                ],
                "suggestions": [{"action": "open-url", "text": "Terms", "postbackData": "https://t.example"}],
            }
        )
        assert sent == BotRequest(
            "sendPhoto",
            {
                "photo": PICTURE,
                "caption": "Gold card 🙂\nNo annual fee",
                # The emoji counts two UTF-16 units, as Telegram's offsets do.
                "caption_entities": [{"type": "bold", "offset": 0, "length": 12}],
                "reply_markup": {
                    "inline_keyboard": [
                        [{"text": "Apply", "callback_data": "apply"}],
                        [{"text": "Terms", "url": "https://t.example"}],
                    ]
                },
            },
        )

    def test_a_card_without_an_image_is_a_text_message(self):
        sent = request({"type": "rich_card", "richCards": [{"description": "Only words"}]})
        assert sent == BotRequest("sendMessage", {"text": "Only words"})

    def test_a_card_without_title_or_description_takes_the_message_as_caption(self):
        sent = request({"type": "rich_card", "message": "Look", "richCards": [{"image": PICTURE}]})
        assert sent == BotRequest("sendPhoto", {"photo": PICTURE, "caption": "Look"})


class TestLimitsNameTheMmpField:
    @pytest.mark.parametrize(
        ("message", "error"),
        [
            ({"type": "location"}, "message.type: 'location' is not supported on Telegram"),
            ({"type": "text"}, "message.message: required"),
            ({"type": "text", "message": "x" * 4097}, "message.message: at most 4096 characters"),
            ({"type": "text", "message": "🙂" * 2049}, "message.message: at most 4096 characters"),
            ({"type": "picture", "fileUrl": PICTURE, "message": "x" * 1025}, "message.message: at most 1024"),
            ({"type": "picture"}, "message.fileUrl: required"),
            ({"type": "picture", "fileUrl": PICTURE, "fileSize": 5 * 1024 * 1024 + 1}, "message.fileSize: "),
            ({"type": "file", "fileUrl": PICTURE, "fileSize": 20 * 1024 * 1024 + 1}, "message.fileSize: "),
            (
                {
                    "type": "text",
                    "message": "m",
                    "suggestions": [{"action": "reply", "text": "t", "postbackData": "d" * 65}],
                },
                "message.suggestions[0].postbackData: at most 64 bytes",
            ),
            (
                {"type": "text", "message": "m", "suggestions": [{"action": "reply", "text": "ស" * 22}]},
                "message.suggestions[0].text: at most 64 bytes",
            ),
            (
                {
                    "type": "text",
                    "message": "m",
                    "suggestions": [{"action": "dial", "text": "Call", "postbackData": "855"}],
                },
                "message.suggestions[0].action: 'dial' is not supported on Telegram",
            ),
            (
                {"type": "text", "message": "m", "suggestions": [{"action": "open-url", "text": "Go"}]},
                "message.suggestions[0].postbackData: the URL to open is required",
            ),
            (
                {"type": "rich_card", "richCards": [{"title": "a"}, {"title": "b"}]},
                "message.richCards: Telegram shows one card per message",
            ),
            ({"type": "rich_card", "richCards": [{}]}, "message.richCards[0]: needs a title"),
            (
                {
                    "type": "rich_card",
                    "richCards": [{"title": "t", "description": "d" * 1023, "image": PICTURE}],
                },
                "message.richCards[0].description: the title and description make at most 1024",
            ),
            (
                {
                    "type": "rich_card",
                    "richCards": [
                        {"title": "t", "suggestions": [{"action": "SHARE_LOCATION", "text": "Here"}]}
                    ],
                },
                "message.richCards[0].suggestions[0].action: 'SHARE_LOCATION'",
            ),
        ],
    )
    def test_violations_raise_value_error_naming_the_field(self, message: dict[str, Any], error: str):
        with pytest.raises(ValueError, match=f"^{re.escape(error)}"):
            PROVIDER.check_message(message, {"botToken": "123:abc"})

    def test_the_limits_themselves_are_allowed(self):
        PROVIDER.check_message({"type": "text", "message": "x" * 4096}, {})
        PROVIDER.check_message({"type": "picture", "fileUrl": PICTURE, "message": "x" * 1024}, {})
        PROVIDER.check_message(
            {
                "type": "text",
                "message": "m",
                "suggestions": [{"action": "reply", "text": "t", "postbackData": "d" * 64}],
            },
            {},
        )
        PROVIDER.check_message({"type": "picture", "fileUrl": PICTURE, "fileSize": 5 * 1024 * 1024}, {})

    def test_utf16_length_counts_astral_characters_twice(self):
        assert utf16_length("a🙂ស") == 4
