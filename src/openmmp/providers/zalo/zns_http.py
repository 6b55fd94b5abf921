"""The ZNS calls whose answers the shared `call_zalo` cannot hand over as they are.

`call_zalo` answers an envelope's `data` object and turns every non-zero `error` into a refusal. Two ZNS
answers need more: the template list, whose `data` is a list (`GET /template/all`), and the call-consent
answers, whose `error` is the consent's own code (0 approved, 2 request sent, 3 rejected, ...) rather
than a refusal. `zalo_envelope` makes the same exchange (`zalo_request`) and answers the whole envelope,
having raised only what the HTTP exchange itself says (no answer, 429, 5xx, no envelope at all).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from openmmp.providers.base import ProviderContext
from openmmp.providers.upstream import bad_response
from openmmp.providers.zalo.errors import envelope_data, zalo_request


async def zalo_envelope(
    ctx: ProviderContext,
    method: str,
    url: str,
    *,
    access_token: str,
    json: Any = None,
    params: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """One call to Zalo as the OA (header `access_token`); the answer's whole envelope, its `error`
    read as a number (`error_code`). Raises `ProviderError` only for what is no envelope."""
    response = await zalo_request(ctx, method, url, access_token=access_token, json=json, params=params)
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        body = None
    if response.status_code == 429 or response.status_code >= 500 or not isinstance(body, dict):
        # The shared reading of an answer that is not an envelope raises what it is.
        envelope_data(response.status_code, response.content, response.headers.get("retry-after"))
        raise bad_response("Zalo answered with something that is not its envelope")
    body["error"] = error_code(body)
    return body


def error_code(body: Mapping[str, Any]) -> int:
    """The envelope's `error` as a number (Zalo writes it as a number, sometimes as a text)."""
    code = body.get("error")
    if isinstance(code, str) and code.lstrip("-").isdigit():
        return int(code)
    if isinstance(code, bool) or not isinstance(code, int):
        raise bad_response("Zalo answered with an envelope whose error is not a number")
    return code


def said(body: Mapping[str, Any]) -> str:
    """Zalo's own words in an envelope (`message`), or ""."""
    message = body.get("message")
    return message if isinstance(message, str) else ""
