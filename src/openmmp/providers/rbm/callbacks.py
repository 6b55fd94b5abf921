"""RBM webhooks: the signature check, the configuration handshake, and events parsed for the core.

RBM posts each event in a Pub/Sub push envelope (providers.md §4 "Webhook"):

    {"message": {"data": "<base64 of the event's JSON>", "messageId": "...", "publishTime": "..."},
     "subscription": "..."}

and signs it with `X-Goog-Signature`: base64 of HMAC-SHA512 over the base64-decoded `message.data`,
keyed by the webhook's client token (the operator's, `OPENMMP_PROVIDERS__RBM_CLIENT_TOKEN`). The signed
data is all that `parse` reads: the envelope's other fields are Pub/Sub's bookkeeping. The event must
also name the channel's `agentId`, since the client token is shared by every agent of the partner.

When a webhook is configured, Google first posts `{"clientToken", "secret"}` and expects the `secret`
back as plain text: such a body is verified by its client token (constant time), yields no event (so it
is not stored: it carries the client token in clear) and is acknowledged with the secret.

Events: `DELIVERED` and `READ` user events are status reports; the `TTL_EXPIRATION_REVOKED` server event
(the message expired undelivered and RBM revoked it) is a FAIL; `IS_TYPING`,
`TTL_EXPIRATION_REVOKE_FAILED` and event types OpenMMP does not know yield nothing (answered 200, so
that RBM does not redeliver them for a week). A user message (`text`, `suggestionResponse`, `location`,
`userFile`) from `senderPhoneNumber` is an inbound message; the end user is their phone number.

RBM's `AgentLaunchEvent` reports each change of the agent's launch state in one region (the envelope's
`attributes.type` is `agent_launch_event`; only the signed data is read): `{eventId, agentId,
botDisplayName, brandId, brandDisplayName, regionId ("/v1/regions/{id}"), oldLaunchState, newLaunchState,
actingParty, comment, sendTime}`. It is a `ChannelEvent`: LAUNCHED → LAUNCH, SUSPENDED → SUSPEND,
REJECTED → REJECT, UNLAUNCHED, PENDING and PENDING_UNLAUNCH → ACCEPT (the agent reaches its test devices
only, or is about to), its cause naming the region, the new state and the reviewer's comment. States
OpenMMP does not know yield nothing. Each event names one region only: the agent's state as a whole is
what `agent_state` reports.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal

import orjson

from openmmp.kit.crypto import constant_time_equals
from openmmp.providers.base import (
    CallbackEvent,
    CallbackRejected,
    ChannelEvent,
    Contact,
    InboundEvent,
    StatusEvent,
)

SIGNATURE_HEADER = "X-Goog-Signature"
SANDBOX_CLIENT_TOKEN = "sandbox-rbm-client-token"  # noqa: S105 - published on purpose
"""The sandbox's client token (simulator and platform agree on it); deployments set their own."""
MAX_ID_LENGTH = 200
_AGENT_SUFFIX = "@rbm.goog"
_STATUS_EVENTS = {"DELIVERED": "DELIVERED", "READ": "READ"}
_QUIET_EVENTS = frozenset({"IS_TYPING", "TTL_EXPIRATION_REVOKE_FAILED"})
_LAUNCH_STATUSES: dict[str, Literal["LAUNCH", "SUSPEND", "REJECT", "ACCEPT"]] = {
    "LAUNCHED": "LAUNCH",
    "SUSPENDED": "SUSPEND",
    "REJECTED": "REJECT",
    "UNLAUNCHED": "ACCEPT",
    "PENDING": "ACCEPT",
    "PENDING_UNLAUNCH": "ACCEPT",
}
"""The channel status each launch state of an AgentLaunchEvent stands for."""
_REGION_PREFIX = "/v1/regions/"
_COMMENT_MAX = 200
_FRACTION = re.compile(r"(\.\d{6})\d+")


