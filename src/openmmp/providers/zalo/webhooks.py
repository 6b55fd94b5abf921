"""Zalo's webhook signature, shared by the OA and ZNS providers and their simulators.

Zalo signs every webhook with `X-ZEvent-Signature: mac=<hex>`, where the MAC is the plain SHA-256 (not an
HMAC) of the concatenation `app_id + raw body + timestamp + secret`: `timestamp` is the field of that same
body, and the secret the app's (OA) secret key. Some integrations sign with the OA's id in place of the
app's; both are accepted. The body's bytes are hashed as they came: never re-serialised.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import orjson
import structlog

from openmmp.kit.crypto import constant_time_equals
from openmmp.providers.base import CallbackRequest

logger = structlog.get_logger(__name__)

SIGNATURE_HEADER = "X-ZEvent-Signature"
MAC_PREFIX = "mac="


def event_mac(first: str, body: bytes, timestamp: str, secret: str) -> str:
    """The hex SHA-256 of `first` (the app's or the OA's id), the raw `body`, its `timestamp` and the
    `secret`, concatenated."""
    return hashlib.sha256(first.encode() + body + timestamp.encode() + secret.encode()).hexdigest()


def body_timestamp(body: bytes) -> str | None:
    """The body's top-level `timestamp` as its text (Zalo sends it as a string; a number's digits are the
    same), or None when the body is not a JSON object with one."""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    value = parsed.get("timestamp") if isinstance(parsed, dict) else None
    if isinstance(value, str) and value:
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def sign_event(app_id: str, body: bytes, secret: str) -> str:
    """The `X-ZEvent-Signature` value for `body` (the simulators'); ValueError for a body without a
    timestamp."""
    timestamp = body_timestamp(body)
    if timestamp is None:
        raise ValueError("a Zalo event body needs a top-level timestamp")
    return MAC_PREFIX + event_mac(app_id, body, timestamp, secret)


def verify_zalo(request: CallbackRequest, credentials: Mapping[str, Any]) -> bool:
    """True when the request's `X-ZEvent-Signature` is the MAC of its raw body with the channel's
    `appId` (or `oaId`) and `secretKey`."""
    header = (request.header(SIGNATURE_HEADER) or "").strip()
    secret = str(credentials.get("secretKey") or "")
    if not header.lower().startswith(MAC_PREFIX) or not secret:
        return False
    given = header[len(MAC_PREFIX) :].strip().lower()
    timestamp = body_timestamp(request.body)
    if timestamp is None:
        return False
    for field, name in (("appId", "app_id"), ("oaId", "oa_id")):
        first = str(credentials.get(field) or "")
        if first and constant_time_equals(event_mac(first, request.body, timestamp, secret), given):
            logger.debug("zalo webhook signature matched", first_term=name)
            return True
    return False
