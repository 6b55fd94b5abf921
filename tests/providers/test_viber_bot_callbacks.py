"""Viber Bot callback signatures, parsing into core events, and the error mapping."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from openmmp.kit.http import HttpResponse, HttpUnreachable
from openmmp.providers.base import CallbackRejected, InboundEvent, PingEvent, ProviderError, StatusEvent
from openmmp.providers.upstream import parse_retry_after, transport_error
from openmmp.providers.viber_bot import errors
from openmmp.providers.viber_bot.callbacks import parse_callback, sign, verify_signature

TOKEN = "4453b6ac12345678-e02c5f12174805f9-daec9cbb5448c51f"


def raw(body: dict[str, Any]) -> bytes:
    return orjson.dumps(body)


class TestSignature:
    def test_the_tokens_hmac_of_the_raw_body_verifies(self) -> None:
        body = raw({"event": "seen", "timestamp": 1})
        assert verify_signature(body, sign(body, TOKEN), TOKEN)

    def test_uppercase_hex_is_accepted(self) -> None:
        body = b'{"event":"seen"}'
        assert verify_signature(body, sign(body, TOKEN).upper(), TOKEN)

    @pytest.mark.parametrize("signature", [None, "", "00" * 32, "not hex at all", "é"])
    def test_a_missing_or_wrong_signature_is_rejected(self, signature: str | None) -> None:
        assert not verify_signature(b'{"event":"seen"}', signature, TOKEN)

    def test_another_bots_token_is_rejected(self) -> None:
        body = b'{"event":"seen"}'
        assert not verify_signature(body, sign(body, "other-token"), TOKEN)

    def test_a_re_serialised_body_is_rejected(self) -> None:
        body = b'{"event": "seen",  "timestamp": 1}'
        signature = sign(body, TOKEN)
        assert not verify_signature(raw(orjson.loads(body)), signature, TOKEN)


class TestStatusEvents:
    @pytest.mark.parametrize(("event", "status"), [("delivered", "DELIVERED"), ("seen", "READ")])
    def test_delivery_reports_name_token_and_user(self, event: str, status: str) -> None:
        body = {
            "event": event,
            "timestamp": 1_700_000_000_000,
            "message_token": 491266184665523145,
            "user_id": "u1=",
        }
        parsed = parse_callback(raw(body))
        assert isinstance(parsed, StatusEvent)
        assert parsed.provider_message_id == "491266184665523145"
        assert parsed.status == status
        assert parsed.user_id == "u1="
        assert parsed.timestamp_ms == 1_700_000_000_000
        assert parsed.dedupe_key == f"{event}:491266184665523145:u1="
        assert parsed.raw == body
        assert parsed.error_code is None

    def test_failed_carries_the_description(self) -> None:
        body = {"event": "failed", "timestamp": 5, "message_token": 7, "user_id": "u", "desc": "no device"}
        parsed = parse_callback(raw(body))
        assert isinstance(parsed, StatusEvent)
        assert (parsed.status, parsed.error_code, parsed.error_message) == (
            "FAIL",
            "VIBER_BOT_FAILED",
            "no device",
        )

    def test_the_same_event_twice_has_the_same_dedupe_key_and_other_users_another(self) -> None:
        first = parse_callback(
            raw({"event": "delivered", "timestamp": 1, "message_token": 9, "user_id": "a"})
        )
        again = parse_callback(
            raw({"event": "delivered", "timestamp": 2, "message_token": 9, "user_id": "a"})
        )
        other = parse_callback(
            raw({"event": "delivered", "timestamp": 1, "message_token": 9, "user_id": "b"})
        )
        assert (
            isinstance(first, StatusEvent)
            and isinstance(again, StatusEvent)
            and isinstance(other, StatusEvent)
        )
        assert first.dedupe_key == again.dedupe_key != other.dedupe_key


class TestInboundEvents:
    def test_a_text_message_becomes_an_mmp_text_with_the_raw_message_as_extra(self) -> None:
        body = {
            "event": "message",
            "timestamp": 1749539924549,
            "message_token": 4912661846655238145,
            "sender": {
                "id": "01234567890A=",
                "name": "Hà Phước Hòa",
                "avatar": "",
                "language": "en",
                "country": "VN",
            },
            "message": {"type": "text", "text": "hoha", "tracking_data": "t"},
            "silent": False,
        }
        parsed = parse_callback(raw(body))
        assert isinstance(parsed, InboundEvent)
        assert parsed.kind == "message"
        assert parsed.contact.id == "01234567890A="
        assert (parsed.contact.name, parsed.contact.language, parsed.contact.country) == (
            "Hà Phước Hòa",
            "en",
            "VN",
        )
        assert parsed.message == {
            "type": "text",
            "message": "hoha",
            "extra": {"type": "text", "text": "hoha", "tracking_data": "t"},
        }
        assert parsed.dedupe_key == "message:4912661846655238145:01234567890A="

    def test_a_picture_keeps_its_caption_and_url(self) -> None:
        body = {
            "event": "message",
            "timestamp": 1,
            "message_token": 2,
            "sender": {"id": "u"},
            "message": {"type": "picture", "text": "look", "media": "https://e/p.jpg"},
        }
        parsed = parse_callback(raw(body))
        assert isinstance(parsed, InboundEvent)
        assert parsed.message["type"] == "picture"
        assert parsed.message["message"] == "look"
        assert parsed.message["fileUrl"] == "https://e/p.jpg"

    def test_a_location_has_an_empty_message_and_the_coordinates(self) -> None:
        body = {
            "event": "message",
            "timestamp": 1,
            "message_token": 2,
            "sender": {"id": "u"},
            "message": {"type": "location", "location": {"lat": 11.5, "lon": 104.9}},
        }
        parsed = parse_callback(raw(body))
        assert isinstance(parsed, InboundEvent)
        assert parsed.message["type"] == "location"
        assert parsed.message["message"] == ""
        assert parsed.message["location"] == {"latitude": 11.5, "longitude": 104.9}

    def test_a_shared_contact_gives_the_users_phone(self) -> None:
        body = {
            "event": "message",
            "timestamp": 1,
            "message_token": 2,
            "sender": {"id": "u", "name": "Dara"},
            "message": {"type": "contact", "contact": {"name": "Dara", "phone_number": "+85512345678"}},
        }
        parsed = parse_callback(raw(body))
        assert isinstance(parsed, InboundEvent)
        assert parsed.contact.phone == "85512345678"

    @pytest.mark.parametrize(
        ("event", "mmp_type"),
        [("subscribed", "SUBSCRIBED"), ("conversation_started", "CONVERSATION_STARTED")],
    )
    def test_user_events_carry_the_user_and_the_raw_event(self, event: str, mmp_type: str) -> None:
        body = {"event": event, "timestamp": 3, "message_token": 4, "user": {"id": "u9", "name": "Sok"}}
        parsed = parse_callback(raw(body))
        assert isinstance(parsed, InboundEvent)
        assert parsed.kind == event
        assert parsed.contact.id == "u9"
        assert parsed.contact.name == "Sok"
        assert parsed.message == {"type": mmp_type, "message": "", "extra": body}
        assert parsed.dedupe_key == f"{event}:4:u9"

    def test_unsubscribed_carries_only_the_user_id(self) -> None:
        body = {"event": "unsubscribed", "timestamp": 3, "message_token": 4, "user_id": "u9"}
        parsed = parse_callback(raw(body))
        assert isinstance(parsed, InboundEvent)
        assert parsed.kind == "unsubscribed"
        assert parsed.contact.id == "u9"
        assert parsed.message["type"] == "UNSUBSCRIBED"

    def test_the_webhook_check_is_a_ping(self) -> None:
        body = {"event": "webhook", "timestamp": 1, "chat_hostname": "SN-1", "message_token": 1}
        assert parse_callback(raw(body)) == PingEvent(raw=body, timestamp_ms=1, dedupe_key="webhook:1")


class TestMalformedCallbacksAreRejected:
    @pytest.mark.parametrize(
        "body",
        [
            b"not json",
            b"[1, 2]",
            b'{"timestamp": 1}',
            b'{"event": "delivered", "timestamp": 1, "message_token": 1}',
            b'{"event": "delivered", "timestamp": "x", "message_token": 1, "user_id": "u"}',
            b'{"event": "seen", "timestamp": 1, "user_id": "u"}',
            b'{"event": "message", "timestamp": 1, "message_token": 1, "message": {"type": "text"}}',
            b'{"event": "message", "timestamp": 1, "message_token": 1, "sender": {"id": "u"}}',
            b'{"event": "subscribed", "timestamp": 1, "message_token": 1}',
            b'{"event": "client_status", "timestamp": 1}',
        ],
    )
    def test_bodies_that_are_not_a_viber_bot_callback(self, body: bytes) -> None:
        with pytest.raises(CallbackRejected):
            parse_callback(body)


def response(status_code: int, body: bytes, headers: dict[str, str] | None = None) -> HttpResponse:
    return HttpResponse(status_code=status_code, headers=headers or {}, content=body, elapsed_ms=1.0)


class TestErrorMapping:
    def test_status_zero_returns_the_body(self) -> None:
        body = errors.check_response(
            response(200, b'{"status": 0, "status_message": "ok", "message_token": 1}')
        )
        assert body["message_token"] == 1

    def test_too_many_requests_is_rate_limited_and_retryable(self) -> None:
        with pytest.raises(ProviderError) as caught:
            errors.check_response(response(200, b'{"status": 12, "status_message": "tooManyRequests"}'))
        assert (caught.value.code, caught.value.retryable, caught.value.rate_limited) == (
            "VIBER_BOT_12",
            True,
            True,
        )

    @pytest.mark.parametrize("status", [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 99])
    def test_every_other_status_is_final(self, status: int) -> None:
        with pytest.raises(ProviderError) as caught:
            errors.check_response(response(200, orjson.dumps({"status": status})))
        assert caught.value.code == f"VIBER_BOT_{status}"
        assert not caught.value.retryable
        assert caught.value.message == errors.STATUS_NAMES.get(status, "generalError")

    def test_the_upstreams_status_message_is_kept(self) -> None:
        with pytest.raises(ProviderError) as caught:
            errors.check_response(response(200, b'{"status": 6, "status_message": "notSubscribed"}'))
        assert caught.value.message == "notSubscribed"

    def test_http_429_is_rate_limited_with_retry_after(self) -> None:
        with pytest.raises(ProviderError) as caught:
            errors.check_response(response(429, b"", {"retry-after": "7"}))
        assert (caught.value.retryable, caught.value.rate_limited, caught.value.retry_after) == (
            True,
            True,
            7.0,
        )

    def test_retry_after_may_be_an_http_date(self) -> None:
        assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
        assert parse_retry_after("soon") is None

    @pytest.mark.parametrize(("code", "retryable"), [(500, True), (503, True), (404, False), (400, False)])
    def test_http_errors(self, code: int, retryable: bool) -> None:
        with pytest.raises(ProviderError) as caught:
            errors.check_response(response(code, b"<html>"))
        assert (caught.value.code, caught.value.retryable) == (f"UPSTREAM_HTTP_{code}", retryable)

    @pytest.mark.parametrize("body", [b"<html>oops</html>", b"[]", b'{"no": "status"}'])
    def test_answers_outside_the_protocol_are_retryable(self, body: bytes) -> None:
        with pytest.raises(ProviderError) as caught:
            errors.check_response(response(200, body))
        assert (caught.value.code, caught.value.retryable) == ("UPSTREAM_BAD_RESPONSE", True)

    def test_no_answer_is_retryable_timeout_or_unreachable(self) -> None:
        timeout = transport_error(HttpUnreachable("x", timed_out=True))
        refused = transport_error(HttpUnreachable("x", timed_out=False))
        assert (timeout.code, timeout.retryable) == ("UPSTREAM_TIMEOUT", True)
        assert (refused.code, refused.retryable) == ("UPSTREAM_UNREACHABLE", True)
