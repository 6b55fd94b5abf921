"""The service account's JWT, the access tokens it buys, and how they are kept and renewed (real HTTP)."""

from __future__ import annotations

import asyncio
import base64
import functools
import itertools
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from tests.providers.viber_harness import AppHost, Sim, StartSim

from openmmp.kit.http import HttpClient
from openmmp.providers.base import Outgoing, ProviderContext, ProviderError, SendOk
from openmmp.providers.rbm import auth
from openmmp.providers.rbm.auth import SCOPE, assertion, b64url_decode
from openmmp.providers.rbm.credentials import RcsCredentials, parse_service_account
from openmmp.providers.rbm.provider import RbmProvider
from openmmp.providers.rbm.sandbox import (
    SANDBOX_CLIENT_EMAIL,
    SANDBOX_PRIVATE_KEY_PEM,
    SANDBOX_SERVICE_ACCOUNT_JSON,
)

PROVIDER = RbmProvider()
HELLO = {"type": "text", "message": "Your code is 4711"}
_keys = itertools.count(1)


@functools.cache
def rsa_pem(bits: int = 2048) -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def key_file(**fields: Any) -> str:
    return json.dumps({**json.loads(SANDBOX_SERVICE_ACCOUNT_JSON), **fields})


def credentials(agent: str = "bank_agent", **fields: Any) -> dict[str, Any]:
    return {
        "agentId": agent,
        "serviceAccountJson": key_file(**fields) if fields else SANDBOX_SERVICE_ACCOUNT_JSON,
    }


def context(base_url: str, http: HttpClient) -> ProviderContext:
    return ProviderContext(http, base_url, "http://127.0.0.1:9", sandbox=True)


async def send(ctx: ProviderContext, creds: dict[str, Any], phone: str = "85512345670") -> Any:
    key = next(_keys)
    [unit] = PROVIDER.plan(ctx, creds, [Outgoing(key, phone, HELLO, account_id="channel-1")])
    return (await unit.call())[key]


def parts(jwt: str) -> tuple[dict[str, Any], dict[str, Any], bytes, bytes]:
    header, claims, signature = jwt.split(".")
    return (
        orjson.loads(b64url_decode(header)),
        orjson.loads(b64url_decode(claims)),
        b64url_decode(signature),
        f"{header}.{claims}".encode(),
    )


class TestTheAssertion:
    def test_it_is_an_rs256_jwt_for_the_rbm_scope_signed_with_the_service_accounts_key(self):
        account = parse_service_account(SANDBOX_SERVICE_ACCOUNT_JSON)
        jwt = assertion(account, audience="https://oauth2.googleapis.com/token", issued_s=1_800_000_000)
        header, claims, signature, signed = parts(jwt)
        assert header == {"alg": "RS256", "typ": "JWT", "kid": "openmmp-sandbox-key-1"}
        assert claims == {
            "iss": SANDBOX_CLIENT_EMAIL,
            "scope": SCOPE,
            "aud": "https://oauth2.googleapis.com/token",
            "iat": 1_800_000_000,
            "exp": 1_800_003_600,
        }
        public = account.private_key().public_key()
        public.verify(signature, signed, padding.PKCS1v15(), hashes.SHA256())
        with pytest.raises(InvalidSignature):
            public.verify(signature, signed.replace(b".", b"x", 1), padding.PKCS1v15(), hashes.SHA256())

    def test_the_sandbox_key_is_the_same_in_every_process(self):
        first = parse_service_account(SANDBOX_SERVICE_ACCOUNT_JSON).private_key()
        assert first.key_size == 2048
        assert SANDBOX_PRIVATE_KEY_PEM.startswith("-----BEGIN PRIVATE KEY-----")


