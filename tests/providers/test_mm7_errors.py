"""What an MMSC's answer to a SubmitReq means: SendOk, or a ProviderError retryable or final."""

from __future__ import annotations

import pytest

from openmmp.kit.http import HttpResponse
from openmmp.providers.base import ProviderError, SendOk
from openmmp.providers.mm7 import mime, soap
from openmmp.providers.mm7.errors import status_error, submit_outcome

XML = {"content-type": "text/xml; charset=utf-8"}


def answered(status_code: int, body: bytes, headers: dict[str, str] | None = None) -> HttpResponse:
    return HttpResponse(status_code, {**XML, **(headers or {})}, body, 1.0)


def refusal(code: int, text: str = "", details: str = "") -> bytes:
    return soap.fault("openmmp-1", soap.Status(code, text, details), by_server=True)


def outcome(response: HttpResponse) -> SendOk | ProviderError:
    try:
        return submit_outcome(response, "openmmp-1")
    except ProviderError as exc:
        return exc


class TestStatusCodes:
    @pytest.mark.parametrize(
        ("code", "retryable", "rate_limited"),
        [
            (2000, False, False),
            (2001, False, False),
            (2002, False, False),
            (2003, False, False),
            (2004, False, False),
            (2007, False, False),
            (2560, False, False),  # a vendor's client error: still the request's fault
            (3000, True, False),
            (3001, False, False),
            (3002, False, False),
            (3003, False, False),
            (3004, False, False),
            (3500, True, False),  # a vendor's gateway timeout
            (4000, False, False),
            (4001, False, False),
            (4002, False, False),
            (4003, False, False),
            (4004, False, False),
            (4005, False, False),
            (4006, True, True),
            (4007, False, False),
            (4008, False, False),
        ],
    )
    def test_each_code_is_retryable_or_final(self, code: int, retryable: bool, rate_limited: bool):
        error = status_error(soap.Status(code))
        assert (error.code, error.retryable, error.rate_limited) == (f"MM7_{code}", retryable, rate_limited)

    def test_the_message_is_the_mmscs_words_or_the_codes_name(self):
        assert status_error(soap.Status(2002, "Address Error", "not an MMS subscriber")).message == (
            "Address Error: not an MMS subscriber"
        )
        assert status_error(soap.Status(4007)).message == "Service denied"
        assert status_error(soap.Status(2999)).message == "Unknown status"


class TestAnswers:
    def test_a_submit_rsp_1000_is_sent_with_its_message_id(self):
        body = soap.answer("SubmitRsp", "openmmp-1", soap.Status(1000, "Success"), message_id="mid-7")
        assert outcome(answered(200, body)) == SendOk("mid-7")

    def test_partial_success_with_one_recipient_is_success(self):
        body = soap.answer("SubmitRsp", "openmmp-1", soap.Status(1100, "Partial success"), message_id="mid-8")
        assert outcome(answered(200, body)) == SendOk("mid-8")

    def test_a_submit_rsp_with_an_error_status_is_that_error(self):
        body = soap.answer("SubmitRsp", "openmmp-1", soap.Status(2004, "Multimedia content refused"))
        error = outcome(answered(200, body))
        assert isinstance(error, ProviderError)
        assert (error.code, error.retryable) == ("MM7_2004", False)

    def test_an_rs_error_rsp_with_http_500_is_its_status(self):
        error = outcome(answered(500, refusal(2002, "Address Error", "unknown subscriber")))
        assert isinstance(error, ProviderError)
        assert (error.code, error.message, error.retryable) == (
            "MM7_2002",
            "Address Error: unknown subscriber",
            False,
        )

    def test_throttling_waits_as_long_as_the_mmsc_asks(self):
        error = outcome(answered(500, refusal(4006, "Service unavailable"), {"retry-after": "3"}))
        assert isinstance(error, ProviderError)
        assert (error.retryable, error.rate_limited, error.retry_after) == (True, True, 3.0)

    def test_a_fault_without_status_is_the_servers_retryable_the_clients_final(self):
        server = outcome(answered(500, soap.fault("openmmp-1", soap.Status(3000), by_server=True)))
        assert isinstance(server, ProviderError) and server.retryable
        client = (
            b'<Envelope xmlns="%s"><Body><Fault><faultcode>Client</faultcode><faultstring>bad</faultstring>'
        )
        client = client % soap.SOAP_ENV.encode() + b"</Fault></Body></Envelope>"
        final = outcome(answered(500, client))
        assert isinstance(final, ProviderError)
        assert (final.code, final.message, final.retryable) == ("MM7_SOAP_FAULT", "bad", False)

    def test_an_answer_inside_a_multipart_is_read(self):
        body = soap.answer("SubmitRsp", "openmmp-1", soap.Status(1000, "Success"), message_id="mid-9")
        content_type, whole = mime.encode(
            [mime.Part("text/xml; charset=utf-8", body, "rsp")],
            subtype="related",
            params={"type": "text/xml"},
        )
        assert outcome(HttpResponse(200, {"content-type": content_type}, whole, 1.0)) == SendOk("mid-9")

    def test_an_answer_for_another_transaction_is_not_trusted(self):
        body = soap.answer("SubmitRsp", "openmmp-2", soap.Status(1000, "Success"), message_id="mid-7")
        error = outcome(answered(200, body))
        assert isinstance(error, ProviderError)
        assert (error.code, error.retryable) == ("UPSTREAM_BAD_RESPONSE", True)

    def test_success_without_a_message_id_is_a_bad_response(self):
        body = soap.answer("SubmitRsp", "openmmp-1", soap.Status(1000, "Success"))
        error = outcome(answered(200, body))
        assert isinstance(error, ProviderError) and error.code == "UPSTREAM_BAD_RESPONSE"


class TestTheHttpLayer:
    @pytest.mark.parametrize(
        ("status", "headers", "code", "retryable", "rate_limited", "retry_after"),
        [
            (429, {"retry-after": "2"}, "MM7_HTTP_429", True, True, 2.0),
            (429, {}, "MM7_HTTP_429", True, True, None),
            (503, {"retry-after": "5"}, "MM7_HTTP_503", True, True, 5.0),
            (503, {}, "MM7_HTTP_503", True, False, None),
            (502, {}, "MM7_HTTP_502", True, False, None),
            (401, {}, "MM7_HTTP_401", False, False, None),
            (403, {}, "MM7_HTTP_403", False, False, None),
            (404, {}, "MM7_HTTP_404", False, False, None),
        ],
    )
    def test_statuses_without_an_mm7_body(
        self,
        status: int,
        headers: dict[str, str],
        code: str,
        retryable: bool,
        rate_limited: bool,
        retry_after: float | None,
    ):
        error = outcome(answered(status, b"<html>oops</html>", headers))
        assert isinstance(error, ProviderError)
        assert (error.code, error.retryable, error.rate_limited, error.retry_after) == (
            code,
            retryable,
            rate_limited,
            retry_after,
        )

    def test_a_2xx_that_is_not_mm7_may_pass(self):
        error = outcome(answered(200, b"OK"))
        assert isinstance(error, ProviderError)
        assert (error.code, error.retryable) == ("UPSTREAM_BAD_RESPONSE", True)
