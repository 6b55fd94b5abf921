"""Base classes for wire schemas: camelCase on the wire (the MMP API's names), snake_case in Python."""

from __future__ import annotations

from typing import Annotated, Any, Generic, TypeVar

from fastapi import Query
from pydantic import BaseModel, ConfigDict, model_validator
from pydantic.alias_generators import to_camel


def _nul_path(value: Any, path: str) -> str | None:
    """Where a NUL character hides in parsed JSON, if anywhere (PostgreSQL text cannot store it)."""
    if isinstance(value, str):
        return path if "\x00" in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            if "\x00" in str(key):
                return where
            found = _nul_path(item, where)
            if found:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found = _nul_path(item, f"{path}[{index}]")
            if found:
                return found
    return None


class RequestModel(BaseModel):
    """Input: unknown fields are refused so a typo is a 400, not a silently ignored setting."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _no_nul_characters(cls, data: Any) -> Any:
        where = _nul_path(data, "")
        if where is not None:
            raise ValueError(f"{where or 'value'} must not contain NUL (\\u0000) characters")
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
