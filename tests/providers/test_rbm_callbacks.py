"""RBM webhooks: X-Goog-Signature over the decoded data, Google's URL check, and the events parsed."""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any

import orjson
import pytest

from openmmp.kit.http import HttpClient
from openmmp.providers.base import (
    CallbackRejected,
    CallbackRequest,
    InboundEvent,
    ProviderContext,
    StatusEvent,
)
from openmmp.providers.rbm.callbacks import SANDBOX_CLIENT_TOKEN, parse_callback, time_ms
from openmmp.providers.rbm.provider import RbmProvider

PROVIDER = RbmProvider()
AGENT = "bank_4711_agent"
CREDENTIALS = {"agentId": AGENT}
CLIENT_TOKEN = "operator-client-token-1"
MESSAGE_ID = "5f1d1b5e-8a4b-5c7e-9d3f-0a1b2c3d4e5f"


def context(client_token: str = "", *, sandbox: bool = False) -> ProviderContext:
    return ProviderContext(
        HttpClient(timeout=1),
        "http://rbm.invalid",
        "http://127.0.0.1:9",
        sandbox,
        {"client_token": client_token},
    )


def push(event: dict[str, Any], *, token: str = CLIENT_TOKEN) -> tuple[bytes, dict[str, str]]:
    """A push envelope as RBM sends it, and its headers (signed with `token`)."""
    data = orjson.dumps({"agentId": AGENT, **event})
    body = orjson.dumps(
        {
            "message": {
                "data": base64.b64encode(data).decode(),
                "messageId": "1234",
                "publishTime": "2026-02-01T10:00:01.5Z",
            },
            "subscription": "projects/rbm-bank/subscriptions/rbm-agent-subscription",
        }
    )
    signature = base64.b64encode(hmac.new(token.encode(), data, hashlib.sha512).digest()).decode()
    return body, {"x-goog-signature": signature, "content-type": "application/json"}


def request(body: bytes, headers: dict[str, str]) -> CallbackRequest:
    return CallbackRequest("POST", headers, {}, body)


def delivered(**extra: Any) -> dict[str, Any]:
    return {
        "senderPhoneNumber": "+85512345670",
        "eventType": "DELIVERED",
        "eventId": "MxUl1Ym9oTgmmeU3Ncpi1d2w",
        "messageId": MESSAGE_ID,
        "sendTime": "2026-02-01T10:00:00.123456789Z",
        **extra,
    }


class TestSignature:
    def test_a_push_signed_with_the_client_token_for_the_channels_agent_is_verified(self):
        body, headers = push(delivered())
        assert PROVIDER.verify(context(CLIENT_TOKEN), request(body, headers), CREDENTIALS)

    def test_the_sandbox_uses_the_published_client_token_when_none_is_set(self):
        body, headers = push(delivered(), token=SANDBOX_CLIENT_TOKEN)
        assert PROVIDER.verify(context(sandbox=True), request(body, headers), CREDENTIALS)
        assert not PROVIDER.verify(context(sandbox=False), request(body, headers), CREDENTIALS)

    def test_another_token_another_agent_changed_data_or_no_header_is_refused(self):
        body, headers = push(delivered())
        ctx = context(CLIENT_TOKEN)
        assert not PROVIDER.verify(context("another-token"), request(body, headers), CREDENTIALS)
        assert not PROVIDER.verify(ctx, request(body, headers), {"agentId": "other_agent"})
        assert not PROVIDER.verify(ctx, request(body, {}), CREDENTIALS)
        changed = body.replace(b'"data":"', b'"data":"A', 1)
        assert not PROVIDER.verify(ctx, request(changed, headers), CREDENTIALS)
        other, _ = push(delivered(eventType="READ"))
        assert not PROVIDER.verify(ctx, request(other, headers), CREDENTIALS)

    def test_the_agent_may_be_named_with_rbms_suffix_and_in_any_case(self):
        body, headers = push(delivered(agentId="Bank_4711_Agent@rbm.goog"))
        assert PROVIDER.verify(context(CLIENT_TOKEN), request(body, headers), CREDENTIALS)

    def test_data_that_is_not_base64_is_refused(self):
        body = orjson.dumps({"message": {"data": "not base64!", "messageId": "1"}})
        assert not PROVIDER.verify(
            context(CLIENT_TOKEN), request(body, {"x-goog-signature": "x"}), CREDENTIALS
        )
        with pytest.raises(CallbackRejected):
            parse_callback(body)


class TestGooglesUrlCheck:
    def test_the_configuration_request_is_answered_with_its_secret_and_stores_nothing(self):
        body = orjson.dumps({"clientToken": CLIENT_TOKEN, "secret": "echo-me-1234"})
        received = request(body, {"content-type": "application/json"})
        assert PROVIDER.verify(context(CLIENT_TOKEN), received, CREDENTIALS)
        assert PROVIDER.parse(body) == []
        reply = PROVIDER.acknowledge(received, "")
        assert reply is not None
        assert (reply.status_code, reply.body, reply.media_type) == (200, b"echo-me-1234", "text/plain")

    def test_a_wrong_client_token_is_refused(self):
        body = orjson.dumps({"clientToken": "guess", "secret": "echo-me-1234"})
        assert not PROVIDER.verify(context(CLIENT_TOKEN), request(body, {}), CREDENTIALS)
        assert not PROVIDER.verify(context(""), request(body, {}), CREDENTIALS)

    def test_an_event_is_acknowledged_the_usual_way(self):
        body, headers = push(delivered())
        assert PROVIDER.acknowledge(request(body, headers), "applied") is None


