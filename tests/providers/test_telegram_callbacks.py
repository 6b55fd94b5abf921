"""Telegram updates: the secret header, what each update means, the answer to a tap, and error mapping."""

from __future__ import annotations

import string
from typing import Any

import orjson
import pytest

from openmmp.kit.http import HttpResponse
from openmmp.providers.base import (
    CallbackRejected,
    CallbackRequest,
    InboundEvent,
    ProviderContext,
    ProviderError,
)
from openmmp.providers.telegram.callbacks import parse_update, verify_secret, webhook_reply, webhook_secret
from openmmp.providers.telegram.errors import check_response
from openmmp.providers.telegram.provider import TelegramProvider

TOKEN = "110201543:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"
PROVIDER = TelegramProvider()
DARA = {"id": 5512345670, "is_bot": False, "first_name": "Dara", "last_name": "Sok", "language_code": "km"}
PRIVATE = {"id": 5512345670, "first_name": "Dara", "last_name": "Sok", "type": "private"}


def update(update_id: int = 871000001, **kind: Any) -> bytes:
    return orjson.dumps({"update_id": update_id, **kind})


def message(**content: Any) -> dict[str, Any]:
    return {"message_id": 42, "from": DARA, "chat": PRIVATE, "date": 1749539924, **content}


def one(raw: bytes) -> InboundEvent:
    [event] = parse_update(raw)
    assert isinstance(event, InboundEvent)
    return event


def ctx() -> ProviderContext:
    return ProviderContext(http=None, base_url="", public_url="", sandbox=False)  # type: ignore[arg-type]


class TestSecret:
    def test_the_secret_is_stable_per_bot_and_uses_only_characters_telegram_allows(self):
        secret = webhook_secret(TOKEN)
        assert secret == webhook_secret(TOKEN)
        assert secret != webhook_secret(TOKEN + "x")
        assert 1 <= len(secret) <= 256
        assert set(secret) <= set(string.ascii_letters + string.digits + "_-")
        assert TOKEN not in secret

    def test_only_the_bots_own_secret_verifies(self):
        assert verify_secret(webhook_secret(TOKEN), TOKEN)
        assert not verify_secret(webhook_secret("other:token"), TOKEN)
        assert not verify_secret(webhook_secret(TOKEN)[:-1], TOKEN)
        assert not verify_secret("", TOKEN)
        assert not verify_secret(None, TOKEN)
        assert not verify_secret(webhook_secret(""), "")

    def test_the_provider_reads_the_header_in_any_case(self):
        body = update(message=message(text="hi"))
        good = CallbackRequest("POST", {"x-telegram-bot-api-secret-token": webhook_secret(TOKEN)}, {}, body)
        assert PROVIDER.verify(ctx(), good, {"botToken": TOKEN})
        assert not PROVIDER.verify(ctx(), good, {"botToken": TOKEN + "-other"})
        assert not PROVIDER.verify(ctx(), CallbackRequest("POST", {}, {}, body), {"botToken": TOKEN})


