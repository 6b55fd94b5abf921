"""`{{name}}` placeholders, filled from a send's `params` before anything is queued."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from openmmp.errors import ErrorCode, ErrorItem, Invalid

PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z0-9_.\-]+)\s*\}\}")


def placeholders(value: Any) -> set[str]:
    """Every placeholder name used anywhere in `value` (strings inside nested dicts and lists too)."""
    if isinstance(value, str):
        return set(PLACEHOLDER.findall(value))
    if isinstance(value, Mapping):
        return set().union(*(placeholders(v) for v in value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*(placeholders(v) for v in value)) if value else set()
    return set()


def _fill(value: Any, params: Mapping[str, str]) -> Any:
    if isinstance(value, str):
        return PLACEHOLDER.sub(lambda m: params[m.group(1)], value) if "{{" in value else value
    if isinstance(value, Mapping):
        return {k: _fill(v, params) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, params) for v in value]
    return value


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def render(content: Mapping[str, Any], params: Mapping[str, Any] | None) -> dict[str, Any]:
    """`content` with every placeholder replaced; a 400 naming `params.<name>` for each one missing."""
    given = {k: _text(v) for k, v in (params or {}).items()}
    missing = sorted(placeholders(content) - set(given))
    if missing:
        items = [
            ErrorItem(name=f"params.{n}", code=ErrorCode.INVALID, message="missing value") for n in missing
        ]
        raise Invalid(f"missing params: {', '.join(missing)}", items=items)
    rendered: dict[str, Any] = _fill(content, given)
    return rendered
