"""Bodies built to break a JSON API: deep, oversized, huge, not UTF-8, not JSON, not declared as JSON.

Each one is a 400 or a 413 with the api.md error body, never a 500, and leaves the database as it was
(no message, job or channel more), on the endpoints that write: broadcast, batch broadcast and channel
creation.
"""

from __future__ import annotations

import gzip
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from tests.badinput.conftest import assert_error_body, onboard, state_counts
from tests.conftest import Tenant

from openmmp.kit.schemas import MAX_DEPTH
from openmmp.ops.middleware import NOT_UTF8

TEXT = b'{"phone": "85512345670", "message": {"type": "text", "message": "hi"}}'


def nested(depth: int, *, inner: bytes = b"1") -> bytes:
    """A broadcast whose `message.whatsappInteractive` holds `depth` nested arrays."""
    return (
        b'{"phone": "85512345670", "message": {"type": "text", "message": "hi", "whatsappInteractive": {"a": '
        + b"[" * depth
        + inner
        + b"]" * depth
        + b"}}}"
    )


def with_text(raw: bytes) -> bytes:
    """A broadcast whose text is the JSON string literal `raw` (bytes as they go on the wire)."""
    return b'{"phone": "85512345670", "message": {"type": "text", "message": "' + raw + b'"}}'


def with_param(raw: bytes) -> bytes:
    """A broadcast filling `{{v}}` with the JSON value `raw`."""
    return (
        b'{"phone": "85512345670", "message": {"type": "text", "message": "{{v}}"}, "params": {"v": '
        + raw
        + b"}}"
    )


JSON = {"content-type": "application/json"}

