"""Zalo Official Account consultation messages on the provider contract (providers.md §5).

A channel is one Official Account (`oaId`) acted for by a Zalo app (`appId`, `secretKey`) with the OAuth v4
tokens the OA granted it (`credentials`). End users are the OA's followers, reached only in the
conversation they opened: by their user id (the conversation's `from`). One request per message
(`oa_payload`, `oa_client`); Zalo has no idempotency key.

Zalo takes consultation messages only within 7 days of the end user's last interaction with the OA
(`session_window_seconds`; free for the first 48 hours, billed after): the core refuses the others when
they are sent, and Zalo's -230 fails a message whose window closed while it waited.

The access token lives 25 hours and the refresh token works once (`refreshes_credentials`): a call Zalo
refuses with -216, -220 or -124 raises a `ProviderError` with `stale_credentials` (`errors`), and the core
renews the tokens with `refresh_credentials` (`auth`) under the channel's lock, stores them and calls again.

Webhooks come to `{public_url}/callbacks/zalo/{accountId}`, signed with `X-ZEvent-Signature` over the app
id, the raw body, its timestamp and the app's secret key (`webhooks`), and mean what `oa_callbacks` says.
Zalo has no API to set an app's webhook URL: the business enters the channel's callback URL in its app's
settings in the Zalo developer console, so outside sandbox mode there is nothing to set up. In sandbox mode
the set-up registers the URL and the secret key with the simulator, which plays that console.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from openmmp.kit.http import HttpClient
from openmmp.providers.applications import Application
from openmmp.providers.base import (
    Addressing,
    CallbackEvent,
    Link,
    Outgoing,
    ProviderContext,
    SandboxUser,
    SandboxWritten,
    SendOk,
    SendUnit,
    one_unit_each,
)
from openmmp.providers.simulation import sandbox_bot_inbound
from openmmp.providers.zalo import oa_client
from openmmp.providers.zalo.app import ZaloApp
from openmmp.providers.zalo.credentials import DEFAULT_OPENAPI_URL
from openmmp.providers.zalo.oa_callbacks import parse_event
from openmmp.providers.zalo.oa_payload import SUPPORTED_TYPES, to_oa_message

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from openmmp.providers.simulation import SimulatorConfig

SANDBOX_APP_HEADER = "X-Zalo-App-Id"
SANDBOX_OA_HEADER = "X-Zalo-Oa-Id"
"""How the simulator's sandbox routes (OpenMMP's own, not Zalo's) name the app and the OA."""
WINDOW_S = 7 * 86400.0


class ZaloOaProvider(ZaloApp):
    name = "zalo"
    application = Application.ZALO
    title = "Zalo Official Account"
    message_types = SUPPORTED_TYPES
    idempotent = False
    addressing = Addressing.CONVERSATION
    default_base_url = DEFAULT_OPENAPI_URL
    session_window_seconds = WINDOW_S
    window_free_types = frozenset()
    sandbox_credentials = {
        "oaId": "1001",
        "appId": "1001",
        "accessToken": "demo",
        "refreshToken": "demo",
        "secretKey": "demo",
    }

    def check_message(self, content: Mapping[str, Any], credentials: Mapping[str, Any]) -> None:
        to_oa_message(content)

    def plan(
        self,
        ctx: ProviderContext,
        credentials: Mapping[str, Any],
        outgoing: Sequence[Outgoing],
        link: Link | None = None,
    ) -> list[SendUnit]:
        async def send(message: Outgoing) -> SendOk:
            return await oa_client.send(ctx, credentials, message.recipient, message.content)

        return one_unit_each(outgoing, send)

    def parse(self, body: bytes) -> Sequence[CallbackEvent]:
        return parse_event(body)

    def simulator(self, config: SimulatorConfig, http: HttpClient) -> Starlette:
        from openmmp.providers.zalo.simulator import create_zalo_simulator

        return create_zalo_simulator(config, http)

    async def sandbox_inbound(
        self, ctx: ProviderContext, credentials: Mapping[str, Any], user: SandboxUser
    ) -> SandboxWritten:
        # A user with a phone shares their details first (Zalo's request_user_info form): their user id
        # then ends in the number's last digit, which picks the sandbox outcome.
        headers = {SANDBOX_APP_HEADER: str(credentials["appId"]), SANDBOX_OA_HEADER: str(credentials["oaId"])}
        answer = await sandbox_bot_inbound(ctx, user, simulator=self.title, headers=headers)
        return SandboxWritten(
            user_id=str(answer.get("userId", "")), message_token=str(answer.get("msgId", ""))
        )
