"""tests/secret_scan.py fails a run whose logs hold a secret, and says where without showing it.

Runs pytest with the plugin on a small suite of its own, in a subprocess, in one process and under xdist
(`-n 2`, as `make test` runs): it leaks a key on stdout, a webhook secret in a log record and another in
a process log file, and also issues secrets it never tells and writes the sandbox banner (which shows
the demo key by design). A clean run is the suite itself, which runs with the plugin.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

LEAKY = """
import logging
from pathlib import Path

from openmmp.kit.crypto import generate_api_key, new_webhook_secret

OUT = Path(__file__).parent / "issued"


def keep(name, value):
    OUT.mkdir(exist_ok=True)
    (OUT / name).write_text(value)
    return value


def test_prints_a_key():
    print("issued", keep("printed", generate_api_key()))


def test_logs_a_secret():
    logging.getLogger("inner.module").warning("secret is %s", keep("logged", new_webhook_secret()))


def test_writes_a_process_log(tmp_path_factory):
    logs = tmp_path_factory.mktemp("e2e-logs")
    secret = keep("filed", new_webhook_secret())
    banner = keep("banner", generate_api_key())
    (logs / "api.log").write_text(
        '{"event": "started"}\\n{"event": "oops", "detail": "' + secret + '"}\\n  Demo API key:  ' + banner + "\\n"
    )


def test_issues_but_never_tells():
    key, secret = generate_api_key(), new_webhook_secret()
    print("issued a key", key[:8], "and a secret of", len(secret), "characters")
    logging.getLogger("inner.module").warning("rotated a webhook secret")
"""


def run_inner(tmp_path: Path, *options: str) -> tuple[int, str]:
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "test_inner.py").write_text(LEAKY)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    # Only the plugins the run needs: the installed ones (schemathesis, hypothesis, ...) cost seconds.
    env.update(PYTHONPATH=str(REPO), PYTEST_DISABLE_PLUGIN_AUTOLOAD="1")
    # The inner run's log files leak on purpose: keep them out of this run's temporary directory,
    # whose *.log files this run's own secret scan reads.
    with tempfile.TemporaryDirectory(prefix="secret-scan-inner-") as basetemp:
        ini = str(tmp_path / "pytest.ini")
        done = subprocess.run(
            [
                *(sys.executable, "-m", "pytest", "-q", "-p", "tests.secret_scan", "-p", "no:cacheprovider"),
                *("-c", ini, "--rootdir", str(tmp_path), "--basetemp", str(Path(basetemp) / "t")),
                *options,
                str(tmp_path / "test_inner.py"),
            ],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    return done.returncode, done.stdout + done.stderr


def issued(tmp_path: Path, name: str) -> str:
    return (tmp_path / "issued" / name).read_text()


class TestTheSecretScan:
    @pytest.mark.parametrize("options", [(), ("-p", "xdist.plugin", "-n", "2")], ids=["one process", "xdist"])
    def test_a_leak_fails_the_run_naming_where_but_not_what(self, tmp_path: Path, options: tuple[str, ...]):
        status, output = run_inner(tmp_path, *options)
        assert status == 1, output
        assert "4 passed" in output
        # Exactly the three leaks: not the key and secret that were never told, nor the sandbox banner.
        assert "secret scan: 3 secret(s) in log output: the run FAILS" in output
        printed, logged, filed = (issued(tmp_path, n) for n in ("printed", "logged", "filed"))
        stdout = f"test_inner.py::test_prints_a_key [Captured stdout call] line 1: API key {printed[:8]}…"
        assert stdout in output
        line = next(n for n, text in enumerate(LEAKY.splitlines(), 1) if "secret is" in text)
        record = f"test_inner.py:{line} during test_inner.py::test_logs_a_secret, its line 1: webhook secret"
        assert f"log record of inner.module at {tmp_path / record} {logged[:10]}…" in output
        assert f"e2e-logs0{os.sep}api.log:2: webhook secret {filed[:10]}…" in output
        for secret in (printed, logged, filed, printed[4:36], logged[6:]):
            assert secret not in output, "the report shows a secret"
