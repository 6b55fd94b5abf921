"""Speaks MM7 to an MMSC: one SubmitReq per message over HTTP POST, through `kit.http.HttpClient`.

The request is SOAP 1.1 with attachments: a `multipart/related` body (`type="text/xml"`, `start` = the
envelope) holding the SOAP envelope and the MMS (`content.mms`), with HTTP Basic authentication when the
channel has a username and password. MM7 has no idempotency key: the TransactionID (derived from the
message's id, so every attempt of a message carries the same one) correlates, but MMSCs do not collapse
repeats, so a submit repeated after a lost answer can reach the phone twice.

Outside sandbox mode the MMSC is the channel's `url`, tenant input: its connections are checked as the
SMSC's are (`ProviderContext.target_check`, at connection time, to each address the host resolves to),
and so are those of the media fetch, by address only (public, or an address the operator allows).
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from urllib.parse import urlsplit

from openmmp.kit.http import ADDRESS_REFUSED, HttpClient, HttpUnreachable
from openmmp.providers.base import ProviderContext, ProviderError, SendOk
from openmmp.providers.mm7 import errors, mime, soap
from openmmp.providers.upstream import checked_http, transport_error

SOAP_ID = "mm7-soap"
SANDBOX_PATH = "/mm7"
"""Where the simulator takes SubmitReqs, under the provider's base URL."""


def transaction_id(key: int) -> str:
    """The TransactionID of a message: the same for every attempt of it."""
    return f"openmmp-{key}"


def basic_authorization(username: str, password: str) -> str:
    """An `Authorization: Basic` header value (RFC 7617, UTF-8)."""
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode("ascii")


def upstream_http(ctx: ProviderContext, url: str) -> HttpClient:
    """The client for the MMSC at `url`: unchecked in sandbox mode (the simulator is local)."""
    return checked_http(ctx, (urlsplit(url).hostname or "").lower())


def media_http(ctx: ProviderContext) -> Callable[[str], HttpClient]:
    """The client to fetch each media URL with (`checked_http`, by address only)."""
    client = checked_http(ctx)
    return lambda url: client


class Mm7Client:
    """Submits to one MMSC endpoint as one VASP account. Raises `ProviderError` on every failure,
    classified retryable or final (`errors`); never retries by itself."""

    def __init__(self, http: HttpClient, url: str, *, username: str | None, password: str | None) -> None:
        self._http = http
        self._url = url
        self._authorization = basic_authorization(username, password) if username and password else None

    async def submit(self, request: soap.SubmitReq, content: mime.Part, *, timeout: float) -> SendOk:
        """Send one SubmitReq with `content` (whose Content-ID is `request.content_id`)."""
        envelope = mime.Part("text/xml; charset=utf-8", soap.submit_req(request), SOAP_ID)
        content_type, body = mime.encode(
            [envelope, content], subtype="related", params={"type": "text/xml", "start": f"<{SOAP_ID}>"}
        )
        headers = {"content-type": content_type, "soapaction": '""'}
        if self._authorization is not None:
            headers["authorization"] = self._authorization
        try:
            response = await self._http.post(self._url, content=body, headers=headers, timeout=timeout)
        except HttpUnreachable as exc:
            raise _unreachable(exc) from exc
        return errors.submit_outcome(response, request.transaction_id)


def _unreachable(exc: HttpUnreachable) -> ProviderError:
    """No answer: retryable, since the MMSC never said no (a refused address may be allowed later)."""
    if exc.kind == ADDRESS_REFUSED:
        return ProviderError("MM7_TARGET_REFUSED", exc.detail, retryable=True)
    return transport_error(exc)
