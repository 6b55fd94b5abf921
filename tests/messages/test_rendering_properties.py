"""Properties of `{{name}}` rendering: a template is its literal text with each placeholder replaced once.

Values are inserted as they are (no second pass, no regex escapes, no Unicode normalisation), the
structure of the message is kept, and missing values are a 400 naming each `params.<name>`.
"""

from __future__ import annotations

import copy
import unicodedata
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from openmmp.errors import ErrorCode, Invalid
from openmmp.messages.rendering import PLACEHOLDER, placeholders, render

NAMES = st.from_regex(r"[A-Za-z0-9_.\-]{1,12}", fullmatch=True)
PADDING = st.sampled_from(["", " ", "  ", "\t"])
# Literal text between placeholders: anything but braces (see test_braces_that_are_no_placeholder_...).
LITERALS = st.text(st.characters(blacklist_characters="{}", blacklist_categories=("Cs",)), max_size=12)
# Values that look like what a renderer could get wrong: placeholders, regex escapes, combining marks.
TRICKY = st.sampled_from(
    [
        "{{name}}",
        "{{ other }}",
        r"\1",
        r"\g<0>",
        "$1",
        "%s",
        "{}",
        "\\",
        "e\u0301",
        "\u00e9",
        "👩\u200d💻",
        "",
    ]
)
VALUES = st.one_of(st.text(max_size=20), TRICKY)
SCALARS = st.one_of(
    st.integers(-(10**12), 10**12), st.booleans(), st.floats(allow_nan=False, allow_infinity=False)
)


@st.composite
def templates(draw: st.DrawFn) -> tuple[str, list[str | tuple[str]]]:
    """A template and its parts: literal strings and 1-tuples naming a placeholder."""
    parts: list[str | tuple[str]] = []
    text = ""
    for _ in range(draw(st.integers(0, 5))):
        literal, name = draw(LITERALS), draw(NAMES)
        text += literal + "{{" + draw(PADDING) + name + draw(PADDING) + "}}"
        parts += [literal, (name,)]
    tail = draw(LITERALS)
    return text + tail, [*parts, tail]


def expected_text(parts: list[str | tuple[str]], params: dict[str, str]) -> str:
    return "".join(params[part[0]] if isinstance(part, tuple) else part for part in parts)


class TestText:
    @settings(max_examples=300)
    @given(data=st.data(), template=templates())
    def test_each_placeholder_becomes_its_value_once_and_the_rest_is_kept(
        self, data: st.DataObject, template: tuple[str, list[str | tuple[str]]]
    ):
        text, parts = template
        names = {part[0] for part in parts if isinstance(part, tuple)}
        params = {name: data.draw(VALUES, label=name) for name in sorted(names)}
        extra = data.draw(st.dictionaries(NAMES, VALUES, max_size=2), label="extra")
        given_params = {**extra, **params}
        rendered = render({"type": "text", "message": text}, given_params)
        assert rendered == {"type": "text", "message": expected_text(parts, params)}

    @given(template=templates(), values=st.lists(SCALARS, min_size=5, max_size=5))
    def test_numbers_and_booleans_are_written_as_text(
        self, template: tuple[str, list[str | tuple[str]]], values: list[Any]
    ):
        text, parts = template
        names = sorted({part[0] for part in parts if isinstance(part, tuple)})
        params = dict(zip(names, values, strict=False))  # at most 5 names: each gets a value
        words = {n: ("true" if v is True else "false" if v is False else str(v)) for n, v in params.items()}
        assert render({"message": text}, params)["message"] == expected_text(parts, words)

    @given(text=st.text(max_size=40))
    def test_braces_that_are_no_placeholder_are_left_alone(self, text: str):
        if PLACEHOLDER.search(text):
            return
        assert render({"message": text}, {}) == {"message": text}

    @given(value=st.text(max_size=30))
    def test_values_are_not_normalised(self, value: str):
        for form in ("NFC", "NFD", "NFKC", "NFKD"):
            odd = unicodedata.normalize(form, value)
            assert render({"message": "«{{v}}»"}, {"v": odd})["message"] == f"«{odd}»"


JSON_LEAVES = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=15), TRICKY)
CONTENT = st.recursive(
    JSON_LEAVES,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=15,
)


def reference_fill(value: Any, params: dict[str, str]) -> Any:
    """What rendering must do, written the slow obvious way: strings only, keys untouched."""
    if isinstance(value, str):
        out, position = "", 0
        for match in PLACEHOLDER.finditer(value):
            out += value[position : match.start()] + params[match.group(1)]
            position = match.end()
        return out + value[position:]
    if isinstance(value, dict):
        return {key: reference_fill(item, params) for key, item in value.items()}
    if isinstance(value, list):
        return [reference_fill(item, params) for item in value]
    return value


def reference_names(value: Any) -> set[str]:
    if isinstance(value, str):
        return {match.group(1) for match in PLACEHOLDER.finditer(value)}
    children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else []
    return set().union(*(reference_names(child) for child in children))


class TestStructure:
    @settings(max_examples=200)
    @given(content=st.dictionaries(st.text(max_size=8), CONTENT, max_size=4), data=st.data())
    def test_only_string_values_change_keys_and_shape_stay_and_the_input_is_untouched(
        self, content: dict[str, Any], data: st.DataObject
    ):
        names = reference_names(content)
        assert placeholders(content) == names
        params = {name: data.draw(VALUES, label=name) for name in sorted(names)}
        before = copy.deepcopy(content)
        assert render(content, params) == reference_fill(content, params)
        assert content == before

    @settings(max_examples=200)
    @given(template=templates(), data=st.data())
    def test_missing_values_are_a_400_naming_each_param(
        self, template: tuple[str, list[str | tuple[str]]], data: st.DataObject
    ):
        text, parts = template
        names = sorted({part[0] for part in parts if isinstance(part, tuple)})
        if not names:
            return
        missing = data.draw(st.lists(st.sampled_from(names), min_size=1, unique=True), label="missing")
        params = {name: "x" for name in names if name not in missing}
        with pytest.raises(Invalid) as refused:
            render({"suggestions": [{"text": text}]}, params)
        assert refused.value.status_code == 400
        assert [(i.name, i.code) for i in refused.value.items] == [
            (f"params.{name}", ErrorCode.INVALID) for name in sorted(missing)
        ]
