"""Messenger webhooks as the provider reads them: the signature, the GET handshake, the bodies (inbound
messages and postbacks, per-mid deliveries, delivery and read watermarks, echoes) and their dedupe keys;
and the Send API's error answers as `ProviderError`s."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import orjson
import pytest

from openmmp.kit.http import HttpResponse
from openmmp.providers.base import (
    CallbackRejected,
    CallbackRequest,
    CallbackUnverified,
    InboundEvent,
    ProviderContext,
    ProviderError,
    StatusEvent,
)
from openmmp.providers.messenger import errors
from openmmp.providers.messenger.callbacks import VERIFY_TOKEN_PURPOSE, parse_callback
from openmmp.providers.messenger.provider import MessengerProvider
from openmmp.providers.meta.webhooks import sign, verify_token

PROVIDER = MessengerProvider()
SECRET = "6c1a2f0e9d8b7a6c"
CREDENTIALS = {"pageId": "112233445566", "pageAccessToken": "EAAB-page-token", "appSecret": SECRET}
CTX = ProviderContext(http=None, base_url="http://sim", public_url="http://mmp", sandbox=False)  # type: ignore[arg-type]
PAGE, PSID = "112233445566", "1254477777772919"


def webhook(*events: dict[str, Any], page: str = PAGE) -> bytes:
    return orjson.dumps(
        {"object": "page", "entry": [{"id": page, "time": 1458692752478, "messaging": list(events)}]}
    )


def from_user(**fields: Any) -> dict[str, Any]:
    return {"sender": {"id": PSID}, "recipient": {"id": PAGE}, **fields}


def signed(body: bytes, secret: str = SECRET) -> CallbackRequest:
    return CallbackRequest("POST", {"x-hub-signature-256": sign(body, secret)}, {}, body)


class TestSignature:
    def test_meta_s_signature_is_the_app_secret_s_hmac_of_the_raw_body(self):
        body = webhook(from_user(timestamp=1, message={"mid": "m_1", "text": "hi"}))
        expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        assert sign(body, SECRET) == expected
        assert PROVIDER.verify(
            CTX, CallbackRequest("POST", {"x-hub-signature-256": expected}, {}, body), CREDENTIALS
        )

    def test_a_changed_byte_another_secret_or_no_signature_is_refused(self):
        body = webhook(from_user(timestamp=1, message={"mid": "m_1", "text": "hi"}))
        request = signed(body)
        assert not PROVIDER.verify(
            CTX, CallbackRequest("POST", request.headers, {}, body.replace(b"hi", b"ho")), CREDENTIALS
        )
        assert not PROVIDER.verify(CTX, signed(body, "another-secret"), CREDENTIALS)
        assert not PROVIDER.verify(CTX, CallbackRequest("POST", {}, {}, body), CREDENTIALS)
        assert not PROVIDER.verify(CTX, request, {**CREDENTIALS, "appSecret": ""})

    def test_the_legacy_sha1_header_proves_nothing(self):
        body = webhook()
        legacy = "sha1=" + hmac.new(SECRET.encode(), body, hashlib.sha1).hexdigest()
        assert not PROVIDER.verify(
            CTX, CallbackRequest("POST", {"x-hub-signature": legacy}, {}, body), CREDENTIALS
        )


class TestHandshake:
    def query(self, **overrides: str) -> dict[str, str]:
        return {
            "hub.mode": "subscribe",
            "hub.verify_token": verify_token(SECRET, VERIFY_TOKEN_PURPOSE),
            "hub.challenge": "1158201444",
            **overrides,
        }

    def test_the_verify_token_is_derived_from_the_app_secret(self):
        expected = hmac.new(SECRET.encode(), b"openmmp-messenger-verify-token", hashlib.sha256).hexdigest()
        assert verify_token(SECRET, VERIFY_TOKEN_PURPOSE) == expected
        assert verify_token("another", VERIFY_TOKEN_PURPOSE) != expected

    def test_the_right_token_gets_the_challenge_back(self):
        reply = PROVIDER.challenge(CTX, CallbackRequest("GET", {}, self.query(), b""), CREDENTIALS)
        assert (reply.status_code, reply.body) == (200, b"1158201444")

    @pytest.mark.parametrize(
        "query",
        [
            {"hub.verify_token": "guess"},
            {"hub.mode": "unsubscribe"},
            {"hub.challenge": ""},
            {"hub.challenge": "9" * 1001},
            {"hub.verify_token": verify_token("whatsapp-or-another-app", VERIFY_TOKEN_PURPOSE)},
        ],
    )
    def test_a_wrong_handshake_is_unverified(self, query: dict[str, str]):
        with pytest.raises(CallbackUnverified):
            PROVIDER.challenge(CTX, CallbackRequest("GET", {}, self.query(**query), b""), CREDENTIALS)


class TestInbound:
    def test_a_text_is_an_inbound_message_from_the_psid(self):
        event = from_user(timestamp=1458692752478, message={"mid": "m_AG5Hz2", "text": "Is my card ready?"})
        [inbound] = PROVIDER.parse(webhook(event))
        assert isinstance(inbound, InboundEvent)
        assert inbound.kind == "message"
        assert inbound.contact.id == PSID and inbound.contact.phone == "" and inbound.contact.name == ""
        assert inbound.message == {"type": "text", "message": "Is my card ready?", "extra": event}
        assert (inbound.timestamp_ms, inbound.dedupe_key) == (1458692752478, "message:m_AG5Hz2")

    def test_a_quick_reply_is_its_text_with_the_payload_in_extra(self):
        event = from_user(
            timestamp=2, message={"mid": "m_q", "text": "Yes", "quick_reply": {"payload": "YES_1"}}
        )
        [inbound] = PROVIDER.parse(webhook(event))
        assert isinstance(inbound, InboundEvent)
        assert inbound.message["message"] == "Yes"
        assert inbound.message["extra"]["message"]["quick_reply"]["payload"] == "YES_1"

    def test_each_attachment_is_a_message_of_its_own(self):
        attachments = [
            {"type": "image", "payload": {"url": "https://scontent.example/1.jpg"}},
            {"type": "video", "payload": {"url": "https://scontent.example/2.mp4"}},
            {"type": "audio", "payload": {"url": "https://scontent.example/3.mp4"}},
            {"type": "file", "payload": {"url": "https://scontent.example/4.pdf"}},
            {"type": "fallback", "payload": {"url": "https://bank.example/offer"}, "title": "Offer"},
            {"type": "location", "title": "Home", "payload": {"coordinates": {"lat": 11.55, "long": 104.92}}},
        ]
        events = PROVIDER.parse(
            webhook(from_user(timestamp=3, message={"mid": "m_a", "attachments": attachments}))
        )
        assert all(isinstance(e, InboundEvent) for e in events)
        contents = [{k: v for k, v in e.message.items() if k != "extra"} for e in events]  # type: ignore[union-attr]
        assert contents == [
            {"type": "picture", "message": "", "fileUrl": "https://scontent.example/1.jpg"},
            {"type": "video", "message": "", "fileUrl": "https://scontent.example/2.mp4"},
            {"type": "file", "message": "", "fileUrl": "https://scontent.example/3.mp4"},
            {"type": "file", "message": "", "fileUrl": "https://scontent.example/4.pdf"},
            {"type": "text", "message": "https://bank.example/offer"},
            {"type": "location", "message": "Home", "location": {"latitude": 11.55, "longitude": 104.92}},
        ]
        assert [e.dedupe_key for e in events] == ["message:m_a", *(f"message:m_a:{n}" for n in range(1, 6))]

    def test_an_echo_of_the_page_s_own_message_is_nothing(self):
        echo = {
            "sender": {"id": PAGE},
            "recipient": {"id": PSID},
            "timestamp": 4,
            "message": {
                "is_echo": True,
                "app_id": 1517776481860111,
                "mid": "m_e",
                "text": "Your card is ready",
            },
        }
        assert PROVIDER.parse(webhook(echo)) == []

    def test_a_postback_is_a_text_of_its_title_with_the_payload_in_extra(self):
        event = from_user(timestamp=5, postback={"mid": "m_p", "title": "Pick up", "payload": "PICKUP"})
        [inbound] = PROVIDER.parse(webhook(event))
        assert isinstance(inbound, InboundEvent)
        assert inbound.message["type"] == "text" and inbound.message["message"] == "Pick up"
        assert inbound.message["extra"]["postback"]["payload"] == "PICKUP"
        assert inbound.dedupe_key == "postback:m_p"

    def test_a_postback_without_mid_or_title_is_keyed_by_user_time_and_payload(self):
        event = from_user(timestamp=1458692752478, postback={"payload": "GET_STARTED"})
        [first] = PROVIDER.parse(webhook(event))
        [other] = PROVIDER.parse(webhook(from_user(timestamp=1458692752478, postback={"payload": "MENU"})))
        assert isinstance(first, InboundEvent)
        assert first.message["message"] == "GET_STARTED"
        assert first.dedupe_key.startswith(f"postback:{PSID}:1458692752478:")
        assert first.dedupe_key != other.dedupe_key

    def test_newer_samples_times_in_seconds_as_strings_are_read_as_such(self):
        event = from_user(timestamp="1527459824", postback={"mid": "m_s", "title": "Go", "payload": "GO"})
        [inbound] = PROVIDER.parse(webhook(event))
        assert inbound.timestamp_ms == 1527459824000


class TestReports:
    def test_a_delivery_with_mids_is_a_report_per_mid(self):
        event = from_user(delivery={"mids": ["m_1", "m_2"], "watermark": 1458668856253})
        reports = PROVIDER.parse(webhook(event))
        assert all(isinstance(r, StatusEvent) for r in reports)
        assert [(r.provider_message_id, r.status, r.up_to_ms, r.dedupe_key) for r in reports] == [  # type: ignore[union-attr]
            ("m_1", "DELIVERED", None, "delivered:m_1"),
            ("m_2", "DELIVERED", None, "delivered:m_2"),
        ]
        assert {r.timestamp_ms for r in reports} == {1458668856253}

    @pytest.mark.parametrize(
        ("field", "status", "timestamp"),
        [("delivery", "DELIVERED", 1458668856300), ("read", "READ", 1458668856463)],
    )
    def test_a_delivery_without_mids_and_a_read_are_watermarks_of_the_end_user(
        self, field: str, status: str, timestamp: int
    ):
        [report] = PROVIDER.parse(
            webhook(from_user(timestamp=timestamp, **{field: {"watermark": 1458668856253}}))
        )
        assert isinstance(report, StatusEvent)
        assert (report.provider_message_id, report.status, report.user_id) == ("", status, PSID)
        assert (report.up_to_ms, report.timestamp_ms) == (1458668856253, timestamp)
        assert report.dedupe_key == f"{status.lower()}:{PSID}:1458668856253"
        assert not report.cumulative

    def test_a_retried_body_has_the_same_keys_and_another_watermark_another(self):
        body = webhook(
            from_user(delivery={"mids": ["m_1"], "watermark": 10}),
            from_user(timestamp=12, read={"watermark": 10}),
            from_user(timestamp=13, message={"mid": "m_x", "text": "ok"}),
        )
        keys = [e.dedupe_key for e in PROVIDER.parse(body)]  # type: ignore[union-attr]
        assert keys == [e.dedupe_key for e in PROVIDER.parse(body)]  # type: ignore[union-attr]
        assert len(set(keys)) == 3
        [later] = PROVIDER.parse(webhook(from_user(timestamp=14, read={"watermark": 11})))
        assert later.dedupe_key not in keys  # type: ignore[union-attr]


class TestBodies:
    def test_several_entries_and_events_all_count_the_rest_is_ignored(self):
        body = orjson.dumps(
            {
                "object": "page",
                "entry": [
                    {
                        "id": PAGE,
                        "time": 1,
                        "messaging": [from_user(timestamp=1, message={"mid": "m_1", "text": "a"})],
                    },
                    {
                        "id": PAGE,
                        "time": 2,
                        "standby": [from_user(timestamp=2, message={"mid": "m_2", "text": "b"})],
                    },
                    {
                        "id": PAGE,
                        "time": 3,
                        "messaging": [
                            from_user(timestamp=3, optin={"ref": "x"}),
                            from_user(timestamp=3, reaction={"mid": "m_1", "action": "react", "emoji": "x"}),
                            from_user(timestamp=3, read={"watermark": 3}),
                        ],
                    },
                ],
            }
        )
        events = PROVIDER.parse(body)
        assert [type(e).__name__ for e in events] == ["InboundEvent", "StatusEvent"]

    @pytest.mark.parametrize(
        "body",
        [
            b"not json",
            orjson.dumps({"object": "whatsapp_business_account", "entry": []}),
            orjson.dumps({"object": "page"}),
            orjson.dumps({"object": "page", "entry": ["x"]}),
            orjson.dumps({"object": "page", "entry": [{"id": PAGE, "messaging": {"not": "a list"}}]}),
            webhook(
                {"recipient": {"id": PAGE}, "timestamp": 1, "message": {"mid": "m_1", "text": "no sender"}}
            ),
            webhook(from_user(timestamp=1, message={"text": "no mid"})),
            webhook(from_user(message={"mid": "m_1", "text": "no time"})),
            webhook(from_user(timestamp=True, message={"mid": "m_1", "text": "odd time"})),
            webhook(from_user(delivery={"mids": "m_1", "watermark": 1})),
            webhook(from_user(read={"watermark": "soon"})),
        ],
    )
    def test_what_is_not_a_page_webhook_is_rejected(self, body: bytes):
        with pytest.raises(CallbackRejected):
            parse_callback(body)


def answer(status: int, body: Any, **headers: str) -> HttpResponse:
    return HttpResponse(status, headers, orjson.dumps(body), 1.0)


def envelope(code: int, subcode: int | None = None, message: str = "words") -> dict[str, Any]:
    error: dict[str, Any] = {
        "message": f"(#{code}) {message}",
        "type": "OAuthException",
        "code": code,
        "fbtrace_id": "x",
    }
    if subcode is not None:
        error["error_subcode"] = subcode
    return {"error": error}


class TestErrors:
    def test_an_accepted_send_is_its_mid(self):
        ok = errors.send_outcome(answer(200, {"recipient_id": PSID, "message_id": "m_AG5Hz2"}))
        assert ok.provider_message_id == "m_AG5Hz2"

    def test_an_accepted_send_without_mid_is_a_bad_answer_worth_a_retry(self):
        with pytest.raises(ProviderError) as caught:
            errors.send_outcome(answer(200, {"recipient_id": PSID}))
        assert caught.value.retryable

    @pytest.mark.parametrize(
        ("status", "body", "code", "retryable", "rate_limited"),
        [
            (400, envelope(10, 2018278), "MESSENGER_2018278", False, False),
            (400, envelope(551, 1545041), "MESSENGER_551", False, False),
            (400, envelope(100, 2018001), "MESSENGER_2018001", False, False),
            (400, envelope(100), "MESSENGER_100", False, False),
            (401, envelope(190), "MESSENGER_190", False, False),
            (403, envelope(200), "MESSENGER_200", False, False),
            (500, envelope(1200), "MESSENGER_1200", True, False),
            (500, envelope(2), "MESSENGER_2", True, False),
            (400, envelope(1), "MESSENGER_1", True, False),
            (503, envelope(368), "MESSENGER_368", True, False),
            (400, envelope(613), "MESSENGER_613", True, True),
            (400, envelope(4), "MESSENGER_4", True, True),
            (400, envelope(32), "MESSENGER_32", True, True),
            (400, envelope(80006), "MESSENGER_80006", True, True),
            (502, "<html>Bad gateway</html>", "MESSENGER_HTTP_502", True, False),
            (429, None, "MESSENGER_HTTP_429", True, True),
            (404, None, "MESSENGER_HTTP_404", False, False),
        ],
    )
    def test_meta_s_answers_are_classified(
        self, status: int, body: Any, code: str, retryable: bool, rate_limited: bool
    ):
        with pytest.raises(ProviderError) as caught:
            errors.send_outcome(answer(status, body))
        error = caught.value
        assert (error.code, error.retryable, error.rate_limited) == (code, retryable, rate_limited)

    def test_a_rate_limit_waits_meta_s_retry_after_or_a_minute(self):
        with pytest.raises(ProviderError) as caught:
            errors.send_outcome(answer(400, envelope(613), **{"retry-after": "7"}))
        assert caught.value.retry_after == 7.0
        with pytest.raises(ProviderError) as caught:
            errors.send_outcome(answer(400, envelope(613)))
        assert caught.value.retry_after == 60.0

    def test_the_message_explains_and_keeps_meta_s_words(self):
        with pytest.raises(ProviderError) as caught:
            errors.send_outcome(
                answer(400, envelope(10, 2018278, "This message is sent outside of allowed window."))
            )
        message = caught.value.message
        assert message.startswith("outside the 24-hour window")
        assert "This message is sent outside of allowed window." in message
        with pytest.raises(ProviderError) as caught:
            errors.send_outcome(answer(401, envelope(190, message="Invalid OAuth access token.")))
        assert "credentials.pageAccessToken" in caught.value.message