class TestMessages:
    def test_a_text_is_an_mmp_text_from_the_chat_with_the_users_profile(self):
        raw = update(message=message(text="Is my card ready?"))
        event = one(raw)
        assert event.kind == "message"
        assert event.message == {
            "type": "text",
            "message": "Is my card ready?",
            "extra": message(text="Is my card ready?"),
        }
        assert (event.contact.id, event.contact.name, event.contact.language) == (
            "5512345670",
            "Dara Sok",
            "km",
        )
        assert event.timestamp_ms == 1749539924000
        assert event.dedupe_key == "871000001:message:5512345670:42"
        assert event.raw == orjson.loads(raw)

    @pytest.mark.parametrize(
        ("text", "payload"), [("/start", ""), ("/start promo-7", "promo-7"), ("/start@shop_bot", "")]
    )
    def test_start_opens_the_conversation_with_the_deep_links_payload(self, text: str, payload: str):
        event = one(update(message=message(text=text)))
        assert event.kind == "conversation_started"
        assert (event.message["type"], event.message["message"]) == ("CONVERSATION_STARTED", payload)

    def test_a_command_that_only_starts_like_start_is_text(self):
        assert one(update(message=message(text="/starter"))).kind == "message"

    def test_the_largest_photo_is_a_picture_with_its_caption_and_file_id(self):
        sizes = [
            {"file_id": "small", "file_unique_id": "s", "width": 90, "height": 90, "file_size": 1200},
            {"file_id": "large", "file_unique_id": "l", "width": 1280, "height": 960, "file_size": 98000},
        ]
        event = one(update(message=message(photo=sizes, caption="my receipt")))
        assert {k: v for k, v in event.message.items() if k != "extra"} == {
            "type": "picture",
            "message": "my receipt",
            "fileId": "large",
            "fileSize": 98000,
        }

    @pytest.mark.parametrize(
        ("field", "mmp_type"),
        [
            ("video", "video"),
            ("video_note", "video"),
            ("document", "file"),
            ("voice", "file"),
            ("sticker", "picture"),
        ],
    )
    def test_other_files(self, field: str, mmp_type: str):
        media = {"file_id": f"id-{field}", "file_unique_id": "u", "file_name": "a.pdf"}
        event = one(update(message=message(**{field: media})))
        assert (event.message["type"], event.message["fileId"], event.message["fileName"]) == (
            mmp_type,
            f"id-{field}",
            "a.pdf",
        )

    def test_an_animation_is_a_video_though_telegram_sends_it_as_a_document_too(self):
        gif = {"file_id": "gif", "file_unique_id": "g"}
        event = one(update(message=message(animation=gif, document=gif)))
        assert event.message["type"] == "video"

    def test_a_venue_is_a_location_with_its_name_and_address(self):
        venue = {
            "location": {"latitude": 11.55, "longitude": 104.92},
            "title": "Central Market",
            "address": "Phnom Penh",
        }
        event = one(update(message=message(venue=venue, location=venue["location"])))
        assert event.message["type"] == "location"
        assert event.message["message"] == "Central Market"
        assert event.message["location"] == {
            "latitude": 11.55,
            "longitude": 104.92,
            "name": "Central Market",
            "address": "Phnom Penh",
        }

    def test_sharing_ones_own_contact_gives_the_phone(self):
        shared = {"phone_number": "+855 12 345 670", "first_name": "Dara", "user_id": DARA["id"]}
        event = one(update(message=message(contact=shared)))
        assert (event.message["type"], event.message["message"]) == ("text", "+855 12 345 670")
        assert event.contact.phone == "85512345670"

    def test_someone_elses_contact_is_not_the_users_phone(self):
        shared = {"phone_number": "85599999999", "first_name": "Vanna", "user_id": 777}
        event = one(update(message=message(contact=shared)))
        assert event.message["message"] == "85599999999"
        assert event.contact.phone == ""

    def test_in_a_group_the_conversation_is_the_group(self):
        group = {"id": -1001234567890, "title": "Branch staff", "type": "supergroup"}
        event = one(update(message={**message(text="hello all"), "chat": group}))
        assert (event.contact.id, event.contact.name, event.contact.language) == (
            "-1001234567890",
            "Branch staff",
            "",
        )

    @pytest.mark.parametrize(
        "content",
        [
            {"new_chat_members": [DARA]},
            {"pinned_message": {"message_id": 1}},
            {"dice": {"emoji": "🎲", "value": 3}},
        ],
    )
    def test_service_messages_and_contents_without_an_mmp_type_are_ignored(self, content: dict[str, Any]):
        assert parse_update(update(message=message(**content))) == []


