"""Clients for the Graph API: the Cloud API's send endpoint, `POST {base_url}/{phone-number-id}/messages`,
and the other calls the platform makes (`GraphClient`: onboarding, the webhook override, templates).

One request per message: the Cloud API has no batch send and no idempotency key, so a send repeated after
a lost answer can reach the end user twice. Nothing here retries by itself (retries are the dispatcher's,
or the channel set-up job's).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlencode

from openmmp.kit.http import HttpClient, HttpUnreachable
from openmmp.providers.base import ProviderError, SendOk
from openmmp.providers.meta import graph
from openmmp.providers.upstream import transport_error
from openmmp.providers.whatsapp import errors
from openmmp.providers.whatsapp.payload import to_whatsapp_payload


def messages_url(base_url: str, phone_number_id: str) -> str:
    """Where a phone number's messages are sent (its id quoted: it is tenant input)."""
    return f"{base_url.rstrip('/')}/{quote(phone_number_id, safe='')}/messages"


def send_body(recipient: str, message: Mapping[str, Any]) -> dict[str, Any]:
    """The request body sending `message` to the WhatsApp user `recipient` (digits, or a wa_id)."""
    return {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": recipient,
        **to_whatsapp_payload(message),
    }


class WhatsappClient:
    """Sends messages as one business phone number."""

    def __init__(self, http: HttpClient, base_url: str, *, phone_number_id: str, access_token: str) -> None:
        self._http = http
        self._url = messages_url(base_url, phone_number_id)
        self._token = access_token

    async def send(self, recipient: str, message: Mapping[str, Any]) -> SendOk:
        """Send one MMP message; `provider_message_id` is its wamid. Raises a classified `ProviderError`."""
        try:
            body = send_body(recipient, message)
        except ValueError as exc:
            # Checked when accepted; failing now means it can never be sent as it is.
            raise ProviderError("WHATSAPP_INVALID_MESSAGE", str(exc), retryable=False) from exc
        return errors.send_outcome(await graph.post(self._http, self._url, body, token=self._token))


class GraphClient:
    """Graph API calls other than sends, each answered with its JSON object or a classified
    `ProviderError` (`errors.GRAPH.answer`). Callers quote the ids they put in a path (tenant input)."""

    def __init__(self, http: HttpClient, base_url: str) -> None:
        self._http = http
        self._base = base_url.rstrip("/")

    async def get(
        self, path: str, *, token: str | None, query: Mapping[str, str] | None = None
    ) -> dict[str, Any]:
        """`GET {base_url}/{path}?{query}`, with `token` as Bearer unless it is None (OAuth's code
        exchange names its app in the query instead)."""
        url = f"{self._base}/{path}" + (f"?{urlencode(query)}" if query else "")
        return await self._call("GET", url, token=token)

    async def post(self, path: str, *, token: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """`POST {base_url}/{path}` with the JSON `body` and `token` as Bearer."""
        return await self._call("POST", f"{self._base}/{path}", token=token, body=body)

    async def delete(self, path: str, *, token: str, query: Mapping[str, str]) -> dict[str, Any]:
        """`DELETE {base_url}/{path}?{query}` with `token` as Bearer."""
        return await self._call("DELETE", f"{self._base}/{path}?{urlencode(query)}", token=token)

    async def _call(
        self, method: str, url: str, *, token: str | None, body: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        headers = {"authorization": f"Bearer {token}"} if token else None
        try:
            if method == "POST":
                response = await self._http.post(url, json=dict(body or {}), headers=headers)
            else:
                response = await self._http.request(method, url, headers=headers)
        except HttpUnreachable as exc:
            # Not chained: its text names the URL, whose query may carry a secret (the code exchange's
            # client_secret, the token debug_token inspects).
            raise transport_error(exc) from None
        return errors.GRAPH.answer(response)
