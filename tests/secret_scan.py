"""pytest plugin: no secret the test suite issues may appear in any log output (README "Secrets").

Registered by tests/conftest.py. Every process that runs tests (the only one, or each xdist worker):

- records every secret issued, by wrapping at start-up the functions that create or take them
  (kit.crypto: API keys, `whsec_` secrets, the server secret, every plaintext sealed with the keyring,
  i.e. channel credentials and webhook secrets; the Viber callback secret), and by reading the API
  exchanges of every httpx client (credentials sent; API keys and webhook secrets answered), which is
  how secrets issued inside the whole-system test processes (tests/e2e) become known;
- scans all log output: each test's captured stdout and stderr (in-process, structlog renders there),
  every stdlib log record as it is emitted, and at the end every `*.log` file under its pytest
  temporary directory (the e2e harness writes each process's output there, `<name>.log`);
- also flags anything shaped like an API key (`mmp_` + 20 or more base62 characters) or a `whsec_`
  secret, even one issued elsewhere (a subprocess), except on the lines of the sandbox banner, which
  prints the demo key by design (README, `make run`).

So that it scans what production would log, it sets the test process's logging as `configure_logging`
does where that matters: the root logger at INFO (httpx's per-request line at WARNING), and logged
exceptions rendered without local variables (structlog's development renderer shows them, with the
keyring and credentials in clear; production's `format_exc_info` does not).

A finding fails the run (exit status 1) and says where the line is (test id, captured section and line;
logger and source line; or file and line) with the secret shortened to a recognisable prefix, never the
secret itself. Under xdist the workers hand their findings to the controller.
Limits: a subprocess's output is seen only when written to a `*.log` file in the temporary directory;
with `-s` (no capture) printed output is not scanned, log records and files still are.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import structlog

from openmmp.kit import crypto

MIN_LENGTH = 8
"""Shorter recorded values (test fixtures such as "pw") would match ordinary text; they are not scanned."""
MIN_DISTINCT = 5
"""Nor are values of fewer distinct characters ("00000000", "aaaaaaaaaa"): they would match timestamps."""

_SHAPES = (
    ("API-key-shaped text", re.compile(rf"{re.escape(crypto.API_KEY_PREFIX)}[A-Za-z0-9]{{20,}}")),
    ("whsec-shaped text", re.compile(r"whsec_[A-Za-z0-9+/]{16,}={0,2}")),
)
# The sandbox banner of `openmmp serve --sandbox` prints the demo key on purpose (README).
_BANNER_LINES = (
    re.compile(r"^\s*Demo API key:\s"),
    re.compile(r"^\s*curl -s \S+ -H 'apiKey: "),
)
# Credential fields that are secrets (api.md §4.2); ids, names and hosts are not.
_SECRET_FIELD = re.compile(r"(token|secret|password|json|key)$", re.IGNORECASE)
_FINDINGS_KEY = "openmmp_secret_scan_findings"
_COUNTS_KEY = "openmmp_secret_scan_counts"


def shorten(secret: str) -> str:
    """Enough of a secret to recognise it, never the secret: a known prefix and 4 characters."""
    for prefix in (crypto.API_KEY_PREFIX, "whsec_"):
        if secret.startswith(prefix):
            return f"{secret[: len(prefix) + 4]}… ({len(secret)} chars)"
    return f"{secret[:3]}… ({len(secret)} chars)"


@dataclass(frozen=True)
class Finding:
    where: str
    kind: str
    shown: str

    def describe(self) -> str:
        return f"{self.where}: {self.kind} {self.shown}"


def _published_values() -> frozenset[str]:
    """The sandbox credentials every application's demo channel gets, published with OpenMMP. Hypothesis
    draws strings from the source's constants, so a fuzzed URL can hold one and be logged."""
    from openmmp.providers.applications import Application
    from openmmp.providers.registry import REGISTRY

    return frozenset(
        str(value)
        for application in Application
        for value in REGISTRY.sandbox_credentials(application).values()
        if isinstance(value, str)
    )


