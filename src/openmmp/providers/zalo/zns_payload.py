"""The MMP `zalo_zns_template` message as ZNS takes it: `POST {business}/message/template`.

A ZNS message is an approved template (`template_id`) and the values of its parameters (`template_data`,
every value a text), sent to a phone number written as digits with the country code and no "+"
(`84987654321`, E.164 without "+", which is what dispatch hands over). `tracking_id` is ours: Zalo
echoes it in the delivery webhook and collapses a repeated one into the first send, so it is the
message's internal key (`Outgoing.key`), stable across retries (at most 48 characters).

ZNS renders a template with its parameters into at most 400 characters; the values alone already
count, so a send whose values total more is refused here, before Zalo refuses it with -1121.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

MESSAGE_TYPE = "zalo_zns_template"
PARAM_FIELD = "zaloZnsTemplateParam"
CONTENT_MAX = 400
"""Most characters of a rendered ZNS message (a template's content with its parameters filled in)."""
TRACKING_ID_MAX = 48
TEMPLATE_ID_MAX = 200


def template_param(content: Mapping[str, Any]) -> tuple[str, dict[str, str]]:
    """The template id and data of a `zalo_zns_template` message; ValueError("<field>: ...") naming
    the MMP field when ZNS would refuse them."""
    if content.get("type") != MESSAGE_TYPE:
        raise ValueError(f"type: a Zalo ZNS channel sends {MESSAGE_TYPE} messages only")
    param = content.get(PARAM_FIELD)
    if not isinstance(param, Mapping):
        raise ValueError(f"{PARAM_FIELD}: required: {{templateId, templateData}}")
    template_id = param.get("templateId")
    if not isinstance(template_id, str) or not template_id.strip():
        raise ValueError(f"{PARAM_FIELD}.templateId: required: the id of a template Zalo approved")
    if len(template_id) > TEMPLATE_ID_MAX:
        raise ValueError(f"{PARAM_FIELD}.templateId: at most {TEMPLATE_ID_MAX} characters")
    data = param.get("templateData", {})
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ValueError(f"{PARAM_FIELD}.templateData: an object of the template's parameters by name")
    values: dict[str, str] = {}
    for name, value in data.items():
        if not isinstance(value, str):
            raise ValueError(f"{PARAM_FIELD}.templateData.{name}: must be a text")
        values[str(name)] = value
    total = sum(len(value) for value in values.values())
    if total > CONTENT_MAX:
        raise ValueError(
            f"{PARAM_FIELD}.templateData: the values total {total} characters; a ZNS message is at most "
            f"{CONTENT_MAX} characters with its parameters filled in"
        )
    return template_id.strip(), values


def tracking_id(key: int) -> str:
    """The `tracking_id` of the message with internal id `key` (Zalo collapses repeats of it)."""
    value = str(key)
    if len(value) > TRACKING_ID_MAX:
        raise ValueError(f"tracking_id: at most {TRACKING_ID_MAX} characters")
    return value


def send_body(phone: str, content: Mapping[str, Any], key: int) -> dict[str, Any]:
    """The body of `POST /message/template` sending `content` to `phone` (E.164 digits, no "+")."""
    template_id, data = template_param(content)
    digits = phone.removeprefix("+")
    if not digits.isdigit():
        raise ValueError("phone: ZNS reaches phone numbers only (digits with the country code)")
    return {
        "phone": digits,
        "template_id": template_id,
        "template_data": data,
        "tracking_id": tracking_id(key),
    }