class TestButtonTaps:
    QUERY: dict[str, Any] = {
        "id": "4382bfdwdsb323b2d9",
        "from": DARA,
        "message": {"message_id": 41, "chat": PRIVATE, "date": 1000, "text": "Pick one"},
        "chat_instance": "-7788",
        "data": "answer=yes",
    }

    def test_a_tap_is_the_user_saying_the_buttons_data_in_the_tapped_messages_chat(self):
        event = one(update(callback_query=self.QUERY))
        assert event.kind == "message"
        assert event.message == {"type": "text", "message": "answer=yes", "extra": self.QUERY}
        assert event.contact.id == "5512345670"
        assert event.dedupe_key == "871000001:callback_query:4382bfdwdsb323b2d9"
        # The tapped message is days old; the tap is now (a replay window must not drop it).
        assert event.timestamp_ms > 1_700_000_000_000

    def test_a_tap_on_a_message_sent_inline_is_from_the_users_own_chat(self):
        query = {k: v for k, v in self.QUERY.items() if k != "message"} | {"inline_message_id": "AAA"}
        assert one(update(callback_query=query)).contact.id == "5512345670"

    def test_a_game_button_without_data_is_ignored(self):
        query = {k: v for k, v in self.QUERY.items() if k != "data"} | {"game_short_name": "race"}
        assert parse_update(update(callback_query=query)) == []

    def test_the_webhook_answers_a_tap_with_answer_callback_query(self):
        raw = update(callback_query=self.QUERY)
        assert orjson.loads(webhook_reply(raw) or b"") == {
            "method": "answerCallbackQuery",
            "callback_query_id": "4382bfdwdsb323b2d9",
        }
        reply = PROVIDER.acknowledge(CallbackRequest("POST", {}, {}, raw), "applied")
        assert reply is not None
        assert (reply.status_code, reply.media_type) == (200, "application/json")
        assert orjson.loads(reply.body)["method"] == "answerCallbackQuery"

    def test_other_updates_get_the_routes_own_acknowledgement(self):
        raw = update(message=message(text="hi"))
        assert webhook_reply(raw) is None
        assert PROVIDER.acknowledge(CallbackRequest("POST", {}, {}, raw), "applied") is None
        assert webhook_reply(b"not json") is None


class TestMembership:
    @staticmethod
    def change(was: dict[str, Any], now: dict[str, Any]) -> bytes:
        bot = {"id": 110201543, "is_bot": True, "first_name": "Shop"}
        return update(
            my_chat_member={
                "chat": PRIVATE,
                "from": DARA,
                "date": 1749539924,
                "old_chat_member": {"user": bot, **was},
                "new_chat_member": {"user": bot, **now},
            }
        )

    def test_blocking_the_bot_unsubscribes(self):
        event = one(self.change({"status": "member"}, {"status": "kicked", "until_date": 0}))
        assert (event.kind, event.message["type"], event.message["message"]) == (
            "unsubscribed",
            "UNSUBSCRIBED",
            "",
        )
        assert event.contact.id == "5512345670"
        assert event.dedupe_key == "871000001:my_chat_member:5512345670:1749539924000:kicked"

    @pytest.mark.parametrize("was", ["kicked", "left"])
    def test_unblocking_or_being_added_subscribes(self, was: str):
        event = one(self.change({"status": was}, {"status": "member"}))
        assert (event.kind, event.message["type"]) == ("subscribed", "SUBSCRIBED")

    def test_a_change_within_membership_is_ignored(self):
        assert parse_update(self.change({"status": "member"}, {"status": "administrator"})) == []

    def test_a_restricted_member_counts_by_is_member(self):
        event = one(self.change({"status": "member"}, {"status": "restricted", "is_member": False}))
        assert event.kind == "unsubscribed"


