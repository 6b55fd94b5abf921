import os
import stat
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from openmmp.kit.crypto import (
    DecryptionFailed,
    Keyring,
    api_key_well_formed,
    generate_api_key,
    load_or_create_secret,
    new_webhook_secret,
)


class TestApiKeys:
    def test_generated_keys_are_prefixed_unique_and_checksummed(self):
        keys = {generate_api_key() for _ in range(200)}
        assert len(keys) == 200
        assert all(k.startswith("mmp_") and len(k) == 42 and api_key_well_formed(k) for k in keys)

    @given(st.integers(min_value=4, max_value=41), st.sampled_from("abcXYZ019"))
    def test_any_single_character_change_breaks_the_checksum_or_is_the_same_key(
        self, position: int, char: str
    ):
        key = generate_api_key()
        changed = key[:position] + char + key[position + 1 :]
        assert api_key_well_formed(changed) == (changed == key)

    def test_hashes_depend_on_the_server_secret(self):
        key = generate_api_key()
        assert Keyring.from_secret("a").hash_api_key(key) != Keyring.from_secret("b").hash_api_key(key)
        assert Keyring.from_secret("a").hash_api_key(key) == Keyring.from_secret("a").hash_api_key(key)


class TestEncryption:
    @given(st.text(max_size=500))
    def test_round_trips_any_text(self, text: str):
        keyring = Keyring.from_secret("s")
        sealed = keyring.encrypt(text)
        assert keyring.decrypt(sealed) == text

    def test_another_secret_cannot_decrypt(self):
        sealed = Keyring.from_secret("one").encrypt("token-123")
        assert "token-123" not in sealed
        with pytest.raises(DecryptionFailed):
            Keyring.from_secret("two").decrypt(sealed)


class TestTokens:
    def test_a_token_is_url_safe_opaque_and_opens_under_the_same_secret_only(self):
        token = Keyring.from_secret("one").seal_token('{"company": "Acme"}')
        assert "Acme" not in token
        assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=")
        assert Keyring.from_secret("one").open_token(token) == '{"company": "Acme"}'
        assert Keyring.from_secret("two").open_token(token) is None

    @given(st.integers(min_value=0, max_value=99), st.sampled_from("Ab9-_"))
    def test_a_changed_token_opens_to_nothing(self, position: int, char: str):
        keyring = Keyring.from_secret("s")
        token = keyring.seal_token("payload")
        position %= len(token) - 4  # the last characters may only carry base64 padding bits
        changed = token[:position] + char + token[position + 1 :]
        assert keyring.open_token(changed) == (None if changed != token else "payload")

    @pytest.mark.parametrize("garbage", ["", "x", "not a token ☃", "gAAAAA" + "A" * 100])
    def test_anything_else_opens_to_nothing(self, garbage: str):
        assert Keyring.from_secret("s").open_token(garbage) is None

    def test_stored_ciphertext_is_no_token(self):
        keyring = Keyring.from_secret("s")
        assert keyring.open_token(keyring.encrypt('{"accessToken": "x"}')) is None


class TestServerSecret:
    def test_generated_once_with_owner_only_permissions_then_reused(self, tmp_path: Path):
        first, created = load_or_create_secret("", tmp_path)
        second, created_again = load_or_create_secret("", tmp_path)
        assert created and not created_again
        assert first == second and len(first) >= 48
        assert stat.S_IMODE(os.stat(tmp_path / "secret.key").st_mode) == 0o600
        assert [p.name for p in tmp_path.iterdir()] == ["secret.key"]

    def test_a_configured_secret_wins_and_writes_nothing(self, tmp_path: Path):
        assert load_or_create_secret("configured", tmp_path) == ("configured", False)
        assert not any(tmp_path.iterdir())


def test_webhook_secrets_are_standard_webhooks_secrets():
    import base64

    secret = new_webhook_secret()
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret[6:])) == 24
