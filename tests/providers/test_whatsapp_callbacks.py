"""Cloud API webhooks: the signature over the raw bytes, the GET handshake, and what bodies become."""

from __future__ import annotations

import hashlib
import hmac
import subprocess
from typing import Any

import orjson
import pytest

from openmmp.kit.http import HttpClient
from openmmp.providers.base import (
    CallbackRejected,
    CallbackRequest,
    CallbackUnverified,
    InboundEvent,
    ProviderContext,
    StatusEvent,
    TemplateEvent,
)
from openmmp.providers.meta.webhooks import sign
from openmmp.providers.whatsapp.callbacks import callback_verify_token, parse_callback
from openmmp.providers.whatsapp.provider import WhatsappProvider

PROVIDER = WhatsappProvider()
SECRET = "6c1a2f0e9d8b7a6c5e4d3c2b1a0f9e8d"
CREDENTIALS = {
    "phoneNumberId": "106540352242922",
    "wabaId": "102290129340398",
    "accessToken": "EAAJ",
    "appSecret": SECRET,
}
CTX = ProviderContext(http=HttpClient(), base_url="", public_url="", sandbox=False)


def webhook(*changes: dict[str, Any], time: int | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {"id": "102290129340398", "changes": list(changes)}
    if time is not None:
        entry["time"] = time
    return {"object": "whatsapp_business_account", "entry": [entry]}


def messages(**value: Any) -> dict[str, Any]:
    metadata = {"display_phone_number": "15550783881", "phone_number_id": "106540352242922"}
    return {"field": "messages", "value": {"messaging_product": "whatsapp", "metadata": metadata, **value}}


def status(wamid: str, name: str, **extra: Any) -> dict[str, Any]:
    return {"id": wamid, "status": name, "timestamp": "1750000000", "recipient_id": "85512345670", **extra}


def inbound(message: dict[str, Any], name: str = "Sokha") -> dict[str, Any]:
    return messages(
        contacts=[{"profile": {"name": name}, "wa_id": "85512345670"}],
        messages=[{"from": "85512345670", "id": "wamid.IN1", "timestamp": "1750000001", **message}],
    )


def parsed(body: dict[str, Any]) -> list[Any]:
    return list(PROVIDER.parse(orjson.dumps(body)))


def request(raw: bytes, **headers: str) -> CallbackRequest:
    return CallbackRequest("POST", {k.lower(): v for k, v in headers.items()}, {}, raw)


class TestSignature:
    RAW = orjson.dumps(webhook(messages(statuses=[status("wamid.A", "delivered")])))

    def test_the_app_secrets_hmac_of_the_raw_body_is_accepted(self):
        expected = "sha256=" + hmac.new(SECRET.encode(), self.RAW, hashlib.sha256).hexdigest()
        assert sign(self.RAW, SECRET) == expected
        assert PROVIDER.verify(CTX, request(self.RAW, **{"X-Hub-Signature-256": expected}), CREDENTIALS)
        assert PROVIDER.verify(
            CTX, request(self.RAW, **{"x-hub-signature-256": expected.upper()}), CREDENTIALS
        )

    @pytest.mark.parametrize(
        "header",
        [
            None,
            "",
            "sha256=",
            "sha1=" + hmac.new(SECRET.encode(), RAW, hashlib.sha1).hexdigest(),
            hmac.new(SECRET.encode(), RAW, hashlib.sha256).hexdigest(),  # without "sha256="
            sign(RAW, "another-app-secret"),
        ],
    )
    def test_anything_else_is_refused(self, header: str | None):
        headers = {} if header is None else {"X-Hub-Signature-256": header}
        assert not PROVIDER.verify(CTX, request(self.RAW, **headers), CREDENTIALS)

    def test_a_changed_byte_is_refused(self):
        signature = sign(self.RAW, SECRET)
        changed = self.RAW.replace(b"delivered", b"Delivered")
        assert not PROVIDER.verify(CTX, request(changed, **{"X-Hub-Signature-256": signature}), CREDENTIALS)

    def test_a_channel_without_an_app_secret_proves_nothing(self):
        signature = sign(self.RAW, "")
        headers = {"X-Hub-Signature-256": signature}
        assert not PROVIDER.verify(CTX, request(self.RAW, **headers), {**CREDENTIALS, "appSecret": ""})


class TestHandshake:
    def handshake(self, **query: str) -> bytes:
        reply = PROVIDER.challenge(CTX, CallbackRequest("GET", {}, query, b""), CREDENTIALS)
        assert (reply.status_code, reply.media_type) == (200, "text/plain")
        return reply.body

    def test_the_channels_token_gets_the_challenge_back(self):
        token = callback_verify_token(SECRET)
        query = {"hub.mode": "subscribe", "hub.verify_token": token, "hub.challenge": "1158201444"}
        assert self.handshake(**query) == b"1158201444"

    def test_the_token_is_what_the_readme_says_openssl_computes(self):
        answer = subprocess.run(
            ["openssl", "dgst", "-sha256", "-hmac", SECRET],
            input=b"openmmp-whatsapp-verify-token",
            capture_output=True,
            check=True,
        )
        assert answer.stdout.decode().strip().endswith(callback_verify_token(SECRET))
        assert callback_verify_token(SECRET) != callback_verify_token(SECRET + "x")

    @pytest.mark.parametrize(
        "query",
        [
            {"hub.mode": "subscribe", "hub.verify_token": "guess", "hub.challenge": "1"},
            {"hub.mode": "unsubscribe", "hub.verify_token": "TOKEN", "hub.challenge": "1"},
            {"hub.mode": "subscribe", "hub.verify_token": "TOKEN"},
            {"hub.mode": "subscribe", "hub.verify_token": "TOKEN", "hub.challenge": "9" * 1001},
            {},
        ],
    )
    def test_a_wrong_handshake_is_unverified(self, query: dict[str, str]):
        query = {k: v.replace("TOKEN", callback_verify_token(SECRET)) for k, v in query.items()}
        with pytest.raises(CallbackUnverified):
            self.handshake(**query)

    def test_another_channels_token_does_not_verify_this_one(self):
        query = {
            "hub.mode": "subscribe",
            "hub.verify_token": callback_verify_token("other"),
            "hub.challenge": "1",
        }
        with pytest.raises(CallbackUnverified):
            self.handshake(**query)


class TestStatuses:
    def test_delivered_read_and_failed_are_reports_sent_changes_nothing(self):
        failed = status(
            "wamid.C",
            "failed",
            errors=[
                {
                    "code": 131026,
                    "title": "Message undeliverable",
                    "message": "Message undeliverable",
                    "error_data": {"details": "the number is not on WhatsApp"},
                }
            ],
        )
        body = webhook(
            messages(statuses=[status("wamid.A", "sent"), status("wamid.A", "delivered")]),
            messages(statuses=[status("wamid.B", "read"), failed, status("wamid.D", "deleted")]),
        )
        events = parsed(body)
        assert [(e.provider_message_id, e.status, e.dedupe_key) for e in events] == [
            ("wamid.A", "DELIVERED", "delivered:wamid.A"),
            ("wamid.B", "READ", "read:wamid.B"),
            ("wamid.C", "FAIL", "failed:wamid.C"),
        ]
        assert all(isinstance(e, StatusEvent) and e.timestamp_ms == 1_750_000_000_000 for e in events)
        assert (events[2].error_code, events[2].error_message) == (
            "WHATSAPP_131026",
            "Message undeliverable: the number is not on WhatsApp",
        )
        assert events[0].error_code is None and not events[0].cumulative

    def test_a_window_failure_says_a_template_is_needed(self):
        failed = status("wamid.E", "failed", errors=[{"code": 131047, "title": "Re-engagement message"}])
        [event] = parsed(webhook(messages(statuses=[failed])))
        assert event.error_code == "WHATSAPP_131047"
        assert "24-hour customer-service window" in event.error_message
        assert "template (fb_whatsapp_template)" in event.error_message

    def test_a_failure_without_a_code_still_fails(self):
        [event] = parsed(webhook(messages(statuses=[status("wamid.F", "failed")])))
        assert (event.status, event.error_code, event.error_message) == ("FAIL", "WHATSAPP_FAILED", "failed")

    def test_several_entries_are_all_read_and_a_repeat_has_the_same_keys(self):
        body = webhook(messages(statuses=[status("wamid.A", "delivered")]))
        body["entry"].append(webhook(messages(statuses=[status("wamid.B", "delivered")]))["entry"][0])
        first = [e.dedupe_key for e in parsed(body)]
        assert first == ["delivered:wamid.A", "delivered:wamid.B"] == [e.dedupe_key for e in parsed(body)]


class TestInboundMessages:
    def one(self, message: dict[str, Any]) -> InboundEvent:
        [event] = parsed(webhook(inbound(message)))
        assert isinstance(event, InboundEvent)
        assert event.kind == "message"
        assert (event.contact.id, event.contact.name, event.contact.phone) == (
            "85512345670",
            "Sokha",
            "85512345670",
        )
        assert event.dedupe_key == "message:wamid.IN1"
        assert event.timestamp_ms == 1_750_000_001_000
        assert event.message["extra"]["id"] == "wamid.IN1"
        return event

    def test_text(self):
        event = self.one({"type": "text", "text": {"body": "Is my card ready?"}})
        assert {k: v for k, v in event.message.items() if k != "extra"} == {
            "type": "text",
            "message": "Is my card ready?",
        }

    @pytest.mark.parametrize(
        ("kind", "mmp"),
        [
            ("image", "picture"),
            ("video", "video"),
            ("document", "file"),
            ("audio", "file"),
            ("sticker", "picture"),
        ],
    )
    def test_media_arrive_as_their_graph_api_url(self, kind: str, mmp: str):
        media = {"id": "1037543291543636", "mime_type": "x/y", "sha256": "abc", "caption": "Look"}
        if kind == "document":
            media["filename"] = "receipt.pdf"
        event = self.one({"type": kind, kind: media})
        assert event.message["type"] == mmp
        assert event.message["fileUrl"] == "https://graph.facebook.com/1037543291543636"
        assert event.message["message"] == "Look"
        assert event.message.get("fileName") == ("receipt.pdf" if kind == "document" else None)

    def test_a_reply_button_is_its_title_with_the_id_in_extra(self):
        reply = {"type": "button_reply", "button_reply": {"id": "slot-ok", "title": "Yes"}}
        event = self.one({"type": "interactive", "interactive": reply, "context": {"id": "wamid.OUT"}})
        assert (event.message["type"], event.message["message"]) == ("text", "Yes")
        assert event.message["extra"]["interactive"]["button_reply"]["id"] == "slot-ok"

    def test_a_list_reply_is_its_title(self):
        reply = {
            "type": "list_reply",
            "list_reply": {"id": "n1", "title": "Toul Kork", "description": "8-17h"},
        }
        assert self.one({"type": "interactive", "interactive": reply}).message["message"] == "Toul Kork"

    def test_a_template_quick_reply_is_its_text_with_the_payload_in_extra(self):
        event = self.one({"type": "button", "button": {"payload": "CONFIRM-4711", "text": "Confirm"}})
        assert event.message["message"] == "Confirm"
        assert event.message["extra"]["button"]["payload"] == "CONFIRM-4711"

    def test_a_location(self):
        place = {"latitude": 11.55, "longitude": 104.92, "name": "Home", "address": "St 1"}
        event = self.one({"type": "location", "location": place})
        assert event.message["type"] == "location"
        assert event.message["location"] == place
        assert event.message["message"] == "Home"

    def test_a_reaction(self):
        event = self.one({"type": "reaction", "reaction": {"message_id": "wamid.OUT", "emoji": "👍"}})
        assert (event.message["type"], event.message["message"]) == ("reaction", "👍")

    def test_an_unknown_type_still_reaches_the_business(self):
        event = self.one({"type": "unsupported", "errors": [{"code": 131051}]})
        assert (event.message["type"], event.message["message"]) == ("text", "")

    def test_a_message_and_a_status_in_one_body_are_two_events(self):
        change = inbound({"type": "text", "text": {"body": "hi"}})
        change["value"]["statuses"] = [status("wamid.A", "read")]
        assert [type(e) for e in parsed(webhook(change))] == [StatusEvent, InboundEvent]


class TestTemplateEvents:
    def update(self, event: str, reason: str = "NONE") -> dict[str, Any]:
        value = {
            "event": event,
            "message_template_id": 594425479261596,
            "message_template_name": "order_ready",
            "message_template_language": "en_US",
            "reason": reason,
        }
        return webhook({"field": "message_template_status_update", "value": value}, time=1750000100)

    @pytest.mark.parametrize(
        ("event", "reason", "status", "cause"),
        [
            ("APPROVED", "NONE", "APPROVED", "APPROVED"),
            ("REJECTED", "INVALID_FORMAT", "REJECTED", "REJECTED: INVALID_FORMAT"),
            ("PAUSED", "NONE", "REJECTED", "PAUSED"),
            ("PENDING", "NONE", "REQUEST", "PENDING"),
        ],
    )
    def test_decisions_become_template_events(self, event: str, reason: str, status: str, cause: str):
        [found] = parsed(self.update(event, reason))
        assert isinstance(found, TemplateEvent)
        assert (found.template_id, found.status, found.cause) == ("594425479261596", status, cause)
        assert found.timestamp_ms == 1_750_000_100_000
        assert found.dedupe_key == f"template:594425479261596:{event}:1750000100000"

    def test_other_template_events_and_other_fields_change_nothing(self):
        assert parsed(self.update("FLAGGED")) == []
        assert parsed(webhook({"field": "account_update", "value": {"event": "VERIFIED_ACCOUNT"}})) == []

    def category_update(self, **value: Any) -> dict[str, Any]:
        named = {
            "message_template_id": 594425479261596,
            "message_template_name": "order_ready",
            "message_template_language": "en_US",
        }
        return webhook({"field": "template_category_update", "value": {**named, **value}}, time=1750000200)

    def test_a_category_meta_changed_is_a_change_of_the_form_with_the_status_unchanged(self):
        [found] = parsed(self.category_update(previous_category="UTILITY", new_category="MARKETING"))
        assert isinstance(found, TemplateEvent)
        assert (found.template_id, found.status, found.changes) == (
            "594425479261596",
            None,
            {"category": "MARKETING"},
        )
        assert found.cause == "Meta changed the category from UTILITY to MARKETING"
        assert found.timestamp_ms == 1_750_000_200_000
        assert found.dedupe_key == "template:594425479261596:category:MARKETING:1750000200000"
        assert found.raw["previous_category"] == "UTILITY"

    def test_a_change_still_to_come_or_to_a_category_the_form_has_not_changes_nothing(self):
        impending = self.category_update(
            correct_category="MARKETING", new_category="UTILITY", category_update_timestamp=1750600000
        )
        assert parsed(impending) == []
        assert parsed(self.category_update(previous_category="UTILITY", new_category="SERVICE")) == []
        assert parsed(self.category_update(previous_category="UTILITY", new_category=["MARKETING"])) == []

    def test_a_category_change_without_a_template_id_is_rejected(self):
        body = self.category_update(previous_category="UTILITY", new_category="MARKETING")
        del body["entry"][0]["changes"][0]["value"]["message_template_id"]
        with pytest.raises(CallbackRejected):
            parse_callback(orjson.dumps(body))


class TestRefusedBodies:
    @pytest.mark.parametrize(
        "raw",
        [
            b"not json",
            b"[]",
            orjson.dumps({"object": "page", "entry": []}),
            orjson.dumps({"object": "whatsapp_business_account"}),
            orjson.dumps(
                {"object": "whatsapp_business_account", "entry": [{"changes": [{"field": "messages"}]}]}
            ),
            orjson.dumps(webhook(messages(statuses=[{"status": "read", "timestamp": "1"}]))),
            orjson.dumps(webhook(messages(statuses=[status("wamid.A", "read", timestamp="yesterday")]))),
            orjson.dumps(webhook(messages(statuses=[status("w" * 201, "read")]))),
            orjson.dumps(webhook(messages(messages="hi"))),
        ],
    )
    def test_a_body_that_is_not_a_whatsapp_webhook_is_rejected(self, raw: bytes):
        with pytest.raises(CallbackRejected):
            parse_callback(raw)
