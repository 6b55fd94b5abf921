"""Access tokens for the RBM API: a service account's signed JWT traded at Google's token endpoint.

This is OAuth 2.0's JWT bearer grant (RFC 7523) as Google runs it for service accounts: a JWT, RS256-signed
with the key file's private key, says who asks (`iss`, the client_email), for what (`scope`), of whom
(`aud`, the token endpoint) and when (`iat`, `exp`: one hour); it is posted as `assertion` with
`grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer`, and the answer's `access_token` is good for
`expires_in` seconds (an hour at Google).

Tokens are cached in the process (`TOKENS`), the provider's only state: one per token endpoint, service
account, key and scope, so every channel acting as one service account shares it, and a channel naming
someone else's client_email with a key of its own never gets that account's token. Sends and the RBM
API's own management calls (testers, capabilities, users:batchGet) ask for the RBM scope; agent
management through Business Communications asks for its own (`MANAGEMENT_SCOPE`): each API takes only
tokens issued for its scope. A token is renewed before it expires (a tenth of its life early, at most five
minutes). One lock per key (and event loop) makes the sends that find no fresh token at the same moment
ask for one once; the others wait for it.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urlencode

import orjson
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from openmmp.kit.crypto import b64url
from openmmp.kit.crypto import b64url_decode as b64url_decode  # re-exported: JWTs are read here too
from openmmp.kit.http import HttpClient, HttpResponse, HttpUnreachable
from openmmp.kit.time import now_ms
from openmmp.providers.base import ProviderContext, ProviderError
from openmmp.providers.rbm.credentials import ServiceAccount
from openmmp.providers.upstream import bad_response, parse_retry_after, transport_error

TOKEN_PATH = "/token"  # noqa: S105 - a path, not a secret
"""The simulator's token endpoint, under the provider's base URL."""
SCOPE = "https://www.googleapis.com/auth/rcsbusinessmessaging"
MANAGEMENT_SCOPE = "https://www.googleapis.com/auth/businesscommunications"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
ASSERTION_LIFETIME_S = 3600
RENEW_EARLY_MAX_S = 300.0
MESSAGE_MAX = 300

TokenKey = tuple[str, str, str, str]
"""(token endpoint, client_email, fingerprint of the private key, scope)."""


def assertion(
    account: ServiceAccount, *, audience: str, issued_s: int | None = None, scope: str = SCOPE
) -> str:
    """The signed JWT asking `audience` (the token endpoint) for a token for `account` with `scope`.

    Raises ValueError when the account's private key cannot sign (the message never quotes the key).
    """
    key = account.private_key()
    issued = now_ms() // 1000 if issued_s is None else issued_s
    header = {"alg": "RS256", "typ": "JWT"}
    if account.private_key_id:
        header["kid"] = account.private_key_id
    claims = {
        "iss": account.client_email,
        "scope": scope,
        "aud": audience,
        "iat": issued,
        "exp": issued + ASSERTION_LIFETIME_S,
    }
    signing_input = f"{b64url(orjson.dumps(header))}.{b64url(orjson.dumps(claims))}"
    signature = key.sign(signing_input.encode("ascii"), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{b64url(signature)}"


def token_endpoint(ctx: ProviderContext, account: ServiceAccount) -> str:
    """Where `account` gets its tokens: the key file's endpoint, or in sandbox mode the simulator's, which
    plays Google's token endpoint whatever the key file says."""
    return f"{ctx.base_url}{TOKEN_PATH}" if ctx.sandbox else account.token_uri


@dataclass(frozen=True, eq=False)
class AccessToken:
    """A bearer token and when to renew it (`time.monotonic()` seconds). `value` is a secret."""

    value: str
    renew_at: float

    def __repr__(self) -> str:
        return f"AccessToken(renew_at={self.renew_at:.1f})"

    @property
    def fresh(self) -> bool:
        return time.monotonic() < self.renew_at


def token_key(account: ServiceAccount, token_uri: str, scope: str = SCOPE) -> TokenKey:
    """The cache key of `account`'s tokens for `scope` from `token_uri`."""
    fingerprint = hashlib.sha256(account.private_key_pem.encode()).hexdigest()
    return (token_uri, account.client_email, fingerprint, scope)


