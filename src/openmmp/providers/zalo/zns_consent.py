"""Zalo's call consent: an OA asks an end user, by phone, for permission to call them (providers.md §5).

`POST {openapi}/v2.0/oa/call/requestconsent {phone, call_type, reason_code}` asks; `GET
{openapi}/v2.0/oa/call/checkconsent?data={"phone": ...}` reads where it stands. Both answer `{error,
message, expired_time}`, where a non-negative `error` is the consent's own code, one table for both:

| code | Zalo's meaning | `Consent.state` |
|---|---|---|
| 0 | approved | GRANTED |
| 1 | already allowed | GRANTED |
| 2 | request sent (waiting for the user) | REQUESTED |
| 3 | rejected by the user | REFUSED |
| 4 | the user blocked the OA's calls | REFUSED |
| 5 | over the limit of requests to this user | a final `ProviderError` (`ZALO_CONSENT_5`) |
| any other | not asked, or the earlier answer lapsed | NONE |

A negative `error` is a refusal like any other Zalo call's (`zalo_error`: an expired token, a bad phone).
The user has 24 hours to answer; `expired_time` (epoch ms) is when the request, or the consent, lapses.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import orjson
from pydantic import Field

from openmmp.kit.schemas import RequestModel
from openmmp.providers.base import Consent, ConsentAnswer, ProviderContext, ProviderError
from openmmp.providers.zalo.credentials import zalo_hosts
from openmmp.providers.zalo.errors import zalo_error
from openmmp.providers.zalo.zns_http import error_code, said, zalo_envelope

REQUEST_PATH = "/v2.0/oa/call/requestconsent"
CHECK_PATH = "/v2.0/oa/call/checkconsent"
CALL_TYPES = ("audio", "video", "audio_and_video")
REASON_CODES = (101, 103, 105, 106, 107)
OVER_LIMIT = 5
STATES: Mapping[int, Literal["GRANTED", "REQUESTED", "REFUSED"]] = {
    0: "GRANTED",
    1: "GRANTED",
    2: "REQUESTED",
    3: "REFUSED",
    4: "REFUSED",
}
MEANINGS: Mapping[int, str] = {
    0: "the user approved the OA's calls",
    1: "the user already allows the OA's calls",
    2: "the request was sent; the user has not answered yet",
    3: "the user rejected the OA's calls",
    4: "the user blocked the OA's calls",
    5: "the OA has asked this user too often: no more requests to them for now",
}


class ZaloRequestConsentRequest(RequestModel):
    """Ask an end user, by phone, to let the Official Account call them on Zalo."""

    phone: str = Field(min_length=8, max_length=20, description="The end user's phone number (E.164)")
    call_type: Literal["audio", "video", "audio_and_video"] = Field(description="The calls asked for")
    reason_code: Literal[101, 103, 105, 106, 107] = Field(
        description="Zalo's code for why the OA wants to call (shown to the user)"
    )


class ZaloRequestConsentResponse(ConsentAnswer):
    """The consent once asked: REQUESTED (the user has 24 hours to answer), or GRANTED when it already
    was; `code` and `message` are Zalo's, `expiredTime` when the request or the consent lapses."""


class ZaloCheckConsentResponse(ConsentAnswer):
    """The end user's consent to the Official Account's calls, as Zalo knows it now."""


def consent_of(phone: str, body: Mapping[str, Any]) -> Consent:
    """The `Consent` an answer of either endpoint says; raises `ProviderError` for a refusal (a negative
    code) and for the over-limit code."""
    code = error_code(body)
    words = said(body)
    if code < 0:
        raise zalo_error(code, words)
    meaning = MEANINGS.get(code, "the user has not been asked, or the earlier answer lapsed")
    message = f"{meaning} ({words})" if words and words != meaning else meaning
    if code == OVER_LIMIT:
        raise ProviderError(f"ZALO_CONSENT_{code}", message, retryable=False)
    return Consent(
        phone=phone,
        state=STATES.get(code, "NONE"),
        code=code,
        message=message,
        expires_at_ms=_expiry(body.get("expired_time")),
    )


def _expiry(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int) and value > 0:
        return value
    if isinstance(value, str) and value.strip().isdigit() and int(value) > 0:
        return int(value)
    return None


async def request(
    ctx: ProviderContext, credentials: Mapping[str, Any], phone: str, asked: Mapping[str, Any]
) -> Consent:
    """Ask the user at `phone` (E.164 digits) with `asked` (wire names of ZaloRequestConsentRequest,
    its phone left out)."""
    call_type, reason_code = asked.get("callType"), asked.get("reasonCode")
    if call_type not in CALL_TYPES:
        raise ValueError(f"callType: one of {', '.join(CALL_TYPES)}")
    if isinstance(reason_code, bool) or reason_code not in REASON_CODES:
        raise ValueError(f"reasonCode: one of {', '.join(str(code) for code in REASON_CODES)}")
    body = await zalo_envelope(
        ctx,
        "POST",
        f"{zalo_hosts(ctx).openapi}{REQUEST_PATH}",
        access_token=str(credentials["accessToken"]),
        json={"phone": _digits(phone), "call_type": call_type, "reason_code": reason_code},
    )
    return consent_of(phone, body)


async def status(ctx: ProviderContext, credentials: Mapping[str, Any], phone: str) -> Consent:
    """The consent of the user at `phone` (E.164 digits), asked of Zalo now."""
    body = await zalo_envelope(
        ctx,
        "GET",
        f"{zalo_hosts(ctx).openapi}{CHECK_PATH}",
        access_token=str(credentials["accessToken"]),
        params={"data": orjson.dumps({"phone": _digits(phone)}).decode()},
    )
    return consent_of(phone, body)


def _digits(phone: str) -> str:
    digits = phone.removeprefix("+")
    if not digits.isdigit():
        raise ValueError("phone: an E.164 number (digits with the country code)")
    return digits
