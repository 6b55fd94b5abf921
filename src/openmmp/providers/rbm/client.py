"""Sending one message through RBM: `POST /v1/phones/+{E.164}/agentMessages?messageId=&agentId=`.

The request carries the channel's access token as `Authorization: Bearer` (`auth`), and a `messageId`
that is the same on every attempt of the message, so a retry after a lost answer cannot send twice: RBM
keeps the first and answers a repeat 409 ALREADY_EXISTS, which means sent. A 401 is answered by asking
for a fresh token once and sending again within the same attempt (the cached token may have been revoked
or issued by a simulator that has since restarted).

The attempt stays within about one upstream timeout, as dispatch's lease expects of one request: token
and send share the client's timeout, and a request that finds it spent still gets a quarter of it.
"""

from __future__ import annotations

import asyncio
import math
import uuid
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import orjson

from openmmp.kit.http import HttpClient, HttpResponse, HttpUnreachable
from openmmp.kit.time import now_ms
from openmmp.providers.base import Outgoing, ProviderError, SendOk
from openmmp.providers.rbm import auth
from openmmp.providers.rbm.content import content_message
from openmmp.providers.rbm.credentials import ServiceAccount
from openmmp.providers.rbm.errors import send_error
from openmmp.providers.upstream import transport_error

TTL_MAX_S = 30 * 86_400
"""RBM keeps an undelivered message for 30 days: a longer TTL means nothing more."""
_NAMESPACE = uuid.UUID("6f1c2a4e-3b5d-5e7f-8a9b-0c1d2e3f4a5b")


def message_id(account_id: str, key: int) -> str:
    """RBM's `messageId` for a message: a UUID of the channel and the message's internal id.

    Every attempt of the message repeats it (RBM's idempotency key), and no other channel, nor another
    OpenMMP database sharing the agent, can make the same one.
    """
    return str(uuid.uuid5(_NAMESPACE, f"{account_id}/{key}"))


def ttl(expire_at_ms: int, now: int) -> str:
    """RBM's `ttl` ("123s") for a message that stops being worth delivering at `expire_at_ms`."""
    seconds = math.ceil((expire_at_ms - now) / 1000)
    return f"{max(1, min(TTL_MAX_S, seconds))}s"


def agent_message(
    content: Mapping[str, Any], *, traffic_type: str, expire_at_ms: int | None, now: int
) -> dict[str, Any]:
    """The AgentMessage body for an MMP message object; ValueError naming the MMP field at fault."""
    body: dict[str, Any] = {"contentMessage": content_message(content), "messageTrafficType": traffic_type}
    if expire_at_ms is not None:
        body["ttl"] = ttl(expire_at_ms, now)
    return body


class RbmClient:
    """Sends one channel's messages: one agent, its service account, the token endpoint to use."""

    def __init__(
        self,
        http: HttpClient,
        base_url: str,
        *,
        agent_id: str,
        account: ServiceAccount,
        token_uri: str,
        traffic_type: str,
    ) -> None:
        self._http = http
        self._base_url = base_url.rstrip("/")
        self._agent_id = agent_id
        self._account = account
        self._token_uri = token_uri
        self._key = auth.token_key(account, token_uri)
        self._traffic_type = traffic_type

    async def send(self, message: Outgoing) -> SendOk:
        """Send `message`; `provider_message_id` is its messageId, by which RBM's events name it.

        Raises `ProviderError`: retryable or final as `errors` says.
        """
        phone = message.recipient.removeprefix("+")
        if not (phone.isascii() and phone.isdigit() and 8 <= len(phone) <= 15):
            raise ProviderError("RBM_INVALID_PHONE", "phone: not an E.164 number", retryable=False)
        try:
            body = agent_message(
                message.content,
                traffic_type=self._traffic_type,
                expire_at_ms=message.expire_at_ms,
                now=now_ms(),
            )
        except ValueError as exc:
            # The API checked the message already; failing here means it can never be sent.
            raise ProviderError("RBM_INVALID_MESSAGE", str(exc), retryable=False) from exc
        sent_id = message_id(message.account_id, message.key)
        url = (
            f"{self._base_url}/v1/phones/+{phone}/agentMessages"
            f"?messageId={sent_id}&agentId={quote(self._agent_id, safe='')}"
        )
        payload = orjson.dumps(body)
        budget = _Budget(self._http.timeout)
        token = await self._token(budget)
        response = await self._post(url, payload, token, budget)
        if response.status_code == 401:
            auth.TOKENS.forget(self._key, token)
            token = await self._token(budget)
            response = await self._post(url, payload, token, budget)
        if response.ok or response.status_code == 409:
            return SendOk(provider_message_id=sent_id)
        raise send_error(response)

    async def _token(self, budget: _Budget) -> auth.AccessToken:
        async def fetch() -> auth.AccessToken:
            return await auth.fetch_token(self._http, self._account, self._token_uri, timeout=budget.left())

        return await auth.TOKENS.get(self._key, fetch)

    async def _post(self, url: str, payload: bytes, token: auth.AccessToken, budget: _Budget) -> HttpResponse:
        try:
            return await self._http.post(
                url,
                content=payload,
                headers={"authorization": f"Bearer {token.value}"},
                timeout=budget.left(),
            )
        except HttpUnreachable as exc:
            raise transport_error(exc) from exc


class _Budget:
    """One attempt's time: the client's timeout in all, never less than a quarter of it per request."""

    def __init__(self, timeout: float) -> None:
        self._timeout = timeout
        self._deadline = asyncio.get_running_loop().time() + timeout

    def left(self) -> float:
        return max(self._deadline - asyncio.get_running_loop().time(), self._timeout / 4)
