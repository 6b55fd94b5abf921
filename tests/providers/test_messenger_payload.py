"""The Messenger provider's declarations and credentials, and MMP messages → the Send API's `message`
object with Messenger's limits (each refusal naming the MMP field)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from openmmp.providers.applications import Application
from openmmp.providers.base import Addressing
from openmmp.providers.messenger.client import send_body
from openmmp.providers.messenger.payload import to_messenger_message
from openmmp.providers.messenger.provider import MessengerCredentials, MessengerProvider
from openmmp.providers.registry import REGISTRY

PROVIDER = MessengerProvider()
CREDENTIALS = {"pageId": "112233445566", "pageAccessToken": "EAAB-page-token", "appSecret": "6c1a2f0e9d8b"}


def reply(text: str, data: str | None = None) -> dict[str, Any]:
    return {"action": "reply", "text": text, **({"postbackData": data} if data is not None else {})}


def card(**fields: Any) -> dict[str, Any]:
    return {"title": "Card ready", "description": "Pick it up at the branch", **fields}


def rich(*cards: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"type": "rich_card", "richCards": list(cards), **fields}


def refused(message: dict[str, Any]) -> str:
    with pytest.raises(ValueError, match=r"^message") as caught:
        PROVIDER.check_message(message, CREDENTIALS)
    return str(caught.value)


class TestCredentials:
    def test_the_wire_names_are_api_md_s(self):
        assert set(MessengerCredentials.model_validate(CREDENTIALS).model_dump(by_alias=True)) == {
            "pageId",
            "pageAccessToken",
            "appSecret",
        }

    @pytest.mark.parametrize("field", ["pageId", "pageAccessToken", "appSecret"])
    def test_every_field_is_required(self, field: str):
        given = {k: v for k, v in CREDENTIALS.items() if k != field}
        with pytest.raises(ValidationError, match=field):
            MessengerCredentials.model_validate(given)

    def test_the_page_is_the_channel(self):
        one = MessengerCredentials.model_validate(CREDENTIALS)
        same_page = MessengerCredentials.model_validate({**CREDENTIALS, "pageAccessToken": "other"})
        other_page = MessengerCredentials.model_validate({**CREDENTIALS, "pageId": "112233445567"})
        assert one.identity() == same_page.identity() != other_page.identity()
        assert MessengerCredentials.identity_name() == "credentials.pageId"


class TestDeclarations:
    def test_it_is_the_registrys_facebook(self):
        assert REGISTRY.for_application(Application.FACEBOOK).__class__ is MessengerProvider
        assert REGISTRY.by_name("messenger").__class__ is MessengerProvider
        assert REGISTRY.credentials_model(Application.FACEBOOK) is MessengerCredentials

    def test_it_sends_api_md_s_facebook_types_in_conversations(self):
        assert PROVIDER.message_types == {"text", "rich_card", "picture", "video", "file"}
        assert PROVIDER.addressing == Addressing.CONVERSATION
        assert PROVIDER.idempotent is False
        assert (PROVIDER.rate_limit.requests, PROVIDER.rate_limit.window_seconds) == (300, 1.0)
        assert PROVIDER.reports_delivery and PROVIDER.reports_read and PROVIDER.receives_messages

    def test_nothing_goes_outside_the_24_hour_window(self):
        assert PROVIDER.session_window_seconds == 86400.0
        assert PROVIDER.window_free_types == frozenset()

    def test_it_answers_meta_s_get_handshake_and_sets_every_channel_up(self):
        assert PROVIDER.verifies_with_get
        assert PROVIDER.needs_setup(sandbox=True) and PROVIDER.needs_setup(sandbox=False)

    def test_the_demo_credentials_are_the_former_pending_ones(self):
        assert PROVIDER.sandbox_credentials == {
            "pageId": "1001",
            "pageAccessToken": "demo-page-token",
            "appSecret": "demo-app-secret",
        }


class TestText:
    def test_a_text_goes_as_text_inside_the_window(self):
        body = send_body("1254477777772919", {"type": "text", "message": "Your card is ready"})
        assert body == {
            "recipient": {"id": "1254477777772919"},
            "messaging_type": "RESPONSE",
            "message": {"text": "Your card is ready"},
        }

    def test_2000_characters_at_most(self):
        PROVIDER.check_message({"type": "text", "message": "x" * 2000}, CREDENTIALS)
        assert refused({"type": "text", "message": "x" * 2001}).startswith("message.message: at most 2000")

    @pytest.mark.parametrize("text", [None, "", "   "])
    def test_a_text_needs_words(self, text: str | None):
        assert refused({"type": "text", "message": text}) == "message.message: required"

    def test_reply_suggestions_become_quick_replies(self):
        message = {"type": "text", "message": "Ready?", "suggestions": [reply("Yes", "YES_1"), reply("No")]}
        assert to_messenger_message(message) == {
            "text": "Ready?",
            "quick_replies": [
                {"content_type": "text", "title": "Yes", "payload": "YES_1"},
                {"content_type": "text", "title": "No", "payload": "No"},
            ],
        }

    def test_13_quick_replies_of_20_characters_at_most(self):
        many = {"type": "text", "message": "Pick", "suggestions": [reply(f"r{n}") for n in range(14)]}
        assert refused(many) == "message.suggestions: at most 13 quick replies on Messenger"
        long = {"type": "text", "message": "Pick", "suggestions": [reply("x" * 21)]}
        assert refused(long) == "message.suggestions[0].text: at most 20 characters on Messenger"
        heavy = {"type": "text", "message": "Pick", "suggestions": [reply("ok", "p" * 1001)]}
        assert refused(heavy).startswith("message.suggestions[0].postbackData: at most 1000")

    def test_a_link_or_a_number_makes_it_a_button_template(self):
        message = {
            "type": "text",
            "message": "Need help?",
            "suggestions": [
                {"action": "open-url", "text": "Our site", "postbackData": "https://bank.example/help"},
                {"action": "dial", "text": "Call us", "postbackData": "855 23 999 999"},
                reply("Chat", "CHAT"),
            ],
        }
        assert to_messenger_message(message) == {
            "attachment": {
                "type": "template",
                "payload": {
                    "template_type": "button",
                    "text": "Need help?",
                    "buttons": [
                        {"type": "web_url", "url": "https://bank.example/help", "title": "Our site"},
                        {"type": "phone_number", "title": "Call us", "payload": "+85523999999"},
                        {"type": "postback", "title": "Chat", "payload": "CHAT"},
                    ],
                },
            }
        }

    def test_a_button_template_has_3_buttons_and_640_characters_at_most(self):
        link = {"action": "open-url", "text": "Site", "postbackData": "https://bank.example"}
        four = {"type": "text", "message": "Pick", "suggestions": [link, reply("a"), reply("b"), reply("c")]}
        assert refused(four) == "message.suggestions: 1 to 3 buttons on Messenger"
        wordy = {"type": "text", "message": "x" * 641, "suggestions": [link]}
        assert refused(wordy).startswith("message.message: at most 640 characters on Messenger")

    @pytest.mark.parametrize(
        ("suggestion", "error"),
        [
            ({"action": "open-url", "text": "Site", "postbackData": "ftp://bank.example"}, "postbackData"),
            ({"action": "open-url", "text": "Site"}, "postbackData: required"),
            ({"action": "dial", "text": "Call", "postbackData": "call us"}, "the phone number to dial"),
            ({"action": "VIEW_LOCATION", "text": "Map"}, "'VIEW_LOCATION' is not supported on Messenger"),
            (
                {"action": "open-url", "text": "A very long button title", "postbackData": "https://a.b"},
                "at most 20",
            ),
        ],
    )
    def test_buttons_are_checked(self, suggestion: dict[str, Any], error: str):
        text = refused({"type": "text", "message": "Hi", "suggestions": [suggestion]})
        assert text.startswith("message.suggestions[0]")
        assert error in text


class TestMedia:
    @pytest.mark.parametrize(
        ("kind", "attachment"), [("picture", "image"), ("video", "video"), ("file", "file")]
    )
    def test_media_go_as_attachments_meta_fetches(self, kind: str, attachment: str):
        message = {
            "type": kind,
            "fileUrl": "https://cdn.bank.example/a.bin",
            "fileName": "a.bin",
            "fileSize": 9,
        }
        assert to_messenger_message(message) == {
            "attachment": {"type": attachment, "payload": {"url": "https://cdn.bank.example/a.bin"}}
        }

    def test_a_caption_is_refused_not_dropped(self):
        text = refused({"type": "picture", "fileUrl": "https://cdn.bank.example/a.png", "message": "Look"})
        assert text.startswith("message.message: a Messenger picture carries no text")

    @pytest.mark.parametrize("url", [None, "", "cdn.bank.example/a.png", "file:///etc/passwd"])
    def test_the_url_is_an_absolute_http_url(self, url: str | None):
        assert refused({"type": "video", "fileUrl": url}).startswith("message.fileUrl:")

    def test_only_reply_suggestions_go_with_a_picture(self):
        ok = {"type": "picture", "fileUrl": "https://cdn.bank.example/a.png", "suggestions": [reply("Nice")]}
        assert to_messenger_message(ok)["quick_replies"] == [
            {"content_type": "text", "title": "Nice", "payload": "Nice"}
        ]
        link = {"action": "open-url", "text": "Site", "postbackData": "https://bank.example"}
        text = refused({**ok, "suggestions": [link]})
        assert text.startswith("message.suggestions[0].action: only reply suggestions")


class TestRichCard:
    def test_cards_become_a_generic_template(self):
        message = rich(
            card(
                image="https://cdn.bank.example/card.png",
                suggestions=[
                    reply("Pick up", "PICKUP"),
                    {"action": "open-url", "text": "Branches", "postbackData": "https://bank.example/b"},
                    {"action": "dial", "text": "Call", "postbackData": "tel:+85523999999"},
                ],
            ),
            {"title": "Second", "image": "https://cdn.bank.example/2.png"},
            suggestions=[reply("Later")],
        )
        assert to_messenger_message(message) == {
            "attachment": {
                "type": "template",
                "payload": {
                    "template_type": "generic",
                    "elements": [
                        {
                            "title": "Card ready",
                            "subtitle": "Pick it up at the branch",
                            "image_url": "https://cdn.bank.example/card.png",
                            "buttons": [
                                {"type": "postback", "title": "Pick up", "payload": "PICKUP"},
                                {"type": "web_url", "url": "https://bank.example/b", "title": "Branches"},
                                {"type": "phone_number", "title": "Call", "payload": "+85523999999"},
                            ],
                        },
                        {"title": "Second", "image_url": "https://cdn.bank.example/2.png"},
                    ],
                },
            },
            "quick_replies": [{"content_type": "text", "title": "Later", "payload": "Later"}],
        }

    @pytest.mark.parametrize(
        ("message", "error"),
        [
            (rich(), "message.richCards: 1 to 10 cards on Messenger"),
            (rich(*[card()] * 11), "message.richCards: 1 to 10 cards on Messenger"),
            (rich(card(title=None)), "message.richCards[0].title: required"),
            (rich(card(title="t" * 81)), "message.richCards[0].title: at most 80 characters on Messenger"),
            (rich(card(), card(description="d" * 81)), "message.richCards[1].description: at most 80"),
            (rich(card(image="not a url")), "message.richCards[0].image: must be an absolute"),
            (
                rich(card(suggestions=[reply("a"), reply("b"), reply("c"), reply("d")])),
                "message.richCards[0].suggestions: 0 to 3 buttons on Messenger",
            ),
            (
                rich(card(suggestions=[reply("b" * 21)])),
                "message.richCards[0].suggestions[0].text: at most 20",
            ),
            (rich({"title": "Alone"}), "message.richCards[0]: Messenger needs a description, an image"),
            (rich(card(), message="Hello"), "message.message: a Messenger generic template carries no text"),
            ({"type": "rich_card", "richCards": ["card"]}, "message.richCards[0]: must be an object"),
        ],
    )
    def test_messengers_limits_name_the_field(self, message: dict[str, Any], error: str):
        assert refused(message).startswith(error)


class TestOtherTypes:
    @pytest.mark.parametrize("kind", ["location", "fb_whatsapp_template", "listPicker", None])
    def test_other_types_are_refused(self, kind: str | None):
        assert (
            refused({"type": kind, "message": "x"}) == f"message.type: {kind!r} is not supported on Messenger"
        )

    def test_a_message_must_be_an_object(self):
        with pytest.raises(ValueError, match="message: must be an object"):
            to_messenger_message("hello")  # type: ignore[arg-type]
