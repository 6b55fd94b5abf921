"""The MM7 provider's declarations: credentials, accept-time checks and who may report."""

from __future__ import annotations

import base64
import re
from typing import Any

import pytest
from pydantic import ValidationError

from openmmp.kit.http import HttpClient
from openmmp.providers.base import CallbackRequest, ProviderContext
from openmmp.providers.mm7.callbacks import SANDBOX_CALLBACK_SECRET
from openmmp.providers.mm7.provider import Mm7Credentials, Mm7Provider

PROVIDER = Mm7Provider()
CREDENTIALS = {
    "url": "https://mmsc.telco.example:8443/vas/mm7",
    "vaspId": "bank",
    "vasId": "alerts",
    "senderAddress": "4711",
}


def credentials(**overrides: Any) -> Mm7Credentials:
    return Mm7Credentials.model_validate({**CREDENTIALS, **overrides})


class TestCredentials:
    def test_the_mmsc_is_where_the_server_connects(self):
        assert credentials().targets() == [("url", "mmsc.telco.example", 8443)]
        assert credentials(url="http://10.1.2.3/mm7").targets() == [("url", "10.1.2.3", 80)]
        assert credentials(url="https://mmsc.example.net/mm7").targets() == [("url", "mmsc.example.net", 443)]

    @pytest.mark.parametrize(
        ("url", "reason"),
        [
            ("ftp://mmsc.example.net/mm7", "http:// or https://"),
            ("mmsc.example.net/mm7", "http:// or https://"),
            ("https:///mm7", "http:// or https://"),
            ("https://vasp:secret@mmsc.example.net/mm7", "username and password"),
            ("https://mmsc.example.net:99999/mm7", "not a valid URL"),
        ],
    )
    def test_the_url_must_be_an_http_endpoint_without_an_account_in_it(self, url: str, reason: str):
        with pytest.raises(ValidationError, match=reason):
            credentials(url=url)

    def test_username_and_password_go_together(self):
        with pytest.raises(ValidationError, match="go together"):
            credentials(username="bank")
        with pytest.raises(ValidationError, match="go together"):
            credentials(password="secret")
        assert credentials(username="bank", password="secret").password == "secret"

    def test_the_account_is_the_mmsc_and_the_vasp_id(self):
        assert credentials().identity() == credentials(url=CREDENTIALS["url"].upper()).identity()
        assert credentials().identity() != credentials(vaspId="other").identity()
        assert Mm7Credentials.identity_name() == "credentials.url"

    def test_the_wire_shape_is_unchanged(self):
        dumped = credentials(username="u", password="p").model_dump(by_alias=True, exclude_none=True)
        assert set(dumped) == {"url", "vaspId", "vasId", "senderAddress", "username", "password"}


def picture(**extra: Any) -> dict[str, Any]:
    return {"type": "picture", "fileUrl": "https://cdn.example.com/card.png", **extra}


class TestAcceptTimeChecks:
    @pytest.mark.parametrize(
        "content",
        [
            {"type": "text", "message": "Your code is 4711", "subject": "Code"},
            picture(),
            picture(message="Your new card", fileName="card.png", fileSize=120_000, subject="x" * 40),
            {"type": "video", "fileUrl": "https://cdn.example.com/ad.mp4"},
            {"type": "file", "fileUrl": "https://cdn.example.com/jingle.mp3", "fileName": "jingle.mp3"},
            {
                "type": "text_with_attachment",
                "message": "Statement",
                "attachments": [
                    {
                        "type": "image/png",
                        "name": "p1.png",
                        "url": "https://cdn.example.com/1.png",
                        "size": 300_000,
                    },
                    {"type": "audio/mpeg", "name": "a.mp3", "url": "https://cdn.example.com/a.mp3"},
                ],
            },
        ],
    )
    def test_what_mms_takes(self, content: dict[str, Any]):
        PROVIDER.check_message(content, CREDENTIALS)

    @pytest.mark.parametrize(
        ("content", "field", "words"),
        [
            ({"type": "text"}, "message.message", "required"),
            ({"type": "text", "message": "x" * 5001}, "message.message", "at most 5000"),
            ({"type": "text", "message": "hi", "subject": "x" * 41}, "subject", "at most 40"),
            ({"type": "text", "message": "hi", "subject": "a\nb"}, "subject", "one line"),
            ({"type": "text", "message": "hi", "subject": 7}, "subject", "string"),
            (
                {"type": "text", "message": "hi", "fileUrl": "https://x.example/a.png"},
                "message.fileUrl",
                "not used",
            ),
            (
                {"type": "text", "message": "hi", "suggestions": [{"action": "reply", "text": "OK"}]},
                "message.suggestions",
                "no buttons",
            ),
            ({"type": "picture"}, "message.fileUrl", "required"),
            (picture(fileSize=700_000), "message.fileSize", "at most 600 KB"),
            (picture(attachments=[{"type": "image/png"}]), "message.attachments", "not used"),
            ({"type": "text_with_attachment", "message": "hi"}, "message.attachments", "required"),
            (
                {
                    "type": "text_with_attachment",
                    "attachments": [{"type": "image/png", "url": "https://a.example/1"}],
                },
                "message.message",
                "required",
            ),
            (
                {
                    "type": "text_with_attachment",
                    "message": "hi",
                    "attachments": [{"type": "image/png", "url": "https://a.example/1"}] * 6,
                },
                "message.attachments",
                "at most 5",
            ),
            (
                {
                    "type": "text_with_attachment",
                    "message": "hi",
                    "attachments": [
                        {"type": "image/png", "url": "https://a.example/1"},
                        {"type": "application/pdf", "url": "https://a.example/2"},
                    ],
                },
                "message.attachments[1].type",
                "images, video and audio",
            ),
            (
                {
                    "type": "text_with_attachment",
                    "message": "hi",
                    "attachments": [{"type": "video/mp4", "url": "https://a.example/1", "size": 400_000}] * 2,
                },
                "message.attachments",
                "together at most 600 KB",
            ),
        ],
    )
    def test_refusals_name_the_field(self, content: dict[str, Any], field: str, words: str):
        with pytest.raises(ValueError, match=re.escape(words)) as refused:
            PROVIDER.check_message(content, CREDENTIALS)
        named, _, _ = str(refused.value).partition(": ")
        assert named == field


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def report(authorization: str | None) -> CallbackRequest:
    headers = {"content-type": "text/xml"}
    if authorization is not None:
        headers["authorization"] = authorization
    return CallbackRequest("POST", headers, {}, b"<Envelope/>")


