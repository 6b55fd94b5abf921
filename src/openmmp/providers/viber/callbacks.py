"""Viber Business Messages callbacks: signature check and parsing into core events.

Viber's own callback format is partner-confidential and secured by IP allow-listing. OpenMMP instead
requires an HMAC, the same scheme as the Viber Bot API: header `X-Viber-Content-Signature` = lowercase hex
HMAC-SHA256 of the raw body, keyed by the operator's partner callback secret. The body OpenMMP accepts
(its documented choice; a partner relay or the simulator produces it) is one JSON object:

    {"event": "delivered" | "seen" | "expired" | "message",
     "message_token": str, "seq": int, "service_id": int, "dest": "<E.164 digits>",
     "timestamp": <epoch ms>, "device"?: str, "text"?: str, "tracking_data"?: str}

`delivered` → DELIVERED, `seen` → READ, `expired` (TTL passed undelivered) → FAIL with `VIBER_EXPIRED`,
`message` (the user's reply) → an inbound message from the `dest` phone. Viber may report `delivered` once
per device: the `dedupe_key` leaves the device out so such repeats collapse.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from openmmp.providers.base import (
    CallbackEvent,
    CallbackRejected,
    Contact,
    InboundEvent,
    StatusEvent,
    StatusName,
)

# The same scheme as Viber Bot (hex HMAC-SHA256 of the raw body), keyed by the partner secret.
from openmmp.providers.viber_bot.callbacks import MAX_TIMESTAMP_MS, MAX_TOKEN_LENGTH
from openmmp.providers.viber_bot.callbacks import SIGNATURE_HEADER as SIGNATURE_HEADER
from openmmp.providers.viber_bot.callbacks import sign as sign
from openmmp.providers.viber_bot.callbacks import verify_signature as verify_signature

SANDBOX_CALLBACK_SECRET = "sandbox-viber-callback-secret"  # noqa: S105 - published on purpose
"""The sandbox's secret (simulator and platform agree on it); deployments set their own."""

_STATUS_EVENTS: Mapping[str, StatusName] = {"delivered": "DELIVERED", "seen": "READ", "expired": "FAIL"}


def parse_callback(raw: bytes) -> CallbackEvent:
    """Turn a verified callback body into a `StatusEvent` or `InboundEvent`.

    Raises `CallbackRejected` for a body that is not the documented shape. `provider_message_id` is the
    `message_token` as a string, matching `ViberClient.send_message`'s `SendOk`.
    """
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise CallbackRejected("callback body is not JSON") from exc
    if not isinstance(body, dict):
        raise CallbackRejected("callback body is not a JSON object")
    event = body.get("event")
    if not isinstance(event, str):
        raise CallbackRejected("callback has no event")
    token = body.get("message_token")
    if isinstance(token, bool) or not isinstance(token, int | str) or token == "":
        raise CallbackRejected("callback has no message_token")
    token = str(token)
    if len(token) > MAX_TOKEN_LENGTH:
        raise CallbackRejected("callback message_token is too long")
    timestamp = body.get("timestamp")
    if isinstance(timestamp, bool) or not isinstance(timestamp, int):
        raise CallbackRejected("callback has no numeric timestamp")
    if not 0 <= timestamp <= MAX_TIMESTAMP_MS:
        raise CallbackRejected("callback timestamp is out of range")

    if event in _STATUS_EVENTS:
        expired = event == "expired"
        return StatusEvent(
            provider_message_id=token,
            status=_STATUS_EVENTS[event],
            timestamp_ms=timestamp,
            dedupe_key=f"{event}:{token}",
            raw=body,
            error_code="VIBER_EXPIRED" if expired else None,
            error_message="the message expired (TTL) before it was delivered" if expired else None,
        )
    if event == "message":
        dest = body.get("dest")
        if not isinstance(dest, str) or not dest:
            raise CallbackRejected("message callback has no dest")
        phone = dest.lstrip("+")
        if not (phone.isascii() and phone.isdigit()) or len(phone) > 15:
            raise CallbackRejected("message callback dest is not an E.164 phone number")
        text = body.get("text")
        message: dict[str, Any] = {
            "type": "text",
            "message": text if isinstance(text, str) else "",
            "extra": body,
        }
        return InboundEvent(
            kind="message",
            contact=Contact(id=phone, phone=phone),
            message=message,
            timestamp_ms=timestamp,
            dedupe_key=f"message:{token}",
            raw=body,
        )
    raise CallbackRejected(f"unsupported Viber event {event!r}")
