"""Schemathesis over the app's own `/openapi.json`: every operation, valid and invalid input, in-process.

Each operation gets positive cases (what its schema allows) and negative ones (what it forbids), sent with
a real company API key (the partner's for partner-only routes) through the ASGI app, on each database.
Every answer must be documented: no 5xx, its status code listed for the operation, its content type and
body matching the declared schema, and invalid input refused with a 4xx. In positive cases the path ids
are, half the time, the company's real channels and message, and `phone` a valid number, so requests get
past "not found" and "invalid phone" into the send pipeline.
"""

from __future__ import annotations

import os
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from tests.badinput.conftest import fuzz_settings
from tests.conftest import Tenant

from openmmp.app import create_app

# The document the app serves with the fuzz suite's settings (sandbox on, so /sandbox routes are in it).
DOCUMENT: dict[str, Any] = create_app(fuzz_settings(database_url="sqlite+aiosqlite://")).openapi()
SCHEMA = schemathesis.openapi.from_dict(DOCUMENT)
OPERATIONS = {operation.label: operation for operation in (r.ok() for r in SCHEMA.get_all_operations())}
PARTNER_ONLY = {"POST /api/v1/onboard"}
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
]
MODES = [schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE]
# Bounded for CI; raise it locally to dig deeper, e.g. OPENMMP_FUZZ_EXAMPLES=500.
EXAMPLES = int(os.environ.get("OPENMMP_FUZZ_EXAMPLES", "20"))
VALID_PHONE = "85512345670"


async def test_the_fuzzed_document_is_the_one_the_app_serves(bad_client: httpx.AsyncClient):
    served = await bad_client.get("/openapi.json")
    assert served.status_code == 200
    assert served.json() == DOCUMENT


def test_every_documented_path_and_method_is_fuzzed():
    documented = {
        f"{method.upper()} {path}" for path, methods in DOCUMENT["paths"].items() for method in methods
    }
    assert set(OPERATIONS) == documented
    assert len(OPERATIONS) >= 25


def _as_request(case: schemathesis.Case) -> dict[str, Any]:
    """httpx keyword arguments for `case` (schemathesis speaks `requests`)."""
    kwargs = case.as_transport_kwargs(base_url="http://testserver")
    request = {
        "method": kwargs["method"],
        "url": kwargs["url"],
        "headers": kwargs["headers"],
        "params": kwargs.get("params") or None,
    }
    if "json" in kwargs:
        request["json"] = kwargs["json"]
    elif kwargs.get("data") is not None:
        request["content"] = kwargs["data"]
    return request


def _strings(value: Any) -> set[str]:
    """The strings of 8 characters or more anywhere in `value` (the secret scan ignores shorter ones)."""
    if isinstance(value, str):
        return {value} if len(value) >= 8 else set()
    if isinstance(value, dict):
        return set().union(*(_strings(item) for item in value.values()), set())
    if isinstance(value, list | tuple):
        return set().union(*(_strings(item) for item in value), set())
    return set()


_PATHS: set[str] = set()
_BODIES: set[str] = set()


def _not_like_a_leak(case: schemathesis.Case) -> bool:
    """False for a case that would make the secret scan (tests/secret_scan.py) report a false leak.

    Hypothesis reuses the strings it draws, so text sent as a credential in one example can be the id in
    the path of another, and the request log shows paths by design. The scan knows every secret sent in
    the session, so what was sent and logged is remembered for the session.
    """
    new_paths, new_bodies = _strings(case.path_parameters), _strings(case.body)
    if any(body in path for body in new_bodies for path in _PATHS | new_paths) or any(
        body in path for body in _BODIES for path in new_paths
    ):
        return False
    _PATHS.update(new_paths)
    _BODIES.update(new_bodies)
    return True


def _with_real_ids(case: schemathesis.Case, ids: dict[str, list[str]], data: st.DataObject) -> None:
    """Positive cases only: point path ids at real objects and use a valid phone, half the time each."""
    for name in list(case.path_parameters or {}):
        if name in ids and data.draw(st.booleans(), label=f"real {name}"):
            case.path_parameters[name] = data.draw(st.sampled_from(ids[name]))  # type: ignore[index]
    if isinstance(case.body, dict) and "phone" in case.body and data.draw(st.booleans(), label="real phone"):
        case.body["phone"] = VALID_PHONE


@pytest.mark.parametrize("label", sorted(OPERATIONS))
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
)
@given(data=st.data())
async def test_answers_are_documented_and_never_5xx(
    label: str,
    data: st.DataObject,
    bad_client: httpx.AsyncClient,
    bad_partner: Tenant,
    fuzz_tenant: Tenant,
    fuzz_ids: dict[str, list[str]],
) -> None:
    operation = OPERATIONS[label]
    key = bad_partner if label in PARTNER_ONLY else fuzz_tenant
    mode = data.draw(st.sampled_from(MODES), label="mode")
    # The key is given, not generated: negative cases break the request, never the authentication.
    strategy = operation.as_strategy(generation_mode=mode, headers={"apiKey": key.api_key})
    case = data.draw(strategy, label="case")
    if mode is schemathesis.GenerationMode.POSITIVE:
        _with_real_ids(case, fuzz_ids, data)
    assume(_not_like_a_leak(case))
    request = _as_request(case)
    response = await bad_client.request(**request)
    case.validate_response(response, checks=CHECKS, headers=request["headers"])
    if "security" in DOCUMENT["paths"][operation.path][operation.method.lower()]:
        # The key is valid: an authenticated route must get past authentication every time.
        assert response.status_code not in (401, 403), response.text
