"""The SMS provider's own rules: what a receipt and a reply become, which SMSC refusals a retry can help,
what a text costs in parts, and the sender's TON/NPI."""

from __future__ import annotations

import orjson
import pytest

from openmmp.providers.base import CallbackRejected, InboundEvent, StatusEvent
from openmmp.providers.smpp import pdu as smpp
from openmmp.providers.smpp.link import refusal, ton_npi, validity
from openmmp.providers.smpp.provider import SmppProvider

PROVIDER = SmppProvider()


def receipt(stat: str, submit: str = "2612061010") -> bytes:
    body = {
        "kind": "receipt",
        "id": "1a2b",
        "stat": stat,
        "err": "034",
        "submit": submit,
        "done": "",
        "at": 5,
    }
    return orjson.dumps(body)


def test_a_delivered_receipt_delivers_and_the_others_fail_with_their_state():
    [delivered] = PROVIDER.parse(receipt("DELIVRD"))
    assert isinstance(delivered, StatusEvent)
    assert (delivered.provider_message_id, delivered.status, delivered.error_code) == (
        "1a2b",
        "DELIVERED",
        None,
    )
    for state in ("UNDELIV", "EXPIRED", "REJECTD", "DELETED", "UNKNOWN"):
        [failed] = PROVIDER.parse(receipt(state))
        assert isinstance(failed, StatusEvent)
        assert (failed.status, failed.error_code) == ("FAIL", f"SMPP_{state}")
        assert failed.error_message is not None and failed.error_message.endswith("(err:034)")


def test_a_receipt_repeated_is_the_same_event_and_an_id_handed_out_again_is_not():
    assert (
        PROVIDER.parse(receipt("DELIVRD"))[0].dedupe_key == PROVIDER.parse(receipt("DELIVRD"))[0].dedupe_key
    )
    reused = PROVIDER.parse(receipt("DELIVRD", submit="2612070900"))[0]
    assert reused.dedupe_key != PROVIDER.parse(receipt("DELIVRD"))[0].dedupe_key


def test_a_reply_is_an_inbound_text_from_its_phone():
    body = {
        "kind": "mo",
        "from": "85512345670",
        "to": "ACME",
        "text": "STOP",
        "parts": 1,
        "at": 7,
        "key": "7:ab",
    }
    [event] = PROVIDER.parse(orjson.dumps(body))
    assert isinstance(event, InboundEvent)
    assert (event.contact.id, event.contact.phone, event.message["message"]) == ("85512345670",) * 2 + (
        "STOP",
    )
    assert event.dedupe_key == "mo:7:ab"


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"{}",
        b'{"kind": "other"}',
        b'{"kind": "receipt"}',
        b'{"kind": "channel", "status": "LAUNCH"}',
    ],
)
def test_anything_else_is_rejected(body: bytes):
    with pytest.raises(CallbackRejected):
        PROVIDER.parse(body)


def test_refusals_a_retry_can_help_are_retryable_and_throttling_waits():
    throttled, full = refusal(smpp.ESME_RTHROTTLED), refusal(smpp.ESME_RMSGQFUL)
    assert throttled.rate_limited and throttled.retryable and full.rate_limited
    assert refusal(smpp.ESME_RSYSERR).retryable and not refusal(smpp.ESME_RSYSERR).rate_limited
    invalid = refusal(smpp.ESME_RINVDSTADR)
    assert (invalid.code, invalid.message, invalid.retryable) == (
        "SMPP_0x0B",
        "Invalid destination address",
        False,
    )
    assert "0x000000ff" in refusal(0xFF).message and not refusal(0xFF).retryable


def test_a_text_too_long_for_255_parts_is_refused_at_accept_time():
    PROVIDER.check_message({"type": "text", "message": "x" * 153 * 255}, {})
    with pytest.raises(ValueError, match=r"^message: too long for SMS"):
        PROVIDER.check_message({"type": "text", "message": "x" * (153 * 255 + 1)}, {})
    with pytest.raises(ValueError, match=r"^message: "):
        PROVIDER.check_message({"type": "text", "message": ""}, {})


def test_the_sender_type_follows_its_shape_and_the_expiry_is_an_smpp_time():
    assert [ton_npi(a) for a in ("MYBANK", "1234", "85512345670")] == [(5, 0), (3, 0), (1, 1)]
    assert validity(None) == ""
    assert validity(1_796_557_714_000) == "261206114834000+"
