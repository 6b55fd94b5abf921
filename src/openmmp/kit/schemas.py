"""Base classes for wire schemas: camelCase on the wire (the MMP API's names), snake_case in Python."""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Path, Query
from pydantic import BaseModel, ConfigDict, ValidationInfo, model_validator
from pydantic.alias_generators import to_camel

MAX_DEPTH = 32
"""Deepest nesting of objects and arrays in a request body; deeper is a 400 (never a crash further on)."""
MAX_NUMBER = 2**63 - 1
"""Largest magnitude of a number in a request body: what a BIGINT column and the JSON encoder hold."""
_SURROGATES = re.compile("[\ud800-\udfff]")
CHECKED_STORABLE = "checked_storable"
"""Validation context key: the data is part of a request body `RequestModel` has already checked."""


def _text_problem(text: str) -> str | None:
    if "\x00" in text:
        return "must not contain NUL (\\u0000) characters"  # PostgreSQL text cannot store it
    if not text.isascii() and _SURROGATES.search(text):
        # A lone "\ud800" escape is valid JSON, but no UTF-8 text: nothing downstream could encode it.
        return "must not contain unpaired surrogates (\\ud800-\\udfff)"
    return None


# Where a value sits: None for the body itself, else (where its container sits, its key or index).
_Where = tuple[Any, str | int] | None


def _path(where: _Where) -> str:
    keys: list[str | int] = []
    while where is not None:
        where, key = where
        keys.append(key)
    path = ""
    for key in reversed(keys):
        path += f"[{key}]" if isinstance(key, int) else (f"{path and '.'}{key}")
    return path


def _unstorable(value: Any) -> str | None:
    """Why parsed JSON could not be stored or sent on as it is, naming where; None when it can.

    Walks iteratively (no recursion limit to hit) and in document order, so the first problem is named.
    A batch's body is a thousand items: a path is only spelled out for the problem found, and text that
    is fine is checked where its container is walked.
    """
    stack: list[tuple[Any, _Where, int]] = [(value, None, 0)]
    while stack:
        item, where, depth = stack.pop()
        problem = None
        if isinstance(item, str):
            problem = _text_problem(item)
        elif isinstance(item, int | float) and not isinstance(item, bool):
            if not (math.isfinite(item) and -MAX_NUMBER <= item <= MAX_NUMBER):
                problem = f"must be a finite number between -{MAX_NUMBER} and {MAX_NUMBER}"
        elif isinstance(item, dict | list) and depth >= MAX_DEPTH:
            problem = f"is nested more than {MAX_DEPTH} levels deep"
        elif isinstance(item, dict):
            children = []
            for key, child in item.items():
                problem = _text_problem(str(key))
                if problem:
                    where = (where, str(key))
                    break
                # Text that is fine needs no turn of its own; text that is not is reported in its turn.
                if type(child) is not str or _text_problem(child):
                    children.append((child, (where, str(key)), depth + 1))
            stack.extend(reversed(children))
        elif isinstance(item, list):
            stack.extend((item[i], (where, i), depth + 1) for i in reversed(range(len(item))))
        if problem:
            # The path holds the client's keys: never echo a surrogate, the error body could not be encoded.
            return f"{_SURROGATES.sub(chr(0xFFFD), _path(where)) or 'value'} {problem}"
    return None


class RequestModel(BaseModel):
    """Input: unknown fields are refused so a typo is a 400, not a silently ignored setting."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _storable(cls, data: Any, info: ValidationInfo) -> Any:
        if info.context is not None and info.context.get(CHECKED_STORABLE):
            return data  # part of a body already walked whole (a batch's items)
        problem = _unstorable(data)
        if problem is not None:
            raise ValueError(problem)
        return data


class ResponseModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, from_attributes=True)


T = TypeVar("T")


class Page(ResponseModel, Generic[T]):
    total: int
    page: int
    size: int
    items: list[T]


PageNumber = Annotated[int, Query(ge=1, le=1_000_000, description="1-based page number")]
PageSize = Annotated[int, Query(ge=1, le=100, description="Items per page (at most 100)")]


# Path parameters under the MMP documentation's names (generated clients carry them).
AccountId = Annotated[str, Path(alias="accountId", description="The channel's `publicId`")]
MessageId = Annotated[str, Path(alias="messageId", description="The message's `messageId`")]
WebhookId = Annotated[str, Path(alias="webhookId", description="The delivery's `webhook-id`")]
PublicId = Annotated[str, Path(alias="publicId", description="The object's `publicId`")]
