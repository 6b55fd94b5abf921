import base64
import hashlib
import hmac
import time

import pytest

from openmmp.kit.crypto import new_webhook_secret
from openmmp.webhooks.signing import SignatureInvalid, Signer, check, sign_headers, verify

BODY = '{"messageId":"m-1","cause":"READ","type":1,"status":5}'


def expected_signature(secret: str, webhook_id: str, timestamp: int, body: str) -> str:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    digest = hmac.new(key, f"{webhook_id}.{timestamp}.{body}".encode(), hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


class TestSigning:
    def test_headers_follow_standard_webhooks(self):
        secret = new_webhook_secret()
        now = int(time.time())
        headers = Signer(secret).headers(webhook_id="wh-1", body=BODY, timestamp_s=now)
        assert headers == {
            "webhook-id": "wh-1",
            "webhook-timestamp": str(now),
            "webhook-signature": expected_signature(secret, "wh-1", now, BODY),
            "content-type": "application/json",
        }

    def test_a_signed_body_verifies_and_check_returns_it(self):
        secret = new_webhook_secret()
        headers = sign_headers(secret, webhook_id="wh-2", body=BODY, timestamp_s=int(time.time()))
        assert verify(secret, BODY.encode(), headers)
        assert check(secret, BODY.encode(), {k.upper(): v for k, v in headers.items()})["status"] == 5


class TestVerify:
    @pytest.fixture
    def signed(self) -> tuple[str, dict[str, str]]:
        secret = new_webhook_secret()
        return secret, sign_headers(secret, webhook_id="wh-3", body=BODY, timestamp_s=int(time.time()))

    def test_a_changed_body_fails(self, signed):
        secret, headers = signed
        assert not verify(secret, BODY.replace("READ", "FAIL"), headers)

    def test_another_secret_fails(self, signed):
        _, headers = signed
        assert not verify(new_webhook_secret(), BODY, headers)

    def test_an_old_timestamp_fails_even_when_signed(self):
        secret = new_webhook_secret()
        old = int(time.time()) - 3600
        headers = sign_headers(secret, webhook_id="wh-4", body=BODY, timestamp_s=old)
        with pytest.raises(SignatureInvalid, match="too old"):
            check(secret, BODY, headers)

    @pytest.mark.parametrize(
        "change",
        [
            {"webhook-signature": "garbage"},
            {"webhook-signature": "v1,!!!"},
            {"webhook-timestamp": "soon"},
            {"webhook-id": ""},
        ],
    )
    def test_malformed_headers_fail_cleanly(self, signed, change):
        secret, headers = signed
        assert not verify(secret, BODY, {**headers, **change})
        with pytest.raises(SignatureInvalid):
            check(secret, BODY, {**headers, **change})

    def test_a_body_that_is_not_utf8_fails_cleanly(self, signed):
        secret, headers = signed
        assert not verify(secret, b"\xff\xfe", headers)
