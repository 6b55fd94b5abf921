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


def _fill(value: Any, params: Mapping[str, str], missing: set[str]) -> Any:
    """`value` with its placeholders replaced; the names without a value are added to `missing`."""
    if isinstance(value, str):
        if "{{" not in value:
            return value

        def substitute(match: re.Match[str]) -> str:
            name = match.group(1)
            found = params.get(name)
            if found is None:
                missing.add(name)
                return match.group(0)
            return found

        return PLACEHOLDER.sub(substitute, value)
    if isinstance(value, Mapping):
        return {k: _fill(v, params, missing) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, params, missing) for v in value]
    return value


def param_text(value: Any) -> str:
    """A parameter's value as text: booleans as JSON writes them (`true`), anything else as `str`."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def param_texts(params: Mapping[str, Any]) -> dict[str, str]:
    return {name: param_text(value) for name, value in params.items()}


def render(content: Mapping[str, Any], params: Mapping[str, Any] | None) -> dict[str, Any]:
    """`content` with every placeholder replaced; a 400 naming `params.<name>` for each one missing.

    One walk fills and finds the missing names together (a batch renders up to 1,000 of these).
    """
    given = param_texts(params) if params else {}
    missing: set[str] = set()
    rendered: dict[str, Any] = _fill(content, given, missing)
    if missing:
        names = sorted(missing)
        items = [
            ErrorItem(name=f"params.{n}", code=ErrorCode.INVALID, message="missing value") for n in names
        ]
        raise Invalid(f"missing params: {', '.join(names)}", items=items)
    return rendered
