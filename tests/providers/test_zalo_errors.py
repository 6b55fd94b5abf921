"""Zalo's answers mapped to data or a `ProviderError`, and `call_zalo` over real HTTP to a fake Zalo."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from tests.providers.viber_harness import AppHost

from openmmp.kit.http import HttpClient
from openmmp.providers.base import ProviderContext, ProviderError
from openmmp.providers.zalo.credentials import (
    DEFAULT_BUSINESS_URL,
    DEFAULT_OAUTH_URL,
    DEFAULT_OPENAPI_URL,
    ZaloCredentials,
    zalo_hosts,
)
from openmmp.providers.zalo.errors import call_zalo, envelope_data, zalo_error


def envelope(**body: Any) -> bytes:
    return orjson.dumps(body)


class TestZaloError:
    @pytest.mark.parametrize("code", [-216, -220, -124])
    def test_an_expired_token_is_stale_credentials_and_final_by_itself(self, code: int):
        error = zalo_error(code, "Access token is invalid")
        assert error.stale_credentials and not error.retryable and not error.rate_limited
        assert error.code == f"ZALO_{code}"
        assert "credentials.accessToken" in error.message and "Access token is invalid" in error.message

    def test_the_rate_limit_is_waited_out(self):
        error = zalo_error(-32, "Exceed rate limit")
        assert error.retryable and error.rate_limited and error.retry_after == 60.0
        assert not error.stale_credentials

    @pytest.mark.parametrize(
        ("code", "words"),
        [
            (-234, "07:00 and 22:00 Vietnam time"),
            (-133, "07:00 and 22:00 Vietnam time"),
            (-144, "daily quota"),
            (-230, "7 days"),
            (-108, "phone number"),
            (-114, "cannot receive"),
            (-119, "cannot receive"),
            (-115, "balance"),
            (-137, "balance"),
            (-131, "not approved"),
            (-146, "quality"),
            (-1121, "too long"),
            (-1122, "missing"),
        ],
    )
    def test_explained_codes_are_final_and_say_why(self, code: int, words: str):
        error = zalo_error(code, "zalo's words")
        assert not error.retryable and not error.stale_credentials
        assert words in error.message and "zalo's words" in error.message

    def test_an_unknown_code_is_final_with_zalo_s_words(self):
        error = zalo_error(-9999, "Something odd")
        assert (error.code, error.message, error.retryable) == ("ZALO_-9999", "Something odd", False)
        assert zalo_error(-9999, "").message == "Zalo error -9999"

    def test_the_message_is_bounded(self):
        assert len(zalo_error(-1, "x" * 1000).message) == 300


class TestEnvelope:
    def test_success_answers_the_data(self):
        assert envelope_data(200, envelope(data={"message_id": "m"}, error=0, message="Success")) == {
            "message_id": "m"
        }
        assert envelope_data(200, envelope(error=0, message="Success")) == {}

    def test_an_error_in_http_200_is_zalo_s_refusal(self):
        with pytest.raises(ProviderError) as refused:
            envelope_data(200, envelope(error=-216, message="Access token is invalid"))
        assert refused.value.stale_credentials

    def test_an_error_given_as_text_counts(self):
        with pytest.raises(ProviderError) as refused:
            envelope_data(200, envelope(error="-230", message="no interaction"))
        assert refused.value.code == "ZALO_-230"

    @pytest.mark.parametrize("status", [500, 502, 503, 504])
    def test_5xx_is_retryable_whatever_the_body(self, status: int):
        with pytest.raises(ProviderError) as failed:
            envelope_data(status, b"<html>bad gateway</html>")
        assert failed.value.retryable and not failed.value.rate_limited

    def test_429_is_rate_limited_with_its_retry_after(self):
        with pytest.raises(ProviderError) as limited:
            envelope_data(429, b"", "7")
        assert limited.value.rate_limited and limited.value.retry_after == 7.0

    def test_200_outside_the_envelope_is_a_bad_response_worth_a_retry(self):
        with pytest.raises(ProviderError) as odd:
            envelope_data(200, b"<html>ok</html>")
        assert odd.value.code == "UPSTREAM_BAD_RESPONSE" and odd.value.retryable
        with pytest.raises(ProviderError):
            envelope_data(200, envelope(error=None))

    def test_a_4xx_outside_the_envelope_is_final(self):
        with pytest.raises(ProviderError) as refused:
            envelope_data(404, b"Not Found")
        assert refused.value.code == "ZALO_HTTP_404" and not refused.value.retryable


class TestHosts:
    def ctx(self, *, sandbox: bool, **options: str) -> ProviderContext:
        return ProviderContext(HttpClient(), "http://sim.local/zalo/", "http://me", sandbox, options)

    def test_in_sandbox_mode_every_host_is_the_simulator(self):
        hosts = zalo_hosts(self.ctx(sandbox=True, oauth_url="https://elsewhere"))
        assert (hosts.oauth, hosts.openapi, hosts.business) == ("http://sim.local/zalo",) * 3

    def test_outside_it_the_operator_s_hosts_or_zalo_s(self):
        hosts = zalo_hosts(self.ctx(sandbox=False))
        assert (hosts.oauth, hosts.openapi, hosts.business) == (
            DEFAULT_OAUTH_URL,
            DEFAULT_OPENAPI_URL,
            DEFAULT_BUSINESS_URL,
        )
        hosts = zalo_hosts(self.ctx(sandbox=False, openapi_url="https://proxy.example/zalo/"))
        assert hosts.openapi == "https://proxy.example/zalo" and hosts.oauth == DEFAULT_OAUTH_URL


def test_the_credentials_keep_their_wire_names_and_identity():
    credentials = ZaloCredentials.model_validate(
        {"oaId": "OA-1", "appId": "a", "accessToken": "t", "refreshToken": "r", "secretKey": "s"}
    )
    assert credentials.identity() == "oa-1"
    assert set(credentials.model_dump(by_alias=True)) == {
        "oaId",
        "appId",
        "accessToken",
        "refreshToken",
        "secretKey",
    }


class TestCallZalo:
    @pytest.fixture
    async def seen(self, app_host: AppHost) -> AsyncIterator[tuple[str, list[Request], list[bytes]]]:
        requests: list[Request] = []
        bodies: list[bytes] = []

        async def echo(request: Request) -> Response:
            requests.append(request)
            bodies.append(await request.body())
            answer = request.query_params.get("answer", "ok")
            if answer == "stale":
                return Response(envelope(error=-216, message="Access token is invalid"))
            return Response(envelope(data={"echo": True}, error=0, message="Success"))

        app = Starlette(routes=[Route("/api", echo, methods=["GET", "POST"])])
        async with app_host.mounted(app) as base_url:
            yield base_url, requests, bodies

    async def test_the_token_goes_in_the_access_token_header_not_bearer(
        self, http: HttpClient, seen: tuple[str, list[Request], list[bytes]]
    ):
        base_url, requests, bodies = seen
        ctx = ProviderContext(http, base_url, "http://me", True)
        data = await call_zalo(ctx, "POST", f"{base_url}/api", access_token="tok", json={"a": 1})
        assert data == {"echo": True}
        assert requests[0].headers["access_token"] == "tok"
        assert "authorization" not in requests[0].headers
        assert orjson.loads(bodies[0]) == {"a": 1}

    async def test_params_go_in_the_query_and_a_form_is_form_encoded(
        self, http: HttpClient, seen: tuple[str, list[Request], list[bytes]]
    ):
        base_url, requests, bodies = seen
        ctx = ProviderContext(http, base_url, "http://me", True)
        await call_zalo(ctx, "GET", f"{base_url}/api", access_token="tok", params={"data": '{"phone":"84"}'})
        assert requests[0].query_params["data"] == '{"phone":"84"}'
        await call_zalo(ctx, "POST", f"{base_url}/api", access_token="tok", form={"x": "1 2"})
        assert requests[1].headers["content-type"] == "application/x-www-form-urlencoded"
        assert bodies[1] == b"x=1+2"

    async def test_a_refusal_raises_zalo_s_error(
        self, http: HttpClient, seen: tuple[str, list[Request], list[bytes]]
    ):
        base_url, _, _ = seen
        ctx = ProviderContext(http, base_url, "http://me", True)
        with pytest.raises(ProviderError) as refused:
            await call_zalo(ctx, "GET", f"{base_url}/api", access_token="tok", params={"answer": "stale"})
        assert refused.value.stale_credentials

    async def test_no_answer_is_retryable_and_names_no_token(self, http: HttpClient):
        ctx = ProviderContext(http, "http://127.0.0.1:9", "http://me", True)
        with pytest.raises(ProviderError) as failed:
            await call_zalo(ctx, "POST", "http://127.0.0.1:9/api", access_token="very-secret-token")
        assert failed.value.retryable
        assert failed.value.__context__ is None and failed.value.__cause__ is None
        assert "very-secret-token" not in str(failed.value)
