"""ZNS webhooks: verified over the raw bytes (Zalo's plain SHA-256 MAC), and parsed into neutral events."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from openmmp.providers.base import (
    CallbackRejected,
    CallbackRequest,
    ProviderContext,
    StatusEvent,
    TemplateEvent,
)
from openmmp.providers.zalo.webhooks import sign_event
from openmmp.providers.zalo.zns import ZaloZnsProvider

PROVIDER = ZaloZnsProvider()
CREDENTIALS = {
    "oaId": "4318125390138210000",
    "appId": "1234567890123456789",
    "accessToken": "token",
    "refreshToken": "refresh",
    "secretKey": "the-app-secret",
}
CTX = ProviderContext(http=None, base_url="", public_url="", sandbox=False)  # type: ignore[arg-type]


def body(event_name: str, **fields: Any) -> bytes:
    return orjson.dumps(
        {
            "app_id": CREDENTIALS["appId"],
            "oa_id": CREDENTIALS["oaId"],
            "event_name": event_name,
            **fields,
            "timestamp": "1717000000123",
        }
    )


def delivered(msg_id: str = "a1b2c3") -> bytes:
    return body(
        "user_received_message",
        sender={"id": CREDENTIALS["oaId"]},
        recipient={"id": "84987654321"},
        message={"delivery_time": "1717000000456", "msg_id": msg_id, "tracking_id": "77"},
    )


def template(new: str, prev: str = "PENDING_REVIEW", reason: str = "") -> bytes:
    status = {"prev_status": prev, "new_status": new}
    return body("change_template_status", template_id="301234", status=status, reason=reason)


def request(raw: bytes, signature: str | None, **headers: str) -> CallbackRequest:
    sent = {"content-type": "application/json", "x-zevent-server": "ZNS", **headers}
    if signature is not None:
        sent["x-zevent-signature"] = signature
    return CallbackRequest("POST", sent, {}, raw)


class TestVerify:
    def test_the_mac_of_the_app_id_body_timestamp_and_secret_is_accepted(self):
        raw = delivered()
        signed = sign_event(CREDENTIALS["appId"], raw, CREDENTIALS["secretKey"])
        assert PROVIDER.verify(CTX, request(raw, signed), CREDENTIALS)

    def test_the_oa_id_as_first_term_is_accepted_too(self):
        raw = delivered()
        signed = sign_event(CREDENTIALS["oaId"], raw, CREDENTIALS["secretKey"])
        assert PROVIDER.verify(CTX, request(raw, signed), CREDENTIALS)

    def test_a_changed_byte_another_secret_or_no_signature_is_refused(self):
        raw = delivered()
        signed = sign_event(CREDENTIALS["appId"], raw, CREDENTIALS["secretKey"])
        tampered = raw.replace(b"a1b2c3", b"a1b2c4")
        assert not PROVIDER.verify(CTX, request(tampered, signed), CREDENTIALS)
        other = sign_event(CREDENTIALS["appId"], raw, "another-secret")
        assert not PROVIDER.verify(CTX, request(raw, other), CREDENTIALS)
        assert not PROVIDER.verify(CTX, request(raw, None), CREDENTIALS)


class TestParse:
    def test_user_received_message_is_delivered(self):
        [event] = PROVIDER.parse(delivered())
        assert isinstance(event, StatusEvent)
        assert (event.provider_message_id, event.status) == ("a1b2c3", "DELIVERED")
        assert event.timestamp_ms == 1717000000456
        assert event.dedupe_key == "zns:delivered:a1b2c3"
        assert event.raw["message"]["tracking_id"] == "77"

    def test_a_replay_has_the_same_dedupe_key(self):
        first, again = PROVIDER.parse(delivered())[0], PROVIDER.parse(delivered())[0]
        assert first.dedupe_key == again.dedupe_key

    @pytest.mark.parametrize(
        ("new", "status", "words"),
        [
            ("ENABLE", "APPROVED", "approved"),
            ("PENDING_REVIEW", "REQUEST", "reviewing"),
            ("DISABLE", "REJECTED", "disabled"),
            ("DELETE", "REJECTED", "deleted"),
        ],
    )
    def test_a_template_status_becomes_a_template_event(self, new: str, status: str, words: str):
        [event] = PROVIDER.parse(template(new, prev="ENABLE" if new != "ENABLE" else "PENDING_REVIEW"))
        assert isinstance(event, TemplateEvent)
        assert (event.template_id, event.status) == ("301234", status)
        assert words in event.cause
        assert event.changes == {}
        assert event.timestamp_ms == 1717000000123

    def test_a_rejection_carries_zalos_reason(self):
        [event] = PROVIDER.parse(template("REJECT", reason="Nội dung không phù hợp"))
        assert isinstance(event, TemplateEvent)
        assert event.status == "REJECTED"
        assert event.cause == "Zalo rejected the template: Nội dung không phù hợp"

    def test_two_moves_of_one_template_are_two_events(self):
        [pending] = PROVIDER.parse(template("PENDING_REVIEW", prev="REJECT"))
        [enabled] = PROVIDER.parse(template("ENABLE"))
        assert pending.dedupe_key != enabled.dedupe_key

    def test_a_change_of_the_daily_quota_is_read_and_ignored(self):
        quota = body("change_oa_daily_quota", quota={"prev_quota": "500", "new_quota": "1000"})
        assert PROVIDER.parse(quota) == []

    @pytest.mark.parametrize(
        "raw",
        [
            b"not json",
            b"[1, 2]",
            body("user_send_text", message={"text": "hi", "msg_id": "1"}),
            body("user_received_message", message={"delivery_time": "1"}),
            body("user_received_message", message={"msg_id": "m", "delivery_time": "soon"}),
            body("change_template_status", template_id="1", status={}),
        ],
    )
    def test_what_is_no_zns_event_is_refused(self, raw: bytes):
        with pytest.raises(CallbackRejected):
            PROVIDER.parse(raw)
