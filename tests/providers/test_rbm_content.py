"""RBM's AgentMessages built from MMP message objects, and RBM's limits checked when a send is accepted."""

from __future__ import annotations

import json
from typing import Any

import pytest

from openmmp.providers.rbm.client import agent_message, message_id, ttl
from openmmp.providers.rbm.content import content_message
from openmmp.providers.rbm.provider import RbmProvider

PROVIDER = RbmProvider()
IMAGE = "https://cdn.bank.example/card.png"


def refused(message: dict[str, Any]) -> str:
    """The accept-time refusal of `message` (what the API answers 400 with: "<field>: <what>")."""
    with pytest.raises(ValueError, match=": ") as caught:
        PROVIDER.check_message(message, PROVIDER.sandbox_credentials)
    return str(caught.value)


def card(n: int = 0, **extra: Any) -> dict[str, Any]:
    return {"title": f"Card {n}", "description": "Our new card", "image": IMAGE, **extra}


def reply(text: str = "Yes", data: str | None = None) -> dict[str, Any]:
    found = {"action": "reply", "text": text}
    if data is not None:
        found["postbackData"] = data
    return found


class TestTextAndFiles:
    def test_text_is_a_text_message(self):
        assert content_message({"type": "text", "message": "Your code is 4711"}) == {
            "text": "Your code is 4711"
        }

    @pytest.mark.parametrize("kind", ["picture", "video", "file"])
    def test_a_file_goes_by_url_with_its_thumbnail(self, kind: str):
        message = {"type": kind, "fileUrl": IMAGE, "thumbnailUrl": f"{IMAGE}?thumb", "fileName": "card.png"}
        assert content_message(message) == {
            "contentInfo": {"fileUrl": IMAGE, "thumbnailUrl": f"{IMAGE}?thumb", "forceRefresh": False}
        }

    def test_text_has_at_most_3072_characters(self):
        assert content_message({"type": "text", "message": "x" * 3072})
        assert (
            refused({"type": "text", "message": "x" * 3073})
            == "message.message: at most 3072 characters on RCS"
        )
        assert refused({"type": "text"}) == "message.message: required"

    def test_a_file_carries_no_caption_and_at_most_100_mib(self):
        assert refused({"type": "picture", "fileUrl": IMAGE, "message": "Look"}).startswith(
            "message.message: an RCS picture carries no text"
        )
        assert refused({"type": "video", "fileUrl": IMAGE, "fileSize": 100 * 1024 * 1024 + 1}) == (
            "message.fileSize: at most 100 MiB on RCS"
        )
        assert refused({"type": "file"}) == "message.fileUrl: required"


