"""The one list of providers, keyed by `Application`. Adding a channel is one package plus one line here.

Every `Application` of api.md §2 has exactly one entry: a `Provider`, or a `NotAvailable` saying that its
provider has not landed yet. Construction checks that, so a forgotten application fails at import (and in
`tests/providers/test_registry.py`), never by silently falling through to another upstream.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from openmmp.providers.applications import Application
from openmmp.providers.base import Credentials, NotAvailable, Provider
from openmmp.providers.messenger.provider import MessengerProvider
from openmmp.providers.mm7.provider import Mm7Provider
from openmmp.providers.pending import NOT_AVAILABLE
from openmmp.providers.rbm.provider import RbmProvider
from openmmp.providers.smpp.provider import SmppProvider
from openmmp.providers.smtp.provider import EmailProvider
from openmmp.providers.telegram.provider import TelegramProvider
from openmmp.providers.viber.provider import ViberProvider
from openmmp.providers.viber_bot.provider import ViberBotProvider
from openmmp.providers.whatsapp.provider import WhatsappProvider


class Registry:
    """Providers by application and by name; `NotAvailable` entries for the rest."""

    def __init__(self, providers: Iterable[Provider], not_available: Iterable[NotAvailable]) -> None:
        self._by_application: dict[Application, Provider] = {}
        self._by_name: dict[str, Provider] = {}
        self._not_available: dict[Application, NotAvailable] = {}
        for provider in providers:
            self._claim(provider.application)
            if provider.name in self._by_name:
                raise ValueError(f"two providers are named {provider.name!r}")
            self._by_application[provider.application] = provider
            self._by_name[provider.name] = provider
        for entry in not_available:
            self._claim(entry.application)
            self._not_available[entry.application] = entry
        missing = [a.name for a in Application if not self._has(a)]
        if missing:
            raise ValueError(f"applications with neither a provider nor a NotAvailable entry: {missing}")

    def _has(self, application: Application) -> bool:
        return application in self._by_application or application in self._not_available

    def _claim(self, application: Application) -> None:
        if self._has(application):
            raise ValueError(f"{application.name} is in the registry twice")

    @property
    def providers(self) -> list[Provider]:
        """Every provider that can send, in registration order."""
        return list(self._by_application.values())

    @property
    def not_available(self) -> Mapping[Application, NotAvailable]:
        return self._not_available

    def for_application(self, application: int) -> Provider | None:
        """The provider of `application`, or None when it has none yet (or the number is no application)."""
        try:
            return self._by_application.get(Application(application))
        except ValueError:
            return None

    def by_name(self, name: str) -> Provider | None:
        return self._by_name.get(name)

    def label(self, application: int) -> str:
        """A short, stable name for `application` (metrics): its provider's name (`viber-bot`), else the
        application's own in lower case (`zalo-zns`), else "unknown" for a number that is none."""
        provider = self.for_application(application)
        if provider is not None:
            return provider.name
        try:
            return Application(application).name.lower().replace("_", "-")
        except ValueError:
            return "unknown"

    def credentials_model(self, application: Application) -> type[Credentials]:
        provider = self._by_application.get(application)
        if provider is not None:
            return provider.credentials_model
        return self._not_available[application].credentials_model

    def sandbox_credentials(self, application: Application) -> Mapping[str, Any]:
        """The sandbox demo channel's credentials for `application`."""
        provider = self._by_application.get(application)
        if provider is not None:
            return provider.sandbox_credentials
        return self._not_available[application].sandbox_credentials

    def unavailable_reason(self, application: Application) -> str | None:
        """Why `application` cannot send, or None when it can."""
        entry = self._not_available.get(application)
        return entry.reason if entry is not None else None


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
    ],
    not_available=NOT_AVAILABLE,
)
