"""Checks that providers' mappings of MMP message objects (api.md §3) share.

A mapping is also its provider's accept-time check (`Provider.check_message`): each check raises
ValueError whose text starts with the MMP field at fault, and names the upstream (`on`) where the limit
is the upstream's own.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from openmmp.kit.validators import http_url

URL_MAX = 2000


def message_type(message: Any, supported: frozenset[str], *, on: str) -> str:
    """The `type` of an MMP message object, one of the upstream's `supported` types."""
    if not isinstance(message, Mapping):
        raise ValueError("message: must be an object")
    kind = message.get("type")
    if not isinstance(kind, str) or not kind:
        raise ValueError("message.type: required")
    if kind not in supported:
        raise ValueError(f"message.type: {kind!r} is not supported on {on}")
    return kind


def text_field(value: Any, field: str, limit: int, *, on: str, required: bool = False) -> str:
    """A string of at most `limit` characters (None: empty); `required`: not blank."""
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise ValueError(f"{field}: must be a string")
    if required and not value.strip():
        raise ValueError(f"{field}: required")
    if len(value) > limit:
        raise ValueError(f"{field}: at most {limit} characters on {on}")
    return value


def list_field(value: Any, field: str) -> list[Any]:
    """A list (None: empty)."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise ValueError(f"{field}: must be a list")
    return value


def url_field(value: Any, field: str, *, on: str) -> str:
    """An http(s) URL of at most `URL_MAX` characters, required."""
    url = text_field(value, field, URL_MAX, on=on, required=True)
    try:
        return http_url(url)
    except ValueError as exc:
        raise ValueError(f"{field}: {exc}") from exc
