"""The JWTs between the MSP and Apple, both ways: HS256 by hand with the base64-decoded MSP secret."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from typing import Any

import orjson
import pytest

from openmmp.kit.crypto import b64url, b64url_decode
from openmmp.providers.apple import auth
from openmmp.providers.apple.provider import AppleProvider
from openmmp.providers.base import CallbackRequest, ProviderContext

KEY = b"\x01\x02msp secret bytes \xff\x00"
SECRET = base64.b64encode(KEY).decode()
CREDENTIALS = {"businessId": "biz-7", "mspId": "msp-7", "secret": SECRET}
PROVIDER = AppleProvider()
CTX = ProviderContext(http=None, base_url="", public_url="", sandbox=False)  # type: ignore[arg-type]


def apple_token(claims: dict[str, Any], key: bytes = KEY, header: dict[str, Any] | None = None) -> str:
    """A token as Apple would make it, written out independently of `auth.sign`."""
    head = b64url(orjson.dumps(header or {"alg": "HS256", "typ": "JWT"}))
    body = b64url(orjson.dumps(claims))
    signature = hmac.new(key, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64url(signature)}"


def request(token: str | None, destination: str | None = "biz-7") -> CallbackRequest:
    headers = {"content-type": "application/json"}
    if token is not None:
        headers["authorization"] = f"Bearer {token}"
    if destination is not None:
        headers["destination-id"] = destination
    return CallbackRequest("POST", headers, {}, b"{}")


def fresh_claims(**changes: Any) -> dict[str, Any]:
    return {"iss": "AppleMessagesForBusiness", "aud": "msp-7", "iat": int(time.time()), **changes}


class TestTheMspSecret:
    @pytest.mark.parametrize(
        "secret",
        [SECRET, SECRET.rstrip("="), base64.urlsafe_b64encode(KEY).decode(), f" {SECRET[:8]}\n{SECRET[8:]} "],
    )
    def test_the_key_is_the_base64_decoded_secret_in_either_alphabet(self, secret: str):
        assert auth.msp_key(secret) == KEY

    @pytest.mark.parametrize("secret", ["", "====", "not base64!", "abcde"])
    def test_a_secret_that_is_not_base64_names_the_field(self, secret: str):
        with pytest.raises(ValueError, match=r"^credentials\.secret: "):
            auth.msp_key(secret)


class TestOutbound:
    def test_the_msps_token_is_hs256_with_iss_and_iat_under_the_decoded_secret(self):
        token = auth.msp_token("msp-7", KEY, issued_s=1_700_000_000)
        head, body, signature = token.split(".")
        assert orjson.loads(b64url_decode(head)) == {"alg": "HS256", "typ": "JWT"}
        assert orjson.loads(b64url_decode(body)) == {"iss": "msp-7", "iat": 1_700_000_000}
        expected = hmac.new(KEY, f"{head}.{body}".encode(), hashlib.sha256).digest()
        assert b64url_decode(signature) == expected

    def test_a_token_reads_back_with_the_key_only(self):
        token = auth.msp_token("msp-7", KEY)
        assert auth.read_token(token, KEY)["iss"] == "msp-7"
        with pytest.raises(auth.TokenRefused, match="signature"):
            auth.read_token(token, KEY + b"x")


class TestInbound:
    def test_apples_token_for_the_channels_msp_and_business_is_taken(self):
        assert PROVIDER.verify(CTX, request(apple_token(fresh_claims())), CREDENTIALS)

    def test_an_audience_list_naming_the_msp_is_taken(self):
        assert PROVIDER.verify(CTX, request(apple_token(fresh_claims(aud=["other", "msp-7"]))), CREDENTIALS)

    @pytest.mark.parametrize(
        "claims",
        [
            fresh_claims(aud="msp-8"),
            fresh_claims(aud=None),
            fresh_claims(aud=["msp-70"]),
            fresh_claims(iat=int(time.time()) - 2 * 3600),
            fresh_claims(iat=int(time.time()) + 3600),
            fresh_claims(iat=None),
            fresh_claims(iat="now"),
            fresh_claims(exp=int(time.time()) - 3600),
            fresh_claims(nbf=int(time.time()) + 3600),
        ],
        ids=[
            "wrong-aud",
            "no-aud",
            "aud-list-without",
            "expired",
            "future",
            "no-iat",
            "iat-text",
            "exp",
            "nbf",
        ],
    )
    def test_a_token_not_meant_for_the_msp_or_not_fresh_is_refused(self, claims: dict[str, Any]):
        assert not PROVIDER.verify(CTX, request(apple_token(claims)), CREDENTIALS)

    def test_a_token_signed_with_another_key_is_refused(self):
        assert not PROVIDER.verify(CTX, request(apple_token(fresh_claims(), key=b"another")), CREDENTIALS)

    def test_a_tampered_token_is_refused(self):
        head, body, signature = apple_token(fresh_claims()).split(".")
        claims = orjson.loads(b64url_decode(body))
        forged_body = b64url(orjson.dumps({**claims, "aud": "msp-7", "iss": "someone"}))
        assert not PROVIDER.verify(CTX, request(f"{head}.{forged_body}.{signature}"), CREDENTIALS)
        flipped = signature[:-2] + ("A" if signature[-2] != "A" else "B") + signature[-1]
        assert not PROVIDER.verify(CTX, request(f"{head}.{body}.{flipped}"), CREDENTIALS)

    @pytest.mark.parametrize("alg", ["none", "HS512", "RS256"])
    def test_only_hs256_is_taken_whatever_the_token_says(self, alg: str):
        token = apple_token(fresh_claims(), header={"alg": alg, "typ": "JWT"})
        assert not PROVIDER.verify(CTX, request(token), CREDENTIALS)
        unsigned = token.rsplit(".", 1)[0] + "."
        assert not PROVIDER.verify(CTX, request(unsigned), CREDENTIALS)

    @pytest.mark.parametrize("token", [None, "", "abc", "a.b.c", "x" * 5000])
    def test_a_missing_or_malformed_token_is_refused(self, token: str | None):
        assert not PROVIDER.verify(CTX, request(token), CREDENTIALS)

    def test_basic_or_bare_authorization_is_refused(self):
        token = apple_token(fresh_claims())
        for value in (token, f"Basic {token}"):
            headers = {"authorization": value, "destination-id": "biz-7"}
            assert not PROVIDER.verify(CTX, CallbackRequest("POST", headers, {}, b"{}"), CREDENTIALS)

    def test_a_message_for_another_business_of_the_msp_is_refused(self):
        token = apple_token(fresh_claims())
        assert not PROVIDER.verify(CTX, request(token, destination="biz-8"), CREDENTIALS)
        assert not PROVIDER.verify(CTX, request(token, destination=None), CREDENTIALS)
        assert PROVIDER.verify(CTX, request(token, destination=" BIZ-7 "), CREDENTIALS)

    def test_a_channel_whose_secret_is_not_base64_proves_nothing(self):
        token = apple_token(fresh_claims())
        assert not PROVIDER.verify(CTX, request(token), {**CREDENTIALS, "secret": "not base64!"})