class TestRichCards:
    def test_one_card_is_a_vertical_standalone_card_with_its_chips(self):
        message = {
            "type": "rich_card",
            "richCards": [card(suggestions=[reply("Activate", "activate-4711")])],
            "suggestions": [
                {"action": "open-url", "text": "Terms", "postbackData": "https://bank.example/t"}
            ],
        }
        assert content_message(message) == {
            "richCard": {
                "standaloneCard": {
                    "cardOrientation": "VERTICAL",
                    "cardContent": {
                        "title": "Card 0",
                        "description": "Our new card",
                        "media": {
                            "contentInfo": {"fileUrl": IMAGE, "forceRefresh": False},
                            "height": "MEDIUM",
                        },
                        "suggestions": [{"reply": {"text": "Activate", "postbackData": "activate-4711"}}],
                    },
                }
            },
            "suggestions": [
                {
                    "action": {
                        "text": "Terms",
                        "postbackData": "https://bank.example/t",
                        "openUrlAction": {"url": "https://bank.example/t"},
                    }
                }
            ],
        }

    def test_a_horizontal_card_puts_its_image_left_or_right(self):
        options = {"type": "STANDALONE", "orientation": "horizontal", "imageAlign": "RIGHT"}
        built = content_message({"type": "rich_card", "richCards": [card()], "rcsRichCardsOpts": options})
        standalone = built["richCard"]["standaloneCard"]
        assert (standalone["cardOrientation"], standalone["thumbnailImageAlignment"]) == (
            "HORIZONTAL",
            "RIGHT",
        )
        assert "height" not in standalone["cardContent"]["media"]
        left = content_message(
            {
                "type": "rich_card",
                "richCards": [card()],
                "rcsRichCardsOpts": {"type": "STANDALONE", "orientation": "HORIZONTAL"},
            }
        )
        assert left["richCard"]["standaloneCard"]["thumbnailImageAlignment"] == "LEFT"

    def test_two_to_ten_cards_are_a_carousel(self):
        cards = [card(n, suggestions=[reply(f"Pick {n}")]) for n in range(10)]
        built = content_message(
            {"type": "rich_card", "richCards": cards, "rcsRichCardsOpts": {"type": "CAROUSEL"}}
        )
        carousel = built["richCard"]["carouselCard"]
        assert carousel["cardWidth"] == "MEDIUM"
        assert [c["title"] for c in carousel["cardContents"]] == [f"Card {n}" for n in range(10)]
        assert carousel["cardContents"][3]["suggestions"] == [
            {"reply": {"text": "Pick 3", "postbackData": "Pick 3"}}
        ]
        assert all(c["media"]["height"] == "MEDIUM" for c in carousel["cardContents"])

    @pytest.mark.parametrize(
        ("message", "error"),
        [
            (
                {"richCards": [card(n) for n in range(11)]},
                "message.richCards: at most 10 cards in an RCS carousel",
            ),
            ({"richCards": []}, "message.richCards: required, one card or a carousel of 2 to 10"),
            (
                {"richCards": [card(), card(1)], "rcsRichCardsOpts": {"type": "STANDALONE"}},
                "message.richCards: a STANDALONE rich card is exactly one card",
            ),
            (
                {"richCards": [card()], "rcsRichCardsOpts": {"type": "CAROUSEL"}},
                "message.richCards: an RCS carousel has 2 to 10 cards",
            ),
            (
                {
                    "richCards": [card(), card(1)],
                    "rcsRichCardsOpts": {"type": "CAROUSEL", "orientation": "VERTICAL"},
                },
                "message.rcsRichCardsOpts.orientation: only for a standalone card, not a carousel",
            ),
            (
                {"richCards": [card()], "rcsRichCardsOpts": {"type": "STANDALONE", "imageAlign": "LEFT"}},
                "message.rcsRichCardsOpts.imageAlign: only with a HORIZONTAL orientation",
            ),
            (
                {
                    "richCards": [card()],
                    "rcsRichCardsOpts": {"type": "STANDALONE", "orientation": "DIAGONAL"},
                },
                "message.rcsRichCardsOpts.orientation: one of VERTICAL, HORIZONTAL",
            ),
            (
                {"richCards": [card(), card(1, title="x" * 201)]},
                "message.richCards[1].title: at most 200 characters on RCS",
            ),
            (
                {"richCards": [card(description="x" * 2001)]},
                "message.richCards[0].description: at most 2000 characters on RCS",
            ),
            ({"richCards": [card(), {}]}, "message.richCards[1]: needs a title, a description or an image"),
            (
                {"richCards": [card(), card(1, suggestions=[reply(str(n)) for n in range(5)])]},
                "message.richCards[1].suggestions: at most 4 on RCS",
            ),
            (
                {"richCards": [card()], "message": "Hello"},
                "message.message: an RCS rich card carries its text in richCards[].title and .description",
            ),
        ],
    )
    def test_rbm_limits_are_refused_naming_the_field(self, message: dict[str, Any], error: str):
        assert refused({"type": "rich_card", **message}) == error


