"""Properties of phone normalisation (api.md §1) over real numbers of every region phonenumbers knows.

tests/kit/test_phone.py has the worked examples; these hold for whole families of inputs: every way of
writing a valid number gives its E.164 digits, the answer reads back unchanged, and anything else is a
ValueError (the API turns it into a 400 naming `phone`), never another exception.
"""

from __future__ import annotations

import re

import phonenumbers
import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from openmmp.kit.phone import is_region, normalise_phone

Format = phonenumbers.PhoneNumberFormat
E164_DIGITS = re.compile(r"[1-9][0-9]{6,14}")
# Regions with an example number per type: the seeds from which valid numbers are made.
SEEDS = [
    (region, number)
    for region in sorted(phonenumbers.SUPPORTED_REGIONS)
    for kind in (phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE)
    if (number := phonenumbers.example_number_for_type(region, kind)) is not None
]
REGIONS = sorted({region for region, _ in SEEDS})
SEPARATORS = [" ", "-", ".", "(", ")", "\t", "\u00a0"]


def e164_digits(number: phonenumbers.PhoneNumber) -> str:
    return phonenumbers.format_number(number, Format.E164)[1:]


@st.composite
def valid_numbers(draw: st.DrawFn) -> tuple[str, phonenumbers.PhoneNumber]:
    """(region, number): a valid number of that region, an example number with other last digits."""
    region, seed = draw(st.sampled_from(SEEDS))
    national = str(seed.national_number)
    tail = draw(st.integers(0, 999))
    digits = national[:-3] + f"{tail:03d}" if len(national) > 3 else national
    number = phonenumbers.parse(f"+{seed.country_code}{digits}")
    assume(phonenumbers.is_valid_number(number) and phonenumbers.region_code_for_number(number) == region)
    return region, number


@st.composite
def scattered(draw: st.DrawFn, text: str) -> str:
    """`text` with separators strewn between its characters and whitespace around it."""
    between = draw(st.lists(st.sampled_from(["", "", *SEPARATORS]), min_size=len(text), max_size=len(text)))
    spread = "".join(char + separator for char, separator in zip(text, between, strict=True))
    return draw(st.sampled_from(["", " ", "\n"])) + spread + draw(st.sampled_from(["", " "]))


def written_internationally(number: phonenumbers.PhoneNumber) -> st.SearchStrategy[str]:
    digits = e164_digits(number)
    forms = ["+" + digits, "00" + digits, phonenumbers.format_number(number, Format.INTERNATIONAL)]
    return st.sampled_from(forms).flatmap(lambda form: scattered(form) | st.just(form))


class TestValidNumbers:
    @settings(max_examples=300)
    @given(data=st.data(), picked=valid_numbers(), region=st.sampled_from([None, *REGIONS]))
    def test_any_international_writing_gives_the_e164_digits_whatever_the_default_region(
        self, data: st.DataObject, picked: tuple[str, phonenumbers.PhoneNumber], region: str | None
    ):
        _, number = picked
        raw = data.draw(written_internationally(number), label="raw")
        assert normalise_phone(raw, region) == e164_digits(number)

    @settings(max_examples=300)
    @given(picked=valid_numbers(), with_region=st.booleans())
    def test_e164_digits_without_plus_are_kept_with_no_region_or_their_own(
        self, picked: tuple[str, phonenumbers.PhoneNumber], with_region: bool
    ):
        region, number = picked
        digits = e164_digits(number)
        assert normalise_phone(digits, region if with_region else None) == digits

    @settings(max_examples=300)
    @given(data=st.data(), picked=valid_numbers())
    def test_a_national_writing_with_its_region_is_read_as_phonenumbers_reads_it(
        self, data: st.DataObject, picked: tuple[str, phonenumbers.PhoneNumber]
    ):
        region, number = picked
        national = phonenumbers.format_number(number, Format.NATIONAL)
        # Compared with phonenumbers' own reading: for a few regions (e.g. GA) it differs from `number`.
        expected = phonenumbers.parse(national, region)
        assume(phonenumbers.is_valid_number(expected))
        raw = data.draw(scattered(national) | st.just(national), label="raw")
        assert normalise_phone(raw, region) == e164_digits(expected)


@pytest.mark.parametrize(
    ("digits", "region"),
    [
        # The reading of these as national digits is valid too; before the fix they became 6262812345678 …
        ("62812345678", "ID"),
        ("4915123456789", "DE"),
        ("468123456", "SE"),
        ("38343201234", "XK"),
        ("85512345678", "KH"),
        ("84912345678", "VN"),
        ("66812345678", "TH"),
    ],
)
def test_e164_digits_of_the_default_regions_own_number_are_not_read_as_national(digits: str, region: str):
    assert normalise_phone(digits, region) == digits


@pytest.mark.parametrize(
    ("raw", "region", "expected"),
    [
        # National digits that are also valid international digits of another country stay national.
        ("2015550123", "US", "12015550123"),  # not Egypt's +20 1555 0123
        ("13812345678", "CN", "8613812345678"),  # not +1 381 …
        ("3211234567", "CO", "573211234567"),
    ],
)
def test_national_digits_that_also_read_as_a_foreign_number_stay_national(
    raw: str, region: str, expected: str
):
    assert normalise_phone(raw, region) == expected


class TestAnswers:
    @settings(max_examples=500)
    @given(
        raw=st.text(alphabet=st.sampled_from("0123456789+ -().\u00a0\u0660\u0661\uff10\uff11"), max_size=24)
        | st.text(max_size=30),
        region=st.sampled_from([None, *REGIONS]),
    )
    @example(raw="+" * 30, region=None)
    @example(raw="0" * 21, region="KH")
    @example(raw="+4920100000000000", region=None)  # valid to phonenumbers, but 16 digits
    @example(raw="20100000000000", region="DE")
    @example(raw="\u0665\u0665\u0665\u0661\u0662\u0663\u0664\u0665\u0666\u0667\u0668", region=None)
    def test_are_valid_e164_digits_that_read_back_unchanged_or_a_value_error_naming_the_phone(
        self, raw: str, region: str | None
    ):
        try:
            answer = normalise_phone(raw, region)
        except ValueError as exc:
            refusal = str(exc)
        else:
            refusal = ""
        if refusal:
            assert "phone" in refusal
            return
        assert E164_DIGITS.fullmatch(answer), answer
        parsed = phonenumbers.parse("+" + answer)
        assert phonenumbers.is_valid_number(parsed)
        assert normalise_phone(answer) == answer
        own_region = phonenumbers.region_code_for_number(parsed)
        assert normalise_phone(answer, own_region) == answer
        assert normalise_phone("+" + answer, region) == answer


@given(code=st.text(max_size=4))
def test_is_region_accepts_exactly_phonenumbers_regions_in_upper_case(code: str):
    assert is_region(code) == (code in phonenumbers.SUPPORTED_REGIONS)
