"""An RCS channel's credentials: the RBM agent and the Google service account that acts for it.

`serviceAccountJson` is the key file Google's Cloud console hands out (a JSON object). OpenMMP needs its
`client_email` and `private_key` (an RSA key in PEM) to sign the JWT it trades for access tokens, and
reads `token_uri` where the file has one: only Google's own token endpoints are taken, since the server
would otherwise post a signed assertion wherever a tenant's file points. The key is checked once, when the
channel is saved, so that a send never finds out that it cannot work.

A channel without a key file of its own is an agent the platform runs for the company (made by
`create_agent` under the operator's RBM partner account): the operator's partner service account
(`OPENMMP_PROVIDERS__RBM_PARTNER_SERVICE_ACCOUNT`, the sandbox's built-in one in sandbox mode) acts for it.
`acting_account` is the one place that decides which account acts.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from pydantic import Field, field_validator

from openmmp.providers.base import Credentials, ProviderContext, ProviderError
from openmmp.providers.rbm.sandbox import SANDBOX_SERVICE_ACCOUNT_JSON

DEFAULT_TOKEN_URI = "https://oauth2.googleapis.com/token"  # noqa: S105 - a URL, not a secret
TOKEN_HOSTS = frozenset({"oauth2.googleapis.com", "accounts.google.com", "www.googleapis.com"})
"""Where Google's service account key files send their token requests (older files name the latter two)."""
MIN_KEY_BITS = 2048
TRAFFIC_TYPES = ("AUTHENTICATION", "TRANSACTION", "PROMOTION", "SERVICEREQUEST", "ACKNOWLEDGEMENT")
DEFAULT_TRAFFIC_TYPE = "TRANSACTION"
PARTNER_OPTION = "partner_service_account"
PARTNER_SETTING = "OPENMMP_PROVIDERS__RBM_PARTNER_SERVICE_ACCOUNT"

TrafficType = Literal["AUTHENTICATION", "TRANSACTION", "PROMOTION", "SERVICEREQUEST", "ACKNOWLEDGEMENT"]


@dataclass(frozen=True)
class ServiceAccount:
    """What OpenMMP uses of a service account key file. `private_key_pem` is a secret: never log it."""

    client_email: str
    private_key_pem: str
    token_uri: str
    private_key_id: str | None = None

    def __repr__(self) -> str:
        # A dataclass repr would print the key wherever the object ends up in a log or a traceback.
        return f"ServiceAccount(client_email={self.client_email!r}, token_uri={self.token_uri!r})"

    def private_key(self) -> rsa.RSAPrivateKey:
        """The RSA key; ValueError (without the key's text) when it is not a usable one."""
        return load_rsa_key(self.private_key_pem)


def load_rsa_key(pem: str) -> rsa.RSAPrivateKey:
    """An unencrypted RSA private key of at least 2048 bits from PEM text; ValueError otherwise."""
    try:
        key = load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError) as exc:
        # The library's message may quote the input: say what is wrong, never what was given.
        raise ValueError("must be an unencrypted PEM private key") from exc
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("must be an RSA key (RS256)")
    if key.key_size < MIN_KEY_BITS:
        raise ValueError(f"must have at least {MIN_KEY_BITS} bits")
    return key


def parse_service_account(text: str) -> ServiceAccount:
    """The key file's fields; ValueError naming the field at fault (the key itself is not loaded here)."""
    try:
        parsed: Any = json.loads(text)
    except ValueError as exc:
        raise ValueError("must be the service account key file's JSON text") from exc
    if not isinstance(parsed, dict):
        raise ValueError("must be a JSON object")
    email = parsed.get("client_email")
    if not isinstance(email, str) or "@" not in email or len(email) > 320:
        raise ValueError("client_email: required, the service account's e-mail address")
    pem = parsed.get("private_key")
    if not isinstance(pem, str) or "PRIVATE KEY" not in pem:
        raise ValueError("private_key: required, the service account's PEM private key")
    token_uri = parsed.get("token_uri", DEFAULT_TOKEN_URI)
    if not isinstance(token_uri, str):
        raise ValueError("token_uri: must be a URL")
    parts = urlsplit(token_uri)
    if parts.scheme != "https" or parts.hostname not in TOKEN_HOSTS or parts.username or parts.port:
        raise ValueError(f"token_uri: must be one of Google's token endpoints ({DEFAULT_TOKEN_URI})")
    key_id = parsed.get("private_key_id")
    return ServiceAccount(
        client_email=email,
        private_key_pem=pem,
        token_uri=token_uri,
        private_key_id=key_id if isinstance(key_id, str) and key_id else None,
    )


