"""Meta's webhooks: the signature, the verification handshake, and the provider methods that check them.

**Signature.** Meta signs every webhook with `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw
body>`, keyed by the app secret (the channel's `appSecret`).

**Body.** `{"object": <what the webhook is about>, "entry": [...]}`, whose entries each product reads in
its own way (`entries`).

**Handshake.** Meta checks a callback URL once with a GET:
`hub.mode=subscribe&hub.verify_token=<token>&hub.challenge=<n>`, answered with the challenge. The verify
token is the channel's own, derived from its app secret and a label of the product's
(`verify_token`): nothing to configure or store, different for every app and product, and the business
can compute it.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from typing import Any, ClassVar

import orjson

from openmmp.kit.crypto import constant_time_equals
from openmmp.providers.base import (
    CallbackRejected,
    CallbackReply,
    CallbackRequest,
    CallbackUnverified,
    Provider,
    ProviderContext,
)

SIGNATURE_HEADER = "X-Hub-Signature-256"
MAX_CHALLENGE_LENGTH = 1000
MAX_ID_LENGTH = 200


def sign(raw: bytes, app_secret: str) -> str:
    """The `X-Hub-Signature-256` value for `raw` (the simulators' and the tests')."""
    return "sha256=" + hmac.new(app_secret.encode(), raw, hashlib.sha256).hexdigest()


def verify_signature(raw: bytes, header: str | None, app_secret: str) -> bool:
    """True when `header` is `sha256=` and the app secret's HMAC of exactly these bytes."""
    if not header or not app_secret:
        return False
    return constant_time_equals(sign(raw, app_secret), header.strip().lower())


def verify_token(app_secret: str, label: bytes) -> str:
    """A channel's `hub.verify_token`: the hex HMAC-SHA256 of the product's `label` keyed by its app
    secret (`printf %s <label> | openssl dgst -sha256 -hmac "$APP_SECRET"`)."""
    return hmac.new(app_secret.encode(), label, hashlib.sha256).hexdigest()


def challenge_answer(query: Mapping[str, str], app_secret: str, label: bytes) -> bytes | None:
    """The body that answers Meta's GET handshake (the challenge), or None when the mode, the token (made
    with `label`) or the challenge is wrong."""
    given = query.get("hub.verify_token") or ""
    challenge = query.get("hub.challenge") or ""
    if not app_secret or query.get("hub.mode") != "subscribe":
        return None
    if not challenge or len(challenge) > MAX_CHALLENGE_LENGTH:
        return None
    if not constant_time_equals(verify_token(app_secret, label), given):
        return None
    return challenge.encode()


def entries(raw: bytes, kind: str, name: str) -> list[Any]:
    """The entries of a verified webhook body about `kind` (its `object`).

    Raises `CallbackRejected` for a body that is not JSON, is about something else (`name` says what it
    should be), or has no entry list.
    """
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise CallbackRejected("callback body is not JSON") from exc
    if not isinstance(body, dict) or body.get("object") != kind:
        raise CallbackRejected(f"not a {name} webhook (object)")
    found = body.get("entry")
    if not isinstance(found, list):
        raise CallbackRejected("webhook has no entry list")
    return found


def webhook_objects(value: Any, what: str) -> list[dict[str, Any]]:
    """A list of objects in a webhook body (None: empty); `what` names it in the rejection."""
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise CallbackRejected(f"{what} is not a list of objects")
    return value


def webhook_id(value: Any, what: str) -> str:
    """An id in a webhook body (Meta sends some as numbers), as a string of at most `MAX_ID_LENGTH`."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value:
        raise CallbackRejected(f"{what} is missing")
    if len(value) > MAX_ID_LENGTH:
        raise CallbackRejected(f"{what} is too long")
    return value


def text_of(value: Any, key: str) -> str:
    """The string at `key` of an object in a webhook body; "" when there is none."""
    found = value.get(key) if isinstance(value, Mapping) else None
    return found if isinstance(found, str) else ""


class MetaAppProvider(Provider):
    """A provider whose channels' webhooks come from a Meta app: signed with the app secret (the channel's
    `appSecret`), and the callback URL checked with the GET handshake against the channel's verify token."""

    verify_token_label: ClassVar[bytes]
    """What the app secret keys to make a channel's verify token; the product's own, so that a channel
    of one product does not pass for a channel of another on the same app."""
    callback_auth = (
        "`X-Hub-Signature-256`: `sha256=` and the hex HMAC-SHA256 of the raw body, keyed by the channel's "
        "`appSecret`. The GET handshake (`hub.mode=subscribe`) is answered with `hub.challenge` when "
        "`hub.verify_token` is the channel's verify token."
    )
    verifies_with_get = True

    def verify(self, ctx: ProviderContext, request: CallbackRequest, credentials: Mapping[str, Any]) -> bool:
        header = request.header(SIGNATURE_HEADER)
        return verify_signature(request.body, header, str(credentials.get("appSecret") or ""))

    def challenge(
        self, ctx: ProviderContext, request: CallbackRequest, credentials: Mapping[str, Any]
    ) -> CallbackReply:
        app_secret = str(credentials.get("appSecret") or "")
        answer = challenge_answer(request.query, app_secret, self.verify_token_label)
        if answer is None:
            raise CallbackUnverified("hub.mode, hub.verify_token or hub.challenge is missing or wrong")
        return CallbackReply(200, answer)