class Secrets:
    """Every secret issued in this process, with what it is."""

    def __init__(self) -> None:
        self._kinds: dict[str, str] = {}
        self._lock = threading.Lock()
        self._published = _published_values()

    def add(self, value: Any, kind: str) -> None:
        if value in self._published:
            return  # in the source for all to read (a sandbox credential): what logs it leaks nothing
        if isinstance(value, str) and len(value.strip()) >= MIN_LENGTH and len(set(value)) >= MIN_DISTINCT:
            with self._lock:
                self._kinds.setdefault(value, kind)

    def api_key(self, key: Any) -> None:
        if isinstance(key, str) and key.startswith(crypto.API_KEY_PREFIX):
            # Its random part: finds the whole key too, and a key cut short or with a typo'd checksum.
            random_part = key[len(crypto.API_KEY_PREFIX) : len(crypto.API_KEY_PREFIX) + 32]
            self.add(random_part, f"API key {shorten(key)}, its random part")
        else:
            self.add(key, "API key")

    def webhook_secret(self, secret: Any) -> None:
        self.add(secret, "webhook secret")
        if isinstance(secret, str) and secret.startswith("whsec_"):
            self.add(secret.removeprefix("whsec_"), "webhook secret (base64 part)")

    def credentials(self, fields: dict[str, Any]) -> None:
        for name, value in fields.items():
            if name.lower() == "smtpurl" and isinstance(value, str):
                with contextlib.suppress(ValueError):
                    self.add(urlsplit(value).password, "credential smtpUrl password")
            elif _SECRET_FIELD.search(name):
                self.add(value, f"credential {name}")

    def sealed(self, plaintext: Any) -> None:
        """A plaintext about to be encrypted at rest: channel credentials (JSON) or a webhook secret."""
        if not isinstance(plaintext, str):
            return
        try:
            parsed = json.loads(plaintext)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            self.credentials(parsed)
        elif plaintext.startswith("whsec_"):
            self.webhook_secret(plaintext)

    def snapshot(self) -> list[tuple[str, str]]:
        with self._lock:
            return list(self._kinds.items())

    def __len__(self) -> int:
        return len(self._kinds)


class Scanner:
    def __init__(self, secrets: Secrets) -> None:
        self.secrets = secrets
        self.findings: dict[Finding, None] = {}
        self.texts = 0

    def scan(self, text: str, where: str, *, lines: str = " line ") -> None:
        """Scan `text`; `where` names it, and each finding adds `lines` and its line number."""
        if not text:
            return
        self.texts += 1
        present = [(s, kind) for s, kind in self.secrets.snapshot() if s in text]
        if not present and not any(pattern.search(text) for _, pattern in _SHAPES):
            return
        on_a_line: set[str] = set()
        for number, line in enumerate(text.splitlines(), 1):
            found = [(s, kind) for s, kind in present if s in line]
            on_a_line.update(s for s, _ in found)
            # A secret's part (the random part of a key, the base64 of a whsec_) is reported with it once.
            found = [(s, k) for s, k in found if not any(s != t and s in t for t, _ in found)]
            if any(banner.search(line) for banner in _BANNER_LINES):
                continue
            for secret, kind in found:
                self._add(Finding(f"{where}{lines}{number}", kind, shorten(secret)))
            for kind, pattern in _SHAPES:
                for match in pattern.finditer(line):
                    shape = match.group()
                    if not any(s in shape or shape in s for s, _ in found):
                        self._add(Finding(f"{where}{lines}{number}", kind, shorten(shape)))
        for secret, kind in present:
            if secret not in on_a_line:
                self._add(Finding(f"{where} (across lines)", kind, shorten(secret)))

    def _add(self, finding: Finding) -> None:
        self.findings[finding] = None


class _LogRecords(logging.Handler):
    """Scans every stdlib log record as it is emitted, whichever handlers the code under test installs."""

    def __init__(self, scanner: Scanner, current: Callable[[], str]) -> None:
        super().__init__(logging.NOTSET)
        self._scanner = scanner
        self._current = current
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
        except Exception:
            text = f"{record.msg!r} {record.args!r}"
        where = f"log record of {record.name} at {record.pathname}:{record.lineno} during {self._current()}"
        self._scanner.scan(text, where, lines=", its line ")


def _json_object(content: bytes) -> dict[str, Any] | None:
    try:
        parsed = json.loads(content)
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None


class _Patches:
    """Wraps functions and methods for the session; `undo()` puts the originals back."""

    def __init__(self) -> None:
        self._undo: list[Callable[[], None]] = []

    def everywhere(self, original: Any, wrapper: Any) -> None:
        """Replace `original` wherever an openmmp module imported it by name (and in its own module)."""
        for name, module in list(sys.modules.items()):
            if module is None or not (name == "openmmp" or name.startswith("openmmp.")):
                continue
            for attr, value in list(vars(module).items()):
                if value is original:
                    self.attribute(module, attr, wrapper)

    def attribute(self, owner: Any, name: str, value: Any) -> None:
        # The raw attribute (a classmethod stays a classmethod when it is put back).
        old = vars(owner)[name] if name in vars(owner) else getattr(owner, name)
        setattr(owner, name, value)
        self._undo.append(lambda: setattr(owner, name, old))

    def level(self, logger: logging.Logger, level: int) -> None:
        old = logger.level
        logger.setLevel(level)
        self._undo.append(lambda: logger.setLevel(old))

    def on_undo(self, action: Callable[[], None]) -> None:
        self._undo.append(action)

    def undo(self) -> None:
        while self._undo:
            self._undo.pop()()


