"""Time zones: IANA names checked on input, a country's zone, and daily quiet hours in a zone."""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

import phonenumbers
from phonenumbers import timezone as phone_zones
from pydantic import AfterValidator, Field

CLOCK = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")
"""A time of day, HH:MM on a 24-hour clock."""


def _known_zone(name: str) -> str:
    if name not in available_timezones():
        raise ValueError(f"{name!r} is not an IANA time zone (e.g. Asia/Phnom_Penh)")
    return name


TimeZoneName = Annotated[
    str, Field(min_length=1, max_length=64, examples=["Asia/Phnom_Penh"]), AfterValidator(_known_zone)
]
ClockTime = Annotated[str, Field(pattern=CLOCK.pattern, examples=["21:00"], description="HH:MM, 24-hour")]


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"{name!r} is not an IANA time zone") from exc


def country_zone(country: str) -> str | None:
    """The one time zone of `country`'s mobile numbers (KH → Asia/Phnom_Penh); None when it has several
    (RU) or none is known."""
    example = phonenumbers.example_number_for_type(country, phonenumbers.PhoneNumberType.MOBILE)
    if example is None:
        return None
    zones = [z for z in phone_zones.time_zones_for_number(example) if z != phone_zones.UNKNOWN_TIMEZONE]
    return zones[0] if len(zones) == 1 else None


def _clock(text: str) -> dt.time:
    hours, minutes = text.split(":")
    return dt.time(int(hours), int(minutes))


def quiet_until(start: str, end: str, zone_name: str, now_ms: int) -> int | None:
    """When the daily quiet hours from `start` to `end` (HH:MM in `zone_name`; 21:00–08:00 spans midnight)
    that hold `now_ms` end, in epoch ms; None when `now_ms` is outside them."""
    tz = zone(zone_name)
    now = dt.datetime.fromtimestamp(now_ms / 1000, tz)
    begin, finish = _clock(start), _clock(end)
    clock = now.time().replace(tzinfo=None)
    if begin == finish:
        return None
    if begin < finish:
        quiet = begin <= clock < finish
        day = now.date()
    else:
        quiet = clock >= begin or clock < finish
        day = now.date() + dt.timedelta(days=1) if clock >= begin else now.date()
    if not quiet:
        return None
    ends = dt.datetime.combine(day, finish, tz)
    return int(ends.timestamp() * 1000)


def local_time(text: str, zone_name: str) -> int:
    """Epoch ms of `text`, an ISO 8601 date and time: in `zone_name` unless it gives its own offset."""
    try:
        parsed = dt.datetime.fromisoformat(text)
    except ValueError as exc:
        raise ValueError(f"{text!r} is not an ISO 8601 date and time (2026-12-24T09:00:00)") from exc
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=zone(zone_name))
    return int(parsed.timestamp() * 1000)
