"""The OpenAPI document names path parameters as the MMP documentation does (`accountId`, `messageId`).

Generated clients carry these names, so a snake_case `account_id` would be a different API to them.
"""

from __future__ import annotations

import re

import httpx


async def test_every_path_parameter_has_its_documented_camel_case_name(client: httpx.AsyncClient):
    spec = (await client.get("/openapi.json")).json()
    in_paths, declared = set(), set()
    for path, operations in spec["paths"].items():
        in_paths |= set(re.findall(r"\{([^}]+)\}", path))
        for operation in operations.values():
            declared |= {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
    assert in_paths == declared
    assert {
        "accountId",
        "messageId",
        "webhookId",
        "publicId",
        "provider",
        "taskId",
        "templateId",
        "campaignId",
    } == in_paths
    assert [name for name in in_paths if "_" in name] == []


async def test_every_named_schema_lists_its_fields(client: httpx.AsyncClient):
    """A schema documented as a bare object tells a client nothing (a custom serializer once made
    BroadcastResponseMessage one); each named schema must list the fields it has on the wire."""
    schemas = (await client.get("/openapi.json")).json()["components"]["schemas"]
    bare = [
        name
        for name, schema in schemas.items()
        if schema.get("type") == "object" and "properties" not in schema
    ]
    assert bare == []
    assert "email" in schemas["BroadcastResponseMessage"]["properties"]
    assert {"verification", "launches"} <= set(schemas["CommonGetChannelStatusResponse"]["properties"])
