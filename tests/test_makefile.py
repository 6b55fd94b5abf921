"""`make run` as the README tells a new user to run it: the port comes from OPENMMP_PORT or PORT=."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _serve_line(*args: str, **env: str) -> str:
    """The `openmmp serve` command `make run` would run (make -n prints it without running anything)."""
    clean = {
        k: v for k, v in os.environ.items() if not k.startswith("OPENMMP_") and k not in ("HOST", "PORT")
    }
    done = subprocess.run(
        ["make", "-n", "run", *args],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    [line] = [line for line in done.stdout.splitlines() if "openmmp serve" in line]
    return line


@pytest.mark.parametrize("port", ["9123"])
def test_openmmp_port_is_left_to_the_settings(port: str):
    line = _serve_line(OPENMMP_PORT=port)
    assert "--port" not in line  # so `openmmp serve` reads OPENMMP_PORT
    assert "--host" not in line
    assert "--sandbox" in line


def test_a_port_given_to_make_wins():
    assert _serve_line("PORT=9001").split()[-2:] == ["--port", "9001"]
