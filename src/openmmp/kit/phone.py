"""Phone numbers on the wire: E.164 digits without the `+` (api.md §1)."""

from __future__ import annotations

import re

import phonenumbers

_REGIONS = frozenset(
    region
    for regions in phonenumbers.COUNTRY_CODE_TO_REGION_CODE.values()
    for region in regions
    if region != "001"
)
_SEPARATORS = re.compile(r"[\s\-().]")


def is_region(code: str) -> bool:
    """True for an ISO 3166-1 alpha-2 country code phonenumbers knows (upper case)."""
    return code in _REGIONS


def normalise_phone(raw: str, default_region: str | None = None) -> str:
    """E.164 digits without `+` for a number typed with `+`, spaces or dashes, or national with a region.

    Raises ValueError with a human message when the number is not a valid one.
    """
    text = _SEPARATORS.sub("", raw.strip())
    if not text:
        raise ValueError("phone number is empty")
    if len(text) > 20:
        raise ValueError("phone number is too long")
    candidates: list[tuple[str, str | None]] = []
    if text.startswith("+"):
        candidates.append((text, None))
    elif text.startswith("00"):
        candidates.append(("+" + text[2:], None))
    else:
        if default_region:
            candidates.append((text, default_region))
        # International digits without the `+`, as the MMP API writes them.
        candidates.append(("+" + text, None))
    for number, region in candidates:
        try:
            parsed = phonenumbers.parse(number, region)
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_valid_number(parsed):
            return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)[1:]
    raise ValueError(f"{raw!r} is not a valid phone number")
