"""The registry: one entry per application, and nothing outside `providers/<name>/` names a provider."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from openmmp.providers.applications import Application
from openmmp.providers.registry import REGISTRY, Registry

SOURCE = Path(__file__).resolve().parents[2] / "src" / "openmmp"
# The registry itself (its list, the applications' own table) may name them.
REGISTRY_FILES = {("providers", "registry.py"), ("providers", "applications.py")}


class TestEveryApplicationHasOneEntry:
    @pytest.mark.parametrize("application", list(Application), ids=lambda a: a.name)
    def test_a_provider(self, application: Application):
        provider = REGISTRY.for_application(application)
        assert provider is REGISTRY.of(application)
        assert provider.application is application
        assert REGISTRY.credentials_model(application) is provider.credentials_model
        assert REGISTRY.sandbox_credentials(application)

    def test_an_application_left_out_fails_at_construction(self):
        left_out = REGISTRY.providers[0].application.name
        with pytest.raises(ValueError, match=f"without a provider: \\['{left_out}'\\]"):
            Registry(providers=REGISTRY.providers[1:])

    def test_an_application_listed_twice_fails_at_construction(self):
        with pytest.raises(ValueError, match="twice"):
            Registry(providers=[*REGISTRY.providers, REGISTRY.providers[0]])

    def test_a_number_that_is_no_application_has_no_provider(self):
        assert REGISTRY.for_application(999) is None
        assert REGISTRY.label(999) == "unknown"


def _provider_words() -> set[str]:
    words = {p.name for p in REGISTRY.providers} | {p.name.replace("-", "_") for p in REGISTRY.providers}
    return words | {p.title for p in REGISTRY.providers}


def _mentions(path: Path) -> list[str]:
    """Where a module names a provider or an application member in code (docstrings and comments aside)."""
    tree = ast.parse(path.read_text())
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    words, members = _provider_words(), {a.name for a in Application}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            if node.value in words or node.value in members:
                found.append(f"{path.name}:{node.lineno}: {node.value!r}")
        elif isinstance(node, ast.Attribute) and node.attr in members:
            if isinstance(node.value, ast.Name) and node.value.id == "Application":
                found.append(f"{path.name}:{node.lineno}: Application.{node.attr}")
        elif isinstance(node, ast.ImportFrom) and node.module:
            parts = node.module.split(".")
            if parts[:2] == ["openmmp", "providers"] and len(parts) > 2 and parts[2] in words:
                found.append(f"{path.name}:{node.lineno}: imports {node.module}")
    return found


class TestNothingOutsideTheProviderPackagesKnowsOne:
    def test_no_module_outside_a_provider_package_names_a_provider(self):
        outside = [
            path
            for path in SOURCE.rglob("*.py")
            if not (
                path.is_relative_to(SOURCE / "providers")
                and path.relative_to(SOURCE / "providers").parts[0] in _provider_words()
            )
            and path.relative_to(SOURCE).parts[:2] not in REGISTRY_FILES
            and "migrations" not in path.relative_to(SOURCE).parts
        ]
        assert len(outside) > 50
        found = [mention for path in outside for mention in _mentions(path)]
        assert found == []

    def test_the_check_sees_a_branch_on_a_provider(self, tmp_path: Path):
        module = tmp_path / "branchy.py"
        module.write_text(
            '"""Mentions viber in a docstring, which is fine."""\n'
            "def plan(channel, provider):\n"
            "    if provider == 'viber-bot':\n"
            "        return 1\n"
            "    return channel.application_id == Application.VIBER\n"
        )
        assert _mentions(module) == ["branchy.py:3: 'viber-bot'", "branchy.py:5: Application.VIBER"]