# (id, body, extra headers, expected status, error code)
CASES: list[tuple[str, bytes, dict[str, Any], int, str]] = [
    ("10000-nested-arrays", b"[" * 10_000 + b"]" * 10_000, JSON, 400, "BAD_REQUEST"),
    ("10000-nested-objects", b'{"a":' * 10_000 + b"1" + b"}" * 10_000, JSON, 400, "BAD_REQUEST"),
    ("10000-nested-in-a-field", nested(10_000), JSON, 400, "BAD_REQUEST"),
    ("900-nested-in-a-field", nested(900), JSON, 400, "INVALID"),
    (
        "300-nested-objects-in-a-field",
        nested(0, inner=b'{"a":' * 300 + b"1" + b"}" * 300),
        JSON,
        400,
        "INVALID",
    ),
    ("just-over-the-depth-limit", nested(MAX_DEPTH), JSON, 400, "INVALID"),
    ("a-1-MB-string", with_text(b"x" * 1_000_000), JSON, 400, "INVALID"),
    (
        "10000-suggestions",
        b'{"phone": "85512345670", "message": {"type": "text", "message": "hi", "suggestions": ['
        + b",".join([b'{"action": "reply", "text": "x"}'] * 10_000)
        + b"]}}",
        JSON,
        400,
        "INVALID",
    ),
    ("integer-over-64-bits", with_param(b"1" + b"0" * 30), JSON, 400, "INVALID"),
    ("negative-integer-over-64-bits", with_param(b"-1" + b"0" * 30), JSON, 400, "INVALID"),
    ("a-5000-digit-integer", with_param(b"9" * 5000), JSON, 400, "BAD_REQUEST"),
    ("float-overflowing-to-infinity", with_param(b"1e400"), JSON, 400, "INVALID"),
    ("float-over-64-bits", with_param(b"1.5e30"), JSON, 400, "INVALID"),
    ("NaN", with_param(b"NaN"), JSON, 400, "INVALID"),
    ("Infinity", with_param(b"Infinity"), JSON, 400, "INVALID"),
    ("-Infinity", with_param(b"-Infinity"), JSON, 400, "INVALID"),
    (
        "huge-file-size",
        b'{"phone": "85512345670", "message": {"type": "file", "fileUrl": "https://e.x/a.pdf", '
        b'"fileName": "a.pdf", "fileSize": 123456789012345678901234567890}}',
        JSON,
        400,
        "INVALID",
    ),
    (
        "huge-ttl",
        b'{"phone": "85512345670", "message": {"type": "text", "message": "hi"}, '
        b'"expire": {"type": "TTL", "ttl": 123456789012345678901234567890}}',
        JSON,
        400,
        "INVALID",
    ),
    (
        "huge-expire-time",
        b'{"phone": "85512345670", "message": {"type": "text", "message": "hi"}, '
        b'"expire": {"type": "EXPIRE_TIME", "expireTime": 99999999999999999999}}',
        JSON,
        400,
        "INVALID",
    ),
    ("invalid-utf8-byte", with_text(b"\xff\xfe"), JSON, 400, "BAD_REQUEST"),
    ("overlong-utf8", with_text(b"\xc0\xaf"), JSON, 400, "BAD_REQUEST"),
    ("utf8-encoded-surrogate", with_text(b"\xed\xa0\x80"), JSON, 400, "BAD_REQUEST"),
    ("utf-16-le-with-bom", TEXT.decode().encode("utf-16"), JSON, 400, "BAD_REQUEST"),
    ("utf-16-be", TEXT.decode().encode("utf-16-be"), JSON, 400, "BAD_REQUEST"),
    ("utf-32", TEXT.decode().encode("utf-32"), JSON, 400, "BAD_REQUEST"),
    ("truncated-utf8", with_text(b"\xe1\x9e"), JSON, 400, "BAD_REQUEST"),
    ("latin-1-text", with_text("café".encode("latin-1")), JSON, 400, "BAD_REQUEST"),
    ("escaped-lone-surrogate", with_text(b"\\ud800"), JSON, 400, "INVALID"),
    ("escaped-lone-low-surrogate-in-a-param", with_param(b'"\\udfff"'), JSON, 400, "INVALID"),
    ("escaped-lone-surrogate-in-a-key", with_param(b'"x", "\\ud800": 1'), JSON, 400, "INVALID"),
    ("escaped-NUL", with_text(b"a\\u0000b"), JSON, 400, "INVALID"),
    ("not-json", b"phone=85512345670", JSON, 400, "BAD_REQUEST"),
    ("trailing-garbage", TEXT + b" x", JSON, 400, "BAD_REQUEST"),
    ("truncated-json", TEXT[:-5], JSON, 400, "BAD_REQUEST"),
    ("empty-body", b"", JSON, 400, "INVALID"),
    ("null", b"null", JSON, 400, "BAD_REQUEST"),
    ("a-string", b'"text"', JSON, 400, "BAD_REQUEST"),
    ("an-array", b"[1, 2]", JSON, 400, "BAD_REQUEST"),
    ("text-plain", TEXT, {"content-type": "text/plain"}, 400, "BAD_REQUEST"),
    ("form-urlencoded", TEXT, {"content-type": "application/x-www-form-urlencoded"}, 400, "BAD_REQUEST"),
    ("multipart", TEXT, {"content-type": "multipart/form-data; boundary=x"}, 400, "BAD_REQUEST"),
    ("octet-stream", TEXT, {"content-type": "application/octet-stream"}, 400, "BAD_REQUEST"),
    ("no-content-type", TEXT, {}, 400, "BAD_REQUEST"),
    ("garbage-content-type", TEXT, {"content-type": "¿json?".encode("latin-1")}, 400, "BAD_REQUEST"),
]


@pytest.fixture(scope="session")
def endpoints(viber_channel: dict[str, Any]) -> dict[str, str]:
    account = viber_channel["publicId"]
    return {
        "broadcast": f"/api/v1/channel/{account}/broadcast",
        "batch": f"/api/v1/channel/{account}/broadcast/batch",
        "create-channel": "/api/v1/channel",
    }


