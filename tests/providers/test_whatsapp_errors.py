"""Cloud API answers mapped to SendOk or a ProviderError: the envelope's code decides, then the HTTP status.

The first class reads answers as the HTTP client hands them over; the second gets each code from the
simulator over real HTTP (`final_error` faults answer with the given Meta code) through the provider.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from tests.providers.viber_harness import Sim

from openmmp.kit.http import HttpResponse
from openmmp.providers.base import Outgoing, ProviderContext, ProviderError, SendOk
from openmmp.providers.whatsapp.errors import send_outcome
from openmmp.providers.whatsapp.provider import WhatsappProvider

PROVIDER = WhatsappProvider()


def answer(status: int, body: Any = None, *, raw: bytes | None = None, **headers: str) -> HttpResponse:
    content = raw if raw is not None else orjson.dumps(body)
    return HttpResponse(status_code=status, headers=headers, content=content, elapsed_ms=1.0)


def meta_error(code: int, message: str = "", details: str | None = None, status: int = 400) -> HttpResponse:
    error: dict[str, Any] = {"message": message or f"(#{code}) error", "type": "OAuthException", "code": code}
    if details is not None:
        error["error_data"] = {"messaging_product": "whatsapp", "details": details}
    return answer(status, {"error": {**error, "fbtrace_id": "AbC"}})


def failure(response: HttpResponse) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        send_outcome(response)
    return caught.value


class TestReadingAnswers:
    def test_an_accepted_message_is_its_wamid(self):
        body = {
            "messaging_product": "whatsapp",
            "contacts": [{"input": "+855 12 345 670", "wa_id": "85512345670"}],
            "messages": [{"id": "wamid.HBgLODU1", "message_status": "accepted"}],
        }
        assert send_outcome(answer(200, body)) == SendOk("wamid.HBgLODU1")

    @pytest.mark.parametrize(
        ("code", "wait"), [(130429, 1.0), (131056, 6.0), (4, 60.0), (80007, 60.0), (613, 60.0)]
    )
    def test_rate_limits_are_waited_out(self, code: int, wait: float):
        error = failure(meta_error(code))
        assert (error.code, error.retryable, error.rate_limited, error.retry_after) == (
            f"WHATSAPP_{code}",
            True,
            True,
            wait,
        )

    def test_metas_retry_after_wins(self):
        assert failure(answer(400, meta_error(130429).json(), **{"retry-after": "3"})).retry_after == 3.0

    @pytest.mark.parametrize(
        ("code", "status"), [(131000, 500), (131057, 400), (1, 400), (2, 503), (131016, 400)]
    )
    def test_passing_trouble_is_tried_again(self, code: int, status: int):
        error = failure(meta_error(code, status=status))
        assert (error.code, error.retryable, error.rate_limited) == (f"WHATSAPP_{code}", True, False)

    @pytest.mark.parametrize(
        "code", [131026, 131051, 100, 131008, 131009, 132000, 132001, 133010, 368, 10, 200]
    )
    def test_what_is_wrong_with_the_message_or_the_channel_is_final(self, code: int):
        error = failure(meta_error(code, f"(#{code}) Meta says no", "the details"))
        assert (error.code, error.retryable) == (f"WHATSAPP_{code}", False)
        assert error.message == f"(#{code}) Meta says no: the details"

    def test_outside_the_window_says_a_template_is_needed(self):
        error = failure(
            meta_error(131047, "(#131047) Re-engagement message", "more than 24 hours have passed")
        )
        assert (error.code, error.retryable) == ("WHATSAPP_131047", False)
        assert error.message.startswith("outside the 24-hour customer-service window")
        assert "only a template (fb_whatsapp_template)" in error.message
        assert error.message.endswith("((#131047) Re-engagement message: more than 24 hours have passed)")

    def test_a_bad_token_is_final_and_names_the_credential(self):
        error = failure(meta_error(190, "Error validating access token: Session has expired", status=401))
        assert (error.code, error.retryable) == ("WHATSAPP_190", False)
        assert "credentials.accessToken" in error.message

    def test_an_unknown_code_on_a_server_error_is_tried_again_on_a_client_error_not(self):
        assert failure(meta_error(999999, status=502)).retryable
        assert not failure(meta_error(999999, status=400)).retryable

    @pytest.mark.parametrize(
        ("response", "code", "retryable", "rate_limited"),
        [
            (answer(503, raw=b"Service Unavailable"), "WHATSAPP_HTTP_503", True, False),
            (answer(429, raw=b""), "WHATSAPP_HTTP_429", True, True),
            (answer(404, raw=b"<html>Not found</html>"), "WHATSAPP_HTTP_404", False, False),
            (answer(200, raw=b"<html>"), "UPSTREAM_BAD_RESPONSE", True, False),
            (answer(200, {"messages": []}), "UPSTREAM_BAD_RESPONSE", True, False),
        ],
    )
    def test_without_an_envelope_the_http_status_decides(
        self, response: HttpResponse, code: str, retryable: bool, rate_limited: bool
    ):
        error = failure(response)
        assert (error.code, error.retryable, error.rate_limited) == (code, retryable, rate_limited)

    def test_a_long_message_is_cut(self):
        assert len(failure(meta_error(100, "x" * 2000)).message) == 300


class TestThroughTheSimulator:
    @pytest.mark.parametrize(
        ("code", "retryable", "rate_limited"),
        [(131047, False, False), (190, False, False), (131056, True, True), (131000, True, False)],
    )
    async def test_each_code_comes_back_classified(
        self, sim: Sim, code: int, retryable: bool, rate_limited: bool
    ):
        await sim.fault("whatsapp", kind="final_error", status=code)
        ctx = ProviderContext(sim.http, f"{sim.base_url}/whatsapp", "http://127.0.0.1:9", sandbox=True)
        credentials = dict(PROVIDER.sandbox_credentials)
        [unit] = PROVIDER.plan(ctx, credentials, [Outgoing(1, "85512345670", PROVIDER.example_message)])
        error = (await unit.call())[1]
        assert isinstance(error, ProviderError)
        assert (error.code, error.retryable, error.rate_limited) == (
            f"WHATSAPP_{code}",
            retryable,
            rate_limited,
        )
        assert error.message