class TestSuggestions:
    def test_each_action_type_becomes_its_rbm_action(self):
        event = {
            "startTime": "2026-03-01T09:00:00Z",
            "endTime": "2026-03-01T10:00:00+00:00",
            "title": "Visit",
        }
        chips = [
            reply("Yes"),
            {"action": "open-url", "text": "Open", "postbackData": "https://bank.example"},
            {"action": "dial", "text": "Call us", "postbackData": "+855 23 430 999"},
            {"action": "VIEW_LOCATION", "text": "Branch", "postbackData": "11.5564, 104.9282"},
            {"action": "VIEW_LOCATION", "text": "Near me", "postbackData": "ACME Bank Phnom Penh"},
            {"action": "SHARE_LOCATION", "text": "Share"},
            {"action": "CalendarEventAction", "text": "Remind me", "postbackData": json.dumps(event)},
        ]
        built = content_message({"type": "text", "message": "Hi", "suggestions": chips})["suggestions"]
        assert built[0] == {"reply": {"text": "Yes", "postbackData": "Yes"}}
        assert built[1]["action"]["openUrlAction"] == {"url": "https://bank.example"}
        assert built[2]["action"]["dialAction"] == {"phoneNumber": "+85523430999"}
        assert built[3]["action"]["viewLocationAction"] == {
            "latLong": {"latitude": 11.5564, "longitude": 104.9282},
            "label": "Branch",
        }
        assert built[4]["action"]["viewLocationAction"] == {"query": "ACME Bank Phnom Penh"}
        assert built[5]["action"] == {"text": "Share", "postbackData": "Share", "shareLocationAction": {}}
        assert built[6]["action"] == {
            "text": "Remind me",
            "postbackData": "Remind me",
            "createCalendarEventAction": {
                "startTime": "2026-03-01T09:00:00Z",
                "endTime": "2026-03-01T10:00:00+00:00",
                "title": "Visit",
                "description": "Visit",
            },
        }

    @pytest.mark.parametrize(
        ("chips", "error"),
        [
            ([reply(str(n)) for n in range(12)], "message.suggestions: at most 11 on RCS"),
            ([reply(), reply("x" * 26)], "message.suggestions[1].text: at most 25 characters on RCS"),
            ([{"action": "open-url", "text": "Open"}], "message.suggestions[0].postbackData: required"),
            (
                [{"action": "dial", "text": "Call", "postbackData": "023 430 999"}],
                "message.suggestions[0].postbackData: the number to dial, in E.164 (+ and up to 15 digits)",
            ),
            (
                [{"action": "VIEW_LOCATION", "text": "Go", "postbackData": "91.0, 10.0"}],
                "message.suggestions[0].postbackData: latitude -90 to 90, longitude -180 to 180",
            ),
            (
                [{"action": "CalendarEventAction", "text": "Remind", "postbackData": "tomorrow"}],
                'message.suggestions[0].postbackData: a JSON object {"startTime", "endTime", "title"?, '
                '"description"?} (RFC 3339 times)',
            ),
            (
                [
                    {
                        "action": "CalendarEventAction",
                        "text": "Remind",
                        "postbackData": '{"startTime": "2026-03-01T10:00:00Z", "endTime": "2026-03-01T09:00:00Z"}',
                    }
                ],
                "message.suggestions[0].postbackData: endTime must be after startTime",
            ),
        ],
    )
    def test_what_rbm_cannot_show_is_refused_naming_the_chip(self, chips: list[dict[str, Any]], error: str):
        assert refused({"type": "text", "message": "Hi", "suggestions": chips}) == error

    def test_eleven_chips_and_25_character_labels_pass(self):
        chips = [reply(f"{n:02d}" + "x" * 23) for n in range(11)]
        assert (
            len(content_message({"type": "text", "message": "Hi", "suggestions": chips})["suggestions"]) == 11
        )


class TestTheAgentMessage:
    def test_it_carries_the_traffic_type_and_a_ttl_from_the_expiry(self):
        body = agent_message(
            {"type": "text", "message": "Hi"},
            traffic_type="AUTHENTICATION",
            expire_at_ms=1_000_000,
            now=900_500,
        )
        assert body == {
            "contentMessage": {"text": "Hi"},
            "messageTrafficType": "AUTHENTICATION",
            "ttl": "100s",
        }
        assert "ttl" not in agent_message(
            {"type": "text", "message": "Hi"}, traffic_type="T", expire_at_ms=None, now=0
        )

    def test_the_ttl_is_at_least_a_second_and_at_most_thirty_days(self):
        assert ttl(1_000, 5_000) == "1s"
        assert ttl(10**12, 0) == f"{30 * 86_400}s"

    def test_the_message_id_is_the_same_on_every_attempt_and_no_other_channels(self):
        assert message_id("channel-a", 42) == message_id("channel-a", 42)
        assert message_id("channel-a", 42) != message_id("channel-b", 42)
        assert message_id("channel-a", 42) != message_id("channel-a", 43)
        assert len(message_id("channel-a", 42)) == 36