@pytest.mark.parametrize("endpoint", ["broadcast", "batch", "create-channel"])
@pytest.mark.parametrize(
    ("body", "headers", "status", "code"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
async def test_a_hostile_body_is_a_clean_4xx_that_changes_nothing(
    bad_app: Any,
    bad_client: httpx.AsyncClient,
    bad_tenant: Tenant,
    endpoints: dict[str, str],
    endpoint: str,
    body: bytes,
    headers: dict[str, Any],
    status: int,
    code: str,
):
    before = await state_counts(bad_app)
    response = await bad_client.post(
        endpoints[endpoint], content=body, headers={**bad_tenant.headers, **headers}
    )
    errors = assert_error_body(response, 400, 413)["errors"]
    assert await state_counts(bad_app) == before
    if endpoint == "broadcast":
        # The other endpoints see the same bytes with another schema: some refuse them for another reason.
        assert response.status_code == status
        assert errors[0]["code"] == code, errors


class TestDepth:
    async def test_nesting_within_the_limit_is_accepted(
        self, bad_client: httpx.AsyncClient, bad_tenant: Tenant, endpoints: dict[str, str]
    ):
        response = await bad_client.post(
            endpoints["broadcast"], content=nested(MAX_DEPTH - 5), headers={**bad_tenant.headers, **JSON}
        )
        assert response.status_code == 200, response.text

    async def test_the_refusal_names_where_the_body_is_too_deep(
        self, bad_client: httpx.AsyncClient, bad_tenant: Tenant, endpoints: dict[str, str]
    ):
        response = await bad_client.post(
            endpoints["broadcast"], content=nested(900), headers={**bad_tenant.headers, **JSON}
        )
        [error] = assert_error_body(response, 400)["errors"]
        assert error["message"].startswith("message.whatsappInteractive.a[0][0]")
        assert "nested more than" in error["message"]


class TestBodyLimit:
    """`settings.max_body_bytes` counts the bytes received, whether or not Content-Length says so."""

    @pytest.fixture
    def limit(self, bad_app: Any) -> int:
        return int(bad_app.state.settings.max_body_bytes)

    def exactly(self, size: int) -> bytes:
        body = with_text(b"")
        return with_text(b"x" * (size - len(body)))

    async def test_a_body_of_exactly_the_limit_is_read_and_judged(
        self,
        bad_app: Any,
        bad_client: httpx.AsyncClient,
        bad_tenant: Tenant,
        endpoints: dict[str, str],
        limit: int,
    ):
        body = self.exactly(limit)
        assert len(body) == limit
        response = await bad_client.post(
            endpoints["broadcast"], content=body, headers={**bad_tenant.headers, **JSON}
        )
        [error] = assert_error_body(response, 400)["errors"]
        assert error["name"] == "message.message"

    @pytest.mark.parametrize("declared", [True, False], ids=["with-content-length", "streamed-without-it"])
    @pytest.mark.parametrize("extra", [1, 5 * 1024 * 1024])
    async def test_one_byte_over_is_413_and_changes_nothing(
        self,
        bad_app: Any,
        bad_client: httpx.AsyncClient,
        bad_tenant: Tenant,
        endpoints: dict[str, str],
        limit: int,
        declared: bool,
        extra: int,
    ):
        body = self.exactly(limit + extra)

        async def chunks() -> AsyncIterator[bytes]:
            for start in range(0, len(body), 65_536):
                yield body[start : start + 65_536]

        before = await state_counts(bad_app)
        response = await bad_client.post(
            endpoints["broadcast"],
            content=body if declared else chunks(),
            headers={**bad_tenant.headers, **JSON},
        )
        [error] = assert_error_body(response, 413)["errors"]
        assert error["code"] == "PAYLOAD_TOO_LARGE"
        assert await state_counts(bad_app) == before

    async def test_a_content_length_over_the_limit_is_413_before_the_body_is_read(
        self, bad_client: httpx.AsyncClient, bad_tenant: Tenant, endpoints: dict[str, str], limit: int
    ):
        response = await bad_client.post(
            endpoints["broadcast"],
            content=TEXT,
            headers={**bad_tenant.headers, **JSON, "content-length": str(limit + 1)},
        )
        assert_error_body(response, 413)

    async def test_an_unauthenticated_oversized_body_is_413_too(
        self, bad_client: httpx.AsyncClient, endpoints: dict[str, str], limit: int
    ):
        response = await bad_client.post(
            endpoints["broadcast"], content=self.exactly(limit + 1), headers=JSON
        )
        assert_error_body(response, 413)


class TestEncoding:
    """JSON bodies must be UTF-8 (RFC 8259 §8.1), checked as the bytes arrive."""

    async def test_a_utf16_body_is_refused_naming_the_body_and_the_encoding(
        self, bad_client: httpx.AsyncClient, bad_tenant: Tenant, endpoints: dict[str, str]
    ):
        response = await bad_client.post(
            endpoints["broadcast"],
            content=TEXT.decode().encode("utf-16"),
            headers={**bad_tenant.headers, **JSON},
        )
        [error] = assert_error_body(response, 400)["errors"]
        assert error["name"] == "body"
        assert error["code"] == "BAD_REQUEST"
        assert "UTF-8" in error["message"]

    @pytest.mark.parametrize("cut", [1, 2], ids=["one-byte-in", "two-bytes-in"])
    async def test_utf8_split_inside_a_character_across_chunks_is_accepted_intact(
        self, bad_client: httpx.AsyncClient, bad_tenant: Tenant, endpoints: dict[str, str], cut: int
    ):
        text = "សួស្តី 👋"
        body = with_text(text.encode())
        split = body.index("👋".encode()) + cut  # inside the emoji's four bytes

        async def chunks() -> AsyncIterator[bytes]:
            yield body[:split]
            yield body[split:]

        response = await bad_client.post(
            endpoints["broadcast"], content=chunks(), headers={**bad_tenant.headers, **JSON}
        )
        assert response.status_code == 200, response.text
        status = await bad_client.get(
            f"/api/v1/message/{response.json()['messageId']}/status", headers=bad_tenant.headers
        )
        assert status.status_code == 200, status.text

    async def test_a_body_cut_inside_a_character_is_refused(
        self, bad_client: httpx.AsyncClient, bad_tenant: Tenant, endpoints: dict[str, str]
    ):
        body = TEXT + "👋".encode()[:2]  # the last character's bytes end with the body
        response = await bad_client.post(
            endpoints["broadcast"], content=body, headers={**bad_tenant.headers, **JSON}
        )
        [error] = assert_error_body(response, 400)["errors"]
        assert error["message"] == NOT_UTF8

    async def test_a_compressed_body_the_api_does_not_take_is_a_400(
        self, bad_client: httpx.AsyncClient, bad_tenant: Tenant, endpoints: dict[str, str]
    ):
        # Only upstreams' callbacks come compressed (Apple's gzip); the API's own routes take plain JSON.
        response = await bad_client.post(
            endpoints["broadcast"],
            content=gzip.compress(TEXT),
            headers={**bad_tenant.headers, **JSON, "Content-Encoding": "gzip"},
        )
        assert_error_body(response, 400)


class TestOddValuesOutsideBodies:
    @pytest.mark.parametrize("value", ["%00", "a%00b", "%ED%A0%80", "%FF", "x" * 100])
    async def test_an_odd_client_message_id_is_not_found_not_a_500(
        self, bad_client: httpx.AsyncClient, bad_tenant: Tenant, value: str
    ):
        # PostgreSQL refuses a NUL in a query parameter outright: the lookup must not reach it.
        response = await bad_client.get(
            f"/api/v1/message/status?clientMessageId={value}", headers=bad_tenant.headers
        )
        assert_error_body(response, 404)

    async def test_a_null_company_name_is_refused_and_the_name_kept(
        self, bad_client: httpx.AsyncClient, bad_partner: Tenant
    ):
        tenant = await onboard(bad_client, bad_partner, "Keeps its name")
        response = await bad_client.post(
            "/api/v1/onboard/company-profile", json={"name": None}, headers=tenant.headers
        )
        [error] = assert_error_body(response, 400)["errors"]
        assert error["name"] == "name"
        renamed = await bad_client.post(
            "/api/v1/onboard/company-profile", json={"industry": "banking"}, headers=tenant.headers
        )
        assert renamed.status_code == 200, renamed.text
        assert renamed.json()["name"] == "Keeps its name"
