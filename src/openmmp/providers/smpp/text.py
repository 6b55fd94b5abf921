"""Text of an SMS: GSM 03.38 (7-bit default alphabet) when every character has a septet, else UCS-2,
split into concatenated parts with a user data header when it does not fit one message.

GSM-7 goes unpacked, one septet per octet (`data_coding` 0, the SMSC default alphabet): 160 septets in
one message, 153 per part of a long one; the extension table's characters (€, [, ], ...) take two
septets, and an escape is never split from its character. UCS-2 (`data_coding` 8) is UTF-16 big-endian:
70 code units in one message, 67 per part, a surrogate pair never split. Billing counts the parts.
"""

from __future__ import annotations

from dataclasses import dataclass

GSM7 = 0x00
UCS2 = 0x08
UDHI = 0x40
"""esm_class bit: short_message starts with a user data header."""

_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_ESCAPE = 0x1B
_EXTENSION = {
    "\f": 0x0A,
    "^": 0x14,
    "{": 0x28,
    "}": 0x29,
    "\\": 0x2F,
    "[": 0x3C,
    "~": 0x3D,
    "]": 0x3E,
    "|": 0x40,
}
_EXTENSION["€"] = 0x65
_SEPTETS: dict[str, bytes] = {ch: bytes([i]) for i, ch in enumerate(_BASIC) if i != _ESCAPE}
_SEPTETS.update({ch: bytes([_ESCAPE, code]) for ch, code in _EXTENSION.items()})
_CHARACTERS = {value: ch for ch, value in _SEPTETS.items()}

GSM7_SINGLE, GSM7_PART = 160, 153
UCS2_SINGLE, UCS2_PART = 70, 67
MAX_PARTS = 255


class TextTooLong(ValueError):
    """More than 255 parts: no phone can put it together again."""


@dataclass(frozen=True, slots=True)
class Encoded:
    """An SMS ready for submit_sm: each part's short_message, its data_coding and esm_class."""

    data_coding: int
    esm_class: int
    parts: tuple[bytes, ...]

    @property
    def segments(self) -> int:
        return len(self.parts)


def is_gsm7(text: str) -> bool:
    """True when every character of `text` has a GSM 03.38 septet (basic or extension table)."""
    return all(ch in _SEPTETS for ch in text)


def encode_gsm7(text: str) -> bytes:
    """Unpacked septets, one per octet; the extension table's characters escaped. KeyError otherwise."""
    return b"".join(_SEPTETS[ch] for ch in text)


def decode_gsm7(data: bytes) -> str:
    """Text of unpacked septets; an unknown escape reads as its character of the basic table."""
    out: list[str] = []
    escaped = False
    for value in data:
        if escaped:
            out.append(_CHARACTERS.get(bytes([_ESCAPE, value]), _BASIC[value & 0x7F]))
            escaped = False
        elif value == _ESCAPE:
            escaped = True
        else:
            out.append(_BASIC[value & 0x7F])
    return "".join(out)


def decode(data: bytes, data_coding: int) -> str:
    """The text of a short_message (a mobile-originated message or a receipt) by its data_coding."""
    if data_coding == UCS2:
        return data.decode("utf-16-be", errors="replace")
    if data_coding in (0x01, 0x03):  # IA5 (ASCII) and ISO-8859-1
        return data.decode("latin-1")
    return decode_gsm7(data)


def encode(text: str, reference: int) -> Encoded:
    """`text` as one message or as concatenated parts numbered under `reference` (0-255).

    Raises TextTooLong beyond 255 parts.
    """
    if is_gsm7(text):
        units = [_SEPTETS[ch] for ch in text]
        coding, single, part = GSM7, GSM7_SINGLE, GSM7_PART
    else:
        utf16 = text.encode("utf-16-be")
        units = _utf16_units(utf16)
        coding, single, part = UCS2, UCS2_SINGLE, UCS2_PART
    width = sum(len(u) for u in units) if coding == GSM7 else sum(len(u) // 2 for u in units)
    if width <= single:
        return Encoded(coding, 0, (b"".join(units),))
    chunks = _chunks(units, part, coding)
    if len(chunks) > MAX_PARTS:
        raise TextTooLong(f"{len(chunks)} parts; at most {MAX_PARTS}")
    total = len(chunks)
    parts = tuple(
        bytes([0x05, 0x00, 0x03, reference & 0xFF, total, number]) + chunk
        for number, chunk in enumerate(chunks, start=1)
    )
    return Encoded(coding, UDHI, parts)


@dataclass(frozen=True, slots=True)
class Part:
    """One part of a concatenated message, from its user data header: the message's `reference` (the
    same for every part), how many parts there are and which one this is (from 1)."""

    reference: int
    total: int
    number: int
    payload: bytes


def split_udh(data: bytes) -> Part | None:
    """The concatenation header of a short_message sent with UDHI (8-bit or 16-bit reference) and what
    follows it; None when the header holds no valid concatenation element."""
    if not data or data[0] + 1 > len(data):
        return None
    header, payload = data[1 : data[0] + 1], data[data[0] + 1 :]
    index = 0
    while index + 2 <= len(header):
        element, size = header[index], header[index + 1]
        value = header[index + 2 : index + 2 + size]
        if len(value) == size:
            if element == 0x00 and size == 3:
                reference, total, number = value[0], value[1], value[2]
            elif element == 0x08 and size == 4:
                reference, total, number = (value[0] << 8) | value[1], value[2], value[3]
            else:
                index += 2 + size
                continue
            if 1 <= number <= total:
                return Part(reference, total, number, payload)
            return None
        index += 2 + size
    return None


def _utf16_units(data: bytes) -> list[bytes]:
    """UTF-16-BE split into characters: two octets each, four for a surrogate pair."""
    units: list[bytes] = []
    index = 0
    while index < len(data):
        size = 4 if 0xD8 <= data[index] <= 0xDB else 2
        units.append(data[index : index + size])
        index += size
    return units


def _chunks(units: list[bytes], limit: int, coding: int) -> list[bytes]:
    """Whole characters packed into chunks of at most `limit` septets (GSM-7) or code units (UCS-2)."""
    chunks: list[bytes] = []
    current: list[bytes] = []
    used = 0
    for unit in units:
        size = len(unit) if coding == GSM7 else len(unit) // 2
        if used + size > limit:
            chunks.append(b"".join(current))
            current, used = [], 0
        current.append(unit)
        used += size
    if current:
        chunks.append(b"".join(current))
    return chunks
