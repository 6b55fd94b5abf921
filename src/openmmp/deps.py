"""Request dependencies shared by every domain, declared once (style.md habit 6)."""

from typing import Annotated

from fastapi import Depends, Request

from openmmp.kit.crypto import Keyring
from openmmp.settings import Settings


# Dependencies are `async def` on purpose: FastAPI runs a plain `def` one in a worker thread, a thread hop
# per request on the hot path.
async def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def _keyring(request: Request) -> Keyring:
    keyring: Keyring = request.app.state.keyring
    return keyring


SettingsDep = Annotated[Settings, Depends(_settings)]
KeyringDep = Annotated[Keyring, Depends(_keyring)]
