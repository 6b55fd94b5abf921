"""Zalo's ZNS webhooks as neutral events (providers.md §5 "Webhooks").

Zalo posts one event per request, signed as every Zalo webhook is (`zalo.webhooks.verify_zalo`) and
marked `X-ZEvent-Server: ZNS`. Ids and times are texts (they exceed 2^53). The envelope is `{app_id,
oa_id?, sender{id}, recipient{id}, event_name, ..., timestamp}`; the ZNS events are:

- `user_received_message`: the phone (`recipient.id`) received the message `message.msg_id` (ours by
  `message.tracking_id`) at `message.delivery_time` → DELIVERED. ZNS reports no reading: a ZNS
  message is never READ.
- `change_template_status`: Zalo's review of template `template_id` moved from `status.prev_status` to
  `status.new_status` (`reason` says why when it rejects) → a `TemplateEvent`: ENABLE → APPROVED,
  REJECT → REJECTED with Zalo's reason, PENDING_REVIEW → REQUEST, DISABLE and DELETE → REJECTED with a
  cause saying so.
- `change_oa_daily_quota`: the OA's daily ZNS quota changed (Zalo's quality tiers). Read and ignored:
  every send's answer carries the quota left, and refusals for a spent quota (-144) say so.

Any other event is not a ZNS channel's (an OA's follower events go to the Zalo OA channel): refused.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import orjson

from openmmp.providers.base import CallbackEvent, CallbackRejected, StatusEvent, TemplateEvent

DELIVERED_EVENT = "user_received_message"
TEMPLATE_EVENT = "change_template_status"
QUOTA_EVENT = "change_oa_daily_quota"
SERVER_HEADER = "X-ZEvent-Server"
SERVER = "ZNS"

TemplateStatus = Literal["APPROVED", "REJECTED", "REQUEST"]
TEMPLATE_STATUSES: Mapping[str, TemplateStatus] = {
    "ENABLE": "APPROVED",
    "PENDING_REVIEW": "REQUEST",
    "REJECT": "REJECTED",
    "DISABLE": "REJECTED",
    "DELETE": "REJECTED",
}
"""Zalo's template statuses as MMP TemplateStatus names."""
_CAUSES = {
    "ENABLE": "Zalo approved the template",
    "PENDING_REVIEW": "Zalo is reviewing the template",
    "REJECT": "Zalo rejected the template",
    "DISABLE": "Zalo disabled the template (for its low quality, or at the OA's request): it cannot be sent",
    "DELETE": "the template was deleted on Zalo: it cannot be sent",
}


def template_cause(status: str, reason: Any) -> str:
    """What Zalo's `status` for a template means, in a sentence, with Zalo's `reason` when it gave one."""
    cause = _CAUSES.get(status, f"Zalo set the template's status to {status}")
    if isinstance(reason, str) and reason.strip():
        return f"{cause}: {reason.strip()}"
    return cause


def parse_callback(body: bytes) -> Sequence[CallbackEvent]:
    """The events of one ZNS webhook body; raises `CallbackRejected` for anything else."""
    try:
        event = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise CallbackRejected("the body is not JSON") from exc
    if not isinstance(event, dict):
        raise CallbackRejected("the body is not a JSON object")
    name = event.get("event_name")
    if name == DELIVERED_EVENT:
        return [_delivered(event)]
    if name == TEMPLATE_EVENT:
        return [_template(event)]
    if name == QUOTA_EVENT:
        return []
    raise CallbackRejected(f"a ZNS channel takes no {name!r} event")


def _text(value: Any) -> str:
    """An id or a time as Zalo writes it (a text; a number when someone re-serialised it)."""
    if isinstance(value, bool):
        return ""
    if isinstance(value, int):
        return str(value)
    return value.strip() if isinstance(value, str) else ""


def _ms(value: Any, what: str) -> int:
    text = _text(value)
    if not text.isdigit():
        raise CallbackRejected(f"{what} is not a time in epoch milliseconds")
    return int(text)


def _delivered(event: Mapping[str, Any]) -> StatusEvent:
    message = event.get("message")
    if not isinstance(message, dict):
        raise CallbackRejected("user_received_message without a message")
    msg_id = _text(message.get("msg_id"))
    if not msg_id:
        raise CallbackRejected("user_received_message without message.msg_id")
    when = message.get("delivery_time") or event.get("timestamp")
    # The message id names one message to one phone: no receiver to tell apart (`user_id`).
    return StatusEvent(
        provider_message_id=msg_id,
        status="DELIVERED",
        timestamp_ms=_ms(when, "message.delivery_time"),
        dedupe_key=f"zns:delivered:{msg_id}",
        raw=event,
    )


def _template(event: Mapping[str, Any]) -> TemplateEvent:
    template_id = _text(event.get("template_id"))
    if not template_id:
        raise CallbackRejected("change_template_status without template_id")
    status = event.get("status")
    new = status.get("new_status") if isinstance(status, dict) else None
    previous = status.get("prev_status") if isinstance(status, dict) else None
    if not isinstance(new, str) or not new:
        raise CallbackRejected("change_template_status without status.new_status")
    timestamp = _ms(event.get("timestamp"), "timestamp")
    return TemplateEvent(
        template_id=template_id,
        status=TEMPLATE_STATUSES.get(new),
        cause=template_cause(new, event.get("reason")),
        timestamp_ms=timestamp,
        dedupe_key=f"zns:template:{template_id}:{previous}:{new}:{timestamp}",
        raw=event,
    )
