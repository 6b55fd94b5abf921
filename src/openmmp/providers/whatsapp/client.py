"""Client for the Cloud API's send endpoint, `POST {base_url}/{phone-number-id}/messages`.

One request per message: the Cloud API has no batch send and no idempotency key, so a send repeated after
a lost answer can reach the end user twice. Nothing here retries by itself (retries are the dispatcher's).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from openmmp.kit.http import HttpClient, HttpUnreachable
from openmmp.providers.base import ProviderError, SendOk
from openmmp.providers.viber_bot.errors import transport_error
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
        self._headers = {"authorization": f"Bearer {access_token}"}

    async def send(self, recipient: str, message: Mapping[str, Any]) -> SendOk:
        """Send one MMP message; `provider_message_id` is its wamid. Raises a classified `ProviderError`."""
        try:
            body = send_body(recipient, message)
        except ValueError as exc:
            # Checked when accepted; failing now means it can never be sent as it is.
            raise ProviderError("WHATSAPP_INVALID_MESSAGE", str(exc), retryable=False) from exc
        try:
            response = await self._http.post(self._url, json=body, headers=self._headers)
        except HttpUnreachable as exc:
            raise transport_error(exc) from exc
        return errors.send_outcome(response)
