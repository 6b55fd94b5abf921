"""How a channel's pending messages become upstream requests, one `Unit` per request.

A unit is what one rate-limit token buys: one Viber BM `send_message`, one Viber Bot `send_message`, or
one Viber Bot `broadcast_message` for up to 300 receivers of the same rendered content.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from openmmp.kit.time import now_ms
from openmmp.models import Channel, Message
from openmmp.models.channel import Application
from openmmp.providers.base import ProviderError, SendOk
from openmmp.providers.viber.client import TTL_MAX_S, TTL_MIN_S, ViberClient
from openmmp.providers.viber_bot.client import BROADCAST_MAX_RECEIVERS, ViberBotClient

Results = dict[int, SendOk | ProviderError]


@dataclass
class Unit:
    channel: Channel
    messages: list[Message]
    call: Callable[[], Awaitable[Results]]


@dataclass(frozen=True)
class Clients:
    viber: ViberClient
    viber_bot: ViberBotClient


def _all(messages: Sequence[Message], outcome: SendOk | ProviderError) -> Results:
    return {m.id: outcome for m in messages}


def _viber_units(
    clients: Clients, channel: Channel, credentials: Mapping[str, Any], messages: list[Message]
) -> list[Unit]:
    units = []
    for message in messages:

        async def call(message: Message = message) -> Results:
            ttl = None
            if message.expire_at is not None:
                ttl = max(TTL_MIN_S, min(TTL_MAX_S, (message.expire_at - now_ms()) // 1000))
            try:
                ok = await clients.viber.send_message(
                    service_id=int(credentials["serviceId"]),
                    dest=message.recipient,
                    seq=message.id,  # the idempotency key: a retry repeats it, upstream collapses repeats
                    label=credentials.get("label"),
                    message=message.content,
                    ttl=ttl,
                )
            except ProviderError as exc:
                return {message.id: exc}
            return {message.id: ok}

        units.append(Unit(channel, [message], call))
    return units


def _viber_bot_units(
    clients: Clients, channel: Channel, credentials: Mapping[str, Any], messages: list[Message]
) -> list[Unit]:
    auth = {
        "auth_token": credentials["authToken"],
        "sender_name": credentials["senderName"],
        "sender_avatar": credentials.get("senderAvatar"),
    }
    groups: dict[bytes, list[Message]] = {}
    for message in messages:
        groups.setdefault(orjson.dumps(message.content, option=orjson.OPT_SORT_KEYS), []).append(message)
    units = []
    for group in groups.values():
        for chunk in _distinct_chunks(group):
            if len(chunk) == 1:

                async def single(message: Message = chunk[0]) -> Results:
                    try:
                        ok = await clients.viber_bot.send_message(
                            receiver=message.recipient, message=message.content, **auth
                        )
                    except ProviderError as exc:
                        return {message.id: exc}
                    return {message.id: ok}

                units.append(Unit(channel, chunk, single))
            else:

                async def broadcast(chunk: list[Message] = chunk) -> Results:
                    by_receiver = {m.recipient: m for m in chunk}
                    try:
                        result = await clients.viber_bot.broadcast_message(
                            receivers=list(by_receiver), message=chunk[0].content, **auth
                        )
                    except ProviderError as exc:
                        return _all(chunk, exc)
                    ok = SendOk(result.provider_message_id)
                    return {m.id: result.failed.get(m.recipient, ok) for m in chunk}

                units.append(Unit(channel, chunk, broadcast))
    return units


def _distinct_chunks(group: list[Message]) -> list[list[Message]]:
    """Chunks of at most 300 with no receiver twice: callbacks tell a broadcast's messages apart by user."""
    chunks: list[tuple[list[Message], set[str]]] = []
    for message in group:
        for chunk, receivers in chunks:
            if len(chunk) < BROADCAST_MAX_RECEIVERS and message.recipient not in receivers:
                chunk.append(message)
                receivers.add(message.recipient)
                break
        else:
            chunks.append(([message], {message.recipient}))
    return [chunk for chunk, _ in chunks]


def plan(
    clients: Clients, channel: Channel, credentials: Mapping[str, Any], messages: list[Message]
) -> list[Unit]:
    """The upstream requests that send `messages` on `channel`."""
    application = Application(channel.application_id)
    if application == Application.VIBER:
        return _viber_units(clients, channel, credentials, messages)
    if application == Application.VIBER_BOT:
        return _viber_bot_units(clients, channel, credentials, messages)
    error = ProviderError("NOT_SUPPORTED", f"sending on {application.name} is not available", retryable=False)

    async def refuse() -> Results:
        return _all(messages, error)

    return [Unit(channel, messages, refuse)]
