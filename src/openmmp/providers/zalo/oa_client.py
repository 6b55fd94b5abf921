"""Sends to Zalo OA's consultation API as one Official Account, and uploads the files it sends.

One send is `POST {openapi}/v3.0/oa/message/cs` `{recipient: {user_id}, message}` with the OA's access
token (header `access_token`), answered `data: {message_id, user_id, quota?}`; Zalo has no idempotency key,
so a send repeated after a lost answer can reach the end user twice.

A file goes by an upload token: the file at `fileUrl` is fetched (outside sandbox mode through a client
that refuses private and local addresses, as every fetch of a tenant's URL) and uploaded as
`multipart/form-data` (`file`) to `POST {openapi}/v2.0/oa/upload/file`, answered `data: {token}`; both at
every attempt (a token lasts 7 days, an attempt seconds). A fetch that may pass (no answer, HTTP 5xx, 408,
429) is retryable; a file server that refuses, redirects (never followed), or serves something too large
or other than PDF, DOC or DOCX is final, with `message.fileUrl` in the cause.
"""

from __future__ import annotations

import mimetypes
import re
import secrets
from collections.abc import Mapping
from typing import Any

from openmmp.kit.http import ADDRESS_REFUSED, HttpUnreachable
from openmmp.providers.base import ProviderContext, ProviderError, SendOk
from openmmp.providers.upstream import bad_response, checked_http, transport_error
from openmmp.providers.zalo.credentials import zalo_hosts
from openmmp.providers.zalo.errors import TOKEN_HEADER, call_zalo, envelope_data
from openmmp.providers.zalo.oa_payload import (
    FILE_EXTENSIONS,
    FILE_MAX_BYTES,
    FileRef,
    file_message,
    to_oa_message,
)

SEND_PATH = "/v3.0/oa/message/cs"
UPLOAD_FILE_PATH = "/v2.0/oa/upload/file"
_RETRY_STATUSES = frozenset({408, 425, 429})
_MEDIA_TYPES: Mapping[str, str] = {
    "application/pdf": "pdf",
    "application/msword": "doc",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "docx",
}
_CONTENT_TYPES: Mapping[str, str] = {extension: kind for kind, extension in _MEDIA_TYPES.items()}
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
NAME_MAX = 100


async def send(
    ctx: ProviderContext, credentials: Mapping[str, Any], user_id: str, content: Mapping[str, Any]
) -> SendOk:
    """Send one MMP message to the follower `user_id`; `provider_message_id` is Zalo's `message_id`."""
    try:
        prepared = to_oa_message(content)
    except ValueError as exc:
        # Checked when accepted; failing now (a message sent before a limit was tightened) is final.
        raise ProviderError("ZALO_INVALID_MESSAGE", str(exc), retryable=False) from exc
    token = str(credentials["accessToken"])
    message = prepared.message
    if prepared.file is not None:
        message = file_message(await upload_file(ctx, token, prepared.file))
    data = await call_zalo(
        ctx,
        "POST",
        f"{zalo_hosts(ctx).openapi}{SEND_PATH}",
        access_token=token,
        json={"recipient": {"user_id": user_id}, "message": message},
    )
    message_id = data.get("message_id")
    if not isinstance(message_id, str) or not message_id:
        raise bad_response("Zalo accepted the message but named no message_id")
    return SendOk(provider_message_id=message_id)


async def upload_file(ctx: ProviderContext, access_token: str, ref: FileRef) -> str:
    """Fetch `ref` and upload it to Zalo; the upload's token."""
    data, name, content_type = await fetch_file(ctx, ref)
    boundary = secrets.token_hex(16)
    body = b"".join(
        (
            f"--{boundary}\r\n".encode(),
            f'Content-Disposition: form-data; name="file"; filename="{name}"\r\n'.encode(),
            f"Content-Type: {content_type}\r\n\r\n".encode(),
            data,
            f"\r\n--{boundary}--\r\n".encode(),
        )
    )
    headers = {TOKEN_HEADER: access_token, "content-type": f"multipart/form-data; boundary={boundary}"}
    unreachable: ProviderError | None = None
    try:
        response = await ctx.http.request(
            "POST", f"{zalo_hosts(ctx).openapi}{UPLOAD_FILE_PATH}", content=body, headers=headers
        )
    except HttpUnreachable as exc:
        unreachable = transport_error(exc)
    if unreachable is not None:
        raise unreachable
    answer = envelope_data(response.status_code, response.content, response.headers.get("retry-after"))
    token = answer.get("token")
    if not isinstance(token, str) or not token:
        raise bad_response("Zalo took the file but named no token")
    return token


async def fetch_file(ctx: ProviderContext, ref: FileRef) -> tuple[bytes, str, str]:
    """The file at `ref.url`: its bytes, a header-safe name with its extension, and its media type."""
    try:
        response = await checked_http(ctx).get(ref.url)
    except HttpUnreachable as exc:
        if exc.kind == ADDRESS_REFUSED:
            raise ProviderError(
                "ZALO_FILE_REFUSED", f"message.fileUrl: not fetched, {exc.detail}", retryable=False
            ) from exc
        what = "did not answer in time" if exc.timed_out else "could not be reached"
        raise ProviderError("ZALO_FILE_UNREACHABLE", f"message.fileUrl: {what}", retryable=True) from exc
    code = response.status_code
    if not 200 <= code < 300:
        hint = " (redirects are not followed: give the file's own URL)" if 300 <= code < 400 else ""
        raise ProviderError(
            f"ZALO_FILE_HTTP_{code}",
            f"message.fileUrl: the file server answered HTTP {code}{hint}",
            retryable=code >= 500 or code in _RETRY_STATUSES,
        )
    if len(response.content) > FILE_MAX_BYTES:
        raise ProviderError(
            "ZALO_FILE_TOO_LARGE",
            f"message.fileUrl: the file is {len(response.content) // 1024} KB; Zalo takes at most "
            f"{FILE_MAX_BYTES // (1024 * 1024)} MB",
            retryable=False,
        )
    stem, extension = _split(ref.name)
    if extension not in FILE_EXTENSIONS:
        said = (response.headers.get("content-type") or "").split(";", 1)[0].strip().lower()
        extension = _MEDIA_TYPES.get(said) or _MEDIA_TYPES.get(mimetypes.guess_type(ref.url)[0] or "", "")
        if not extension:
            raise ProviderError(
                "ZALO_FILE_TYPE",
                f"message.fileUrl: Zalo sends PDF, DOC and DOCX files only; the file server sent "
                f"{said or 'no media type'}",
                retryable=False,
            )
    safe = (_UNSAFE.sub("_", stem).strip("._") or "file")[:NAME_MAX]
    return response.content, f"{safe}.{extension}", _CONTENT_TYPES[extension]


def _split(name: str) -> tuple[str, str]:
    stem, dot, extension = name.rpartition(".")
    if not dot or not stem:
        return name, ""
    return stem, extension.lower()
