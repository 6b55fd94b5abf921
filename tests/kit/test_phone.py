import pytest
from hypothesis import given
from hypothesis import strategies as st

from openmmp.kit.phone import normalise_phone


@pytest.mark.parametrize(
    ("raw", "region", "expected"),
    [
        ("85512345678", None, "85512345678"),
        ("+855 12 345 678", None, "85512345678"),
        ("+855-12-345-678", None, "85512345678"),
        ("00855 12 345 678", None, "85512345678"),
        ("012 345 678", "KH", "85512345678"),
        ("0912 345 678", "VN", "84912345678"),
        ("(081) 234 5678", "TH", "66812345678"),
        ("85512345678", "VN", "85512345678"),
    ],
)
def test_valid_numbers_become_e164_digits(raw: str, region: str | None, expected: str):
    assert normalise_phone(raw, region) == expected


@pytest.mark.parametrize("raw", ["", "   ", "abc", "123", "+1", "012345678", "+855 12 345 678 999 999 999 9"])
def test_invalid_numbers_are_refused(raw: str):
    with pytest.raises(ValueError, match="phone"):
        normalise_phone(raw)


@given(st.text(max_size=40), st.sampled_from([None, "KH", "VN", "TH", "US"]))
def test_never_fails_other_than_value_error_and_output_is_digits(raw: str, region: str | None):
    try:
        result = normalise_phone(raw, region)
    except ValueError:
        return
    assert result.isdigit() and 8 <= len(result) <= 15
