"""The SMTP simulator over real sockets, with aiosmtplib as the client: the magic addresses decide, and a
bounce comes back as a DSN that `dsn.parse` reads; plus a relay's DSN as Postfix writes it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from email.message import EmailMessage

import aiosmtplib
import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session
from tests.e2e.harness import wait_until

from openmmp.providers.simulation import SimulatorConfig
from openmmp.providers.smtp import dsn
from openmmp.providers.smtp.simulator import SmtpKnobs, SmtpSimulator


class Mailbox:
    """Where bounces go: a plain SMTP server keeping what it gets."""

    def __init__(self) -> None:
        self.messages: list[bytes] = []

    async def handle_DATA(self, _server: SMTP, _session: Session, envelope: Envelope) -> str:
        self.messages.append(bytes(envelope.original_content or b""))
        return "250 OK"


@pytest.fixture
async def mailbox() -> AsyncIterator[tuple[Mailbox, int]]:
    box = Mailbox()
    server = await asyncio.get_running_loop().create_server(lambda: SMTP(box), "127.0.0.1", 0)
    yield box, int(server.sockets[0].getsockname()[1])
    server.close()
    await server.wait_closed()


@pytest.fixture
async def simulator(mailbox: tuple[Mailbox, int]) -> AsyncIterator[SmtpSimulator]:
    sim = SmtpSimulator(
        SimulatorConfig(),
        SmtpKnobs(username="acme", password="s3cret", bounce_host="127.0.0.1", bounce_port=mailbox[1]),
    )
    await sim.start()
    yield sim
    await sim.stop()


def mail(to: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = "ACME Bank <noreply@acme.example>"
    message["To"] = to
    message["Subject"] = "Your statement"
    message["Message-ID"] = f"<{to.replace('@', '.')}@acme.example>"
    message.set_content("Your statement is ready.")
    return message


async def send(sim: SmtpSimulator, to: str, **options: object) -> tuple[dict[str, object], str]:
    return await aiosmtplib.send(  # type: ignore[return-value]
        mail(to),
        sender="bounces@acme.example",
        hostname="127.0.0.1",
        port=sim.address[1],
        username="acme",
        password="s3cret",
        **options,
    )


async def test_an_ordinary_address_is_accepted(simulator: SmtpSimulator):
    _, answer = await send(simulator, "dara@bank.example")
    assert answer.startswith("2.0.0 Ok: queued as")
    assert [r.rcpt_tos for r in simulator.received] == [["dara@bank.example"]]


async def test_without_the_password_nothing_is_accepted(simulator: SmtpSimulator):
    with pytest.raises(aiosmtplib.SMTPAuthenticationError):
        await aiosmtplib.send(
            mail("dara@bank.example"),
            sender="bounces@acme.example",
            hostname="127.0.0.1",
            port=simulator.address[1],
            username="acme",
            password="wrong",
        )
    assert simulator.received == []


async def test_reject_is_final_and_defer_passes_on_the_third_try(simulator: SmtpSimulator):
    with pytest.raises(aiosmtplib.SMTPRecipientsRefused) as refused:
        await send(simulator, "dara+reject@bank.example")
    assert refused.value.recipients[0].code == 550
    codes = []
    for _ in range(3):
        try:
            await send(simulator, "dara+defer@bank.example")
            codes.append(250)
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes.append(exc.recipients[0].code)
    assert codes == [451, 451, 250]


async def test_a_bounce_comes_back_as_a_dsn_naming_the_original(
    simulator: SmtpSimulator, mailbox: tuple[Mailbox, int]
):
    box, _ = mailbox
    await send(simulator, "dara+bounce@bank.example", mail_options=["ENVID=msg-4711"])
    await wait_until(lambda: box.messages, timeout=5, what="the DSN")
    report = dsn.parse(box.messages[0])
    assert report.envelope_id == "msg-4711"
    assert report.original_message_id == "<dara+bounce.bank.example@acme.example>"
    [verdict] = report.verdicts
    assert (verdict.recipient, verdict.failed, verdict.status, verdict.smtp_code) == (
        "dara+bounce@bank.example",
        True,
        "5.1.1",
        550,
    )


POSTFIX_DSN = b"""From: MAILER-DAEMON@relay.example (Mail Delivery System)
Subject: Undelivered Mail Returned to Sender
To: bounces+4711@acme.example
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status;
\tboundary="8A1B2C3D.1700000000/relay.example"

