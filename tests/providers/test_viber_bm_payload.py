"""The pure MMP → Viber Business Messages mapping: type codes per label and limits naming the field."""

from __future__ import annotations

import re
from typing import Any

import pytest

from openmmp.providers.viber.client import to_viber_bm_message, to_viber_bm_payload

OPEN = {"action": "open-url", "text": "Open", "postbackData": "https://example.com"}


def card(title: str = "Phone", **extra: Any) -> dict[str, Any]:
    return {"title": title, "image": "https://e/c.jpg", "suggestions": [OPEN], **extra}


class TestTypeCodes:
    @pytest.mark.parametrize(("label", "code"), [(None, 206), ("transaction", 206), ("promotion", 225)])
    def test_text_is_206_transactional_or_225_promotional(self, label: str | None, code: int) -> None:
        assert to_viber_bm_message({"type": "text", "message": "Hi"}, label=label) == {
            "type": code,
            "message": {"#txt": "Hi"},
        }

    @pytest.mark.parametrize(("label", "code"), [("transaction", 209), ("promotion", 109)])
    def test_text_with_one_open_url_suggestion_is_text_and_button(self, label: str, code: int) -> None:
        mapped = to_viber_bm_message({"type": "text", "message": "Hi", "suggestions": [OPEN]}, label=label)
        assert mapped == {
            "type": code,
            "message": {"#txt": "Hi", "#caption": "Open", "#action": "https://example.com"},
        }

    @pytest.mark.parametrize(("label", "code"), [("transaction", 207), ("promotion", 107)])
    def test_a_picture_alone_is_an_image(self, label: str, code: int) -> None:
        mapped = to_viber_bm_message({"type": "picture", "fileUrl": "https://e/p.jpg"}, label=label)
        assert mapped == {"type": code, "message": {"#img": "https://e/p.jpg"}}

    @pytest.mark.parametrize(("label", "code"), [("transaction", 208), ("promotion", 108)])
    def test_a_picture_with_text_and_button_is_image_text_button(self, label: str, code: int) -> None:
        message = {"type": "picture", "fileUrl": "https://e/p.jpg", "message": "Sale", "suggestions": [OPEN]}
        assert to_viber_bm_message(message, label=label) == {
            "type": code,
            "message": {
                "#txt": "Sale",
                "#img": "https://e/p.jpg",
                "#caption": "Open",
                "#action": "https://example.com",
            },
        }

    def test_a_file_is_220_with_its_type_from_the_name(self) -> None:
        mapped = to_viber_bm_message({"type": "file", "fileUrl": "https://e/f", "fileName": "Bill.PDF"})
        assert mapped == {
            "type": 220,
            "message": {"#media": "https://e/f", "#fileName": "Bill.PDF"},
            "file_type": "pdf",
        }

    def test_a_video_is_230_with_size_thumbnail_and_optional_duration(self) -> None:
        message = {
            "type": "video",
            "fileUrl": "https://e/v.mp4",
            "thumbnailUrl": "https://e/t.jpg",
            "fileSize": 1000,
            "duration": 30,
        }
        assert to_viber_bm_message(message) == {
            "type": 230,
            "message": {"#media": "https://e/v.mp4", "#thumbnail": "https://e/t.jpg"},
            "file_size": 1000,
            "duration": 30,
        }

    def test_two_to_five_rich_cards_are_a_901_carousel(self) -> None:
        second = card(
            "Case", suggestions=[OPEN, {"action": "open-url", "text": "Details", "postbackData": "https://d"}]
        )
        mapped = to_viber_bm_message(
            {"type": "rich_card", "message": "Offers", "richCards": [card(), second]}
        )
        assert mapped["type"] == 901
        assert mapped["message"] == {"#txt": "Offers"}
        assert mapped["carousel"]["items"] == [
            {
                "title": "Phone",
                "imageUrl": "https://e/c.jpg",
                "primaryButton": {"label": "Open", "actionUrl": "https://example.com"},
            },
            {
                "title": "Case",
                "imageUrl": "https://e/c.jpg",
                "primaryButton": {"label": "Open", "actionUrl": "https://example.com"},
                "secondaryButton": {"label": "Details", "actionUrl": "https://d"},
            },
        ]

    def test_the_full_payload_addresses_the_phone_with_seq_and_ttl(self) -> None:
        body = to_viber_bm_payload(
            service_id=4711,
            dest="+85512345678",
            seq=99,
            label=None,
            message={"type": "text", "message": "Hi"},
            ttl=3600,
        )
        assert body == {
            "service_id": 4711,
            "dest": "85512345678",
            "seq": 99,
            "label": "transaction",
            "type": 206,
            "message": {"#txt": "Hi"},
            "ttl": 3600,
        }

    def test_no_ttl_leaves_the_upstream_default(self) -> None:
        body = to_viber_bm_payload(
            service_id=1,
            dest="85512345678",
            seq=1,
            label=None,
            message={"type": "text", "message": "x"},
            ttl=None,
        )
        assert "ttl" not in body


