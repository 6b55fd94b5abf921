"""The pure MMP → Viber Bot mapping: shapes per type and limits that name the MMP field."""

from __future__ import annotations

import re
from typing import Any

import pytest

from openmmp.providers.viber_bot.client import check_sender_name, to_viber_bot_payload


class TestTypesMapToViberBodies:
    def test_text_becomes_a_text_message(self) -> None:
        assert to_viber_bot_payload({"type": "text", "message": "Hello Dara"}) == {
            "type": "text",
            "text": "Hello Dara",
        }

    def test_picture_carries_media_caption_and_thumbnail(self) -> None:
        payload = to_viber_bot_payload(
            {
                "type": "picture",
                "message": "Our new shop",
                "fileUrl": "https://example.com/a.jpg",
                "thumbnailUrl": "https://example.com/t.jpg",
            }
        )
        assert payload == {
            "type": "picture",
            "media": "https://example.com/a.jpg",
            "text": "Our new shop",
            "thumbnail": "https://example.com/t.jpg",
        }

    def test_picture_without_caption_sends_an_empty_text(self) -> None:
        payload = to_viber_bot_payload({"type": "picture", "fileUrl": "https://example.com/a.jpg"})
        assert payload["text"] == ""

    def test_video_carries_its_size(self) -> None:
        payload = to_viber_bot_payload(
            {"type": "video", "fileUrl": "https://example.com/v.mp4", "fileSize": 1234, "message": "Watch"}
        )
        assert payload == {
            "type": "video",
            "media": "https://example.com/v.mp4",
            "size": 1234,
            "text": "Watch",
        }

    def test_file_carries_size_and_name(self) -> None:
        payload = to_viber_bot_payload(
            {"type": "file", "fileUrl": "https://example.com/f.pdf", "fileSize": 99, "fileName": "bill.pdf"}
        )
        assert payload == {
            "type": "file",
            "media": "https://example.com/f.pdf",
            "size": 99,
            "file_name": "bill.pdf",
        }


class TestSuggestionsBecomeAKeyboard:
    def test_reply_open_url_and_dial_map_to_viber_action_types(self) -> None:
        payload = to_viber_bot_payload(
            {
                "type": "text",
                "message": "Pick one",
                "suggestions": [
                    {"action": "reply", "text": "Yes", "postbackData": "answer-yes"},
                    {"action": "reply", "text": "No"},
                    {"action": "open-url", "text": "Open", "postbackData": "https://example.com"},
                    {"action": "dial", "text": "Call us", "postbackData": "85512345678"},
                ],
            }
        )
        keyboard = payload["keyboard"]
        assert keyboard["Type"] == "keyboard"
        actions = [(b["ActionType"], b["ActionBody"], b["Text"]) for b in keyboard["Buttons"]]
        assert actions == [
            ("reply", "answer-yes", "Yes"),
            ("reply", "No", "No"),
            ("open-url", "https://example.com", "Open"),
            ("open-url", "tel:+85512345678", "Call us"),
        ]

    def test_button_text_is_escaped_so_it_is_not_taken_as_markup(self) -> None:
        payload = to_viber_bot_payload(
            {"type": "text", "message": "x", "suggestions": [{"action": "reply", "text": "<b>A&B</b>"}]}
        )
        assert payload["keyboard"]["Buttons"][0]["Text"] == "&lt;b&gt;A&amp;B&lt;/b&gt;"

    def test_no_suggestions_means_no_keyboard(self) -> None:
        assert "keyboard" not in to_viber_bot_payload({"type": "text", "message": "x", "suggestions": []})


