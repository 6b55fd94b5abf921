"""What each upstream needs to act for a channel (api.md §4.2), checked before anything is stored.

The shapes are the providers' (`Provider.credentials_model`, or the registry's `NotAvailable` entry for an
application whose provider has not landed). Credentials are stored encrypted and never returned.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from openmmp.errors import ErrorCode, ErrorItem, Invalid
from openmmp.providers.applications import Application
from openmmp.providers.base import Credentials
from openmmp.providers.registry import REGISTRY


def credentials_json_schema() -> dict[str, Any]:
    """The OpenAPI schema of `credentials`: one of the per-application shapes."""
    variants = []
    for application in Application:
        schema = REGISTRY.credentials_model(application).model_json_schema(by_alias=True)
        schema["title"] = f"{application.name} credentials (applicationId {application.value})"
        variants.append(schema)
    return {
        "type": "object",
        "description": "Per applicationId; stored encrypted, never returned.",
        "anyOf": variants,
    }


def validate_credentials(application: Application, raw: dict[str, Any]) -> Credentials:
    """Parse `raw` for `application`, or raise a 400 naming each bad field as `credentials.<field>`."""
    model = REGISTRY.credentials_model(application)
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        items = []
        for error in exc.errors():
            path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error["loc"])
            message = error["msg"].removeprefix("Value error, ")
            if error["type"] == "missing":
                message = f"required for {application.name} channels"
            elif error["type"] == "extra_forbidden":
                message = f"not a {application.name} credential field"
            items.append(ErrorItem(name=f"credentials{path}", code=ErrorCode.INVALID, message=message))
        raise Invalid(items[0].message, items=items) from exc
