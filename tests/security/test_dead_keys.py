"""Revoked and expired API keys open nothing: 401 on every operation that takes a key.

tests/api_keys covers a revoked and an expired key on the key list; here every authenticated operation
(enumerated from the app, sandbox routes included) is tried, the expiry is checked at its exact instant,
a partner key is covered, and the set of operations that take no key at all is pinned.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import httpx
import time_machine
from tests.conftest import Tenant
from tests.security.conftest import Operation, operations

from openmmp.kit.time import now_ms

KEYS = "/api/v1/onboard/api-key"

# Public by construction (style.md habit 6): provider callbacks are proven by the upstream's signature,
# the end of a sign-up (where the admin's browser lands) by the onboarding token a company's key asked for.
PUBLIC = {
    ("POST", "/callbacks/{provider}/{accountId}"),
    ("POST", "/callbacks/{provider}"),
    ("GET", "/callbacks/{provider}/{accountId}"),
    ("GET", "/onboard/{provider}/callback"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
}


def _url(operation: Operation) -> str:
    return re.sub(r"\{[^}]+\}", lambda _: str(uuid.uuid4()), operation.path)


async def _every_operation_with(
    key: str, client: httpx.AsyncClient, sandbox_client: httpx.AsyncClient
) -> dict[tuple[str, str], tuple[int, str]]:
    """(status, first error code) of each authenticated operation called with `key` and an empty body."""
    answers: dict[tuple[str, str], tuple[int, str]] = {}
    for operation in operations():
        if not operation.authenticated:
            continue
        http = sandbox_client if operation.sandbox_only else client
        body: dict[str, Any] | None = {} if operation.method in ("POST", "PUT", "PATCH") else None
        response = await http.request(operation.method, _url(operation), json=body, headers={"apiKey": key})
        code = response.json()["errors"][0]["code"] if response.status_code >= 400 else ""
        answers[operation.key] = (response.status_code, code)
    return answers


def _not_401(answers: dict[tuple[str, str], tuple[int, str]]) -> dict[tuple[str, str], tuple[int, str]]:
    """The answers that are not 401 NOT_AUTHENTICATE: empty when every operation refused the key."""
    return {k: v for k, v in answers.items() if v != (401, "NOT_AUTHENTICATE")}


async def _new_key(client: httpx.AsyncClient, owner: Tenant, **body: Any) -> dict[str, Any]:
    created = await client.post(KEYS, json={"name": "dead-key-test", **body}, headers=owner.headers)
    assert created.status_code == 201, created.text
    return created.json()  # type: ignore[no-any-return]


class TestWhichOperationsTakeAKey:
    def test_all_but_the_known_public_operations_take_a_key(self):
        assert sorted(op.key for op in operations() if not op.authenticated) == sorted(PUBLIC)


class TestRevokedKeys:
    async def test_a_revoked_key_is_401_on_every_operation_and_the_companys_other_keys_still_work(
        self, client: httpx.AsyncClient, sandbox_client: httpx.AsyncClient, tenant: Tenant
    ):
        key = await _new_key(client, tenant)
        live = await _every_operation_with(key["apiKey"], client, sandbox_client)
        assert len(_not_401(live)) == len(live) > 10  # while live, no operation refused the key itself
        assert (await client.delete(f"{KEYS}/{key['publicId']}", headers=tenant.headers)).status_code == 200
        assert _not_401(await _every_operation_with(key["apiKey"], client, sandbox_client)) == {}
        assert (await client.get(KEYS, headers=tenant.headers)).status_code == 200

    async def test_a_revoked_partner_key_cannot_onboard(self, client: httpx.AsyncClient, partner: Tenant):
        key = await _new_key(client, partner)
        body = {"company": {"name": "Via dead key"}, "admin": {"name": "A", "email": "dead@key.example"}}
        assert (await client.delete(f"{KEYS}/{key['publicId']}", headers=partner.headers)).status_code == 200
        response = await client.post("/api/v1/onboard", json=body, headers={"apiKey": key["apiKey"]})
        assert response.status_code == 401
        assert response.json()["errors"][0]["code"] == "NOT_AUTHENTICATE"


class TestExpiredKeys:
    async def test_a_key_is_401_on_every_operation_from_the_instant_it_expires(
        self, client: httpx.AsyncClient, sandbox_client: httpx.AsyncClient, tenant: Tenant
    ):
        expiry = (now_ms() // 1000 + 120) * 1000  # a whole second, so the clock can be put on it exactly
        key = await _new_key(client, tenant, expiredDate=expiry)
        with time_machine.travel(expiry / 1000 - 1, tick=False):
            assert (await client.get(KEYS, headers={"apiKey": key["apiKey"]})).status_code == 200
        with time_machine.travel(expiry / 1000, tick=False):
            assert _not_401(await _every_operation_with(key["apiKey"], client, sandbox_client)) == {}
            assert (await client.get(KEYS, headers=tenant.headers)).status_code == 200

    async def test_an_expired_partner_key_cannot_onboard(self, client: httpx.AsyncClient, partner: Tenant):
        key = await _new_key(client, partner, expiredDate=now_ms() + 60_000)
        body = {"company": {"name": "Via old key"}, "admin": {"name": "A", "email": "old@key.example"}}
        with time_machine.travel(now_ms() / 1000 + 61, tick=False):
            response = await client.post("/api/v1/onboard", json=body, headers={"apiKey": key["apiKey"]})
        assert response.status_code == 401
        assert response.json()["errors"][0]["code"] == "NOT_AUTHENTICATE"
