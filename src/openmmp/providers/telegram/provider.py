"""The Telegram Bot API on the provider contract.

A bot reaches its end users by chat id (a conversation: the user's id in a private chat), or by a phone
number a user shared with it. One message is one Bot API call; the Bot API has no idempotency key, so a
send repeated after a crash can reach the chat twice. It reports neither delivery nor reading: an accepted
send stays SENT, which is final for it. Set-up is `setWebhook` to our callback URL with a secret derived
from the bot's token, which every update then carries (`callbacks`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from pydantic import Field

from openmmp.kit.http import HttpClient
from openmmp.providers.applications import Application
from openmmp.providers.base import (
    Addressing,
    CallbackEvent,
    CallbackReply,
    CallbackRequest,
    Credentials,
    Link,
    Outgoing,
    Provider,
    ProviderContext,
    RateLimit,
    SandboxUser,
    SandboxWritten,
    SendOk,
    SendUnit,
    one_unit_each,
)
from openmmp.providers.simulation import sandbox_bot_inbound
from openmmp.providers.telegram import callbacks
from openmmp.providers.telegram.client import TelegramClient, to_telegram_request

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from openmmp.providers.simulation import SimulatorConfig

SANDBOX_TOKEN_HEADER = "X-Telegram-Bot-Token"  # noqa: S105 - a header's name, not a secret
"""How the simulator's sandbox routes (OpenMMP's own, not the Bot API) name the bot."""


class TelegramCredentials(Credentials):
    identity_fields = ("bot_token",)  # the token is the bot: a second channel on it would take it over

    bot_token: str = Field(min_length=1, max_length=4096)


class TelegramProvider(Provider):
    name = "telegram"
    application = Application.TELEGRAM
    title = "Telegram"
    message_types = frozenset({"text", "rich_card", "picture", "video", "file"})
    # Telegram's published limits: about 30 messages a second per bot, and about one a second per chat.
    rate_limit = RateLimit(requests=30, window_seconds=1.0, per="bot")
    recipient_rate = RateLimit(requests=1, window_seconds=1.0, per="chat")
    idempotent = False
    addressing = Addressing.CONVERSATION
    credentials_model = TelegramCredentials
    callback_auth = (
        "`X-Telegram-Bot-Api-Secret-Token`: the `secret_token` set with `setWebhook`, the hex HMAC-SHA256 "
        "of a fixed label keyed by the bot's token; it proves the sender (the body is left to TLS)."
    )
    callback_proof = "sender"
    sandbox_credentials = {"botToken": "demo-telegram-token"}
    default_base_url = "https://api.telegram.org"
    reports_delivery = False
    reports_read = False

    def check_message(self, content: Mapping[str, Any], credentials: Mapping[str, Any]) -> None:
        to_telegram_request(content)

    def needs_setup(self, *, sandbox: bool) -> bool:
        return True

    async def set_up(
        self, ctx: ProviderContext, *, callback_url: str, credentials: Mapping[str, Any]
    ) -> None:
        token = str(credentials["botToken"])
        await TelegramClient(ctx.http, ctx.base_url).set_webhook(
            token=token,
            url=callback_url,
            secret_token=callbacks.webhook_secret(token),
            allowed_updates=callbacks.ALLOWED_UPDATES,
        )

    def plan(
        self,
        ctx: ProviderContext,
        credentials: Mapping[str, Any],
        outgoing: Sequence[Outgoing],
        link: Link | None = None,
    ) -> list[SendUnit]:
        client = TelegramClient(ctx.http, ctx.base_url)
        token = str(credentials["botToken"])

        async def send(message: Outgoing) -> SendOk:
            return await client.send(token=token, chat_id=message.recipient, message=message.content)

        return one_unit_each(outgoing, send)

    def verify(self, ctx: ProviderContext, request: CallbackRequest, credentials: Mapping[str, Any]) -> bool:
        return callbacks.verify_secret(
            request.header(callbacks.SECRET_HEADER), str(credentials.get("botToken", ""))
        )

    def acknowledge(self, request: CallbackRequest, outcome: str) -> CallbackReply | None:
        reply = callbacks.webhook_reply(request.body)
        return None if reply is None else CallbackReply(200, reply, "application/json")

    def parse(self, body: bytes) -> Sequence[CallbackEvent]:
        return callbacks.parse_update(body)

    def simulator(self, config: SimulatorConfig, http: HttpClient) -> Starlette:
        from openmmp.providers.telegram.simulator import create_telegram_simulator

        return create_telegram_simulator(config, http)

    async def sandbox_inbound(
        self, ctx: ProviderContext, credentials: Mapping[str, Any], user: SandboxUser
    ) -> SandboxWritten:
        # A user with a phone shares their contact (a `request_contact` button) before writing: their
        # chat id then ends in the number's last digit, which picks the sandbox outcome.
        bot = {SANDBOX_TOKEN_HEADER: str(credentials["botToken"])}
        answer = await sandbox_bot_inbound(ctx, user, simulator=self.title, headers=bot)
        return SandboxWritten(
            user_id=str(answer.get("userId", "")), message_token=str(answer.get("messageId", ""))
        )
