"""MM7 on the wire: the SubmitReq OpenMMP builds, the answers and reports it reads (SOAP and MIME)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from openmmp.providers.base import CallbackRejected
from openmmp.providers.mm7 import mime, soap
from openmmp.providers.mm7.callbacks import parse_callback
from openmmp.providers.mm7.content import Media, mms

NS = {"env": soap.SOAP_ENV, "mm7": soap.MM7_NS}
REL5 = "http://www.3gpp.org/ftp/Specs/archive/23_series/23.140/schema/REL-5-MM7-1-2"


def submit(**overrides: object) -> soap.SubmitReq:
    fields: dict[str, object] = {
        "transaction_id": "openmmp-42",
        "vasp_id": "bank",
        "vas_id": "alerts",
        "sender": "4711",
        "recipient": "85512345670",
        "content_id": "mms-content",
        "subject": "Your card & PIN <ready>",
        "expiry_ms": 1_767_225_600_000,
    }
    return soap.SubmitReq(**{**fields, **overrides})  # type: ignore[arg-type]


def envelope(body: str, namespace: str = soap.MM7_NS, transaction: str = "t-1") -> bytes:
    return (
        f'<?xml version="1.0"?><e:Envelope xmlns:e="{soap.SOAP_ENV}"><e:Header>'
        f'<m:TransactionID xmlns:m="{namespace}">{transaction}</m:TransactionID></e:Header>'
        f"<e:Body>{body}</e:Body></e:Envelope>"
    ).encode()


def parsed(raw: bytes) -> ET.Element:
    """An envelope this test suite built itself."""
    return ET.fromstring(raw)  # noqa: S314 - our own XML, not untrusted input


class TestTheSubmitReq:
    def test_carries_the_account_the_recipient_the_reports_and_the_content_reference(self):
        root = parsed(soap.submit_req(submit()))
        assert root.tag == f"{{{soap.SOAP_ENV}}}Envelope"
        transaction = root.find("env:Header/mm7:TransactionID", NS)
        assert transaction is not None and transaction.text == "openmmp-42"
        assert transaction.get(f"{{{soap.SOAP_ENV}}}mustUnderstand") == "1"
        request = root.find("env:Body/mm7:SubmitReq", NS)
        assert request is not None

        def text(path: str) -> str | None:
            found = request.find(path, NS)
            return None if found is None else found.text

        assert text("mm7:MM7Version") == "6.8.0"
        assert text("mm7:SenderIdentification/mm7:VASPID") == "bank"
        assert text("mm7:SenderIdentification/mm7:VASID") == "alerts"
        assert text("mm7:SenderIdentification/mm7:SenderAddress/mm7:ShortCode") == "4711"
        assert text("mm7:Recipients/mm7:To/mm7:Number") == "+85512345670"
        assert text("mm7:DeliveryReport") == "true"
        assert text("mm7:ReadReply") == "true"
        assert text("mm7:Subject") == "Your card & PIN <ready>"
        assert text("mm7:ExpiryDate") == "2026-01-01T00:00:00Z"
        content = request.find("mm7:Content", NS)
        assert content is not None and content.get("href") == "cid:mms-content"

    def test_elements_come_in_the_schemas_order(self):
        request = parsed(soap.submit_req(submit())).find("env:Body/mm7:SubmitReq", NS)
        assert request is not None
        names = [child.tag.rsplit("}", 1)[-1] for child in request]
        assert names == [
            "MM7Version",
            "SenderIdentification",
            "Recipients",
            "MessageClass",
            "ExpiryDate",
            "DeliveryReport",
            "ReadReply",
            "Subject",
            "Content",
        ]

    def test_without_subject_or_expiry_those_elements_are_left_out(self):
        request = parsed(soap.submit_req(submit(subject=None, expiry_ms=None)))
        assert request.find(".//mm7:Subject", NS) is None
        assert request.find(".//mm7:ExpiryDate", NS) is None

    @pytest.mark.parametrize(
        ("sender", "element"),
        [
            ("4711", "ShortCode"),
            ("MYBANK", "ShortCode"),
            ("85512345678", "Number"),
            ("a@b.example", "RFC2822Address"),
        ],
    )
    def test_the_sender_is_a_short_code_a_number_or_an_address(self, sender: str, element: str):
        root = parsed(soap.submit_req(submit(sender=sender)))
        found = root.find(f".//mm7:SenderAddress/mm7:{element}", NS)
        assert found is not None and found.text == sender

    def test_reads_back_as_it_was_built(self):
        assert soap.read_submit(soap.submit_req(submit())) == submit()


class TestAnswers:
    def test_a_submit_rsp_names_the_message_id(self):
        raw = soap.answer("SubmitRsp", "t-1", soap.Status(1000, "Success"), message_id="041502073667")
        answer = soap.read_answer(raw)
        assert (answer.kind, answer.transaction_id, answer.message_id) == ("SubmitRsp", "t-1", "041502073667")
        assert answer.status == soap.Status(1000, "Success")

    def test_an_rs_error_rsp_in_a_fault(self):
        raw = soap.fault("t-1", soap.Status(2002, "Address Error", "not an MMS subscriber"), by_server=True)
        answer = soap.read_answer(raw)
        assert answer.kind == "RSErrorRsp"
        assert answer.status == soap.Status(2002, "Address Error", "not an MMS subscriber")
        assert answer.fault_code == "Client"

    def test_a_server_error_fault_is_the_servers(self):
        answer = soap.read_answer(soap.fault("t-1", soap.Status(3000, "Server Error"), by_server=True))
        assert answer.fault_code == "Server"

    def test_a_bare_fault_has_no_status(self):
        raw = envelope("<e:Fault><faultcode>e:Server</faultcode><faultstring>busy</faultstring></e:Fault>")
        answer = soap.read_answer(raw)
        assert (answer.kind, answer.status, answer.fault_code, answer.fault_string) == (
            "Fault",
            None,
            "Server",
            "busy",
        )

    def test_another_mm7_version_is_read_as_well(self):
        body = (
            f'<SubmitRsp xmlns="{REL5}"><MM7Version>5.3.0</MM7Version><Status><StatusCode>1000</StatusCode>'
            "<StatusText>Success</StatusText></Status><MessageID>abc</MessageID></SubmitRsp>"
        )
        assert soap.read_answer(envelope(body, REL5)).message_id == "abc"

    @pytest.mark.parametrize(
        ("raw", "reason"),
        [
            (b"<html>Bad gateway</html>", "not a SOAP envelope"),
            (b"not xml", "not well-formed"),
            (b"\xff\xfe<\x00", "not UTF-8"),
            (envelope(""), "empty Body"),
            (envelope("<SubmitReq/>"), "expected an MM7 answer"),
            (envelope("<SubmitRsp><Status><StatusCode>x</StatusCode></Status></SubmitRsp>"), "numeric"),
        ],
    )
    def test_what_is_not_an_mm7_answer_says_why(self, raw: bytes, reason: str):
        with pytest.raises(soap.NotMm7, match=reason):
            soap.read_answer(raw)

    def test_a_dtd_is_refused_before_parsing(self):
        laughs = (
            b'<?xml version="1.0"?><!DOCTYPE e [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;">]>'
            + envelope("<SubmitRsp>&b;</SubmitRsp>").split(b"?>", 1)[1]
        )
        with pytest.raises(soap.NotMm7, match="DTD"):
            soap.read_answer(laughs)


def report(kind: str, status: str, *, message_id: str = "m-1", text: str = "", when: str = "") -> bytes:
    moment = "Date" if kind == "DeliveryReportReq" else "TimeStamp"
    extra = f"<StatusText>{text}</StatusText>" if text else ""
    return envelope(
        f'<{kind} xmlns="{soap.MM7_NS}"><MM7Version>6.8.0</MM7Version><MessageID>{message_id}</MessageID>'
        "<Recipient><Number>+85512345670</Number></Recipient><Sender><ShortCode>4711</ShortCode></Sender>"
        f"<{moment}>{when or '2026-01-01T10:00:00+07:00'}</{moment}><MMStatus>{status}</MMStatus>{extra}</{kind}>"
    )


class TestReports:
    def test_retrieved_is_delivered(self):
        [event] = parse_callback(report("DeliveryReportReq", "Retrieved"))
        assert (event.provider_message_id, event.status, event.timestamp_ms) == (
            "m-1",
            "DELIVERED",
            1767236400000,
        )
        assert event.dedupe_key == "delivery:m-1:retrieved"
        assert event.raw["recipient"] == "+85512345670"
        assert event.error_code is None

    def test_forwarded_reached_the_user_and_counts_as_delivered(self):
        [event] = parse_callback(report("DeliveryReportReq", "Forwarded"))
        assert event.status == "DELIVERED"

    @pytest.mark.parametrize(
        ("status", "message"),
        [
            ("Expired", "the message expired before the recipient retrieved it"),
            ("Rejected", "the recipient or their handset rejected the message"),
            ("Unrecognised", "the recipient's handset did not recognise the message"),
        ],
    )
    def test_final_failures_fail_with_a_code_and_a_cause(self, status: str, message: str):
        [event] = parse_callback(report("DeliveryReportReq", status))
        assert (event.status, event.error_code, event.error_message) == ("FAIL", f"MM7_{status}", message)

    def test_the_mmscs_own_words_are_the_cause_when_it_gives_some(self):
        [event] = parse_callback(report("DeliveryReportReq", "Expired", text="Validity period over"))
        assert event.error_message == "Validity period over"

    @pytest.mark.parametrize("status", ["Indeterminate", "Deferred", "DeferredDelivery", "Unreachable"])
    def test_reports_that_are_not_final_change_nothing(self, status: str):
        assert parse_callback(report("DeliveryReportReq", status)) == []

    def test_read_is_read_and_deleted_unread_is_nothing(self):
        [event] = parse_callback(report("ReadReplyReq", "Read"))
        assert (event.status, event.dedupe_key) == ("READ", "read:m-1:read")
        assert parse_callback(report("ReadReplyReq", "Deleted")) == []

    def test_a_repeat_has_the_same_dedupe_key_and_kinds_differ(self):
        first = parse_callback(report("DeliveryReportReq", "Retrieved", when="2026-01-01T10:00:00Z"))
        again = parse_callback(report("DeliveryReportReq", "Retrieved", when="2026-01-01T10:00:09Z"))
        read = parse_callback(report("ReadReplyReq", "Read"))
        assert first[0].dedupe_key == again[0].dedupe_key != read[0].dedupe_key

    def test_a_time_without_zone_is_utc(self):
        [event] = parse_callback(report("DeliveryReportReq", "Retrieved", when="2026-01-01T00:00:00"))
        assert event.timestamp_ms == 1_767_225_600_000

    def test_a_report_inside_a_multipart_body_is_read(self):
        part = mime.Part("text/xml; charset=utf-8", report("ReadReplyReq", "Read"), "soap")
        _, body = mime.encode([part], subtype="related", params={"type": "text/xml"})
        [event] = parse_callback(body)
        assert event.status == "READ"

    def test_the_simulators_reports_read_back(self):
        built = soap.report_req(
            soap.Report(
                "DeliveryReportReq", "sim-1", "m-9", "+85512345670", "4711", "Retrieved", 1_767_225_600_000
            )
        )
        [event] = parse_callback(built)
        assert (event.provider_message_id, event.status, event.timestamp_ms) == (
            "m-9",
            "DELIVERED",
            1_767_225_600_000,
        )

    @pytest.mark.parametrize(
        ("body", "reason"),
        [
            (b'{"event": "delivered"}', "not well-formed"),
            (envelope("<DeliverReq><MM7Version>6.8.0</MM7Version></DeliverReq>"), "DeliverReq"),
            (
                envelope("<DeliveryReportReq><MMStatus>Retrieved</MMStatus></DeliveryReportReq>"),
                "no MessageID",
            ),
            (report("DeliveryReportReq", "Retrieved", when="yesterday"), "xs:dateTime"),
        ],
    )
    def test_what_is_not_an_mm7_report_is_rejected_saying_why(self, body: bytes, reason: str):
        with pytest.raises(CallbackRejected, match=reason):
            parse_callback(body)


class TestTheMmsContent:
    def test_smil_first_then_the_text_and_each_media_named_by_content_id(self):
        media = [Media("image/png", b"\x89PNG...", "card.png"), Media("audio/mpeg", b"ID3", "jingle")]
        part = mms("Your card is ready", media)
        assert part.content_id == "mms-content"
        assert part.media_type == "multipart/related"
        assert [(p.content_id, p.media_type, p.location) for p in part.parts] == [
            ("smil", "application/smil", "mms.smil"),
            ("text", "text/plain", "text.txt"),
            ("media1", "image/png", "card.png"),
            ("media2", "audio/mpeg", "jingle.mp3"),
        ]
        smil = part.parts[0].body.decode()
        assert smil.count("<par") == 2
        assert '<img src="cid:media1" region="Image"/><text src="cid:text" region="Text"/>' in smil
        assert '<audio src="cid:media2"/>' in smil

    def test_the_encoded_mms_decodes_to_the_same_bytes(self):
        image = bytes(range(256)) * 40
        part = mms("សួស្តី", [Media("image/jpeg", image, "photo.jpg")])
        decoded = mime.decode(part.content_type, part.body)
        assert decoded.find("text") is not None and decoded.find("text").body == "សួស្តី".encode()  # type: ignore[union-attr]
        assert decoded.find("media1") is not None and decoded.find("media1").body == image  # type: ignore[union-attr]
        assert b"Content-Transfer-Encoding: base64" in part.body

    def test_a_text_mms_is_one_slide_of_text(self):
        part = mms("Hello", [])
        assert [p.content_id for p in part.parts] == ["smil", "text"]
        assert b'<par dur="8000ms"><text src="cid:text" region="Text"/></par>' in part.parts[0].body

    @pytest.mark.parametrize(
        ("name", "safe"),
        [("my photo (1).jpg", "my_photo_1_.jpg"), ("\r\nX-Evil: 1", "X-Evil_1"), ("", "media")],
    )
    def test_file_names_are_made_fit_for_a_header(self, name: str, safe: str):
        assert mime.safe_name(name, "media") == safe