def _install_recorders(secrets: Secrets, patches: _Patches) -> None:
    from openmmp.portal import accounts
    from openmmp.providers.base import ProviderContext

    generate_api_key = crypto.generate_api_key

    def recorded_generate_api_key() -> str:
        key = generate_api_key()
        secrets.api_key(key)
        return key

    new_webhook_secret = crypto.new_webhook_secret

    def recorded_new_webhook_secret() -> str:
        secret = new_webhook_secret()
        secrets.webhook_secret(secret)
        return secret

    load_or_create_secret = crypto.load_or_create_secret

    def recorded_load_or_create_secret(configured: str, data_dir: Path) -> tuple[str, bool]:
        secret, created = load_or_create_secret(configured, data_dir)
        secrets.add(secret, "server secret")
        return secret, created

    operator_secret = ProviderContext.secret

    def recorded_operator_secret(ctx: ProviderContext, option: str, sandbox_default: str) -> str:
        secret = operator_secret(ctx, option, sandbox_default)
        if ctx.options.get(option):  # a sandbox default is published with the simulators: no secret
            secrets.add(secret, f"provider option {option}")
        return secret

    issue_setup_link = accounts.issue_setup_link

    async def recorded_issue_setup_link(session: Any, user: Any, *, hours: float) -> str:
        token = await issue_setup_link(session, user, hours=hours)
        secrets.add(token, "portal set-up link")
        return token

    patches.everywhere(generate_api_key, recorded_generate_api_key)
    patches.everywhere(new_webhook_secret, recorded_new_webhook_secret)
    patches.everywhere(issue_setup_link, recorded_issue_setup_link)
    patches.everywhere(load_or_create_secret, recorded_load_or_create_secret)
    patches.attribute(ProviderContext, "secret", recorded_operator_secret)

    encrypt = crypto.Keyring.encrypt

    def recorded_encrypt(self: crypto.Keyring, plaintext: str) -> str:
        secrets.sealed(plaintext)
        return encrypt(self, plaintext)

    patches.attribute(crypto.Keyring, "encrypt", recorded_encrypt)

    from_secret = crypto.Keyring.from_secret.__func__  # type: ignore[attr-defined]

    def recorded_from_secret(cls: type[crypto.Keyring], secret: str) -> crypto.Keyring:
        secrets.add(secret, "server secret")
        return from_secret(cls, secret)  # type: ignore[no-any-return]

    patches.attribute(crypto.Keyring, "from_secret", classmethod(recorded_from_secret))

    def exchange(request: httpx.Request, response: httpx.Response) -> None:
        """Secrets crossing the API: what a client sends as credentials, what the API answers."""
        try:
            sent = request.content
        except httpx.RequestNotRead:
            sent = b""
        if b'"credentials"' in sent or b'"secret"' in sent:
            body = _json_object(sent)
            if body is not None:
                if isinstance(body.get("credentials"), dict):
                    secrets.credentials(body["credentials"])
                secrets.webhook_secret(body.get("secret"))
        session_cookie = response.cookies.get("mmp_session")
        if session_cookie:
            secrets.add(session_cookie, "portal session")
        try:
            answered = response.content
        except httpx.ResponseNotRead:
            return
        if b'"apiKey"' in answered or b'ecret"' in answered:
            body = _json_object(answered)
            if body is not None:
                secrets.api_key(body.get("apiKey"))
                secrets.webhook_secret(body.get("webhookSecret"))
                secrets.webhook_secret(body.get("secret"))

    async_send = httpx.AsyncClient.send

    async def recorded_async_send(self: httpx.AsyncClient, request: httpx.Request, **kwargs: Any) -> Any:
        response = await async_send(self, request, **kwargs)
        exchange(request, response)
        return response

    sync_send = httpx.Client.send

    def recorded_sync_send(self: httpx.Client, request: httpx.Request, **kwargs: Any) -> Any:
        response = sync_send(self, request, **kwargs)
        exchange(request, response)
        return response

    patches.attribute(httpx.AsyncClient, "send", recorded_async_send)
    patches.attribute(httpx.Client, "send", recorded_sync_send)


def _log_files(base: Path) -> Iterator[Path]:
    if base.is_dir():
        yield from sorted(p for p in base.rglob("*.log") if p.is_file())


