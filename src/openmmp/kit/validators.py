"""Reusable field types for request schemas, each with a clear message for the 400 it causes."""

from __future__ import annotations

import re
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import AfterValidator, Field

from openmmp.kit.phone import is_region, normalise_phone

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def _email(value: str) -> str:
    value = value.strip()
    if not _EMAIL.match(value):
        raise ValueError("not a valid e-mail address")
    return value


# An address SMTP takes as it is: a dot-atom local part and a domain of ASCII labels (no quoting, no
# internationalised addresses), so nothing in it can end a command or a header early.
_MAILBOX = re.compile(
    r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)+$"
)


def mailbox(value: str) -> str:
    """`value` as OpenMMP sends to it: stripped, the domain in lower case. ValueError when it is no
    plain ASCII address (`name@example.com`) of at most 200 characters."""
    value = value.strip()
    if len(value) > 200 or not _MAILBOX.match(value):
        raise ValueError(
            "not a plain e-mail address such as name@example.com (ASCII, at most 200 characters)"
        )
    local, _, domain = value.rpartition("@")
    return f"{local}@{domain.lower()}"


def _country(value: str) -> str:
    value = value.strip().upper()
    if not is_region(value):
        raise ValueError("not an ISO 3166-1 alpha-2 country code, e.g. KH")
    return value


def _phone(value: str) -> str:
    return normalise_phone(value)


def http_url(value: str) -> str:
    """`value` (stripped) when it is an absolute http(s) URL; ValueError otherwise."""
    value = value.strip()
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an absolute http:// or https:// URL")
    return value


Email = Annotated[str, Field(max_length=320), AfterValidator(_email)]
Mailbox = Annotated[str, Field(max_length=320), AfterValidator(mailbox)]
"""An address a message is sent to (see `mailbox`)."""
Country = Annotated[str, Field(min_length=2, max_length=2), AfterValidator(_country)]
Phone = Annotated[str, Field(max_length=32), AfterValidator(_phone)]
HttpUrl = Annotated[str, Field(max_length=2000), AfterValidator(http_url)]
