"""The JWTs both ways between an MSP and Apple Messages for Business: HS256, keyed by the MSP secret.

Apple hands an MSP an id and a secret (base64). Every request the MSP makes carries `Authorization: Bearer
<JWT>` with claims `{"iss": <MSP id>, "iat": <seconds>}`, HS256-signed with the base64-decoded secret; every
request Apple makes to the MSP carries one signed with the same key whose `aud` is the MSP id. Signed and
checked here by hand (HMAC-SHA256 over `header.claims`), which is all HS256 is: no JWT library needed, and
nothing but HS256 is ever accepted (no `none`, no algorithm taken from the token's say-so).

The token covers its claims, not the request's body: it proves who sent the request (and when), the body's
integrity being left to TLS.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Mapping
from typing import Any

import orjson

from openmmp.kit.crypto import b64url, b64url_decode, constant_time_equals

ALGORITHM = "HS256"
MAX_AGE_S = 3600
"""How old a token may be: Apple's tokens are made anew about every hour, as the MSP's should be."""
CLOCK_SKEW_S = 300
"""How far in the future a token's `iat` may be: the two clocks are never quite the same."""
TOKEN_MAX_CHARS = 4096
_HEADER = b64url(orjson.dumps({"alg": ALGORITHM, "typ": "JWT"}))


class TokenRefused(Exception):
    """A JWT that does not prove its sender; the text says why, and never quotes the token or a key."""


def msp_key(secret: str) -> bytes:
    """The signing key: the MSP secret, base64-decoded (standard or URL-safe alphabet, padding optional).

    Raises ValueError("credentials.secret: ...") for a secret that is not base64 or decodes to nothing.
    """
    text = "".join(secret.split()).replace("-", "+").replace("_", "/").rstrip("=")
    try:
        key = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("credentials.secret: the MSP secret must be base64, as Apple hands it out") from None
    if not key:
        raise ValueError("credentials.secret: the MSP secret is empty")
    return key


def sign(claims: Mapping[str, Any], key: bytes) -> str:
    """A compact HS256 JWT of `claims`."""
    signing_input = f"{_HEADER}.{b64url(orjson.dumps(dict(claims)))}"
    signature = hmac.new(key, signing_input.encode("ascii"), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(signature)}"


def msp_token(msp_id: str, key: bytes, *, issued_s: int | None = None) -> str:
    """The token of the MSP's requests to Apple: `{"iss": msp_id, "iat": now}`."""
    return sign({"iss": msp_id, "iat": int(time.time()) if issued_s is None else issued_s}, key)


def bearer(authorization: str | None) -> str:
    """The token of an `Authorization: Bearer <token>` header; TokenRefused when there is none."""
    scheme, _, token = (authorization or "").strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise TokenRefused("no bearer token")
    return token


def read_token(token: str, key: bytes, *, now_s: float | None = None) -> dict[str, Any]:
    """The claims of `token` once its HS256 signature with `key` and its freshness are proven.

    Fresh: `iat` (required) at most `MAX_AGE_S` old and at most `CLOCK_SKEW_S` ahead; an `exp` or `nbf`,
    when present, is honoured too. Raises TokenRefused saying what is wrong.
    """
    claims = unverified_claims(token)
    signing_input, _, signature = token.rpartition(".")
    expected = hmac.new(key, signing_input.encode("ascii"), hashlib.sha256).digest()
    if not constant_time_equals(expected, b64url_decode(signature)):
        raise TokenRefused("the token's signature is wrong")
    check_fresh(claims, time.time() if now_s is None else now_s)
    return claims


def unverified_claims(token: str) -> dict[str, Any]:
    """The claims of a well-formed HS256 token, its signature not checked yet (to learn its `iss`)."""
    if len(token) > TOKEN_MAX_CHARS:
        raise TokenRefused("the token is too long")
    parts = token.split(".")
    if len(parts) != 3:
        raise TokenRefused("the token is not a compact JWT")
    try:
        header = orjson.loads(b64url_decode(parts[0]))
        claims = orjson.loads(b64url_decode(parts[1]))
        b64url_decode(parts[2])
    except (ValueError, orjson.JSONDecodeError):
        raise TokenRefused("the token is not a compact JWT") from None
    if not isinstance(header, dict) or header.get("alg") not in (ALGORITHM,):
        raise TokenRefused(f"the token is not signed with {ALGORITHM}")
    if not isinstance(claims, dict):
        raise TokenRefused("the token's claims are not an object")
    return claims


def audience_is(claims: Mapping[str, Any], msp_id: str) -> bool:
    """Whether the token is meant for the MSP `msp_id` (`aud`, a string or a list of them)."""
    audience = claims.get("aud")
    named = audience if isinstance(audience, list) else [audience]
    return any(isinstance(one, str) and constant_time_equals(one, msp_id) for one in named)


def check_fresh(claims: Mapping[str, Any], now: float) -> None:
    """Raise TokenRefused unless the claims are fresh at `now` (epoch seconds): see `read_token`."""
    issued = _seconds(claims, "iat")
    if issued is None:
        raise TokenRefused("the token has no iat")
    if issued > now + CLOCK_SKEW_S:
        raise TokenRefused("the token was issued in the future")
    if issued < now - MAX_AGE_S - CLOCK_SKEW_S:
        raise TokenRefused("the token is too old")
    expires = _seconds(claims, "exp")
    if expires is not None and expires < now - CLOCK_SKEW_S:
        raise TokenRefused("the token has expired")
    not_before = _seconds(claims, "nbf")
    if not_before is not None and not_before > now + CLOCK_SKEW_S:
        raise TokenRefused("the token is not valid yet")


def _seconds(claims: Mapping[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TokenRefused(f"the token's {name} is not a number")
    return float(value)
