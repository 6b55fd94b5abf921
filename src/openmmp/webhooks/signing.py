"""Standard Webhooks signatures (https://www.standardwebhooks.com): the headers we send and their check.

`webhook-signature` is `v1,<base64 HMAC-SHA256 of "{webhook-id}.{webhook-timestamp}.{body}">`, keyed by
the base64-decoded part of the channel's `whsec_` secret. The id is the delivery's public id (stable
across retries, so receivers de-duplicate on it); the timestamp is the attempt's, in seconds.
"""

from __future__ import annotations

import binascii
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import orjson
from standardwebhooks import Webhook
from standardwebhooks.webhooks import EmptyWebhookSecretError, WebhookVerificationError


class SignatureInvalid(Exception):
    """The headers do not prove the body came from the holder of the secret (or it is too old)."""


class Signer:
    """Signs bodies for one secret. Build one per secret and reuse it: decoding the secret costs."""

    __slots__ = ("_webhook",)

    def __init__(self, secret: str) -> None:
        self._webhook = Webhook(secret)

    def headers(self, *, webhook_id: str, body: str, timestamp_s: int) -> dict[str, str]:
        """The headers of one attempt: id, timestamp, signature and the JSON content type."""
        moment = datetime.fromtimestamp(timestamp_s, tz=UTC)
        return {
            "webhook-id": webhook_id,
            "webhook-timestamp": str(timestamp_s),
            "webhook-signature": self._webhook.sign(msg_id=webhook_id, timestamp=moment, data=body),
            "content-type": "application/json",
        }


def sign_headers(secret: str, *, webhook_id: str, body: str, timestamp_s: int) -> dict[str, str]:
    """The Standard Webhooks headers for `body` (one-off; use `Signer` for many bodies)."""
    return Signer(secret).headers(webhook_id=webhook_id, body=body, timestamp_s=timestamp_s)


def _check_signature(secret: str, body: bytes | str, headers: Mapping[str, str]) -> None:
    try:
        Webhook(secret).verify(body, dict(headers), json_parse=False)
    except WebhookVerificationError as exc:
        raise SignatureInvalid(str(exc)) from exc
    except (ValueError, binascii.Error, UnicodeDecodeError, EmptyWebhookSecretError) as exc:
        # Malformed signature lists, bad base64, a body that is not UTF-8: all just "invalid".
        raise SignatureInvalid(f"malformed signature headers or body ({type(exc).__name__})") from exc


def check(secret: str, body: bytes | str, headers: Mapping[str, str]) -> Any:
    """Check a received webhook and return its JSON body; raises SignatureInvalid saying why not.

    For receivers: `headers` is the request's headers (any case), `body` the raw bytes as received. The
    timestamp must be within 5 minutes of now (replay protection, as Standard Webhooks prescribes).
    """
    _check_signature(secret, body, headers)
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise SignatureInvalid("signed, but the body is not JSON") from exc


def verify(secret: str, body: bytes | str, headers: Mapping[str, str]) -> bool:
    """Whether a received webhook is signed with `secret` and fresh (`check` says why not)."""
    try:
        _check_signature(secret, body, headers)
    except SignatureInvalid:
        return False
    return True