def sign(data: bytes, client_token: str) -> str:
    """The `X-Goog-Signature` of an event's decoded data (the simulator signs with it too)."""
    return base64.b64encode(hmac.new(client_token.encode(), data, hashlib.sha512).digest()).decode("ascii")


def _json_object(raw: bytes) -> dict[str, Any] | None:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return body if isinstance(body, dict) else None


def handshake(raw: bytes) -> tuple[str, str] | None:
    """(clientToken, secret) when `raw` is Google's webhook configuration request, else None."""
    body = _json_object(raw)
    if body is None or "message" in body:
        return None
    presented, secret = body.get("clientToken"), body.get("secret")
    if isinstance(presented, str) and isinstance(secret, str) and presented and secret:
        return presented, secret
    return None


def envelope_data(raw: bytes) -> bytes | None:
    """The decoded `message.data` of a push envelope; None when `raw` is not one."""
    body = _json_object(raw)
    message = body.get("message") if body is not None else None
    data = message.get("data") if isinstance(message, dict) else None
    if not isinstance(data, str) or not data:
        return None
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        return None


def _agent(value: Any) -> str:
    return value.strip().lower().removesuffix(_AGENT_SUFFIX) if isinstance(value, str) else ""


def verify_callback(raw: bytes, signature: str | None, client_token: str, agent_id: str) -> bool:
    """True when `raw` is the handshake with our client token, or an envelope whose data is signed with it
    and names `agent_id`. Never re-serialise the body before calling."""
    if not client_token:
        return False
    shaken = handshake(raw)
    if shaken is not None:
        return constant_time_equals(shaken[0], client_token)
    data = envelope_data(raw)
    if data is None or not signature:
        return False
    if not constant_time_equals(sign(data, client_token), signature.strip()):
        return False
    event = _json_object(data)
    named = _agent(event.get("agentId")) if event is not None else ""
    return bool(named) and constant_time_equals(named, _agent(agent_id))


def time_ms(value: Any) -> int | None:
    """Epoch ms of an RFC 3339 time as Google writes them (up to nanoseconds, `Z`); None otherwise."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(_FRACTION.sub(r"\1", value.strip()).replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def parse_callback(raw: bytes) -> list[CallbackEvent]:
    """The events of a verified body. Raises `CallbackRejected` for a body that is not RBM's."""
    if handshake(raw) is not None:
        return []
    data = envelope_data(raw)
    if data is None:
        raise CallbackRejected("callback body is not an RBM push (message.data, base64 JSON)")
    event = _json_object(data)
    if event is None:
        raise CallbackRejected("callback message.data is not a JSON object")
    envelope = _json_object(raw) or {}
    published = time_ms((envelope.get("message") or {}).get("publishTime"))
    at = time_ms(event.get("sendTime")) or published
    if at is None:
        raise CallbackRejected("callback has neither sendTime nor publishTime")
    if "newLaunchState" in event:
        return _launch_event(event, at)
    kind = event.get("eventType")
    if isinstance(kind, str):
        return _event(event, kind, at)
    if "senderPhoneNumber" in event:
        return [_user_message(event, at)]
    return []


def _id(event: Mapping[str, Any], name: str) -> str:
    value = event.get(name)
    if not isinstance(value, str) or not value:
        raise CallbackRejected(f"callback has no {name}")
    if len(value) > MAX_ID_LENGTH:
        raise CallbackRejected(f"callback {name} is too long")
    return value


def _event(event: Mapping[str, Any], kind: str, at: int) -> list[CallbackEvent]:
    if kind in _STATUS_EVENTS:
        message_id = _id(event, "messageId")
        return [
            StatusEvent(
                provider_message_id=message_id,
                status="DELIVERED" if kind == "DELIVERED" else "READ",
                timestamp_ms=at,
                # One report per message and kind: RBM's retries (even with a new eventId) collapse.
                dedupe_key=f"{kind.lower()}:{message_id}",
                raw=event,
            )
        ]
    if kind == "TTL_EXPIRATION_REVOKED":
        message_id = _id(event, "messageId")
        return [
            StatusEvent(
                provider_message_id=message_id,
                status="FAIL",
                timestamp_ms=at,
                dedupe_key=f"revoked:{message_id}",
                raw=event,
                error_code="RBM_TTL_EXPIRED",
                error_message="the message was not delivered before its TTL and RBM revoked it",
            )
        ]
    # IS_TYPING, TTL_EXPIRATION_REVOKE_FAILED, and kinds added after this was written.
    return []


