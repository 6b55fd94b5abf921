"""The WhatsApp provider's declarations: credentials, the registry entry, addressing, limits and the window."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from openmmp.providers.applications import Application
from openmmp.providers.base import Addressing
from openmmp.providers.registry import REGISTRY
from openmmp.providers.whatsapp.provider import WhatsappCredentials, WhatsappProvider

PROVIDER = WhatsappProvider()
CREDENTIALS = {
    "phoneNumberId": "106540352242922",
    "wabaId": "102290129340398",
    "accessToken": "EAAJ-system-user-token",
    "appSecret": "6c1a2f0e9d8b7a6c",
}


def credentials(**overrides: Any) -> WhatsappCredentials:
    return WhatsappCredentials.model_validate({**CREDENTIALS, **overrides})


class TestCredentials:
    def test_the_wire_names_are_api_md_s_and_the_override_flag(self):
        assert set(credentials().model_dump(by_alias=True)) == {
            "phoneNumberId",
            "wabaId",
            "accessToken",
            "appSecret",
            "webhookOverride",
        }

    def test_the_webhook_override_is_asked_for_only_explicitly(self):
        assert credentials().webhook_override is False
        assert credentials(webhookOverride=True).webhook_override is True
        with pytest.raises(ValidationError, match="webhookOverride"):
            credentials(webhookOverride="sometimes")
        assert credentials(webhookOverride=True).identity() == credentials().identity()

    @pytest.mark.parametrize("field", ["phoneNumberId", "wabaId", "accessToken", "appSecret"])
    def test_every_field_is_required(self, field: str):
        given = {k: v for k, v in CREDENTIALS.items() if k != field}
        with pytest.raises(ValidationError, match=field):
            WhatsappCredentials.model_validate(given)

    def test_the_phone_number_is_the_channel(self):
        assert credentials().identity() == credentials(accessToken="another", wabaId="1").identity()
        assert credentials().identity() != credentials(phoneNumberId="106540352242923").identity()
        assert WhatsappCredentials.identity_name() == "credentials.phoneNumberId"


class TestDeclarations:
    def test_it_is_the_registrys_whatsapp(self):
        assert REGISTRY.for_application(Application.WHATSAPP).__class__ is WhatsappProvider
        assert REGISTRY.by_name("whatsapp").__class__ is WhatsappProvider
        assert REGISTRY.credentials_model(Application.WHATSAPP) is WhatsappCredentials

    def test_it_sends_by_phone_or_in_a_conversation_and_repeats_may_arrive_twice(self):
        assert PROVIDER.addressing == Addressing.BOTH
        assert PROVIDER.idempotent is False
        assert (PROVIDER.rate_limit.requests, PROVIDER.rate_limit.window_seconds) == (80, 1.0)
        assert PROVIDER.reports_read and PROVIDER.receives_messages and PROVIDER.verifies_with_get

    def test_free_form_messages_only_in_the_24_hour_window_templates_always(self):
        assert PROVIDER.session_window_seconds == 86400.0
        assert PROVIDER.window_free_types == frozenset({"fb_whatsapp_template"})
        assert PROVIDER.window_free_types <= PROVIDER.message_types

    def test_the_types_are_api_md_s_for_whatsapp(self):
        assert PROVIDER.message_types == {
            "text",
            "picture",
            "video",
            "file",
            "location",
            "fb_whatsapp_template",
            "FB_WHATSAPP_INTERACTIVE",
        }

    def test_every_channel_has_a_set_up_in_sandbox_mode_and_outside(self):
        # Outside sandbox mode it sets the webhook override for the channels that ask for it, which
        # needs_setup cannot tell from the others (test_whatsapp_simulator.TestWebhookOverrides).
        assert PROVIDER.needs_setup(sandbox=True)
        assert PROVIDER.needs_setup(sandbox=False)
