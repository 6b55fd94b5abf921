"""SMS text: GSM 03.38 or UCS-2 by content, concatenated parts that never split a character."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from openmmp.providers.smpp import text
from openmmp.providers.smpp.text import GSM7, UCS2, UDHI, TextTooLong, decode, encode


def test_the_basic_table_has_128_septets_and_the_escape() -> None:
    assert len(text._BASIC) == 128
    assert text._BASIC[0x1B] == "\x1b"
    assert text.encode_gsm7("@£$") == b"\x00\x01\x02"
    assert text.encode_gsm7("€[]") == b"\x1be\x1b<\x1b>"


def test_gsm7_text_of_160_septets_is_one_message_without_a_header() -> None:
    encoded = encode("a" * 160, reference=9)
    assert (encoded.data_coding, encoded.esm_class, encoded.segments) == (GSM7, 0, 1)
    assert encoded.parts[0] == b"a" * 160


def test_the_161st_septet_makes_two_parts_of_153_and_8_with_a_concatenation_header() -> None:
    encoded = encode("b" * 161, reference=0x2A)
    assert (encoded.esm_class, encoded.segments) == (UDHI, 2)
    assert encoded.parts[0] == bytes([5, 0, 3, 0x2A, 2, 1]) + b"b" * 153
    assert encoded.parts[1] == bytes([5, 0, 3, 0x2A, 2, 2]) + b"b" * 8


def test_extension_characters_count_two_septets_and_an_escape_stays_with_its_character() -> None:
    assert encode("€" * 80, reference=1).segments == 1  # 160 septets
    encoded = encode("x" + "€" * 80, reference=1)  # 161 septets
    assert encoded.segments == 2
    first = encoded.parts[0][6:]
    assert len(first) == 153 and first[-1] != 0x1B  # 1 + 76 pairs: the 77th pair goes on
    assert decode(b"".join(p[6:] for p in encoded.parts), GSM7) == "x" + "€" * 80


def test_text_outside_gsm7_is_ucs2_70_in_one_message_67_per_part() -> None:
    assert encode("Ж" * 70, reference=1).parts == (("Ж" * 70).encode("utf-16-be"),)
    encoded = encode("Ж" * 71, reference=3)
    assert (encoded.data_coding, encoded.segments) == (UCS2, 2)
    assert [len(p) - 6 for p in encoded.parts] == [134, 8]


def test_a_surrogate_pair_is_never_split_between_parts() -> None:
    encoded = encode("a" * 66 + "😀" + "b", reference=4)  # 66 + 2 + 1 = 69 code units ... of 67 per part
    assert encoded.segments == 1
    encoded = encode("a" * 66 + "😀" * 3, reference=4)  # 72 units: the first emoji does not fit part 1
    assert encoded.segments == 2
    assert len(encoded.parts[0]) - 6 == 132
    assert decode(b"".join(p[6:] for p in encoded.parts), UCS2) == "a" * 66 + "😀" * 3


def test_more_than_255_parts_is_refused() -> None:
    with pytest.raises(TextTooLong):
        encode("c" * (153 * 255 + 1), reference=5)
    assert encode("c" * (153 * 255), reference=5).segments == 255


@given(st.text(max_size=700))
def test_every_text_reads_back_from_its_parts(value: str) -> None:
    encoded = encode(value, reference=7)
    header = 6 if encoded.esm_class & UDHI else 0
    joined = b"".join(part[header:] for part in encoded.parts)
    if encoded.data_coding == GSM7:
        assert decode(joined, GSM7) == value
        assert all(len(part) - header <= (153 if header else 160) for part in encoded.parts)
    else:
        assert joined == value.encode("utf-16-be", errors="surrogatepass")
        assert all(len(part) - header <= (134 if header else 140) for part in encoded.parts)
