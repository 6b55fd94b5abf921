"""The Graph API calls a Messenger channel makes: sends (`POST {base_url}/{page-id}/messages`) and the
Page's subscription to the app's webhook (`POST {base_url}/{page-id}/subscribed_apps`).

The Page access token goes as `Authorization: Bearer` (`meta.graph.post`). One request per message: the
Send API has no batch send and no idempotency key, so a send repeated after a lost answer can reach the
end user twice. Nothing here retries by itself (retries are the dispatcher's, or the channel set-up job's).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote, urlencode

from openmmp.kit.http import HttpClient
from openmmp.providers.base import ProviderError, SendOk
from openmmp.providers.messenger import errors
from openmmp.providers.messenger.payload import to_messenger_message
from openmmp.providers.meta import graph
from openmmp.providers.upstream import bad_response

RESPONSE = "RESPONSE"
"""The `messaging_type` of a message inside the 24-hour window, the only kind the channel sends."""
WEBHOOK_FIELDS = ("messages", "messaging_postbacks", "message_deliveries", "message_reads")
"""The Page's webhook fields OpenMMP reads (echoes of its own sends it does not ask for)."""


def page_url(base_url: str, page_id: str, edge: str) -> str:
    """`{base_url}/{page-id}/{edge}`, the Page id quoted: it is tenant input."""
    return f"{base_url.rstrip('/')}/{quote(page_id, safe='')}/{edge}"


def send_body(psid: str, message: Mapping[str, Any]) -> dict[str, Any]:
    """The request body sending `message` to the end user `psid` inside their window."""
    return {"recipient": {"id": psid}, "messaging_type": RESPONSE, "message": to_messenger_message(message)}


class MessengerClient:
    """Acts as one Facebook Page with its Page access token."""

    def __init__(self, http: HttpClient, base_url: str, *, page_id: str, page_access_token: str) -> None:
        self._http = http
        self._base_url = base_url
        self._page_id = page_id
        self._token = page_access_token

    async def send(self, psid: str, message: Mapping[str, Any]) -> SendOk:
        """Send one MMP message; `provider_message_id` is its mid. Raises a classified `ProviderError`."""
        try:
            body = send_body(psid, message)
        except ValueError as exc:
            # Checked when accepted; failing now means it can never be sent as it is.
            raise ProviderError("MESSENGER_INVALID_MESSAGE", str(exc), retryable=False) from exc
        url = page_url(self._base_url, self._page_id, "messages")
        return errors.send_outcome(await graph.post(self._http, url, body, token=self._token))

    async def subscribe(self, fields: Sequence[str] = WEBHOOK_FIELDS) -> None:
        """Subscribe the app to the Page's webhook `fields` (idempotent: Meta answers the same again)."""
        query = urlencode({"subscribed_fields": ",".join(fields)})
        url = f"{page_url(self._base_url, self._page_id, 'subscribed_apps')}?{query}"
        response = await graph.post(self._http, url, {}, token=self._token)
        if errors.GRAPH.answer(response).get("success") is not True:
            raise bad_response("the Graph API did not confirm the Page's subscription (success)")
