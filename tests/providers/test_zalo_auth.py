"""Renewing Zalo's OAuth v4 tokens: against the simulator (rotation, single-use refresh tokens, expired
access tokens) and against a fake OAuth server (the request's shape, and how refusals are classified)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import parse_qsl

import orjson
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from tests.providers.viber_harness import AppHost, Sim, StartSim

from openmmp.kit.http import HttpClient
from openmmp.providers.base import Outgoing, ProviderContext, ProviderError, SandboxUser, SendOk, SendOutcome
from openmmp.providers.zalo.auth import refresh_tokens
from openmmp.providers.zalo.oa import ZaloOaProvider
from openmmp.providers.zalo.sim_tokens import TokenBook

PROVIDER = ZaloOaProvider()


def credentials_for(app_id: str) -> dict[str, Any]:
    return {
        "oaId": f"oa-{app_id}",
        "appId": app_id,
        "accessToken": f"granted-{app_id}",
        "refreshToken": f"refresh-{app_id}",
        "secretKey": f"secret-{app_id}",
    }


class Channel:
    """One OA at the simulator, set up, with a user who wrote in."""

    def __init__(self, sim: Sim) -> None:
        self.sim = sim
        self.ctx = ProviderContext(sim.http, f"{sim.base_url}/zalo", "http://127.0.0.1:9", True)
        self.credentials = credentials_for(str(random.randrange(10**17, 10**18)))
        self.user = ""

    async def start(self) -> Channel:
        await PROVIDER.set_up(self.ctx, callback_url=self.sim.inbox.url, credentials=self.credentials)
        written = await PROVIDER.sandbox_inbound(self.ctx, self.credentials, SandboxUser("Lan", "hi"))
        self.user = written.user_id
        return self

    async def send(self, credentials: dict[str, Any]) -> SendOutcome:
        [unit] = PROVIDER.plan(self.ctx, credentials, [Outgoing(1, self.user, PROVIDER.example_message)])
        return (await unit.call())[1]

    async def refreshes(self) -> int:
        response = await self.sim.http.get(f"{self.sim.base_url}/zalo/_sandbox/zalo/tokens")
        return int(response.json()["refreshes"])


@pytest.fixture
async def channel(sim: Sim) -> Channel:
    return await Channel(sim).start()


class TestAgainstTheSimulator:
    async def test_a_renewal_rotates_both_tokens_and_keeps_every_other_field(self, channel: Channel):
        renewed = await PROVIDER.refresh_credentials(channel.ctx, channel.credentials)
        assert set(renewed) == set(channel.credentials)
        assert renewed["accessToken"] != channel.credentials["accessToken"]
        assert renewed["refreshToken"] != channel.credentials["refreshToken"]
        assert {k: v for k, v in renewed.items() if not k.endswith("Token")} == {
            k: v for k, v in channel.credentials.items() if not k.endswith("Token")
        }
        assert isinstance(await channel.send(renewed), SendOk)
        again = await PROVIDER.refresh_credentials(channel.ctx, renewed)
        assert again["refreshToken"] not in (renewed["refreshToken"], channel.credentials["refreshToken"])
        assert await channel.refreshes() == 2

    async def test_a_spent_refresh_token_is_refused_for_good(self, channel: Channel):
        await PROVIDER.refresh_credentials(channel.ctx, channel.credentials)
        with pytest.raises(ProviderError) as spent:
            await PROVIDER.refresh_credentials(channel.ctx, channel.credentials)
        assert not spent.value.retryable and not spent.value.stale_credentials
        assert spent.value.code == "ZALO_OAUTH_-14014"
        assert "credentials.refreshToken" in spent.value.message
        assert channel.credentials["refreshToken"] not in spent.value.message

    async def test_the_access_token_a_renewal_replaced_is_stale(self, channel: Channel):
        first = await PROVIDER.refresh_credentials(channel.ctx, channel.credentials)
        second = await PROVIDER.refresh_credentials(channel.ctx, first)
        stale = await channel.send(first)
        assert isinstance(stale, ProviderError) and stale.stale_credentials and not stale.retryable
        assert stale.code == "ZALO_-216"
        assert isinstance(await channel.send(second), SendOk)

    async def test_an_expired_access_token_is_stale_and_a_renewal_cures_it(self, channel: Channel):
        assert isinstance(await channel.send(channel.credentials), SendOk)
        expired = await channel.sim.post(
            "/zalo/_sandbox/zalo/expire", {"accessToken": channel.credentials["accessToken"]}
        )
        assert expired.status_code == 200
        stale = await channel.send(channel.credentials)
        assert isinstance(stale, ProviderError) and stale.stale_credentials
        renewed = await PROVIDER.refresh_credentials(channel.ctx, channel.credentials)
        assert isinstance(await channel.send(renewed), SendOk)

    async def test_an_access_token_lives_its_ttl(self, start_sim: StartSim):
        channel = await Channel(await start_sim(options={"zalo": {"token_ttl_s": 0.2}})).start()
        renewed = await PROVIDER.refresh_credentials(channel.ctx, channel.credentials)
        assert isinstance(await channel.send(renewed), SendOk)
        await asyncio.sleep(0.3)
        stale = await channel.send(renewed)
        assert isinstance(stale, ProviderError) and stale.stale_credentials

    async def test_another_app_s_refresh_token_is_refused(self, channel: Channel):
        renewed = await PROVIDER.refresh_credentials(channel.ctx, channel.credentials)
        with pytest.raises(ProviderError) as refused:
            await PROVIDER.refresh_credentials(channel.ctx, {**renewed, "appId": "someone-else"})
        assert not refused.value.retryable

    async def test_the_token_endpoint_wants_its_form_and_secret(self, sim: Sim):
        url = "/zalo/v4/oa/access_token"
        form = b"app_id=1&grant_type=refresh_token&refresh_token=r"
        headers = {"content-type": "application/x-www-form-urlencoded"}
        no_secret = await sim.post(url, content=form, headers=headers)
        assert no_secret.status_code == 200 and no_secret.json()["error"] == -14002
        wrong_grant = await sim.post(
            url,
            content=b"app_id=1&grant_type=authorization_code&code=c",
            headers={**headers, "secret_key": "s"},
        )
        assert wrong_grant.json()["error"] == -14002
        answer = (await sim.post(url, content=form, headers={**headers, "secret_key": "s"})).json()
        assert set(answer) == {"access_token", "refresh_token", "expires_in"}
        assert answer["expires_in"] == "90000"


class TestTokenBook:
    def test_tokens_it_never_issued_are_good_until_expired(self):
        book = TokenBook()
        assert book.check("from-an-earlier-life") is None
        book.expire("from-an-earlier-life")
        assert book.check("from-an-earlier-life") == -216
        assert book.check("") == -216

    def test_a_refresh_spends_the_token_and_retires_its_access_token(self):
        book = TokenBook()
        first = book.refresh("app", "old")
        assert first is not None and book.refresh("app", "old") is None
        assert book.app_of(first["access_token"]) == "app"
        second = book.refresh("app", first["refresh_token"])
        assert second is not None
        assert book.check(first["access_token"]) == -216
        assert book.check(second["access_token"]) is None
        assert book.refresh("app", first["refresh_token"]) is None
        assert book.refresh("other", second["refresh_token"]) is None
        assert book.refreshes == 2

    def test_an_unknown_refresh_token_is_spent_per_app(self):
        book = TokenBook()
        assert book.refresh("a", "demo") is not None
        assert book.refresh("b", "demo") is not None
        assert book.refresh("a", "demo") is None


class TestTheRequest:
    @pytest.fixture
    async def oauth(
        self, app_host: AppHost
    ) -> AsyncIterator[tuple[str, list[tuple[dict[str, str], dict[str, str]]], Callable[[Response], None]]]:
        seen: list[tuple[dict[str, str], dict[str, str]]] = []
        answers: list[Response] = []

        async def token(request: Request) -> Response:
            form = dict(parse_qsl((await request.body()).decode()))
            seen.append((dict(request.headers), form))
            return answers.pop(0)

        app = Starlette(routes=[Route("/v4/oa/access_token", token, methods=["POST"])])
        async with app_host.mounted(app) as base_url:
            yield base_url, seen, answers.append

    def ctx(self, http: HttpClient, oauth_url: str) -> ProviderContext:
        return ProviderContext(http, "https://openapi.zalo.me", "http://me", False, {"oauth_url": oauth_url})

    async def test_it_posts_the_form_with_the_secret_key_header(self, http: HttpClient, oauth: Any):
        base_url, seen, answer = oauth
        answer(Response(orjson.dumps({"access_token": "A2", "refresh_token": "R2", "expires_in": "90000"})))
        renewed = await refresh_tokens(self.ctx(http, base_url), credentials_for("777"))
        headers, form = seen[0]
        assert form == {"app_id": "777", "grant_type": "refresh_token", "refresh_token": "refresh-777"}
        assert headers["secret_key"] == "secret-777"
        assert headers["content-type"] == "application/x-www-form-urlencoded"
        assert "access_token" not in headers
        assert renewed == {**credentials_for("777"), "accessToken": "A2", "refreshToken": "R2"}

    @pytest.mark.parametrize(
        ("response", "code", "retryable"),
        [
            (
                Response(orjson.dumps({"error": -14014, "error_name": "Invalid refresh token"})),
                "ZALO_OAUTH_-14014",
                False,
            ),
            (
                Response(orjson.dumps({"error_description": "bad"}), status_code=400),
                "ZALO_OAUTH_HTTP_400",
                False,
            ),
            (Response("oops", status_code=502), "ZALO_OAUTH_502", True),
            (Response("", status_code=429, headers={"retry-after": "3"}), "ZALO_OAUTH_429", True),
            (Response(orjson.dumps({"access_token": "only"})), "UPSTREAM_BAD_RESPONSE", True),
            (Response("<html>"), "UPSTREAM_BAD_RESPONSE", True),
        ],
    )
    async def test_refusals_and_failures(
        self, http: HttpClient, oauth: Any, response: Response, code: str, retryable: bool
    ):
        base_url, _, answer = oauth
        answer(response)
        with pytest.raises(ProviderError) as failed:
            await refresh_tokens(self.ctx(http, base_url), credentials_for("777"))
        assert (failed.value.code, failed.value.retryable) == (code, retryable)
        assert "refresh-777" not in failed.value.message and "secret-777" not in failed.value.message

    async def test_an_unreachable_server_is_retryable(self, http: HttpClient):
        with pytest.raises(ProviderError) as failed:
            await refresh_tokens(self.ctx(http, "http://127.0.0.1:9"), credentials_for("777"))
        assert failed.value.retryable and failed.value.__context__ is None