class TestUpdatesOutsideTheProtocol:
    def test_kinds_openmmp_does_not_handle_are_ignored(self):
        assert parse_update(update(edited_message=message(text="typo"))) == []
        assert parse_update(update(poll={"id": "1"})) == []

    @pytest.mark.parametrize(
        "raw",
        [
            b"not json",
            b"[1]",
            b'{"message": {}}',
            b'{"update_id": "1", "message": {}}',
            update(message="text"),
            update(message={"message_id": 1, "date": 1, "text": "no chat"}),
            update(message={"message_id": 1, "chat": {"id": "x"}, "date": 1, "text": "t"}),
            update(callback_query={"from": DARA, "data": "x"}),
            update(my_chat_member={"chat": PRIVATE, "date": 1, "old_chat_member": {}, "new_chat_member": {}}),
        ],
    )
    def test_bodies_that_are_not_an_update_are_rejected(self, raw: bytes):
        with pytest.raises(CallbackRejected):
            parse_update(raw)

    def test_the_same_update_twice_has_the_same_dedupe_keys(self):
        raw = update(message=message(text="again"))
        assert [e.dedupe_key for e in parse_update(raw)] == [e.dedupe_key for e in parse_update(raw)]


def answer(status: int, body: Any, headers: dict[str, str] | None = None) -> HttpResponse:
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    return HttpResponse(status_code=status, headers=headers or {}, content=content, elapsed_ms=1.0)


def refusal(response: HttpResponse) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        check_response(response)
    return caught.value


class TestErrorMapping:
    def test_ok_returns_the_result(self):
        assert check_response(answer(200, {"ok": True, "result": {"message_id": 7}})) == {"message_id": 7}

    def test_429_is_rate_limited_with_telegrams_retry_after(self):
        error = refusal(
            answer(
                429,
                {
                    "ok": False,
                    "error_code": 429,
                    "description": "Too Many Requests: retry after 35",
                    "parameters": {"retry_after": 35},
                },
            )
        )
        assert (error.code, error.retryable, error.rate_limited, error.retry_after) == (
            "TELEGRAM_429",
            True,
            True,
            35.0,
        )
        assert error.message == "Too Many Requests: retry after 35"

    def test_429_without_parameters_takes_the_retry_after_header(self):
        error = refusal(
            answer(
                429,
                {"ok": False, "error_code": 429, "description": "Too Many Requests"},
                {"retry-after": "3"},
            )
        )
        assert (error.rate_limited, error.retry_after) == (True, 3.0)

    @pytest.mark.parametrize(
        ("code", "description"),
        [
            (400, "Bad Request: chat not found"),
            (403, "Forbidden: bot was blocked by the user"),
            (403, "Forbidden: user is deactivated"),
        ],
    )
    def test_refusals_of_the_message_are_final_with_telegrams_words(self, code: int, description: str):
        error = refusal(answer(code, {"ok": False, "error_code": code, "description": description}))
        assert (error.code, error.message, error.retryable, error.rate_limited) == (
            f"TELEGRAM_{code}",
            description,
            False,
            False,
        )

    @pytest.mark.parametrize("code", [401, 404])
    def test_a_refused_token_names_the_credentials(self, code: int):
        error = refusal(answer(code, {"ok": False, "error_code": code, "description": "Unauthorized"}))
        assert not error.retryable
        assert "credentials.botToken" in error.message

    def test_a_migrated_group_names_the_new_chat(self):
        error = refusal(
            answer(
                400,
                {
                    "ok": False,
                    "error_code": 400,
                    "description": "Bad Request: group chat was upgraded to a supergroup chat",
                    "parameters": {"migrate_to_chat_id": -1001234567890},
                },
            )
        )
        assert not error.retryable
        assert "-1001234567890" in error.message

    @pytest.mark.parametrize(
        "response",
        [
            answer(500, {"ok": False, "error_code": 500, "description": "Internal Server Error"}),
            answer(502, b"<html>502 Bad Gateway</html>"),
            answer(200, b"<html>truncated"),
            answer(200, {"result": "no ok"}),
        ],
    )
    def test_passing_trouble_is_retryable(self, response: HttpResponse):
        error = refusal(response)
        assert error.retryable
        assert not error.rate_limited

    def test_a_4xx_page_outside_the_envelope_is_final(self):
        assert not refusal(answer(413, b"<html>413 Request Entity Too Large</html>")).retryable