class TokenCache:
    """Access tokens by `TokenKey`, each renewed before it expires; a concurrent renewal runs once."""

    def __init__(self) -> None:
        self._tokens: dict[TokenKey, AccessToken] = {}
        # asyncio locks belong to one event loop; a process may run several in turn (tests, the CLI).
        self._locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[TokenKey, asyncio.Lock]] = (
            weakref.WeakKeyDictionary()
        )

    def _lock(self, key: TokenKey) -> asyncio.Lock:
        locks = self._locks.setdefault(asyncio.get_running_loop(), {})
        lock = locks.get(key)
        if lock is None:
            lock = locks[key] = asyncio.Lock()
        return lock

    async def get(self, key: TokenKey, fetch: Callable[[], Awaitable[AccessToken]]) -> AccessToken:
        """A fresh token for `key`: the cached one, or one `fetch` gets (once for concurrent callers)."""
        cached = self._tokens.get(key)
        if cached is not None and cached.fresh:
            return cached
        async with self._lock(key):
            cached = self._tokens.get(key)
            if cached is not None and cached.fresh:
                return cached
            token = await fetch()
            self._tokens[key] = token
            return token

    def forget(self, key: TokenKey, token: AccessToken) -> None:
        """The upstream refused `token`: drop it, unless a newer one replaced it meanwhile."""
        if self._tokens.get(key) is token:
            del self._tokens[key]


TOKENS = TokenCache()
"""The process's access tokens (shared by every channel and every send of the process)."""


async def fetch_token(
    http: HttpClient,
    account: ServiceAccount,
    token_uri: str,
    *,
    timeout: float | None = None,
    scope: str = SCOPE,
) -> AccessToken:
    """Trade a fresh assertion for an access token for `scope` at `token_uri` (within `timeout` seconds,
    default the client's); `ProviderError` when that fails."""
    try:
        signed = assertion(account, audience=token_uri, scope=scope)
    except ValueError as exc:
        raise ProviderError(
            "RBM_CREDENTIALS", f"credentials.serviceAccountJson: private_key {exc}", retryable=False
        ) from None
    form = urlencode({"grant_type": JWT_BEARER, "assertion": signed}).encode("ascii")
    try:
        response = await http.post(
            token_uri,
            content=form,
            headers={"content-type": "application/x-www-form-urlencoded"},
            timeout=timeout,
        )
    except HttpUnreachable as exc:
        raise transport_error(exc) from exc
    if not response.ok:
        raise token_error(response)
    try:
        body = response.json()
    except ValueError as exc:
        raise bad_response("the token endpoint answered with something that is not JSON") from exc
    value = body.get("access_token") if isinstance(body, dict) else None
    lifetime = body.get("expires_in", ASSERTION_LIFETIME_S) if isinstance(body, dict) else None
    if not isinstance(value, str) or not value:
        raise bad_response("the token endpoint answered without an access_token")
    if isinstance(lifetime, bool) or not isinstance(lifetime, int | float) or lifetime <= 0:
        raise bad_response("the token endpoint answered without a positive expires_in")
    early = min(RENEW_EARLY_MAX_S, lifetime / 10)
    return AccessToken(value=value, renew_at=time.monotonic() + lifetime - early)


def token_error(response: HttpResponse) -> ProviderError:
    """The token endpoint refused: rate limited and 5xx pass; anything else is about the key file."""
    code = response.status_code
    if code == 429:
        return ProviderError(
            "RBM_TOKEN_429",
            "the token endpoint asks to slow down",
            retryable=True,
            rate_limited=True,
            retry_after=parse_retry_after(response.headers.get("retry-after")),
        )
    if code >= 500:
        return ProviderError(f"RBM_TOKEN_{code}", f"the token endpoint answered HTTP {code}", retryable=True)
    error, description = "", ""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        error = str(body.get("error") or "")
        description = str(body.get("error_description") or "")
    said = ": ".join(part for part in (error, description) if part) or f"HTTP {code}"
    return ProviderError(
        f"RBM_TOKEN_{code}",
        f"the token endpoint refused the service account ({said})"[:MESSAGE_MAX],
        retryable=False,
    )
