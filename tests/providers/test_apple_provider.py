"""What the Apple provider declares, its credentials, and where it sits in the registry."""

from __future__ import annotations

import base64

import pytest
from pydantic import ValidationError

from openmmp.providers.apple.provider import AppleCredentials, AppleProvider
from openmmp.providers.applications import Application
from openmmp.providers.base import Addressing
from openmmp.providers.registry import REGISTRY

PROVIDER = AppleProvider()


class TestDeclarations:
    def test_it_is_the_registrys_apple(self):
        assert REGISTRY.for_application(Application.APPLE).__class__ is AppleProvider
        assert REGISTRY.by_name("apple").__class__ is AppleProvider
        assert REGISTRY.credentials_model(Application.APPLE) is AppleCredentials

    def test_a_conversation_bot_whose_sends_are_idempotent_and_reported_no_further(self):
        assert (PROVIDER.name, PROVIDER.title) == ("apple", "Apple Messages for Business")
        assert PROVIDER.addressing is Addressing.CONVERSATION
        assert (PROVIDER.idempotent, PROVIDER.reports_delivery, PROVIDER.reports_read) == (True, False, False)
        assert PROVIDER.receives_messages
        assert PROVIDER.callback_proof == "sender"
        assert PROVIDER.message_types == {
            "text",
            "text_with_attachment",
            "richLink",
            "listPicker",
            "quickReply",
            "location",
        }

    def test_only_the_sandbox_has_a_set_up_apple_gets_the_url_from_its_register(self):
        assert PROVIDER.needs_setup(sandbox=True)
        assert not PROVIDER.needs_setup(sandbox=False)


class TestCredentials:
    def test_the_business_is_the_identity(self):
        credentials = AppleCredentials.model_validate(
            {"businessId": " Biz-1 ", "mspId": "msp", "secret": base64.b64encode(b"k").decode()}
        )
        assert credentials.identity() == "biz-1"
        assert AppleCredentials.identity_name() == "credentials.businessId"

    @pytest.mark.parametrize("secret", ["no base64!", "abcde", "===="])
    def test_a_secret_that_is_not_base64_is_refused_when_saved(self, secret: str):
        with pytest.raises(ValidationError) as refused:
            AppleCredentials.model_validate({"businessId": "b", "mspId": "m", "secret": secret})
        assert refused.value.errors()[0]["loc"] == ("secret",)

    def test_the_sandbox_credentials_are_valid(self):
        AppleCredentials.model_validate(PROVIDER.sandbox_credentials)
