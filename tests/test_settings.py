"""Configuration checks itself: settings that contradict each other stop the start with a clear message."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest
from pydantic import ValidationError

from openmmp.settings import Settings

CONTRADICTIONS: list[tuple[dict[str, Any], str]] = [
    ({"dispatch": {"poll_min_seconds": 2, "poll_max_seconds": 0.5}}, "OPENMMP_DISPATCH__POLL_MIN_SECONDS"),
    ({"dispatch": {"retry_base_seconds": 600}}, "OPENMMP_DISPATCH__RETRY_BASE_SECONDS"),
    ({"dispatch": {"max_limit_wait_seconds": 90}}, "OPENMMP_DISPATCH__MAX_LIMIT_WAIT_SECONDS"),
    ({"webhooks": {"poll_interval_min_s": 5}}, "OPENMMP_WEBHOOKS__POLL_INTERVAL_MIN_S"),
    ({"webhooks": {"timeout_seconds": 300}}, "OPENMMP_WEBHOOKS__TIMEOUT_SECONDS"),
    ({"webhooks": {"retry_schedule_s": [5, 0]}}, "OPENMMP_WEBHOOKS__RETRY_SCHEDULE_S"),
    ({"providers": {"timeout_seconds": 60}}, "OPENMMP_PROVIDERS__TIMEOUT_SECONDS"),
]


@pytest.mark.parametrize(("values", "named"), CONTRADICTIONS, ids=[n for _, n in CONTRADICTIONS])
def test_a_contradiction_is_refused_naming_the_settings(values: dict[str, Any], named: str):
    with pytest.raises(ValidationError, match=named):
        Settings(**values)


def test_the_defaults_are_consistent():
    Settings()


def test_the_cli_says_what_is_wrong_instead_of_a_traceback():
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENMMP_")}
    done = subprocess.run(
        [sys.executable, "-m", "openmmp.cli", "worker"],
        env={**env, "OPENMMP_DISPATCH__POLL_MIN_SECONDS": "3"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "configuration is not valid" in done.stderr
    assert "OPENMMP_DISPATCH__POLL_MIN_SECONDS (3.0) must not exceed" in done.stderr
    assert "Traceback" not in done.stderr
