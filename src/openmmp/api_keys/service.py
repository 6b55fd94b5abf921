"""Rules for API keys: creation (the only moment a key exists in clear), listing and revocation."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from openmmp.api_keys import repository
from openmmp.api_keys.auth import Subject
from openmmp.errors import NotFound
from openmmp.kit.crypto import Keyring, api_key_hint, generate_api_key
from openmmp.kit.time import now_ms
from openmmp.models import ApiKey


class ApiKeyNotFound(NotFound):
    default_name = "publicId"


class ApiKeyService:
    async def issue(
        self, session: AsyncSession, keyring: Keyring, *, company_id: int, name: str, expires_at: int | None
    ) -> tuple[ApiKey, str]:
        """Create a key for a company; returns the row and the key in clear, which is never stored."""
        plaintext = generate_api_key()
        key = ApiKey(
            company_id=company_id,
            name=name,
            key_hash=keyring.hash_api_key(plaintext),
            hint=api_key_hint(plaintext),
            expires_at=expires_at,
        )
        session.add(key)
        await session.flush()
        return key, plaintext

    async def list(
        self, session: AsyncSession, subject: Subject, *, page: int, size: int
    ) -> tuple[int, list[ApiKey]]:
        return await repository.list_active(session, subject, offset=(page - 1) * size, limit=size)

    async def revoke(self, session: AsyncSession, subject: Subject, *, public_id: str) -> ApiKey:
        """Revoke one of the caller's keys; it answers 401 from the next request on."""
        key = await repository.get_active(session, subject, public_id)
        if key is None:
            raise ApiKeyNotFound("No such API key")
        key.revoked_at = now_ms()
        await session.flush()
        return key


api_keys = ApiKeyService()
