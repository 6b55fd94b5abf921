"""The e-mail provider: its credentials, accept-time checks, signed return paths, the bounce listener over
real SMTP, and sends to the simulator as a tenant's relay (checked host, no password without TLS)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiosmtplib
import orjson
import pytest
from pydantic import ValidationError
from tests.e2e.harness import wait_until

from openmmp.kit.http import HttpClient
from openmmp.providers.base import REFUSED, Outgoing, ProviderContext, ProviderError, SendOk, StatusEvent
from openmmp.providers.simulation import SimulatorConfig
from openmmp.providers.smtp import bounces, dsn
from openmmp.providers.smtp.client import parse_url, send
from openmmp.providers.smtp.provider import EmailCredentials, EmailProvider
from openmmp.providers.smtp.simulator import SmtpKnobs, SmtpSimulator

ACCOUNT = "0190f5c2-7a3e-7d4b-8c1a-5e6f7a8b9c0d"
OTHER_ACCOUNT = "0190f5c2-7a3e-7d4b-8c1a-5e6f7a8b9c0e"
SECRET = "bounce-secret-for-tests"
provider = EmailProvider()


class TestCredentials:
    def test_from_is_a_plain_address_and_the_url_names_the_target(self):
        credentials = EmailCredentials.model_validate(
            {"from": "noreply@ACME.example", "smtpUrl": "smtps://bank:p%40ss@mail.acme.example"}
        )
        assert credentials.from_ == "noreply@acme.example"
        assert credentials.targets() == [("smtpUrl", "mail.acme.example", 465)]
        relay = parse_url(credentials.smtp_url or "", tenant=True)
        assert (relay.security, relay.username, relay.password) == ("tls", "bank", "p@ss")
        assert parse_url("smtp://relay.example", tenant=False).port == 587
        assert EmailCredentials.model_validate({"from": "a@b.example"}).targets() == []

    @pytest.mark.parametrize(
        "body",
        [
            {"from": "ACME <noreply@acme.example>"},
            {"from": "noreply@acme.example", "smtpUrl": "http://relay.example"},
            {"from": "noreply@acme.example", "smtpUrl": "smtp://relay.example/path"},
            {"from": "noreply@acme.example", "smtpUrl": "smtp://relay.example:99999"},
            {"from": "noreply@acme.example", "fromName": "ACME\r\nBcc: x@y.example"},
        ],
    )
    def test_anything_else_is_refused(self, body: dict[str, str]):
        with pytest.raises(ValidationError):
            EmailCredentials.model_validate(body)


class TestCheckMessage:
    @pytest.mark.parametrize(
        ("content", "field"),
        [
            ({"type": "text", "message": "hi"}, "subject"),
            ({"type": "text", "message": "hi", "subject": "a\r\nBcc: x@y.example"}, "subject"),
            ({"type": "text", "subject": "Statement"}, "message.message"),
            (
                {"type": "text", "message": "hi", "subject": "s", "fileUrl": "https://x.example/a.pdf"},
                "message",
            ),
        ],
    )
    def test_what_cannot_be_mailed_is_refused_naming_the_field(self, content: dict[str, str], field: str):
        with pytest.raises(ValueError, match=rf"^{field}: "):
            provider.check_message(content, {})

    def test_html_alone_is_a_body(self):
        provider.check_message({"type": "text", "subject": "s", "html": "<p>hi</p>"}, {})


class TestReturnPath:
    def test_a_token_names_the_channel_and_the_message_and_only_its_signature_verifies(self):
        text = bounces.token(SECRET, ACCOUNT, 4711)
        assert len(text) <= 64
        assert bounces.read_token(SECRET, text) == bounces.Token(ACCOUNT, 4711)
        assert bounces.read_token("another-secret", text) is None
        hex_id, _key, signature = text.split(".")
        forged = f"{hex_id}.{bounces.token(SECRET, ACCOUNT, 4712).split('.')[1]}.{signature}"
        assert bounces.read_token(SECRET, forged) is None
        assert bounces.read_token(SECRET, "postmaster") is None

    def test_without_a_secret_outside_the_sandbox_mail_goes_out_from_the_sender(self):
        ctx = ProviderContext(HttpClient(timeout=1), "", "", sandbox=False, options={})
        assert bounces.return_path(ctx, ACCOUNT, 1) is None
        sandbox = ProviderContext(HttpClient(timeout=1), "", "", sandbox=True, options={})
        assert str(bounces.return_path(sandbox, ACCOUNT, 1)).endswith("@bounces.openmmp.local")


def test_a_report_body_becomes_a_status_event():
    failed = {
        "kind": "dsn",
        "id": "mail-7",
        "action": "failed",
        "status": "5.1.1",
        "code": 550,
        "diagnostic": "smtp; 550 5.1.1 user unknown",
        "recipient": "a@b.example",
        "at": 1,
    }
    [event] = provider.parse(orjson.dumps(failed))
    assert isinstance(event, StatusEvent)
    assert (event.provider_message_id, event.status, event.error_code) == ("mail-7", "FAIL", "SMTP_550")
    assert event.error_message == "smtp; 550 5.1.1 user unknown"
    [delivered] = provider.parse(
        orjson.dumps({**failed, "action": "delivered", "status": "2.0.0", "code": 250})
    )
    assert (delivered.status, delivered.error_code) == ("DELIVERED", None)  # type: ignore[union-attr]
    assert delivered.dedupe_key != event.dedupe_key  # type: ignore[union-attr]


class Sink:
    def __init__(self) -> None:
        self.received: list[tuple[str, dict[str, object]]] = []
        self.answer: str | Exception = "applied"

    async def __call__(self, account_id: str, body: bytes) -> str:
        if isinstance(self.answer, Exception):
            raise self.answer
        self.received.append((account_id, orjson.loads(body)))
        return self.answer


@pytest.fixture
async def listener() -> AsyncIterator[tuple[bounces.BounceListener, Sink]]:
    sink = Sink()
    ctx = ProviderContext(HttpClient(timeout=2), "", "", sandbox=False, options={"bounce_secret": SECRET})
    listening = bounces.BounceListener(ctx, sink)
    stop = asyncio.Event()
    task = asyncio.create_task(listening.run(stop))
    await wait_until(lambda: listening.up, timeout=5, what="the bounce listener")
    yield listening, sink
    stop.set()
    await task


async def _mail(port: int, to: str, raw: bytes) -> None:
    async with aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=5) as client:
        await client.sendmail("", [to], raw)


def _dsn(action: str = "failed") -> bytes:
    return dsn.build(
        reporting_mta="relay.example",
        to="x",
        recipient="dara@bank.example",
        status="5.1.1" if action == "failed" else "2.0.0",
        diagnostic="smtp; 550 5.1.1 user unknown",
        action=action,
    )


class TestBounceListener:
    async def test_a_dsn_to_a_signed_return_path_reaches_the_channel(self, listener):
        listening, sink = listener
        to = f"{bounces.token(SECRET, ACCOUNT, 42)}@bounces.example"
        await _mail(listening.address[1], to, _dsn())
        [(account_id, body)] = sink.received
        assert account_id == ACCOUNT
        assert (body["id"], body["action"], body["code"], body["recipient"]) == (
            "mail-42",
            "failed",
            550,
            "dara@bank.example",
        )

    async def test_a_forged_return_path_is_refused_and_reaches_nothing(self, listener):
        listening, sink = listener
        forged = bounces.token("not-the-secret", OTHER_ACCOUNT, 42)
        with pytest.raises(aiosmtplib.SMTPRecipientsRefused) as refused:
            await _mail(listening.address[1], f"{forged}@bounces.example", _dsn())
        assert refused.value.recipients[0].code == 550
        assert sink.received == []

    async def test_a_reply_that_is_no_report_is_taken_and_dropped(self, listener):
        listening, sink = listener
        to = f"{bounces.token(SECRET, ACCOUNT, 43)}@bounces.example"
        await _mail(listening.address[1], to, b"Subject: Out of office\r\n\r\nBack Monday.\r\n")
        assert sink.received == []

    async def test_a_report_that_could_not_be_stored_is_deferred_so_the_relay_tries_again(self, listener):
        listening, sink = listener
        sink.answer = RuntimeError("database down")
        to = f"{bounces.token(SECRET, ACCOUNT, 44)}@bounces.example"
        with pytest.raises(aiosmtplib.SMTPDataError) as deferred:
            await _mail(listening.address[1], to, _dsn())
        assert deferred.value.code == 451
        sink.answer = REFUSED  # a channel that no longer exists: taken, never retried
        await _mail(listening.address[1], to, _dsn())


@pytest.fixture
async def relay() -> AsyncIterator[SmtpSimulator]:
    simulator = SmtpSimulator(SimulatorConfig(), SmtpKnobs())
    await simulator.start()
    yield simulator
    await simulator.stop()


def _tenant_ctx(check_refuses: bool) -> ProviderContext:
    return ProviderContext(
        HttpClient(timeout=2),
        "",
        "",
        sandbox=False,
        options={"bounce_secret": SECRET},
        target_check=(lambda _host, _address: "a loopback address") if check_refuses else None,
    )


class TestTenantRelay:
    async def test_mail_goes_to_the_channels_relay_with_its_signed_return_path(self, relay: SmtpSimulator):
        credentials = {"from": "noreply@acme.example", "smtpUrl": f"smtp://127.0.0.1:{relay.address[1]}"}
        message = Outgoing(9, "dara@bank.example", {"subject": "Hi", "message": "Hello"}, account_id=ACCOUNT)
        outcome = await send(_tenant_ctx(False), credentials, message)
        assert outcome == SendOk("mail-9")
        [received] = relay.received
        assert bounces.read_token(SECRET, received.mail_from.split("@")[0]) == bounces.Token(ACCOUNT, 9)
        assert b"Subject: Hi" in received.data
        assert b"From: noreply@acme.example" in received.data

    async def test_a_host_the_check_refuses_is_never_connected_to(self, relay: SmtpSimulator):
        credentials = {"from": "noreply@acme.example", "smtpUrl": f"smtp://127.0.0.1:{relay.address[1]}"}
        outcome = await send(
            _tenant_ctx(True), credentials, Outgoing(10, "dara@bank.example", {"subject": "s"})
        )
        assert isinstance(outcome, ProviderError)
        assert outcome.code == "SMTP_TARGET_REFUSED"
        assert relay.counts.requests == 0

    async def test_a_password_is_never_sent_without_tls(self, relay: SmtpSimulator):
        credentials = {
            "from": "noreply@acme.example",
            "smtpUrl": f"smtp://bank:pw@127.0.0.1:{relay.address[1]}",
        }
        outcome = await send(
            _tenant_ctx(False), credentials, Outgoing(11, "dara@bank.example", {"subject": "s"})
        )
        assert isinstance(outcome, ProviderError)
        assert (outcome.code, outcome.retryable) == ("SMTP_NO_TLS", False)
        assert relay.received == []

    async def test_no_relay_at_all_is_a_final_error(self):
        ctx = ProviderContext(HttpClient(timeout=2), "", "", sandbox=False, options={})
        outcome = await send(ctx, {"from": "noreply@acme.example"}, Outgoing(12, "d@bank.example", {}))
        assert isinstance(outcome, ProviderError)
        assert (outcome.code, outcome.retryable) == ("SMTP_NO_RELAY", False)