--8A1B2C3D.1700000000/relay.example
Content-Description: Notification
Content-Type: text/plain; charset=us-ascii

This is the mail system at host relay.example.

--8A1B2C3D.1700000000/relay.example
Content-Description: Delivery report
Content-Type: message/delivery-status

Reporting-MTA: dns; relay.example
X-Postfix-Queue-ID: 8A1B2C3D
Original-Envelope-Id: msg-9001
Arrival-Date: Sun,  6 Dec 2026 12:00:00 +0000 (UTC)

Final-Recipient: rfc822; gone@bank.example
Original-Recipient: rfc822;gone@bank.example
Action: failed
Status: 5.1.1
Remote-MTA: dns; mx.bank.example
Diagnostic-Code: smtp; 550 5.1.1 <gone@bank.example>: Recipient address rejected:
    User unknown in virtual mailbox table

Final-Recipient: rfc822; later@bank.example
Action: delayed
Status: 4.4.1
Diagnostic-Code: X-Postfix; connect to mx.bank.example: Connection timed out

--8A1B2C3D.1700000000/relay.example
Content-Description: Undelivered Message Headers
Content-Type: text/rfc822-headers

Message-ID: <9001@acme.example>
Subject: Your statement

--8A1B2C3D.1700000000/relay.example--
"""


def test_a_relays_dsn_is_read_recipient_by_recipient():
    report = dsn.parse(POSTFIX_DSN)
    assert (report.envelope_id, report.original_message_id) == ("msg-9001", "<9001@acme.example>")
    gone, later = report.verdicts
    assert (gone.recipient, gone.failed, gone.status, gone.smtp_code) == (
        "gone@bank.example",
        True,
        "5.1.1",
        550,
    )
    assert (later.action, later.smtp_code) == ("delayed", None)


@pytest.mark.parametrize(
    "raw", [b"Subject: hi\n\nhello\n", b"Content-Type: multipart/report; boundary=x\n\n--x--\n"]
)
def test_anything_else_is_not_a_dsn(raw: bytes):
    with pytest.raises(dsn.NotADsn):
        dsn.parse(raw)


async def test_the_last_digit_decides_as_for_phones(simulator: SmtpSimulator):
    with pytest.raises(aiosmtplib.SMTPRecipientsRefused) as refused:
        await send(simulator, "user85512345678@bank.example")
    assert refused.value.recipients[0].code == 550
    with pytest.raises(aiosmtplib.SMTPRecipientsRefused) as deferred:
        await send(simulator, "user85512345679@bank.example")
    assert deferred.value.recipients[0].code == 451


async def test_a_delivery_is_reported_when_the_sender_asks_and_only_then(
    simulator: SmtpSimulator, mailbox: tuple[Mailbox, int]
):
    box, _ = mailbox
    await send(simulator, "quiet@bank.example")
    await send(
        simulator, "dara@bank.example", mail_options=["ENVID=msg-1"], rcpt_options=["NOTIFY=SUCCESS,FAILURE"]
    )
    await wait_until(lambda: box.messages, timeout=5, what="the success DSN")
    await asyncio.sleep(0.3)  # the other message's would have come by now
    [report] = [dsn.parse(m) for m in box.messages]
    [verdict] = report.verdicts
    assert (report.envelope_id, verdict.recipient, verdict.action) == (
        "msg-1",
        "dara@bank.example",
        "delivered",
    )


async def test_a_listener_that_says_where_it_is_gets_the_reports_first(
    simulator: SmtpSimulator, mailbox: tuple[Mailbox, int]
):
    box, port = mailbox
    simulator.report_to("127.0.0.1", 9)  # newest first; nothing listens there, so the next one is tried
    assert simulator.targets[0] == ("127.0.0.1", 9)
    await send(simulator, "dara+bounce@bank.example")
    await wait_until(lambda: box.messages, timeout=5, what="the DSN through the older listener")
    assert simulator.targets == [("127.0.0.1", 9), ("127.0.0.1", port)]


@pytest.mark.parametrize(("kind", "code"), [("http_503", 451), ("rate_limit", 421), ("final_error", 554)])
async def test_faults_answer_mail_from(simulator: SmtpSimulator, kind: str, code: int):
    simulator.faults.configure({"kind": kind})
    with pytest.raises(aiosmtplib.SMTPSenderRefused) as refused:
        await send(simulator, "dara@bank.example")
    assert refused.value.code == code
    await send(simulator, "dara@bank.example")  # a fault hits one request unless told otherwise
