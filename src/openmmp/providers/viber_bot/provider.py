"""The Viber REST Bot API on the provider contract (providers.md §1).

Bots reach their subscribers by Viber user id (a conversation); a user who shares their phone can also be
addressed by it. Messages with the same rendered content go out as one `broadcast_message` of up to 300
receivers. The Bot API has no idempotency key: a send repeated after a crash can reach the user twice.
Callbacks are signed with the bot's own auth token; set-up is `set_webhook` to our callback URL.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import orjson
from pydantic import Field

from openmmp.kit.http import HttpClient
from openmmp.providers.applications import Application
from openmmp.providers.base import (
    Addressing,
    CallbackEvent,
    CallbackRequest,
    Credentials,
    Link,
    Outcomes,
    Outgoing,
    Provider,
    ProviderContext,
    ProviderError,
    RateLimit,
    SandboxUser,
    SandboxWritten,
    SendOk,
    SendUnit,
)
from openmmp.providers.simulation import sandbox_bot_inbound
from openmmp.providers.viber_bot import callbacks
from openmmp.providers.viber_bot.client import (
    BROADCAST_MAX_RECEIVERS,
    ViberBotClient,
    check_sender_name,
    to_viber_bot_payload,
)

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from openmmp.providers.simulation import SimulatorConfig

INVALID_URL = 1


class ViberBotCredentials(Credentials):
    identity_fields = ("auth_token",)  # the token is the bot: a second channel on it would take it over

    auth_token: str = Field(min_length=1, max_length=4096)
    sender_name: str = Field(min_length=1, max_length=28)
    sender_avatar: str | None = Field(default=None, max_length=2000)


class ViberBotProvider(Provider):
    name = "viber-bot"
    application = Application.VIBER_BOT
    title = "Viber Bot"
    message_types = frozenset({"text", "rich_card", "picture", "video", "file"})
    rate_limit = RateLimit(requests=500, window_seconds=10.0, per="bot")
    idempotent = False
    addressing = Addressing.CONVERSATION
    credentials_model = ViberBotCredentials
    callback_auth = "`X-Viber-Content-Signature`: hex HMAC-SHA256 of the raw body, keyed by the bot's token."
    sandbox_credentials = {"authToken": "demo-viber-bot-token", "senderName": "OpenMMP Demo"}
    default_base_url = "https://chatapi.viber.com"

    def check_message(self, content: Mapping[str, Any], credentials: Mapping[str, Any]) -> None:
        check_sender_name(str(credentials.get("senderName", "")))
        to_viber_bot_payload(content)

    def needs_setup(self, *, sandbox: bool) -> bool:
        return True

    async def set_up(
        self, ctx: ProviderContext, *, callback_url: str, credentials: Mapping[str, Any]
    ) -> None:
        try:
            await ViberBotClient(ctx.http, ctx.base_url).set_webhook(
                auth_token=credentials["authToken"], url=callback_url
            )
        except ProviderError as exc:
            if exc.code == f"VIBER_BOT_{INVALID_URL}":
                # Viber pings our callback URL before it answers; while this platform is still starting
                # (set-up re-runs at every start) the ping fails. Worth another try, not a rejection.
                raise ProviderError(exc.code, exc.message, retryable=True) from exc
            raise

    def plan(
        self,
        ctx: ProviderContext,
        credentials: Mapping[str, Any],
        outgoing: Sequence[Outgoing],
        link: Link | None = None,
    ) -> list[SendUnit]:
        client = ViberBotClient(ctx.http, ctx.base_url)
        auth = {
            "auth_token": credentials["authToken"],
            "sender_name": credentials["senderName"],
            "sender_avatar": credentials.get("senderAvatar"),
        }
        groups: dict[bytes, list[Outgoing]] = {}
        for message in outgoing:
            groups.setdefault(orjson.dumps(message.content, option=orjson.OPT_SORT_KEYS), []).append(message)
        units = []
        for group in groups.values():
            for chunk in _distinct_chunks(group):
                if len(chunk) == 1:

                    async def single(message: Outgoing = chunk[0]) -> Outcomes:
                        try:
                            ok = await client.send_message(
                                receiver=message.recipient, message=message.content, **auth
                            )
                        except ProviderError as exc:
                            return {message.key: exc}
                        return {message.key: ok}

                    units.append(SendUnit((chunk[0].key,), single))
                else:

                    async def broadcast(chunk: list[Outgoing] = chunk) -> Outcomes:
                        try:
                            result = await client.broadcast_message(
                                receivers=[m.recipient for m in chunk], message=chunk[0].content, **auth
                            )
                        except ProviderError as exc:
                            return {m.key: exc for m in chunk}
                        ok = SendOk(result.provider_message_id)
                        return {m.key: result.failed.get(m.recipient, ok) for m in chunk}

                    units.append(SendUnit(tuple(m.key for m in chunk), broadcast))
        return units

    def verify(self, ctx: ProviderContext, request: CallbackRequest, credentials: Mapping[str, Any]) -> bool:
        token = str(credentials.get("authToken", ""))
        signature = request.header(callbacks.SIGNATURE_HEADER)
        return bool(token) and callbacks.verify_signature(request.body, signature, token)

    def parse(self, body: bytes) -> Sequence[CallbackEvent]:
        return [callbacks.parse_callback(body)]

    def simulator(self, config: SimulatorConfig, http: HttpClient) -> Starlette:
        from openmmp.providers.viber_bot.simulator import create_viber_bot_simulator

        return create_viber_bot_simulator(config, http)

    async def sandbox_inbound(
        self, ctx: ProviderContext, credentials: Mapping[str, Any], user: SandboxUser
    ) -> SandboxWritten:
        auth = {"X-Viber-Auth-Token": str(credentials["authToken"])}
        answer = await sandbox_bot_inbound(ctx, user, simulator=self.title, headers=auth)
        return SandboxWritten(
            user_id=str(answer.get("userId", "")), message_token=str(answer.get("messageToken", ""))
        )


def _distinct_chunks(group: list[Outgoing]) -> list[list[Outgoing]]:
    """Chunks of at most 300 with no receiver twice: callbacks tell a broadcast's messages apart by user."""
    chunks: list[tuple[list[Outgoing], set[str]]] = []
    for message in group:
        for chunk, receivers in chunks:
            if len(chunk) < BROADCAST_MAX_RECEIVERS and message.recipient not in receivers:
                chunk.append(message)
                receivers.add(message.recipient)
                break
        else:
            chunks.append(([message], {message.recipient}))
    return [chunk for chunk, _ in chunks]