class TestTheKeyFile:
    def test_the_sandbox_key_file_is_valid_credentials(self):
        assert RcsCredentials.model_validate(PROVIDER.sandbox_credentials).identity() == "demo-agent"

    @pytest.mark.parametrize(
        ("fields", "error"),
        [
            ({"client_email": None}, "client_email: required"),
            ({"private_key": None}, "private_key: required"),
            (
                {"private_key": "-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n"},
                "unencrypted PEM",
            ),
            ({"token_uri": "http://oauth2.googleapis.com/token"}, "Google's token endpoints"),
            ({"token_uri": "https://tokens.attacker.example/token"}, "Google's token endpoints"),
        ],
    )
    def test_a_key_file_that_cannot_work_is_refused_when_saved(self, fields: dict[str, Any], error: str):
        with pytest.raises(ValidationError, match=error) as caught:
            RcsCredentials.model_validate(credentials(**fields))
        assert "BEGIN" not in str(caught.value)  # the key is never quoted back

    def test_only_rsa_keys_of_at_least_2048_bits_sign_rs256(self):
        small = rsa_pem(1024)
        with pytest.raises(ValidationError, match="at least 2048 bits"):
            RcsCredentials.model_validate(credentials(private_key=small))
        curve = ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        with pytest.raises(ValidationError, match="RSA key"):
            RcsCredentials.model_validate(credentials(private_key=curve.decode()))

    def test_the_older_token_endpoint_and_a_traffic_type_are_taken(self):
        saved = RcsCredentials.model_validate(
            {
                **credentials(token_uri="https://accounts.google.com/o/oauth2/token"),
                "messageTrafficType": "PROMOTION",
            }
        )
        assert saved.message_traffic_type == "PROMOTION"
        with pytest.raises(ValidationError):
            RcsCredentials.model_validate({**credentials(), "messageTrafficType": "SPAM"})

    async def test_credentials_saved_before_the_provider_landed_fail_with_a_cause(self, http: HttpClient):
        old = {"agentId": "demo-agent", "serviceAccountJson": '{"type": "service_account"}'}
        ctx = context("http://127.0.0.1:9/rbm", http)
        with pytest.raises(ProviderError, match="client_email: required") as caught:
            await PROVIDER.set_up(ctx, callback_url="http://127.0.0.1:9/cb", credentials=old)
        assert (caught.value.code, caught.value.retryable) == ("RBM_CREDENTIALS", False)
        with pytest.raises(ValueError, match="client_email: required"):
            PROVIDER.plan(ctx, old, [Outgoing(1, "85512345670", HELLO)])

    def test_neither_key_nor_token_shows_in_a_repr(self):
        account = parse_service_account(SANDBOX_SERVICE_ACCOUNT_JSON)
        assert "PRIVATE" not in repr(account)
        assert "secret-value" not in repr(auth.AccessToken("secret-value", renew_at=1.0))


async def tokens_issued(sim: Sim) -> dict[str, int]:
    return dict((await sim.stats("rbm"))["rbm"])


class TestTheTokenCache:
    async def test_one_token_serves_every_send_of_a_service_account(self, sim: Sim):
        ctx = context(f"{sim.base_url}/rbm", sim.http)
        for agent in ("agent_a", "agent_b", "agent_a"):
            assert isinstance(await send(ctx, credentials(agent)), SendOk)
        assert (await tokens_issued(sim))["tokensIssued"] == 1

    async def test_concurrent_sends_without_a_token_ask_for_one_once(self, sim: Sim):
        ctx = context(f"{sim.base_url}/rbm", sim.http)
        outcomes = await asyncio.gather(*(send(ctx, credentials(f"agent_{n % 2}")) for n in range(6)))
        assert all(isinstance(o, SendOk) for o in outcomes), outcomes
        assert (await tokens_issued(sim))["tokensIssued"] == 1

    async def test_a_token_is_renewed_before_it_expires(self, start_sim: StartSim):
        sim = await start_sim(options={"rbm": {"token_lifetime_s": 2}})
        ctx = context(f"{sim.base_url}/rbm", sim.http)
        assert isinstance(await send(ctx, credentials()), SendOk)
        await asyncio.sleep(1.85)  # past the renewal point (a tenth of the life early), before the expiry
        assert isinstance(await send(ctx, credentials()), SendOk)
        counts = await tokens_issued(sim)
        assert (counts["tokensIssued"], counts["unauthenticated"]) == (2, 0)

    async def test_a_refused_token_is_replaced_once_within_the_send(self, sim: Sim):
        ctx = context(f"{sim.base_url}/rbm", sim.http)
        account = parse_service_account(SANDBOX_SERVICE_ACCOUNT_JSON)
        key = auth.token_key(account, f"{ctx.base_url}/token")
        # What a worker holds after the simulator restarted: a token it issued and has forgotten.
        stale = await auth.TOKENS.get(key, self._stale)
        assert isinstance(await send(ctx, credentials()), SendOk)
        counts = await tokens_issued(sim)
        assert (counts["tokensIssued"], counts["unauthenticated"]) == (1, 1)
        assert await auth.TOKENS.get(key, self._stale) is not stale

    @staticmethod
    async def _stale() -> auth.AccessToken:
        return auth.AccessToken("sim-rbm-forgotten", renew_at=time.monotonic() + 3600)

    async def test_a_client_email_with_another_key_gets_no_token_of_that_account(self, sim: Sim):
        ctx = context(f"{sim.base_url}/rbm", sim.http)
        assert isinstance(await send(ctx, credentials("owner_agent")), SendOk)
        # Same client_email, a key of its own: not the cached token, and Google (the simulator, which
        # knows the account's public key) refuses the assertion.
        outcome = await send(ctx, credentials("intruder_agent", private_key=rsa_pem()))
        assert isinstance(outcome, ProviderError)
        assert (outcome.code, outcome.retryable) == ("RBM_TOKEN_400", False)
        assert "Invalid JWT Signature" in outcome.message

    async def test_a_key_registered_at_set_up_is_checked(self, sim: Sim):
        ctx = context(f"{sim.base_url}/rbm", sim.http)
        own = credentials(
            "own_agent", client_email="bank@bank-rbm.iam.gserviceaccount.com", private_key=rsa_pem()
        )
        await PROVIDER.set_up(ctx, callback_url=sim.inbox.url, credentials=own)
        assert isinstance(await send(ctx, own), SendOk)
        forged = {**own, "serviceAccountJson": key_file(client_email="bank@bank-rbm.iam.gserviceaccount.com")}
        outcome = await send(ctx, forged)
        assert isinstance(outcome, ProviderError) and outcome.code == "RBM_TOKEN_400"


