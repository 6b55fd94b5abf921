"""The contract between OpenMMP's core (dispatch, callbacks) and every upstream adapter.

Adapters live in `providers/<name>/`, speak one upstream protocol through `kit.http.HttpClient`, and never
touch the database. They translate:

- outbound: an MMP message object (api.md §3, wire names, placeholders already rendered) into the
  upstream's request, and the upstream's answer into `SendOk` or a `ProviderError` that says whether a
  retry can help;
- inbound: a callback's raw bytes (signature checked over those bytes) into `StatusEvent` /
  `InboundEvent` / `PingEvent` values the core applies.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal


class ProviderError(Exception):
    """An upstream refused a request or could not be reached.

    `retryable` is the adapter's verdict: True for timeouts, connection errors, 5xx and rate limiting
    (`rate_limited`, with the upstream's `retry_after` in seconds when it gave one); False for errors a
    retry cannot fix (bad data, unknown receiver, blocked account). `code` is a stable machine word such as
    ``"VIBER_BOT_6"`` and `message` the upstream's own text, e.g. ``"receiverNotSubscribed"``; both end up
    in the message's `error` object, so neither may contain a secret.
    """

    def __init__(
        self,
        code: str,
        message: str,
        *,
        retryable: bool,
        rate_limited: bool = False,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.retryable = retryable
        self.rate_limited = rate_limited
        self.retry_after = retry_after


class CallbackRejected(Exception):
    """A callback whose signature is missing or wrong, or whose body cannot be understood."""


@dataclass(frozen=True, slots=True)
class SendOk:
    """The upstream accepted the message; `provider_message_id` is how its callbacks will name it."""

    provider_message_id: str


@dataclass(frozen=True, slots=True)
class BroadcastResult:
    """One multi-receiver call: the shared message id and the receivers the upstream refused."""

    provider_message_id: str
    failed: Mapping[str, ProviderError] = field(default_factory=dict)


StatusName = Literal["DELIVERED", "READ", "FAIL"]


@dataclass(frozen=True, slots=True)
class StatusEvent:
    """A delivery report. `dedupe_key` is equal for repeats of the same upstream event.

    For Viber Bot `seen`, `user_id` is set and the core marks that user's earlier unread messages READ too.
    """

    provider_message_id: str
    status: StatusName
    timestamp_ms: int
    dedupe_key: str
    raw: Mapping[str, Any]
    user_id: str | None = None
    error_code: str | None = None
    error_message: str | None = None


@dataclass(frozen=True, slots=True)
class Contact:
    """An end user as the upstream describes them; empty strings where it says nothing."""

    id: str
    name: str = ""
    avatar_url: str = ""
    language: str = ""
    country: str = ""
    phone: str = ""


InboundKind = Literal["message", "subscribed", "unsubscribed", "conversation_started"]


@dataclass(frozen=True, slots=True)
class InboundEvent:
    """Something an end user did: wrote, subscribed, unsubscribed or opened the conversation.

    `message` is the MMP message object of api.md §5.2: ``{"type": ..., "message": ..., "extra": raw}``,
    with `type` one of the MMP MessageType names (``SUBSCRIBED`` etc. for the non-message kinds).
    """

    kind: InboundKind
    contact: Contact
    message: Mapping[str, Any]
    timestamp_ms: int
    dedupe_key: str
    raw: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class PingEvent:
    """The upstream checking that the callback URL answers (Viber's `webhook` event)."""

    raw: Mapping[str, Any]


CallbackEvent = StatusEvent | InboundEvent | PingEvent
