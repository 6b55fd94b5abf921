"""Viber Business Messages callbacks (OpenMMP's signed format) and the status-code mapping."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from openmmp.kit.http import HttpResponse
from openmmp.providers.base import CallbackRejected, InboundEvent, ProviderError, StatusEvent
from openmmp.providers.viber import errors
from openmmp.providers.viber.callbacks import parse_callback, sign, verify_signature

SECRET = "partner-callback-secret"


def body(event: str, **extra: Any) -> dict[str, Any]:
    return {
        "event": event,
        "message_token": "5741311803571721087",
        "seq": 12,
        "service_id": 4711,
        "dest": "85512345678",
        "timestamp": 1_700_000_000_000,
        **extra,
    }


class TestSignature:
    def test_the_secrets_hmac_of_the_raw_body_verifies(self) -> None:
        raw = orjson.dumps(body("seen"))
        assert verify_signature(raw, sign(raw, SECRET), SECRET)

    @pytest.mark.parametrize("signature", [None, "", "0" * 64, "zz"])
    def test_a_missing_or_wrong_signature_is_rejected(self, signature: str | None) -> None:
        assert not verify_signature(orjson.dumps(body("seen")), signature, SECRET)

    def test_another_secret_or_a_changed_body_is_rejected(self) -> None:
        raw = orjson.dumps(body("seen"))
        assert not verify_signature(raw, sign(raw, "other"), SECRET)
        assert not verify_signature(raw + b" ", sign(raw, SECRET), SECRET)


class TestParsing:
    @pytest.mark.parametrize(("event", "status"), [("delivered", "DELIVERED"), ("seen", "READ")])
    def test_delivery_reports(self, event: str, status: str) -> None:
        parsed = parse_callback(orjson.dumps(body(event, device="smartphone")))
        assert isinstance(parsed, StatusEvent)
        assert (parsed.provider_message_id, parsed.status, parsed.timestamp_ms) == (
            "5741311803571721087",
            status,
            1_700_000_000_000,
        )
        assert parsed.dedupe_key == f"{event}:5741311803571721087"
        assert parsed.error_code is None

    def test_delivered_from_two_devices_collapses_to_one_dedupe_key(self) -> None:
        phone = parse_callback(orjson.dumps(body("delivered", device="smartphone", timestamp=1)))
        desktop = parse_callback(orjson.dumps(body("delivered", device="desktop", timestamp=2)))
        assert isinstance(phone, StatusEvent) and isinstance(desktop, StatusEvent)
        assert phone.dedupe_key == desktop.dedupe_key

    def test_expired_is_a_failure(self) -> None:
        parsed = parse_callback(orjson.dumps(body("expired")))
        assert isinstance(parsed, StatusEvent)
        assert (parsed.status, parsed.error_code) == ("FAIL", "VIBER_EXPIRED")

    def test_an_integer_message_token_is_read_as_a_string(self) -> None:
        parsed = parse_callback(orjson.dumps(body("seen", message_token=42)))
        assert isinstance(parsed, StatusEvent) and parsed.provider_message_id == "42"

    def test_a_reply_is_an_inbound_text_from_the_phone(self) -> None:
        raw_body = body("message", text="STOP", tracking_data="t-1")
        parsed = parse_callback(orjson.dumps(raw_body))
        assert isinstance(parsed, InboundEvent)
        assert parsed.kind == "message"
        assert (parsed.contact.id, parsed.contact.phone) == ("85512345678", "85512345678")
        assert parsed.message == {"type": "text", "message": "STOP", "extra": raw_body}
        assert parsed.dedupe_key == "message:5741311803571721087"

    @pytest.mark.parametrize(
        "raw",
        [
            b"nope",
            b"[]",
            orjson.dumps({k: v for k, v in body("seen").items() if k != "event"}),
            orjson.dumps({k: v for k, v in body("seen").items() if k != "message_token"}),
            orjson.dumps(body("seen", timestamp="yesterday")),
            orjson.dumps({k: v for k, v in body("message", text="x").items() if k != "dest"}),
            orjson.dumps(body("subscribed")),
        ],
    )
    def test_malformed_bodies_are_rejected(self, raw: bytes) -> None:
        with pytest.raises(CallbackRejected):
            parse_callback(raw)


def answer(payload: dict[str, Any], status_code: int = 200) -> HttpResponse:
    return HttpResponse(status_code=status_code, headers={}, content=orjson.dumps(payload), elapsed_ms=1.0)


class TestErrorMapping:
    @pytest.mark.parametrize(("status", "name"), [(1, "INTERNAL_FAILURE"), (7, "TIMEOUT")])
    def test_internal_failure_and_timeout_are_retryable(self, status: int, name: str) -> None:
        with pytest.raises(ProviderError) as caught:
            errors.check_response(answer({"status": status, "seq": 1}))
        assert (caught.value.code, caught.value.message, caught.value.retryable) == (
            f"VIBER_{status}",
            name,
            True,
        )
        assert not caught.value.rate_limited

    def test_too_many_requests_is_rate_limited(self) -> None:
        with pytest.raises(ProviderError) as caught:
            errors.check_response(answer({"status": 12, "seq": 1}))
        assert (caught.value.code, caught.value.message) == ("VIBER_12", "TOO_MANY_REQUESTS")
        assert caught.value.retryable and caught.value.rate_limited

    @pytest.mark.parametrize(
        ("status", "name"),
        [
            (2, "BAD_SERVICE_ID"),
            (9, "NOT_VIBER_USER"),
            (10, "NO_SUITABLE_DEVICE"),
            (20, "INVALID_TTL"),
            (401, "UNAUTHORIZED_IP"),
        ],
    )
    def test_the_rest_is_final_with_the_codes_name(self, status: int, name: str) -> None:
        with pytest.raises(ProviderError) as caught:
            errors.check_response(answer({"status": status, "seq": 1}))
        assert (caught.value.code, caught.value.message, caught.value.retryable) == (
            f"VIBER_{status}",
            name,
            False,
        )

    def test_an_unknown_status_is_final(self) -> None:
        with pytest.raises(ProviderError) as caught:
            errors.check_response(answer({"status": 77}))
        assert (caught.value.code, caught.value.message, caught.value.retryable) == (
            "VIBER_77",
            "UNKNOWN_STATUS",
            False,
        )

    def test_http_5xx_and_429_are_retryable(self) -> None:
        for code in (500, 502, 429):
            with pytest.raises(ProviderError) as caught:
                errors.check_response(answer({}, code))
            assert caught.value.retryable
            assert caught.value.rate_limited == (code == 429)
