"""The MSP's requests to Apple Messages for Business: sends (`POST /v1/message`) and attachment uploads.

**Send.** `POST {base_url}/v1/message` with `Authorization: Bearer <JWT>` (`auth.msp_token`), `id` (the
message's UUID), `Source-Id` (the business id), `Destination-Id` (the user's opaque id, `urn:mbid:...`) and
the JSON body `{"v": 1, "id", "sourceId", "destinationId", "type", ...}` (`payload`). The id is derived
from the message's internal key (and the channel and business), so every attempt of a message carries the
same one, and Apple collapses a repeated id: a send repeated after a lost answer reaches the user once.

**Answers** are HTTP statuses, the body empty: 200 accepted; 400 (a message Apple cannot take) and 403
(refused) final; 401 final too, as it means Apple refused the JWT (the channel's `mspId` and `secret`); 404
(no such user for the business) and 410 (the user cannot be reached: they closed or deleted the
conversation) final; 429 rate limited (waited out); 408 and 5xx passing; no answer at all retryable.

**Attachments.** Apple takes no file by URL. Each file the message names is fetched (from the company's
URL, checked against private addresses outside sandbox mode), encrypted with AES-256-CTR under a fresh
single-use key and an all-zero IV, authorised for upload (`GET {base_url}/v1/preUpload` with `Source-Id`
and `size`, answering `upload-url`, `mmcs-url` and `mmcs-owner`) and uploaded (`POST <upload-url>`,
answering `singleFile.fileChecksum`); the message then carries, per file, `{name, mimeType, size,
signature-base64, url, owner, key}` where `key` is "00" and the key in hex. One file at a time, so a
send holds at most one in memory. Every attempt uploads again: Apple's uploads are short-lived.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from openmmp.kit.http import ADDRESS_REFUSED, HttpClient, HttpResponse, HttpUnreachable
from openmmp.providers.apple import auth
from openmmp.providers.apple.payload import ATTACHMENT_MAX_BYTES, AttachmentRef, to_apple
from openmmp.providers.base import Outgoing, ProviderContext, ProviderError, SendOk
from openmmp.providers.upstream import bad_response, checked_http, parse_retry_after, transport_error

MESSAGE_PATH = "/v1/message"
PRE_UPLOAD_PATH = "/v1/preUpload"
PROTOCOL_VERSION = 1
RATE_LIMIT_WAIT_S = 1.0
"""How long to wait out a 429 that says nothing: Apple publishes no limits."""
_ID_NAMESPACE = uuid.UUID("5a0d2a2e-4c34-5b8e-9a57-0a8f2d6b7c41")
_PASSING_MEDIA_STATUSES = frozenset({408, 425, 429})
_EXPLAINED = {
    400: "Apple refused the message as malformed",
    401: "Apple refused the MSP's JWT: check the channel's credentials.mspId and credentials.secret",
    403: "Apple refused the request (the business may not send through this MSP, or to this user)",
    404: "Apple knows no such user for this business",
    410: "the user cannot be reached: they closed or deleted the conversation",
    413: "the message is too large for Apple",
}

# Per shared client: the one checked client fetching media with it (a checked client has connections of
# its own and lives as long as its parent, so one is made per check, not per send).


def message_id(*, business_id: str, account_id: str, key: int) -> str:
    """The `id` of a message: the same for every attempt of it, different for every other message."""
    return str(uuid.uuid5(_ID_NAMESPACE, f"{business_id}\x1f{account_id}\x1f{key}"))


def request_identifier(message_uuid: str) -> str:
    """The `requestIdentifier` of an interactive message: derived from its id, so attempts match."""
    return str(uuid.uuid5(uuid.UUID(message_uuid), "requestIdentifier"))


def encrypt(data: bytes) -> tuple[bytes, str]:
    """`data` encrypted as Apple wants an attachment (AES-256-CTR, all-zero IV, a fresh random key), and
    the `key` field that lets the user's device decrypt it ("00" and the key in hex)."""
    key = os.urandom(32)
    encryptor = Cipher(algorithms.AES(key), modes.CTR(bytes(16))).encryptor()
    return encryptor.update(data) + encryptor.finalize(), "00" + key.hex()


