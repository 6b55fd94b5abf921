"""The applications of the MMP API (api.md §2): what a channel is, and how its end users are reached."""

from __future__ import annotations

from enum import IntEnum


class Application(IntEnum):
    """`applicationId` values (api.md §2)."""

    VIBER = 1
    RCS = 2
    SMS = 3
    APPLE = 4
    TELEGRAM = 5
    FACEBOOK = 6
    ZALO = 7
    ZALO_ZNS = 8
    VIBER_BOT = 10
    WHATSAPP = 11
    MMS = 15
    EMAIL = 24


class ChannelType(IntEnum):
    """`type` of a channel (api.md §2): an official account addressed by phone, or a bot."""

    OA = 1
    BOT = 2


BOT_APPLICATIONS = frozenset(
    {Application.APPLE, Application.TELEGRAM, Application.FACEBOOK, Application.ZALO, Application.VIBER_BOT}
)
"""The applications api.md §2 calls BOT; every other one is an OA."""


def channel_type(application: int) -> ChannelType:
    return ChannelType.BOT if application in BOT_APPLICATIONS else ChannelType.OA