class TestWhoMayReport:
    def ctx(self, http: HttpClient, *, sandbox: bool, secret: str = "") -> ProviderContext:
        options = {"callback_secret": secret} if secret else {}
        return ProviderContext(http, "http://127.0.0.1:9/sim/mm7", "http://127.0.0.1:9", sandbox, options)

    def test_a_channel_with_an_account_is_reported_to_with_it(self, http: HttpClient):
        ctx = self.ctx(http, sandbox=False, secret="operator-secret")
        channel = {**CREDENTIALS, "username": "bank", "password": "pässword"}
        assert PROVIDER.verify(ctx, report(basic("bank", "pässword")), channel)
        assert not PROVIDER.verify(ctx, report(basic("bank", "other")), channel)
        assert not PROVIDER.verify(ctx, report(basic("bank", "operator-secret")), channel)

    def test_a_channel_without_is_reported_to_with_its_vasp_id_and_the_operators_secret(
        self, http: HttpClient
    ):
        ctx = self.ctx(http, sandbox=False, secret="operator-secret")
        assert PROVIDER.verify(ctx, report(basic("bank", "operator-secret")), CREDENTIALS)
        assert PROVIDER.verify(ctx, report("basic  " + basic("bank", "operator-secret")[6:]), CREDENTIALS)
        assert not PROVIDER.verify(ctx, report(basic("other", "operator-secret")), CREDENTIALS)

    def test_the_sandbox_has_a_published_secret_and_production_none(self, http: HttpClient):
        assert PROVIDER.verify(
            self.ctx(http, sandbox=True), report(basic("bank", SANDBOX_CALLBACK_SECRET)), CREDENTIALS
        )
        # Outside sandbox mode, without a secret set and a channel account, nothing is accepted.
        unset = self.ctx(http, sandbox=False)
        assert not PROVIDER.verify(unset, report(basic("bank", SANDBOX_CALLBACK_SECRET)), CREDENTIALS)
        assert not PROVIDER.verify(unset, report(basic("bank", "")), CREDENTIALS)

    @pytest.mark.parametrize(
        "authorization",
        [
            None,
            "",
            "Bearer abc",
            "Basic",
            "Basic !!!notbase64",
            "Basic " + base64.b64encode(b"no-colon").decode(),
            "Basic " + base64.b64encode(b"\xff\xfe:x").decode(),
        ],
    )
    def test_anything_but_the_right_basic_login_is_refused(self, http: HttpClient, authorization: str | None):
        ctx = self.ctx(http, sandbox=True)
        assert not PROVIDER.verify(ctx, report(authorization), CREDENTIALS)


@pytest.mark.parametrize(
    ("kind", "status", "answer"),
    [("DeliveryReportReq", "Retrieved", "DeliveryReportRsp"), ("ReadReplyReq", "Read", "ReadReplyRsp")],
)
def test_a_stored_report_is_answered_as_the_mmsc_expects(kind: str, status: str, answer: str):
    from openmmp.providers.mm7 import soap

    report = soap.Report(
        kind=kind,  # type: ignore[arg-type]
        transaction_id="mmsc-tx-77",
        message_id="mmsc-msg-1",
        recipient="85512345670",
        sender="DEMO",
        mm_status=status,
        timestamp_ms=1_765_000_000_000,
    )
    request = CallbackRequest("POST", {}, {}, soap.report_req(report))
    reply = Mm7Provider().acknowledge(request, "applied")
    assert reply is not None
    assert (reply.status_code, reply.media_type) == (200, "text/xml")
    read = soap.read_answer(reply.body)
    assert (read.kind, read.transaction_id) == (answer, "mmsc-tx-77")
    assert read.status is not None and read.status.code == 1000
