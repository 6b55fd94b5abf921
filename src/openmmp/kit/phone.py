"""Phone numbers on the wire: E.164 digits without the `+` (api.md §1)."""

from __future__ import annotations

import functools
import re

import phonenumbers

_REGIONS = frozenset(
    region
    for regions in phonenumbers.COUNTRY_CODE_TO_REGION_CODE.values()
    for region in regions
    if region != "001"
)
_SEPARATORS = re.compile(r"[\s\-().]")
_E164_MAX_DIGITS = 15


def is_region(code: str) -> bool:
    """True for an ISO 3166-1 alpha-2 country code phonenumbers knows (upper case)."""
    return code in _REGIONS


@functools.lru_cache(maxsize=65_536)
def normalise_phone(raw: str, default_region: str | None = None) -> str:
    """E.164 digits without `+` for a number typed with `+`, spaces or dashes, or national with a region.

    Raises ValueError with a human message when the number is not a valid one. Remembers the last 65,536
    answers: parsing costs a send more than its SQL, and OTP and campaign traffic repeats numbers.
    """
    text = _SEPARATORS.sub("", raw.strip())
    if not text:
        raise ValueError("phone number is empty")
    if len(text) > 20:
        raise ValueError("phone number is too long")
    if text.startswith("+"):
        found = _valid(text, None)
    elif text.startswith("00"):
        found = _valid("+" + text[2:], None)
    else:
        # International digits without the `+`, as the MMP API writes them (and as this function answers).
        international = _valid("+" + text, None)
        found = _of_region(text, international, default_region)
    if found is None:
        raise ValueError(f"{raw!r} is not a valid phone number")
    digits = phonenumbers.format_number(found, phonenumbers.PhoneNumberFormat.E164)[1:]
    if len(digits) > _E164_MAX_DIGITS:
        # phonenumbers takes a few national plans' longest numbers (Germany's 13-digit ones after +49);
        # E.164, and every upstream, stops at 15 digits.
        raise ValueError(f"{raw!r} is not a valid phone number: E.164 numbers have at most 15 digits")
    return digits


def _of_region(
    text: str, international: phonenumbers.PhoneNumber | None, default_region: str | None
) -> phonenumbers.PhoneNumber | None:
    """The number digits without `+` or `00` name: read as international (`international`, if valid) or
    as national digits of `default_region`."""
    if international is not None and _only_region_of(international) == default_region:
        # A number of the default region itself: what the comparison below decides, without parsing the
        # digits a second time (the common case: a channel's own country).
        return international
    national = _valid(text, default_region) if default_region else None
    # Both readings can be valid: 62812345678 with region ID is Indonesia's +62 812345678, and also
    # national digits 6262812345678. Digits naming a number of the region itself are that number, so
    # that an answer of this function reads back unchanged; otherwise the national reading wins.
    if international is not None and (
        national is None or phonenumbers.region_code_for_number(international) == default_region
    ):
        return international
    return national


def _only_region_of(number: phonenumbers.PhoneNumber) -> str | None:
    """The region of a country calling code that has exactly one (855 → KH); None for a shared code
    (+1, +7, +44, ...), whose region only a full lookup tells."""
    if number.country_code is None:
        return None
    regions = phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(number.country_code, ())
    return regions[0] if len(regions) == 1 else None


def _valid(number: str, region: str | None) -> phonenumbers.PhoneNumber | None:
    try:
        parsed = phonenumbers.parse(number, region)
    except phonenumbers.NumberParseException:
        return None
    return parsed if phonenumbers.is_valid_number(parsed) else None


@functools.lru_cache(maxsize=4096)
def _region_of_code(code: int) -> str:
    regions = phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(code)
    return regions[0] if regions and regions[0] != "001" else ""


def country_of(digits: str) -> str:
    """The ISO country of E.164 digits, from their country calling code alone (the first country of a
    shared code: US for +1); "" when none is known. Costs dictionary lookups, not a parse: billing
    exports call it for every message."""
    for length in (1, 2, 3):
        code = digits[:length]
        if code.isdigit() and int(code) in phonenumbers.COUNTRY_CODE_TO_REGION_CODE:
            return _region_of_code(int(code))
    return ""