class SecretScanPlugin:
    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.secrets = Secrets()
        self.scanner = Scanner(self.secrets)
        self.patches = _Patches()
        self.current = "session start"
        self.runs_tests = not _is_xdist_controller(config)
        self.collected: list[Finding] = []  # from the workers, on the xdist controller
        self.worker_counts: list[tuple[int, int]] = []
        self._handler = _LogRecords(self.scanner, lambda: self.current)

    # -- set-up and tear-down ----------------------------------------------------------------------

    def start(self) -> None:
        if not self.runs_tests:
            return
        _install_recorders(self.secrets, self.patches)
        if not structlog.is_configured():
            # structlog's development defaults render a logged exception with rich, local variables
            # included (the keyring, credentials in clear); production renders it with format_exc_info,
            # which shows none. Render like production, or every logged exception would be a finding.
            processors = [
                structlog.dev.ConsoleRenderer(exception_formatter=structlog.dev.plain_traceback)
                if isinstance(p, structlog.dev.ConsoleRenderer)
                else p
                for p in structlog.get_config()["processors"]
            ]
            structlog.configure(processors=processors)
            self.patches.on_undo(structlog.reset_defaults)
        if logging.getLogger().getEffectiveLevel() > logging.INFO:
            # Scan what production logs: configure_logging's levels (INFO; httpx's per-request line off).
            self.patches.level(logging.getLogger(), logging.INFO)
            if logging.getLogger("httpx").level == logging.NOTSET:
                self.patches.level(logging.getLogger("httpx"), logging.WARNING)
        self._attach()

    def stop(self) -> None:
        logging.getLogger().removeHandler(self._handler)
        self.patches.undo()

    def _attach(self) -> None:
        root = logging.getLogger()
        if self._handler not in root.handlers:
            root.addHandler(self._handler)

    # -- hooks ---------------------------------------------------------------------------------------

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        self.current = item.nodeid
        if self.runs_tests:
            self._attach()  # code under test may have replaced the root handlers (configure_logging)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if not self.runs_tests:
            return
        for name, content in report.sections:
            # "Captured log" holds the records the handler has scanned already, with their source line.
            if name.startswith(("Captured stdout", "Captured stderr")):
                self.scanner.scan(content, f"{report.nodeid} [{name}]")

    @pytest.hookimpl(tryfirst=True)  # before the tmp_path plugin may remove the temporary directory
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        self.current = "session end"
        if self.runs_tests:
            factory = getattr(self.config, "_tmp_path_factory", None)
            if factory is not None:
                for path in _log_files(factory.getbasetemp()):
                    self.scanner.scan(path.read_text(errors="replace"), str(path), lines=":")
        workeroutput = getattr(self.config, "workeroutput", None)
        if workeroutput is not None:
            workeroutput[_FINDINGS_KEY] = [[f.where, f.kind, f.shown] for f in self.scanner.findings]
            workeroutput[_COUNTS_KEY] = [len(self.secrets), self.scanner.texts]
            return
        if self.all_findings() and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        output = getattr(node, "workeroutput", {}) or {}
        self.collected.extend(Finding(*row) for row in output.get(_FINDINGS_KEY, []))
        counts = output.get(_COUNTS_KEY)
        if counts:
            self.worker_counts.append((int(counts[0]), int(counts[1])))

    def all_findings(self) -> list[Finding]:
        return [*self.scanner.findings, *self.collected]

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if getattr(self.config, "workeroutput", None) is not None:
            return
        counts = self.worker_counts if not self.runs_tests else [(len(self.secrets), self.scanner.texts)]
        secrets, texts = sum(c[0] for c in counts), sum(c[1] for c in counts)
        findings = self.all_findings()
        if not findings:
            terminalreporter.write_line(
                f"secret scan: {secrets} secrets recorded, {texts} log texts scanned, none leaked"
            )
            return
        terminalreporter.write_sep(
            "!", f"secret scan: {len(findings)} secret(s) in log output: the run FAILS", red=True, bold=True
        )
        for finding in sorted(findings, key=lambda f: f.where):
            terminalreporter.write_line(finding.describe(), red=True)


def _is_xdist_controller(config: pytest.Config) -> bool:
    """Whether this process hands the tests to xdist workers (as xdist decides, before it registers)."""
    if hasattr(config, "workerinput") or config.option.collectonly:
        return False
    return getattr(config.option, "dist", "no") != "no" and bool(getattr(config.option, "tx", None))


def pytest_configure(config: pytest.Config) -> None:
    plugin = SecretScanPlugin(config)
    config.pluginmanager.register(plugin, "openmmp-secret-scan")
    config.stash[_PLUGIN] = plugin
    plugin.start()


def pytest_unconfigure(config: pytest.Config) -> None:
    plugin = config.stash.get(_PLUGIN, None)
    if plugin is not None:
        plugin.stop()


_PLUGIN = pytest.StashKey[SecretScanPlugin]()


def scan_for(secrets: Iterable[str], text: str) -> list[str]:
    """For direct tests: the shortened form of each of `secrets` found in `text`."""
    return [shorten(s) for s in secrets if s and s in text]
