"""How a send is checked against its channel's provider before it is queued (api.md §2 and §3)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from openmmp.errors import ErrorCode, ErrorItem, Invalid
from openmmp.providers.base import Provider


def check_content(provider: Provider, content: Mapping[str, Any], credentials: Mapping[str, Any]) -> None:
    """Raise a 400 naming the field when `content` cannot go out through `provider` as it is."""
    if content.get("type") not in provider.message_types:
        allowed = ", ".join(sorted(provider.message_types))
        raise Invalid(
            f"not allowed on {provider.application.name} channels; allowed: {allowed}", name="message.type"
        )
    try:
        provider.check_message(content, credentials)
    except ValueError as exc:
        name, _, message = str(exc).partition(": ")
        if not message:
            name, message = "message", str(exc)
        raise Invalid(message, items=[ErrorItem(name=name, code=ErrorCode.INVALID, message=message)]) from exc