def _launch_event(event: Mapping[str, Any], at: int) -> list[CallbackEvent]:
    state = str(event.get("newLaunchState") or "").removeprefix("LAUNCH_STATE_")
    status = _LAUNCH_STATUSES.get(state)
    if status is None:
        return []
    event_id = _id(event, "eventId")
    region = _id(event, "regionId").removeprefix(_REGION_PREFIX)
    comment = event.get("comment")
    cause = f"{region}: {state}"
    if isinstance(comment, str) and comment.strip():
        cause = f"{cause} ({comment.strip()[:_COMMENT_MAX]})"
    return [
        ChannelEvent(
            status=status,
            cause=cause,
            timestamp_ms=at,
            # A redelivered push repeats the event's id; another change in the region has its own.
            dedupe_key=f"launch:{region}:{state}:{event_id}",
            raw=event,
        )
    ]


def _user_message(event: Mapping[str, Any], at: int) -> InboundEvent:
    sender = event.get("senderPhoneNumber")
    phone = sender.strip().removeprefix("+") if isinstance(sender, str) else ""
    if not (phone.isascii() and phone.isdigit() and 1 <= len(phone) <= 15):
        raise CallbackRejected("callback senderPhoneNumber is not an E.164 phone number")
    message_id = _id(event, "messageId")
    return InboundEvent(
        kind="message",
        contact=Contact(id=phone, phone=phone),
        message=_mmp_message(event),
        timestamp_ms=at,
        dedupe_key=f"message:{message_id}",
        raw=event,
    )


def _mmp_message(event: Mapping[str, Any]) -> dict[str, Any]:
    """The MMP message object of a user message (api.md §5.2); `extra` is RBM's event as it came."""
    extra = dict(event)
    text = event.get("text")
    if isinstance(text, str):
        return {"type": "text", "message": text, "extra": extra}
    response = event.get("suggestionResponse")
    if isinstance(response, dict):
        # The chip's postbackData is in extra.suggestionResponse; its label is what the user "said".
        said = response.get("text")
        return {"type": "text", "message": said if isinstance(said, str) else "", "extra": extra}
    location = event.get("location")
    if isinstance(location, dict):
        latitude, longitude = location.get("latitude"), location.get("longitude")
        if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in (latitude, longitude)):
            raise CallbackRejected("callback location has no numeric latitude and longitude")
        return {
            "type": "location",
            "location": {"latitude": latitude, "longitude": longitude},
            "extra": extra,
        }
    shared = event.get("userFile")
    if isinstance(shared, dict):
        return _user_file(shared, extra)
    return {"type": "text", "message": "", "extra": extra}


def _user_file(shared: Mapping[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    payload = shared.get("payload")
    if not isinstance(payload, dict) or not isinstance(payload.get("fileUri"), str):
        raise CallbackRejected("callback userFile has no payload.fileUri")
    mime = str(payload.get("mimeType") or "")
    kind = "picture" if mime.startswith("image/") else "video" if mime.startswith("video/") else "file"
    found: dict[str, Any] = {"type": kind, "fileUrl": payload["fileUri"], "extra": extra}
    if isinstance(payload.get("fileName"), str):
        found["fileName"] = payload["fileName"]
    size = payload.get("fileSizeBytes")
    if isinstance(size, int | str) and not isinstance(size, bool) and str(size).isdigit():
        found["fileSize"] = int(size)
    thumbnail = shared.get("thumbnail")
    if isinstance(thumbnail, dict) and isinstance(thumbnail.get("fileUri"), str):
        found["thumbnailUrl"] = thumbnail["fileUri"]
    return found
