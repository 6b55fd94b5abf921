"""A Zalo channel's credentials and where Zalo's hosts are; shared by the OA and the ZNS providers.

Both applications act as one Official Account through one Zalo app: the OA's id, the app's id and secret
key, and the OAuth v4 token pair the OA's admin granted the app. The access token lives 25 hours; the
refresh token works once and is replaced by every renewal (`auth.refresh_tokens`), so the stored pair
changes over the channel's life.

Zalo has three hosts: OAuth (`oauth.zaloapp.com`), the OA Open API (`openapi.zalo.me`) and the business
API of ZNS (`business.openapi.zalo.me`). In sandbox mode the provider's simulator plays all three under
its one base URL.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, Field

from openmmp.providers.base import Credentials, Ident, ProviderContext, Secret

DEFAULT_OAUTH_URL = "https://oauth.zaloapp.com"
DEFAULT_OPENAPI_URL = "https://openapi.zalo.me"
DEFAULT_BUSINESS_URL = "https://business.openapi.zalo.me"


class ZaloCredentials(Credentials):
    """The Official Account (`oaId`, its identity), the Zalo app acting for it (`appId`, `secretKey`) and
    the OAuth v4 tokens the OA granted the app (`accessToken`, `refreshToken`)."""

    identity_fields = ("oa_id",)

    oa_id: str = Ident
    app_id: str = Ident
    access_token: str = Secret
    refresh_token: str = Secret
    secret_key: str = Secret


class ZaloOptions(BaseModel):
    """The operator's Zalo hosts (only changed to reach a proxy or a simulator run apart)."""

    oauth_url: str = Field(default=DEFAULT_OAUTH_URL, description="Zalo OAuth v4 host (token renewal).")
    openapi_url: str = Field(default=DEFAULT_OPENAPI_URL, description="Zalo OA Open API host.")
    business_url: str = Field(default=DEFAULT_BUSINESS_URL, description="Zalo business (ZNS) API host.")


@dataclass(frozen=True, slots=True)
class ZaloHosts:
    """Base URLs (no trailing slash) of Zalo's OAuth, OA Open API and business API."""

    oauth: str
    openapi: str
    business: str


def zalo_hosts(ctx: ProviderContext) -> ZaloHosts:
    """Where each Zalo API is for `ctx`: its simulator's base URL for all three in sandbox mode, else the
    operator's options (`ZaloOptions`), defaulting to Zalo's own hosts."""
    if ctx.sandbox:
        base = ctx.base_url.rstrip("/")
        return ZaloHosts(base, base, base)

    def host(option: str, default: str) -> str:
        return str(ctx.options.get(option) or default).rstrip("/")

    return ZaloHosts(
        oauth=host("oauth_url", DEFAULT_OAUTH_URL),
        openapi=host("openapi_url", DEFAULT_OPENAPI_URL),
        business=host("business_url", DEFAULT_BUSINESS_URL),
    )