def acting_account(ctx: ProviderContext, credentials: Mapping[str, Any]) -> ServiceAccount:
    """The service account that acts for the channel: its own key file, else the operator's partner
    account.

    Raises ValueError("credentials.serviceAccountJson: ...") for a key file of the channel's that cannot
    work (saved before its checks existed), and a final `ProviderError` when the operator's partner
    account is missing or cannot be used: the channel's credentials are then not what is wrong.
    """
    own = credentials.get("serviceAccountJson")
    if own:
        try:
            # Checked whole when the channel was saved; a stored file that no longer parses is named here.
            return parse_service_account(str(own))
        except ValueError as exc:
            raise ValueError(f"credentials.serviceAccountJson: {exc}") from None
    partner = ctx.secret(PARTNER_OPTION, SANDBOX_SERVICE_ACCOUNT_JSON)
    if not partner:
        raise ProviderError(
            "RBM_NO_SERVICE_ACCOUNT",
            "the channel has no serviceAccountJson of its own and the operator has configured no RBM "
            f"partner service account ({PARTNER_SETTING}) to act for it",
            retryable=False,
        )
    try:
        return _partner_account(partner)
    except ValueError as exc:
        raise ProviderError(
            "RBM_PARTNER_SERVICE_ACCOUNT",
            f"the operator's RBM partner service account ({PARTNER_SETTING}) cannot be used: {exc}",
            retryable=False,
        ) from None


@functools.lru_cache(maxsize=4)
def _partner_account(text: str) -> ServiceAccount:
    """The operator's key file, checked whole once per process (no channel save checked it)."""
    account = parse_service_account(text)
    try:
        account.private_key()
    except ValueError as exc:
        raise ValueError(f"private_key: {exc}") from None
    return account


class RcsCredentials(Credentials):
    """An RBM agent (`agentId`, one channel per agent), its brand, and the service account acting for it.

    `serviceAccountJson` is the company's own key file; without it the operator's partner service account
    acts (agents the platform created for the company, whose credentials are what `create_agent` gave).
    `brandId` is the Business Communications brand the agent belongs to: the agent's management (its
    profile, verification and launch) needs it. `messageTrafficType` is what RBM bills and filters each
    message as; it must fit the agent's use case (an OTP agent sends AUTHENTICATION). Without it the
    channel's messages go as TRANSACTION.
    """

    identity_fields = ("agent_id",)

    agent_id: str = Field(min_length=1, max_length=200, description="The RBM agent's id")
    brand_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        pattern=r"^[A-Za-z0-9_.~-]+$",
        description="The Business Communications brand the agent belongs to (`brands/{brandId}`); "
        "needed to manage the agent",
    )
    service_account_json: str | None = Field(
        default=None,
        min_length=2,
        max_length=20_000,
        description="The service account key file (JSON text); without it the operator's RBM partner "
        "service account acts for the agent",
    )
    message_traffic_type: TrafficType | None = Field(
        default=None, description="RBM's messageTrafficType for every message (default TRANSACTION)"
    )

    def operator_acts(self) -> str | None:
        return None if self.service_account_json else "serviceAccountJson"

    @field_validator("service_account_json")
    @classmethod
    def _key_file(cls, value: str | None) -> str | None:
        if value is None:
            return None
        account = parse_service_account(value)
        try:
            account.private_key()
        except ValueError as exc:
            raise ValueError(f"private_key: {exc}") from None
        return value
