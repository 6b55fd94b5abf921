"""Every setting an operator can give is in the README's Configuration table (none only in the code)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from openmmp.providers.registry import REGISTRY
from openmmp.settings import Settings

ROOT = Path(__file__).resolve().parents[1]


def _configuration_section() -> list[str]:
    text = (ROOT / "README.md").read_text()
    start = text.index("\n## Configuration\n")
    end = text.index("\n## ", start + 1)
    return text[start:end].splitlines()


def _variables() -> list[tuple[str, str]]:
    """(group prefix, field) of every setting, e.g. ("OPENMMP_DISPATCH__", "BATCH_SIZE")."""
    found: list[tuple[str, str]] = []
    for name, field in Settings.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            found += [(f"OPENMMP_{name.upper()}__", inner.upper()) for inner in annotation.model_fields]
        else:
            found.append(("OPENMMP_", name.upper()))
    return found


def _generic(field: str) -> str:
    """A field generated per provider, written once in the README: `VIBER_BOT_BASE_URL` → `{PROVIDER}_BASE_URL`."""
    for provider in sorted(REGISTRY.providers, key=lambda p: -len(p.name)):
        prefix = provider.name.replace("-", "_").upper() + "_"
        if field.startswith(prefix):
            return "{PROVIDER}_" + field.removeprefix(prefix)
    return field


def _documented(lines: list[str], group: str, field: str) -> bool:
    for spelling in {field, _generic(field)}:
        if any(f"{group}{spelling}`" in line for line in lines):
            return True
        # A row naming several fields of one group: `OPENMMP_DISPATCH__BATCH_SIZE`, `__CONCURRENCY`.
        if group != "OPENMMP_" and any(group in line and f"`__{spelling}`" in line for line in lines):
            return True
    return False


def test_every_setting_is_in_the_configuration_table():
    lines = _configuration_section()
    missing = [group + field for group, field in _variables() if not _documented(lines, group, field)]
    assert missing == []
