"""Zalo's webhook signature: `mac=` the plain SHA-256 of app id, raw body, the body's timestamp and the
secret key; either the app's or the OA's id is accepted as the first term."""

from __future__ import annotations

import hashlib

import orjson
import pytest

from openmmp.providers.base import CallbackRequest
from openmmp.providers.zalo.webhooks import body_timestamp, event_mac, sign_event, verify_zalo

CREDENTIALS = {
    "oaId": "388613280878808645",
    "appId": "360846524940903967",
    "accessToken": "at",
    "refreshToken": "rt",
    "secretKey": "s3cret-key",
}
BODY = (
    b'{"app_id":"360846524940903967","event_name":"user_send_text","sender":{"id":"2468458835296197922"},'
    b'"message":{"text":"hi","msg_id":"96d3cdf3af150460909"},"timestamp":"1700000000123"}'
)


def request(body: bytes, signature: str | None) -> CallbackRequest:
    headers = {"content-type": "application/json"}
    if signature is not None:
        headers["x-zevent-signature"] = signature
    return CallbackRequest("POST", headers, {}, body)


def test_the_mac_is_the_plain_sha256_of_the_concatenation():
    expected = hashlib.sha256(b"app" + b"{}" + b"123" + b"key").hexdigest()
    assert event_mac("app", b"{}", "123", "key") == expected


def test_a_signed_event_verifies_with_the_app_id():
    signature = sign_event(CREDENTIALS["appId"], BODY, CREDENTIALS["secretKey"])
    mac = hashlib.sha256(
        CREDENTIALS["appId"].encode() + BODY + b"1700000000123" + CREDENTIALS["secretKey"].encode()
    ).hexdigest()
    assert signature == f"mac={mac}"
    assert verify_zalo(request(BODY, signature), CREDENTIALS)


def test_the_oa_id_as_first_term_is_accepted_too():
    mac = event_mac(CREDENTIALS["oaId"], BODY, "1700000000123", CREDENTIALS["secretKey"])
    assert verify_zalo(request(BODY, f"mac={mac}"), CREDENTIALS)


def test_the_header_s_case_and_spacing_do_not_matter():
    signature = sign_event(CREDENTIALS["appId"], BODY, CREDENTIALS["secretKey"])
    assert verify_zalo(request(BODY, " MAC=" + signature[4:].upper() + " "), CREDENTIALS)


@pytest.mark.parametrize(
    "signature",
    [None, "", "mac=", "sha256=abc", "deadbeef", "mac=" + "0" * 64],
)
def test_a_missing_or_wrong_signature_is_refused(signature: str | None):
    assert not verify_zalo(request(BODY, signature), CREDENTIALS)


def test_a_changed_byte_is_refused():
    signature = sign_event(CREDENTIALS["appId"], BODY, CREDENTIALS["secretKey"])
    tampered = BODY.replace(b'"hi"', b'"ho"')
    assert not verify_zalo(request(tampered, signature), CREDENTIALS)


def test_another_channel_s_secret_or_ids_are_refused():
    signature = sign_event(CREDENTIALS["appId"], BODY, CREDENTIALS["secretKey"])
    assert not verify_zalo(request(BODY, signature), {**CREDENTIALS, "secretKey": "other"})
    other = {**CREDENTIALS, "appId": "1", "oaId": "2"}
    assert not verify_zalo(request(BODY, signature), other)


def test_the_mac_is_over_the_raw_bytes_not_a_re_serialisation():
    spaced = b'{ "event_name": "follow",  "timestamp": "1700000000999" }'
    signature = sign_event(CREDENTIALS["appId"], spaced, CREDENTIALS["secretKey"])
    assert verify_zalo(request(spaced, signature), CREDENTIALS)
    compact = orjson.dumps(orjson.loads(spaced))
    assert not verify_zalo(request(compact, signature), CREDENTIALS)


def test_a_numeric_timestamp_counts_by_its_digits():
    body = b'{"event_name":"follow","timestamp":1700000000999}'
    assert body_timestamp(body) == "1700000000999"
    signature = sign_event(CREDENTIALS["appId"], body, CREDENTIALS["secretKey"])
    assert verify_zalo(request(body, signature), CREDENTIALS)


@pytest.mark.parametrize("body", [b"not json", b"[]", b'{"event_name":"follow"}', b'{"timestamp":true}'])
def test_a_body_without_a_timestamp_is_refused_and_cannot_be_signed(body: bytes):
    assert body_timestamp(body) is None
    mac = event_mac(CREDENTIALS["appId"], body, "", CREDENTIALS["secretKey"])
    assert not verify_zalo(request(body, f"mac={mac}"), CREDENTIALS)
    with pytest.raises(ValueError, match="timestamp"):
        sign_event(CREDENTIALS["appId"], body, CREDENTIALS["secretKey"])


def test_credentials_without_a_secret_prove_nothing():
    mac = event_mac(CREDENTIALS["appId"], BODY, "1700000000123", "")
    assert not verify_zalo(request(BODY, f"mac={mac}"), {**CREDENTIALS, "secretKey": ""})
