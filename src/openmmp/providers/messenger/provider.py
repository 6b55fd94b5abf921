"""Facebook Messenger (the Messenger Platform's Send API) on the provider contract (providers.md §7).

A channel is one Facebook Page (`pageId`) sending with a Page access token (`pageAccessToken`) of the
business's Meta app, whose secret (`appSecret`) signs the webhooks. End users are reached only in the
conversation they opened: by their page-scoped id (PSID), which is the conversation's `from`. One request
per message (`payload`, `client`); the Send API has no idempotency key.

Messenger takes messages only within 24 hours of the end user's last message (`session_window_seconds`),
as `messaging_type` RESPONSE. Outside it, the core refuses every send when it is accepted
(`window_free_types` is empty): Messenger's way out of the window is a message tag (`MESSAGE_TAG` with
e.g. `HUMAN_AGENT`, up to 7 days, or `ACCOUNT_UPDATE`), each with a policy of its own that the sender must
follow, and the MMP API has no field to say which one applies. A message whose window closed while it
waited fails with Meta's 10/2018278 (`errors`).

Webhooks (`callbacks`) come to `{public_url}/callbacks/messenger/{accountId}`, signed with the app
secret. Meta sends a Page's webhooks to its app's one callback URL, which the business sets in its app's
Messenger settings with the channel's verify token (the GET handshake, `challenge`); the channel's
set-up then subscribes the app to the Page's `messages`, `messaging_postbacks`, `message_deliveries` and
`message_reads` (`POST /{page-id}/subscribed_apps`, idempotent), which also proves the Page token: a
token Meta refuses rejects the channel with Meta's words. In sandbox mode the set-up first registers the
callback URL and the app secret with the simulator, which plays the app's webhook settings.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from openmmp.kit.http import HttpClient
from openmmp.providers.applications import Application
from openmmp.providers.base import (
    Addressing,
    CallbackEvent,
    Credentials,
    Ident,
    Link,
    Outgoing,
    ProviderContext,
    RateLimit,
    SandboxUser,
    SandboxWritten,
    Secret,
    SendUnit,
    one_unit_each,
)
from openmmp.providers.messenger import callbacks
from openmmp.providers.messenger.client import MessengerClient
from openmmp.providers.messenger.payload import SUPPORTED_TYPES, to_messenger_message
from openmmp.providers.meta.webhooks import MetaAppProvider
from openmmp.providers.simulation import sandbox_control, sandbox_inbound

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from openmmp.providers.simulation import SimulatorConfig


class MessengerCredentials(Credentials):
    """A Facebook Page, the Page access token of the business's Meta app, and that app's secret."""

    identity_fields = ("page_id",)

    page_id: str = Ident
    page_access_token: str = Secret
    app_secret: str = Secret


class MessengerProvider(MetaAppProvider):
    name = "messenger"
    application = Application.FACEBOOK
    title = "Facebook Messenger"
    message_types = SUPPORTED_TYPES
    # Meta's Send API limit for text, links and stickers; audio and video have 10 a second of their own,
    # which Meta answers with 613 (waited out) beyond it.
    rate_limit = RateLimit(requests=300, window_seconds=1.0, per="page")
    idempotent = False
    addressing = Addressing.CONVERSATION
    credentials_model = MessengerCredentials
    default_base_url = "https://graph.facebook.com/v21.0"
    verify_token_label = callbacks.VERIFY_TOKEN_PURPOSE
    session_window_seconds = 86400.0
    window_free_types = frozenset()
    sandbox_credentials = {
        "pageId": "1001",
        "pageAccessToken": "demo-page-token",
        "appSecret": "demo-app-secret",
    }

    def check_message(self, content: Mapping[str, Any], credentials: Mapping[str, Any]) -> None:
        to_messenger_message(content)

    def needs_setup(self, *, sandbox: bool) -> bool:
        return True

    async def set_up(
        self, ctx: ProviderContext, *, callback_url: str, credentials: Mapping[str, Any]
    ) -> None:
        if ctx.sandbox:
            body = {
                "pageId": str(credentials["pageId"]),
                "callbackUrl": callback_url,
                "appSecret": str(credentials["appSecret"]),
            }
            await sandbox_control(ctx.http, f"{ctx.base_url}/_sandbox/webhooks", body, simulator=self.title)
        await _client(ctx, credentials).subscribe()

    def plan(
        self,
        ctx: ProviderContext,
        credentials: Mapping[str, Any],
        outgoing: Sequence[Outgoing],
        link: Link | None = None,
    ) -> list[SendUnit]:
        client = _client(ctx, credentials)
        return one_unit_each(outgoing, lambda message: client.send(message.recipient, message.content))

    def parse(self, body: bytes) -> Sequence[CallbackEvent]:
        return callbacks.parse_callback(body)

    def simulator(self, config: SimulatorConfig, http: HttpClient) -> Starlette:
        from openmmp.providers.messenger.simulator import create_messenger_simulator

        return create_messenger_simulator(config, http)

    async def sandbox_inbound(
        self, ctx: ProviderContext, credentials: Mapping[str, Any], user: SandboxUser
    ) -> SandboxWritten:
        body: dict[str, Any] = {"pageId": str(credentials["pageId"]), "name": user.name, "text": user.text}
        if user.phone:
            body["phone"] = user.phone
        if user.user_id:
            body["userId"] = user.user_id
        answer = await sandbox_inbound(ctx, body, simulator=self.title)
        return SandboxWritten(user_id=str(answer.get("psid", "")), message_token=str(answer.get("mid", "")))


def _client(ctx: ProviderContext, credentials: Mapping[str, Any]) -> MessengerClient:
    return MessengerClient(
        ctx.http,
        ctx.base_url,
        page_id=str(credentials["pageId"]),
        page_access_token=str(credentials["pageAccessToken"]),
    )
