"""The ZNS provider's declarations and its accept-time checks of `zalo_zns_template` messages."""

from __future__ import annotations

from typing import Any

import pytest

from openmmp.providers.applications import Application
from openmmp.providers.base import Addressing
from openmmp.providers.registry import REGISTRY
from openmmp.providers.zalo.credentials import ZaloCredentials
from openmmp.providers.zalo.zns import ZaloZnsProvider
from openmmp.providers.zalo.zns_payload import CONTENT_MAX, send_body, tracking_id

PROVIDER = ZaloZnsProvider()
CREDENTIALS = PROVIDER.sandbox_credentials


def zns(template_id: Any = "229810", data: Any = None, **extra: Any) -> dict[str, Any]:
    param: dict[str, Any] = {"templateId": template_id}
    if data is not None:
        param["templateData"] = data
    return {"type": "zalo_zns_template", "zaloZnsTemplateParam": param, **extra}


def refusal(content: dict[str, Any]) -> str:
    with pytest.raises(ValueError, match=r"^\w[\w.\[\]]*: ") as caught:
        PROVIDER.check_message(content, CREDENTIALS)
    return str(caught.value)


class TestDeclarations:
    def test_it_is_the_registered_provider_of_zalo_zns(self):
        provider = REGISTRY.for_application(Application.ZALO_ZNS)
        assert isinstance(provider, ZaloZnsProvider)
        assert (provider.name, provider.title) == ("zalo-zns", "Zalo Notification Service")

    def test_it_sends_templates_by_phone_idempotently_and_reports_delivery_only(self):
        assert PROVIDER.message_types == {"zalo_zns_template"}
        assert PROVIDER.addressing is Addressing.PHONE
        assert PROVIDER.idempotent
        assert PROVIDER.reports_delivery and not PROVIDER.reports_read
        assert not PROVIDER.receives_messages

    def test_it_shares_the_zalo_credentials_and_renews_them(self):
        assert PROVIDER.credentials_model is ZaloCredentials
        assert PROVIDER.refreshes_credentials
        assert PROVIDER.reviews_templates and PROVIDER.template_model is not None
        assert PROVIDER.asks_consent and PROVIDER.consent_path == "zalo"

    def test_only_the_simulator_needs_a_set_up(self):
        assert PROVIDER.needs_setup(sandbox=True)
        assert not PROVIDER.needs_setup(sandbox=False)


class TestCheckMessage:
    def test_a_template_with_text_values_is_accepted(self):
        PROVIDER.check_message(zns(data={"customer_name": "Dara", "order_code": "4711"}), CREDENTIALS)
        PROVIDER.check_message(zns(), CREDENTIALS)

    def test_the_template_param_is_required(self):
        assert refusal({"type": "zalo_zns_template"}).startswith("zaloZnsTemplateParam: required")

    @pytest.mark.parametrize("template_id", [None, "", "   ", 229810])
    def test_the_template_id_is_required_as_a_text(self, template_id: Any):
        assert refusal(zns(template_id)).startswith("zaloZnsTemplateParam.templateId: required")

    def test_template_data_values_must_be_texts(self):
        message = refusal(zns(data={"amount": 12}))
        assert message == "zaloZnsTemplateParam.templateData.amount: must be a text"

    def test_template_data_must_be_an_object(self):
        assert refusal(zns(data=["Dara"])).startswith("zaloZnsTemplateParam.templateData: an object")

    def test_values_totalling_more_than_a_zns_message_holds_are_refused(self):
        data = {"a": "x" * 250, "b": "y" * (CONTENT_MAX - 250 + 1)}
        message = refusal(zns(data=data))
        assert message.startswith("zaloZnsTemplateParam.templateData: the values total 401 characters")
        assert "400" in message
        PROVIDER.check_message(zns(data={"a": "x" * 250, "b": "y" * 150}), CREDENTIALS)

    def test_another_type_is_refused(self):
        assert refusal({"type": "text", "message": "hi"}).startswith("type:")


class TestSendBody:
    def test_the_body_is_znss_with_the_key_as_tracking_id(self):
        body = send_body("84987654321", zns(data={"otp": "123456"}), 42)
        assert body == {
            "phone": "84987654321",
            "template_id": "229810",
            "template_data": {"otp": "123456"},
            "tracking_id": "42",
        }

    def test_a_tracking_id_longer_than_48_characters_is_refused(self):
        assert tracking_id(2**63 - 1) == "9223372036854775807"
        with pytest.raises(ValueError, match="tracking_id"):
            tracking_id(10**48)

    def test_a_recipient_that_is_no_phone_is_refused(self):
        with pytest.raises(ValueError, match="phone"):
            send_body("user-1", zns(), 1)