def decrypt(data: bytes, key_field: str) -> bytes:
    """The file an attachment's `key` field opens (the simulator's side of `encrypt`)."""
    if not key_field.startswith("00"):
        raise ValueError("an attachment key starts with 00")
    key = bytes.fromhex(key_field[2:])
    decryptor = Cipher(algorithms.AES(key), modes.CTR(bytes(16))).decryptor()
    return decryptor.update(data) + decryptor.finalize()


class AppleClient:
    """Sends as one business through one MSP. Failures are `ProviderError`s, classified retryable or
    final; retrying is the dispatcher's."""

    def __init__(
        self,
        http: HttpClient,
        base_url: str,
        *,
        business_id: str,
        msp_id: str,
        key: bytes,
        media: HttpClient | None = None,
    ) -> None:
        self._http = http
        self._base_url = base_url.rstrip("/")
        self._business_id = business_id
        self._msp_id = msp_id
        self._key = key
        self._media = media or http

    def _authorization(self) -> str:
        return f"Bearer {auth.msp_token(self._msp_id, self._key)}"

    async def send(self, message: Outgoing) -> SendOk:
        """Send one MMP message to the user `message.recipient`; `provider_message_id` is its `id`."""
        uid = message_id(business_id=self._business_id, account_id=message.account_id, key=message.key)
        try:
            mapped = to_apple(message.content, request_identifier=request_identifier(uid))
        except ValueError as exc:
            # Checked when accepted; failing now (a limit tightened since) can never pass.
            raise ProviderError("APPLE_INVALID_MESSAGE", str(exc), retryable=False) from exc
        body: dict[str, Any] = {
            "v": PROTOCOL_VERSION,
            "id": uid,
            "sourceId": self._business_id,
            "destinationId": message.recipient,
            **mapped.body,
        }
        if mapped.attachments:
            body["attachments"] = [await self._attachment(ref) for ref in mapped.attachments]
        headers = {
            "authorization": self._authorization(),
            "id": uid,
            "source-id": self._business_id,
            "destination-id": message.recipient,
        }
        try:
            response = await self._http.post(f"{self._base_url}{MESSAGE_PATH}", json=body, headers=headers)
        except HttpUnreachable as exc:
            raise transport_error(exc) from exc
        if not response.ok:
            raise status_error(response)
        return SendOk(provider_message_id=uid)

    async def _attachment(self, ref: AttachmentRef) -> dict[str, Any]:
        """Fetch, encrypt and upload one file; its attachment dictionary."""
        data = await self._fetch(ref)
        encrypted, key_field = encrypt(data)
        upload = await self._pre_upload(len(encrypted))
        checksum = await self._upload(upload["upload-url"], encrypted)
        return {
            "name": ref.name,
            "mimeType": ref.mime_type,
            "size": len(data),
            "signature-base64": checksum,
            "url": upload["mmcs-url"],
            "owner": upload["mmcs-owner"],
            "key": key_field,
        }

    async def _fetch(self, ref: AttachmentRef) -> bytes:
        try:
            response = await self._media.get(ref.url)
        except HttpUnreachable as exc:
            if exc.kind == ADDRESS_REFUSED:
                raise ProviderError(
                    "APPLE_MEDIA_REFUSED", f"{ref.field}.url: not fetched, {exc.detail}", retryable=False
                ) from exc
            what = "did not answer in time" if exc.timed_out else "could not be reached"
            raise ProviderError(
                "APPLE_MEDIA_UNREACHABLE", f"{ref.field}.url: {what}", retryable=True
            ) from exc
        code = response.status_code
        if not response.ok:
            hint = " (redirects are not followed: give the file's own URL)" if 300 <= code < 400 else ""
            raise ProviderError(
                f"APPLE_MEDIA_HTTP_{code}",
                f"{ref.field}.url: the file's server answered HTTP {code}{hint}",
                retryable=code >= 500 or code in _PASSING_MEDIA_STATUSES,
            )
        if not response.content:
            raise ProviderError("APPLE_MEDIA_EMPTY", f"{ref.field}.url: the file is empty", retryable=False)
        if len(response.content) > ATTACHMENT_MAX_BYTES:
            raise ProviderError(
                "APPLE_MEDIA_TOO_LARGE",
                f"{ref.field}.url: the file has {len(response.content)} bytes; at most "
                f"{ATTACHMENT_MAX_BYTES // (1024 * 1024)} MB",
                retryable=False,
            )
        return response.content

    async def _pre_upload(self, size: int) -> dict[str, str]:
        headers = {"authorization": self._authorization(), "source-id": self._business_id, "size": str(size)}
        try:
            response = await self._http.get(f"{self._base_url}{PRE_UPLOAD_PATH}", headers=headers)
        except HttpUnreachable as exc:
            raise transport_error(exc) from exc
        if not response.ok:
            raise status_error(response, action="authorise an attachment's upload")
        answer = _json_object(response, "preUpload")
        fields = {name: answer.get(name) for name in ("upload-url", "mmcs-url", "mmcs-owner")}
        found = {name: value for name, value in fields.items() if isinstance(value, str) and value}
        if len(found) != len(fields) or urlsplit(found["upload-url"]).scheme not in ("http", "https"):
            raise bad_response("Apple's preUpload answer lacks upload-url, mmcs-url or mmcs-owner")
        return found

    async def _upload(self, url: str, encrypted: bytes) -> str:
        headers = {"content-type": "application/octet-stream"}
        try:
            response = await self._http.post(url, content=encrypted, headers=headers)
        except HttpUnreachable as exc:
            raise transport_error(exc) from exc
        if not response.ok:
            raise status_error(response, action="upload an attachment")
        single = _json_object(response, "upload").get("singleFile")
        checksum = single.get("fileChecksum") if isinstance(single, Mapping) else None
        if not isinstance(checksum, str) or not checksum:
            raise bad_response("Apple's upload answer lacks singleFile.fileChecksum")
        return checksum