class TestEvents:
    def test_delivered_and_read_are_reports_whose_repeats_collapse(self):
        [first] = parse_callback(push(delivered())[0])
        [again] = parse_callback(push(delivered(eventId="another-event-id"))[0])
        [read] = parse_callback(push(delivered(eventType="READ"))[0])
        assert isinstance(first, StatusEvent) and isinstance(read, StatusEvent)
        assert (first.status, first.provider_message_id) == ("DELIVERED", MESSAGE_ID)
        assert first.timestamp_ms == time_ms("2026-02-01T10:00:00.123Z")
        assert first.dedupe_key == again.dedupe_key != read.dedupe_key
        assert read.status == "READ"

    def test_a_message_revoked_at_its_ttl_failed(self):
        event = {
            "phoneNumber": "+85512345670",
            "eventType": "TTL_EXPIRATION_REVOKED",
            "messageId": MESSAGE_ID,
        }
        [revoked] = parse_callback(push(event)[0])
        assert isinstance(revoked, StatusEvent)
        assert (revoked.status, revoked.error_code) == ("FAIL", "RBM_TTL_EXPIRED")
        assert revoked.timestamp_ms == time_ms("2026-02-01T10:00:01.5Z")  # the push's publishTime

    @pytest.mark.parametrize("kind", ["IS_TYPING", "TTL_EXPIRATION_REVOKE_FAILED", "SOMETHING_NEW"])
    def test_events_that_change_nothing_yield_nothing(self, kind: str):
        assert parse_callback(push(delivered(eventType=kind))[0]) == []

    def test_a_status_event_without_its_message_id_is_refused(self):
        event = delivered()
        del event["messageId"]
        with pytest.raises(CallbackRejected, match="messageId"):
            parse_callback(push(event)[0])


def user_message(**content: Any) -> InboundEvent:
    event = {
        "senderPhoneNumber": "+85512345671",
        "messageId": "MsUser0001",
        "sendTime": "2026-02-01T10:00:00Z",
        **content,
    }
    [inbound] = parse_callback(push(event)[0])
    assert isinstance(inbound, InboundEvent)
    assert (inbound.kind, inbound.contact.id, inbound.contact.phone) == (
        "message",
        "85512345671",
        "85512345671",
    )
    assert inbound.dedupe_key == "message:MsUser0001"
    assert inbound.message["extra"]["agentId"] == AGENT
    return inbound


class TestUserMessages:
    def test_text(self):
        inbound = user_message(text="Is my card ready? ស្រី")
        assert (inbound.message["type"], inbound.message["message"]) == ("text", "Is my card ready? ស្រី")

    def test_a_tapped_suggestion_is_its_label_with_the_postback_in_extra(self):
        inbound = user_message(
            suggestionResponse={"postbackData": "activate-4711", "text": "Activate", "type": "REPLY"}
        )
        assert (inbound.message["type"], inbound.message["message"]) == ("text", "Activate")
        assert inbound.message["extra"]["suggestionResponse"]["postbackData"] == "activate-4711"

    def test_a_shared_location(self):
        inbound = user_message(location={"latitude": 11.5564, "longitude": 104.9282})
        assert inbound.message["type"] == "location"
        assert inbound.message["location"] == {"latitude": 11.5564, "longitude": 104.9282}

    def test_a_shared_file_by_its_kind(self):
        payload = {
            "mimeType": "image/jpeg",
            "fileSizeBytes": "3456",
            "fileUri": "https://rcs.example/f",
            "fileName": "a.jpg",
        }
        inbound = user_message(
            userFile={"payload": payload, "thumbnail": {"fileUri": "https://rcs.example/t"}}
        )
        assert {k: v for k, v in inbound.message.items() if k != "extra"} == {
            "type": "picture",
            "fileUrl": "https://rcs.example/f",
            "fileName": "a.jpg",
            "fileSize": 3456,
            "thumbnailUrl": "https://rcs.example/t",
        }
        pdf = user_message(userFile={"payload": {**payload, "mimeType": "application/pdf"}})
        assert pdf.message["type"] == "file"

    def test_a_sender_that_is_no_phone_number_is_refused(self):
        with pytest.raises(CallbackRejected, match="senderPhoneNumber"):
            parse_callback(push({"senderPhoneNumber": "someone", "messageId": "m1", "text": "hi"})[0])

    def test_nanosecond_times_are_read(self):
        assert time_ms("2026-02-01T10:00:00.123456789Z") == time_ms("2026-02-01T10:00:00.123Z")
        assert time_ms("yesterday") is None