class _Google:
    """A stand-in for Google where the simulator cannot be made to misbehave: counts what it is asked."""

    def __init__(self, *, token_status: int = 200, send_status: int = 200) -> None:
        self.token_status, self.send_status = token_status, send_status
        self.tokens = self.sends = 0
        self.app = Starlette(
            routes=[
                Route("/token", self._token, methods=["POST"]),
                Route("/v1/phones/{phone}/agentMessages", self._send, methods=["POST"]),
            ]
        )

    async def _token(self, request: Request) -> Response:
        self.tokens += 1
        if self.token_status != 200:
            return JSONResponse({"error": "unavailable"}, self.token_status, headers={"retry-after": "7"})
        return JSONResponse({"access_token": f"token-{self.tokens}", "expires_in": 3599})

    async def _send(self, request: Request) -> Response:
        self.sends += 1
        error = {"error": {"code": self.send_status, "message": "nope", "status": "UNAUTHENTICATED"}}
        return JSONResponse(error if self.send_status != 200 else {}, self.send_status)


@pytest.fixture
async def google(app_host: AppHost) -> AsyncIterator[tuple[_Google, str]]:
    stand_in = _Google()
    async with app_host.mounted(stand_in.app) as base_url:
        yield stand_in, base_url


class TestWhenGoogleRefuses:
    async def test_a_401_that_a_fresh_token_does_not_fix_is_final(
        self, google: tuple[_Google, str], http: HttpClient
    ):
        stand_in, base_url = google
        stand_in.send_status = 401
        outcome = await send(context(base_url, http), credentials())
        assert isinstance(outcome, ProviderError)
        assert (outcome.code, outcome.retryable) == ("RBM_401", False)
        assert (stand_in.tokens, stand_in.sends) == (2, 2)
        assert "token-" not in outcome.message

    @pytest.mark.parametrize(("status", "rate_limited"), [(503, False), (429, True)])
    async def test_a_token_endpoint_in_trouble_is_worth_a_retry(
        self, google: tuple[_Google, str], http: HttpClient, status: int, rate_limited: bool
    ):
        stand_in, base_url = google
        stand_in.token_status = status
        outcome = await send(context(base_url, http), credentials())
        assert isinstance(outcome, ProviderError)
        assert (outcome.code, outcome.retryable, outcome.rate_limited) == (
            f"RBM_TOKEN_{status}",
            True,
            rate_limited,
        )
        assert outcome.retry_after == (7.0 if rate_limited else None)
        assert stand_in.sends == 0


def test_jwt_parts_are_unpadded_base64url():
    assert b64url_decode(base64.urlsafe_b64encode(b"\xff\xfe").rstrip(b"=").decode()) == b"\xff\xfe"
    with pytest.raises(ValueError, match="not base64url"):
        b64url_decode("a+b/")