def status_error(response: HttpResponse, *, action: str = "take the message") -> ProviderError:
    """Why Apple did not `action`, by its HTTP status: retryable or final, never quoting a secret."""
    code = response.status_code
    if code == 429:
        wait = parse_retry_after(response.headers.get("retry-after"))
        return ProviderError(
            "APPLE_429",
            f"Apple asks to slow down (did not {action})",
            retryable=True,
            rate_limited=True,
            retry_after=RATE_LIMIT_WAIT_S if wait is None else wait,
        )
    if code >= 500 or code == 408:
        return ProviderError(f"APPLE_{code}", f"Apple did not {action} (HTTP {code})", retryable=True)
    said = _EXPLAINED.get(code, f"Apple did not {action} (HTTP {code})")
    return ProviderError(f"APPLE_{code}", said, retryable=False)


def _json_object(response: HttpResponse, what: str) -> dict[str, Any]:
    try:
        answer = response.json()
    except ValueError as exc:
        raise bad_response(f"Apple's {what} answer is not JSON") from exc
    if not isinstance(answer, dict):
        raise bad_response(f"Apple's {what} answer is not a JSON object")
    return answer


def client_for(ctx: ProviderContext, credentials: Mapping[str, Any]) -> AppleClient:
    """The client acting for a channel. Raises ValueError for credentials that cannot work (a secret
    that is not base64): the core then fails the channel's messages with that cause."""
    return AppleClient(
        ctx.http,
        ctx.base_url,
        business_id=str(credentials["businessId"]),
        msp_id=str(credentials["mspId"]),
        key=auth.msp_key(str(credentials["secret"])),
        media=checked_http(ctx),
    )
