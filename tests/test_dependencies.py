"""Every runtime dependency pyproject.toml declares is used by the package (none installed for nothing)."""

from __future__ import annotations

import re
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _declared() -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [
        re.split(r"[\[<>=;\s]", dependency, maxsplit=1)[0].lower() for dependency in project["dependencies"]
    ]


def test_every_declared_runtime_dependency_is_imported_or_loaded_by_the_package():
    modules_of: dict[str, set[str]] = {}
    for module, distributions in packages_distributions().items():
        for distribution in distributions:
            modules_of.setdefault(distribution.lower().replace("_", "-"), set()).add(module)
    source = "\n".join(path.read_text() for path in (ROOT / "src" / "openmmp").rglob("*.py"))
    unused = []
    for name in _declared():
        modules = modules_of.get(name.replace("_", "-"), set())
        assert modules, f"{name} is declared but not installed"
        # An import, or a module loaded by name (e.g. package resources).
        if not any(re.search(rf"(^\s*(from|import) {m}\b)|[\"']{m}[.\"']", source, re.M) for m in modules):
            unused.append(name)
    assert unused == []
