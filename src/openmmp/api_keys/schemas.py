from __future__ import annotations

from pydantic import Field, field_validator

from openmmp.kit.schemas import RequestModel, ResponseModel
from openmmp.kit.time import now_ms


class CreateAPIKeyRequest(RequestModel):
    name: str = Field(min_length=1, max_length=200)
    expired_date: int | None = Field(default=None, description="Expiry, epoch milliseconds; none = never.")

    @field_validator("expired_date")
    @classmethod
    def _in_future(cls, value: int | None) -> int | None:
        if value is not None and value <= now_ms():
            raise ValueError("expiredDate must be in the future (epoch milliseconds)")
        return value


class CreateAPIKeyResponse(ResponseModel):
    public_id: str
    name: str
    api_key: str = Field(description="The key itself. Shown once: only its hash is stored.")
    expired_date: int | None


class APIKeyInfo(ResponseModel):
    """A key as listed: never the key itself, only its first characters."""

    public_id: str
    name: str
    hint: str = Field(description="The key's first characters, to recognise it.")
    expired_date: int | None
    created_date: int
