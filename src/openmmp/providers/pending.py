"""Applications whose providers have not landed yet: their credentials as api.md §4.2 gives them.

Channels of these applications can be created (credentials checked and stored), so a company can prepare
them; they report `status` REQUEST with the reason and refuse sends until the provider's package replaces
the entry in the registry.
"""

from __future__ import annotations

from pydantic import Field

from openmmp.providers.applications import Application
from openmmp.providers.base import Credentials, NotAvailable

Secret = Field(min_length=1, max_length=4096)
Ident = Field(min_length=1, max_length=200)


class ZaloCredentials(Credentials):
    identity_fields = ("oa_id",)

    oa_id: str = Ident
    app_id: str = Ident
    access_token: str = Secret
    refresh_token: str = Secret
    secret_key: str = Secret


class AppleCredentials(Credentials):
    identity_fields = ("business_id",)

    business_id: str = Ident
    msp_id: str = Ident
    secret: str = Secret


def _zalo(oa_id: str) -> dict[str, str]:
    return {"oaId": oa_id, "appId": oa_id, "accessToken": "demo", "refreshToken": "demo", "secretKey": "demo"}


NOT_AVAILABLE = (
    NotAvailable(
        Application.APPLE,
        AppleCredentials,
        {"businessId": "demo-business", "mspId": "demo-msp", "secret": "demo-secret"},
    ),
    NotAvailable(Application.ZALO, ZaloCredentials, _zalo("1001")),
    NotAvailable(Application.ZALO_ZNS, ZaloCredentials, _zalo("1002")),
)
