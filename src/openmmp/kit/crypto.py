"""Keys, hashes and encryption at rest.

One server secret (from settings, or generated into the data folder on first start) is stretched with
HKDF into independent keys: one for API-key hashes, one (Fernet) for channel credentials and webhook
secrets, one for fingerprints, and one (Fernet) for the tokens the server hands out and takes back
(onboarding tokens). Changing the server secret invalidates every API key, every stored credential and
every token out there.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
import string
from dataclasses import dataclass, field
from pathlib import Path

import structlog
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

API_KEY_PREFIX = "mmp_"
_ALPHABET = string.ascii_letters + string.digits
_RANDOM_LEN = 32
_CHECKSUM_LEN = 6
SECRET_FILE_NAME = "secret.key"  # noqa: S105 - a file name, not a secret


def _base62(number: int, width: int) -> str:
    chars = []
    for _ in range(width):
        number, rest = divmod(number, 62)
        chars.append(_ALPHABET[rest])
    return "".join(reversed(chars))


def _checksum(random_part: str) -> str:
    return _base62(binascii.crc32(random_part.encode()), _CHECKSUM_LEN)


def generate_api_key() -> str:
    """A new key: `mmp_` + 32 random base62 characters + a 6-character CRC32 checksum.

    The prefix makes leaked keys recognisable to secret scanners; the checksum lets us refuse typos and
    garbage without touching the database.
    """
    random_part = "".join(secrets.choice(_ALPHABET) for _ in range(_RANDOM_LEN))
    return f"{API_KEY_PREFIX}{random_part}{_checksum(random_part)}"


def api_key_well_formed(key: str) -> bool:
    if not key.startswith(API_KEY_PREFIX) or len(key) != len(API_KEY_PREFIX) + _RANDOM_LEN + _CHECKSUM_LEN:
        return False
    body = key[len(API_KEY_PREFIX) :]
    random_part, checksum = body[:_RANDOM_LEN], body[_RANDOM_LEN:]
    if any(c not in _ALPHABET for c in body):
        return False
    return hmac.compare_digest(_checksum(random_part), checksum)


def api_key_hint(key: str) -> str:
    """The part of a key safe to show in lists: prefix and first four random characters."""
    return key[: len(API_KEY_PREFIX) + 4]


def new_webhook_secret() -> str:
    """A Standard Webhooks secret: `whsec_` + base64 of 24 random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


_B64URL = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def b64url(data: bytes) -> str:
    """Base64url without padding, as JWTs spell their parts."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """The bytes of an unpadded base64url part; ValueError for anything else."""
    if not text or any(c not in _B64URL for c in text):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def constant_time_equals(a: str | bytes, b: str | bytes) -> bool:
    a_bytes = a.encode() if isinstance(a, str) else a
    b_bytes = b.encode() if isinstance(b, str) else b
    return hmac.compare_digest(a_bytes, b_bytes)


def _derive(secret: str, purpose: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose).derive(secret.encode())


class DecryptionFailed(Exception):
    """Stored ciphertext could not be decrypted: the server secret changed or the data is corrupt."""


_OPENED_MAX = 512


@dataclass(frozen=True)
class Keyring:
    """Keys derived from the server secret."""

    api_key_hmac: bytes
    fernet: Fernet
    fingerprint_hmac: bytes
    token_fernet: Fernet
    _opened: dict[str, str] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_secret(cls, secret: str) -> Keyring:
        fernet_key = base64.urlsafe_b64encode(_derive(secret, b"openmmp/credentials/v1"))
        return cls(
            api_key_hmac=_derive(secret, b"openmmp/api-keys/v1"),
            fernet=Fernet(fernet_key),
            fingerprint_hmac=_derive(secret, b"openmmp/fingerprints/v1"),
            token_fernet=Fernet(base64.urlsafe_b64encode(_derive(secret, b"openmmp/tokens/v1"))),
        )

    def hash_api_key(self, key: str) -> str:
        return hmac.new(self.api_key_hmac, key.encode(), hashlib.sha256).hexdigest()

    def fingerprint(self, value: str) -> str:
        """A keyed fingerprint of `value` (hex HMAC-SHA256): equal values compare equal, and it reveals
        nothing of a secret value without the server secret (a bot token's fingerprint is no token)."""
        return hmac.new(self.fingerprint_hmac, value.encode(), hashlib.sha256).hexdigest()

    def seal_token(self, payload: str) -> str:
        """A URL-safe token carrying `payload`, encrypted and authenticated with the token key: whoever
        holds it can neither read it nor change a bit of it. Its own key, not the credentials' one, so
        that no stored ciphertext can ever be presented as a token."""
        return self.token_fernet.encrypt(payload.encode()).decode()

    def open_token(self, token: str) -> str | None:
        """The payload of a token `seal_token` made under this server secret; None for anything else
        (changed, cut short, made elsewhere, not a token at all)."""
        try:
            return self.token_fernet.decrypt(token.encode()).decode()
        except (InvalidToken, ValueError):
            return None

    def encrypt(self, plaintext: str) -> str:
        return self.fernet.encrypt(plaintext.encode()).decode()

    def decrypt(self, token: str) -> str:
        """The plaintext of `token`; the last few hundred are remembered (every send and callback opens
        its channel's credentials, and the same few channels carry the traffic)."""
        opened = self._opened.get(token)
        if opened is not None:
            return opened
        try:
            opened = self.fernet.decrypt(token.encode()).decode()
        except InvalidToken as exc:
            raise DecryptionFailed(
                "stored secret cannot be decrypted with the current server secret"
            ) from exc
        if len(self._opened) >= _OPENED_MAX:
            self._opened.clear()
        self._opened[token] = opened
        return opened


def load_or_create_secret(configured: str, data_dir: Path) -> tuple[str, bool]:
    """The server secret: the configured one, else the one in the data folder, else a new one written there.

    Returns the secret and whether it was just created (the caller logs that, never the value).
    """
    if configured:
        return configured, False
    path = data_dir / SECRET_FILE_NAME
    if path.exists():
        return path.read_text().strip(), False
    data_dir.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(48)
    # Written aside, then linked into place: a concurrent starter either wins the link or reads a
    # complete file, never a half-written one.
    tmp = data_dir / f".{SECRET_FILE_NAME}.{os.getpid()}.{secrets.token_hex(4)}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secret + "\n")
    try:
        os.link(tmp, path)
    except FileExistsError:
        return path.read_text().strip(), False
    finally:
        tmp.unlink()
    return secret, True


def server_keyring(configured: str, data_dir: Path) -> Keyring:
    """The process's keyring from the server secret; says so in the log when the secret is new."""
    secret, created = load_or_create_secret(configured, data_dir)
    if created:
        structlog.get_logger(__name__).warning(
            "server_secret_generated", path=str(data_dir / SECRET_FILE_NAME)
        )
    return Keyring.from_secret(secret)
