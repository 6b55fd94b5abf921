"""The one list of providers, keyed by `Application`. Adding a channel is one package plus one line here.

Every `Application` of api.md §2 has exactly one provider. Construction checks that, so a forgotten
application fails at import (and in `tests/providers/test_registry.py`), never by silently falling through
to another upstream.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from openmmp.providers.apple.provider import AppleProvider
from openmmp.providers.applications import Application
from openmmp.providers.base import Credentials, Provider
from openmmp.providers.messenger.provider import MessengerProvider
from openmmp.providers.mm7.provider import Mm7Provider
from openmmp.providers.rbm.provider import RbmProvider
from openmmp.providers.smpp.provider import SmppProvider
from openmmp.providers.smtp.provider import EmailProvider
from openmmp.providers.telegram.provider import TelegramProvider
from openmmp.providers.viber.provider import ViberProvider
from openmmp.providers.viber_bot.provider import ViberBotProvider
from openmmp.providers.whatsapp.provider import WhatsappProvider
from openmmp.providers.zalo.oa import ZaloOaProvider
from openmmp.providers.zalo.zns import ZaloZnsProvider


class Registry:
    """Providers by application and by name."""

    def __init__(self, providers: Iterable[Provider]) -> None:
        self._by_application: dict[Application, Provider] = {}
        self._by_name: dict[str, Provider] = {}
        for provider in providers:
            if provider.application in self._by_application:
                raise ValueError(f"{provider.application.name} is in the registry twice")
            if provider.name in self._by_name:
                raise ValueError(f"two providers are named {provider.name!r}")
            self._by_application[provider.application] = provider
            self._by_name[provider.name] = provider
        missing = [a.name for a in Application if a not in self._by_application]
        if missing:
            raise ValueError(f"applications without a provider: {missing}")

    @property
    def providers(self) -> list[Provider]:
        """Every provider that can send, in registration order."""
        return list(self._by_application.values())

    def of(self, application: Application) -> Provider:
        """The provider of `application` (every application has one)."""
        return self._by_application[application]

    def for_application(self, application: int) -> Provider | None:
        """The provider of `application`, or None when the number is no application (a stored row of
        an application this version does not know)."""
        try:
            return self._by_application.get(Application(application))
        except ValueError:
            return None

    def by_name(self, name: str) -> Provider | None:
        return self._by_name.get(name)

    def label(self, application: int) -> str:
        """A short, stable name for `application` (metrics): its provider's name (`viber-bot`), else
        "unknown" for a number that is no application."""
        provider = self.for_application(application)
        return provider.name if provider is not None else "unknown"

    def credentials_model(self, application: Application) -> type[Credentials]:
        return self.of(application).credentials_model

    def sandbox_credentials(self, application: Application) -> Mapping[str, Any]:
        """The sandbox demo channel's credentials for `application`."""
        return self.of(application).sandbox_credentials


REGISTRY = Registry(
    providers=[
        ViberProvider(),
        ViberBotProvider(),
        SmppProvider(),
        Mm7Provider(),
        RbmProvider(),
        EmailProvider(),
        WhatsappProvider(),
        MessengerProvider(),
        TelegramProvider(),
        AppleProvider(),
        ZaloOaProvider(),
        ZaloZnsProvider(),
    ],
)
