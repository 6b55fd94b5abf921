"""What a Zalo OA channel and a ZNS channel share: one Official Account acted for by one Zalo app.

The same credentials and operator options, the same OAuth v4 tokens renewed (`refreshes_credentials`),
the same `X-ZEvent-Signature` on every webhook, the same limit, and the same set-up: Zalo takes the
webhook URL in its developer console, so only the sandbox's simulator, which plays that console, is told.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from openmmp.providers.base import CallbackRequest, Provider, ProviderContext, RateLimit
from openmmp.providers.simulation import sandbox_control
from openmmp.providers.zalo.auth import refresh_tokens
from openmmp.providers.zalo.credentials import ZaloCredentials, ZaloOptions
from openmmp.providers.zalo.webhooks import SIGNATURE_HEADER, verify_zalo

WEBHOOKS_PATH = "/_sandbox/webhooks"
"""The simulator's stand-in for the webhook URL of Zalo's developer console."""


class ZaloApp(Provider):
    credentials_model = ZaloCredentials
    options_model = ZaloOptions
    # Zalo's published limit for its API: 4,000 requests a minute per app (-32 beyond).
    rate_limit = RateLimit(requests=4000, window_seconds=60.0, per="app")
    refreshes_credentials = True
    callback_auth = (
        f"`{SIGNATURE_HEADER}: mac=<hex>`: the SHA-256 (plain, not HMAC) of the channel's `appId` (or "
        "`oaId`), the raw body, the body's `timestamp` and the channel's `secretKey`, concatenated."
    )

    def needs_setup(self, *, sandbox: bool) -> bool:
        return sandbox

    async def set_up(
        self, ctx: ProviderContext, *, callback_url: str, credentials: Mapping[str, Any]
    ) -> None:
        """In sandbox mode, register the callback URL, the token and the app's secret key with the
        simulator; outside it nothing (the business enters the URL in Zalo's developer console)."""
        if not ctx.sandbox:
            return
        body = {
            "appId": str(credentials["appId"]),
            "oaId": str(credentials["oaId"]),
            "callbackUrl": callback_url,
            "secretKey": str(credentials["secretKey"]),
            "accessToken": str(credentials["accessToken"]),
        }
        await sandbox_control(ctx.http, f"{ctx.base_url}{WEBHOOKS_PATH}", body, simulator=self.title)

    async def refresh_credentials(
        self, ctx: ProviderContext, credentials: Mapping[str, Any]
    ) -> dict[str, Any]:
        return await refresh_tokens(ctx, credentials)

    def verify(self, ctx: ProviderContext, request: CallbackRequest, credentials: Mapping[str, Any]) -> bool:
        return verify_zalo(request, credentials)