class TestRichCardsBecomeARichMediaCarousel:
    def test_each_card_fills_one_six_by_seven_block(self) -> None:
        cards: list[dict[str, Any]] = [
            {
                "title": "Phone",
                "description": "Brand new",
                "image": "https://example.com/1.jpg",
                "suggestions": [
                    {"action": "open-url", "text": "Buy", "postbackData": "https://example.com/buy"},
                    {"action": "reply", "text": "Later", "postbackData": "later"},
                ],
            },
            {"title": "Case"},
            {"image": "https://example.com/3.jpg", "suggestions": [{"action": "reply", "text": "Info"}]},
        ]
        payload = to_viber_bot_payload({"type": "rich_card", "richCards": cards})
        assert payload["type"] == "rich_media"
        assert payload["min_api_version"] == 2
        assert payload["alt_text"] == "Phone"
        rich = payload["rich_media"]
        assert (rich["ButtonsGroupColumns"], rich["ButtonsGroupRows"]) == (6, 7)
        buttons = rich["Buttons"]
        # Blocks are laid out in order; every block's rows must add up to 7 or the carousel misaligns.
        sizes = [
            len(card.get("suggestions", [])) + bool(card.get("image")) + bool(card.get("title"))
            for card in cards
        ]
        offset = 0
        for size in sizes:
            block = buttons[offset : offset + size]
            assert sum(button["Rows"] for button in block) == 7
            offset += size
        assert offset == len(buttons)
        assert buttons[0]["Image"] == "https://example.com/1.jpg"
        assert buttons[1]["Text"] == "<b>Phone</b><br>Brand new"
        assert (buttons[2]["ActionType"], buttons[2]["ActionBody"]) == ("open-url", "https://example.com/buy")

    def test_the_message_text_becomes_the_fallback_alt_text(self) -> None:
        payload = to_viber_bot_payload(
            {"type": "rich_card", "message": "Our offers", "richCards": [{"title": "A"}]}
        )
        assert payload["alt_text"] == "Our offers"

    def test_message_level_suggestions_add_a_keyboard(self) -> None:
        payload = to_viber_bot_payload(
            {
                "type": "rich_card",
                "richCards": [{"title": "A"}],
                "suggestions": [{"action": "reply", "text": "Menu"}],
            }
        )
        assert payload["keyboard"]["Buttons"][0]["Text"] == "Menu"


class TestLimitsNameTheMmpField:
    @pytest.mark.parametrize(
        ("message", "error"),
        [
            ({"type": "text", "message": "x" * 7001}, "message.message: at most 7000 characters"),
            ({"type": "text", "message": ""}, "message.message: required"),
            ({"type": "text"}, "message.message: required"),
            ({"type": "video", "fileUrl": "https://e/v.mp4"}, "message.fileSize: required"),
            ({"type": "file", "fileUrl": "https://e/f", "fileSize": 1}, "message.fileName: required"),
            ({"type": "file", "fileUrl": "https://e/f", "fileName": "a.pdf"}, "message.fileSize: required"),
            (
                {"type": "video", "fileUrl": "https://e/v", "fileSize": -1},
                "message.fileSize: must be a positive",
            ),
            ({"type": "picture"}, "message.fileUrl: required"),
            ({"type": "listPicker"}, "message.type: 'listPicker' is not supported on Viber Bot"),
            ({"message": "x"}, "message.type: required"),
            (
                {"type": "text", "message": "x", "suggestions": [{"action": "reply", "text": "x" * 26}]},
                "message.suggestions[0].text: at most 25 characters",
            ),
            (
                {"type": "text", "message": "x", "suggestions": [{"action": "open-url", "text": "Go"}]},
                "message.suggestions[0].postbackData: the URL to open is required",
            ),
            (
                {"type": "text", "message": "x", "suggestions": [{"action": "VIEW_LOCATION", "text": "Map"}]},
                "message.suggestions[0].action: 'VIEW_LOCATION' is not supported",
            ),
            (
                {
                    "type": "rich_card",
                    "richCards": [{"title": "A", "suggestions": [{"action": "reply", "text": "y" * 26}]}],
                },
                "message.richCards[0].suggestions[0].text: at most 25 characters",
            ),
            ({"type": "rich_card", "richCards": [{"title": "A"}] * 7}, "message.richCards: at most 6 cards"),
            ({"type": "rich_card", "richCards": []}, "message.richCards: at least one card"),
            ({"type": "rich_card", "richCards": [{"title": "A"}, {}]}, "message.richCards[1]: needs a title"),
        ],
    )
    def test_violations_raise_value_error_naming_the_field(self, message: dict[str, Any], error: str) -> None:
        with pytest.raises(ValueError, match="^" + re.escape(error)):
            to_viber_bot_payload(message)

    def test_text_of_exactly_7000_characters_is_allowed(self) -> None:
        assert len(to_viber_bot_payload({"type": "text", "message": "x" * 7000})["text"]) == 7000

    def test_sender_name_is_at_most_28_characters(self) -> None:
        check_sender_name("x" * 28)
        with pytest.raises(ValueError, match=r"^credentials\.senderName: at most 28 characters"):
            check_sender_name("x" * 29)