class TestLimitsNameTheMmpField:
    @pytest.mark.parametrize(
        ("message", "error"),
        [
            ({"type": "text", "message": "x" * 1001}, "message.message: at most 1000 characters"),
            ({"type": "text"}, "message.message: required"),
            (
                {"type": "text", "message": "x", "suggestions": [{**OPEN, "text": "c" * 31}]},
                "message.suggestions[0].text: at most 30 characters",
            ),
            (
                {"type": "text", "message": "x", "suggestions": [OPEN, OPEN]},
                "message.suggestions: Viber allows exactly one",
            ),
            (
                {"type": "text", "message": "x", "suggestions": [{"action": "reply", "text": "Yes"}]},
                "message.suggestions[0].action: Viber supports only open-url",
            ),
            (
                {"type": "picture", "fileUrl": "https://e/p", "message": "x"},
                "message.message: a Viber picture with text",
            ),
            (
                {"type": "picture", "fileUrl": "https://e/p", "suggestions": [OPEN]},
                "message.message: a Viber picture with a button",
            ),
            ({"type": "picture"}, "message.fileUrl: required"),
            (
                {"type": "file", "fileUrl": "https://e/f", "fileName": "a" * 22 + ".pdf"},
                "message.fileName: at most 25",
            ),
            (
                {"type": "file", "fileUrl": "https://e/f", "fileName": "README"},
                "message.fileName: needs an extension",
            ),
            (
                {"type": "file", "fileUrl": "https://e/f", "fileName": "a.pdf", "message": "x"},
                "message.message: not supported",
            ),
            (
                {"type": "video", "fileUrl": "https://e/v", "thumbnailUrl": "https://e/t"},
                "message.fileSize: required",
            ),
            ({"type": "video", "fileUrl": "https://e/v", "fileSize": 1}, "message.thumbnailUrl: required"),
            (
                {
                    "type": "video",
                    "fileUrl": "https://e/v",
                    "thumbnailUrl": "https://e/t",
                    "fileSize": 200 * 1024 * 1024 + 1,
                },
                "message.fileSize: at most 200 MB",
            ),
            (
                {"type": "rich_card", "richCards": [card()]},
                "message.richCards: a Viber carousel needs 2 to 5 cards",
            ),
            (
                {"type": "rich_card", "richCards": [card()] * 6},
                "message.richCards: a Viber carousel needs 2 to 5 cards",
            ),
            (
                {"type": "rich_card", "richCards": [card(), card("x")]},
                "message.richCards[1].title: 2 to 38 characters",
            ),
            (
                {"type": "rich_card", "richCards": [card(), card(description="d")]},
                "message.richCards[1].description",
            ),
            (
                {"type": "rich_card", "richCards": [card(), card(suggestions=[{**OPEN, "text": "t" * 11}])]},
                "message.richCards[1].suggestions[0].text: at most 10 characters",
            ),
            (
                {"type": "rich_card", "richCards": [card(), card(suggestions=[])]},
                "message.richCards[1].suggestions",
            ),
            ({"type": "location", "location": {}}, "message.type: 'location' is not supported on Viber"),
        ],
    )
    def test_violations_raise_value_error_naming_the_field(self, message: dict[str, Any], error: str) -> None:
        with pytest.raises(ValueError, match="^" + re.escape(error)):
            to_viber_bm_message(message)

    @pytest.mark.parametrize(
        ("overrides", "error"),
        [
            ({"ttl": 29}, "expire.ttl: between 30 and 1209600 seconds"),
            ({"ttl": 1_209_601}, "expire.ttl: between 30 and 1209600 seconds"),
            ({"label": "marketing"}, "credentials.label: must be transaction or promotion"),
            ({"dest": "1234567"}, "phone: must be an E.164 number"),
            ({"dest": "85512345678a"}, "phone: must be an E.164 number"),
            ({"service_id": "4711"}, "credentials.serviceId: must be a positive integer"),
        ],
    )
    def test_addressing_errors_name_the_field(self, overrides: dict[str, Any], error: str) -> None:
        arguments: dict[str, Any] = {
            "service_id": 4711,
            "dest": "85512345678",
            "seq": 1,
            "label": None,
            "message": {"type": "text", "message": "x"},
            "ttl": None,
            **overrides,
        }
        with pytest.raises(ValueError, match="^" + re.escape(error)):
            to_viber_bm_payload(**arguments)

    def test_the_ttl_bounds_themselves_are_allowed(self) -> None:
        for ttl in (30, 1_209_600):
            body = to_viber_bm_payload(
                service_id=1,
                dest="85512345678",
                seq=1,
                label=None,
                message={"type": "text", "message": "x"},
                ttl=ttl,
            )
            assert body["ttl"] == ttl
