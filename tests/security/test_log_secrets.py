"""Logs never carry a secret, even when a request is about one (README "Secrets").

The test logs exactly as `openmmp serve` does (kit.logs.configure_logging: structlog JSON through the
standard library, one handler), at DEBUG, into a buffer, while it provokes logging with secrets around:
authentication failures with wrong, malformed and revoked keys (in each accepted header), channels
created and edited with credentials (and refused for bad ones), webhook secrets set (and refused),
provider callbacks (signed, badly signed, malformed), a reply that opens the channel's credentials, and a
server secret generated on first start. Not one of those secrets may be in the buffer.
(tests/secret_scan.py checks the same for the whole suite's output, as the suite's processes log it.)
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import io
import json
import logging
import secrets
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import structlog
from sqlalchemy import update
from tests.conftest import Tenant
from tests.secret_scan import scan_for

from openmmp.kit.crypto import generate_api_key, server_keyring
from openmmp.kit.logs import configure_logging
from openmmp.kit.time import now_ms
from openmmp.models import Channel

API = "/api/v1"


@contextlib.contextmanager
def production_logs() -> Iterator[io.StringIO]:
    """Log as the `openmmp` command configures it, into a buffer; put the test process's logging back."""
    saved_structlog = structlog.get_config()
    root = logging.getLogger()
    saved_root = (list(root.handlers), root.level)
    touched = [logging.getLogger(n) for n in ("uvicorn", "uvicorn.access", "uvicorn.error", "httpx")]
    saved_loggers = [(lg, lg.level, lg.disabled, lg.propagate, list(lg.handlers)) for lg in touched]
    configure_logging("DEBUG")
    # Loggers of the modules would otherwise keep this configuration after the test.
    structlog.configure(cache_logger_on_first_use=False)
    buffer = io.StringIO()
    [handler] = root.handlers
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(buffer)
    try:
        yield buffer
    finally:
        root.handlers, _ = saved_root
        root.setLevel(saved_root[1])
        for logger, level, disabled, propagate, handlers in saved_loggers:
            logger.setLevel(level)
            logger.disabled, logger.propagate, logger.handlers = disabled, propagate, handlers
        structlog.configure(**saved_structlog)


def signed(body: dict[str, Any], key: str) -> tuple[bytes, dict[str, str]]:
    raw = json.dumps(body).encode()
    signature = hmac.new(key.encode(), raw, hashlib.sha256).hexdigest()
    return raw, {"X-Viber-Content-Signature": signature, "content-type": "application/json"}


class Provocations:
    """Requests about secrets; remembers every secret involved and every request made."""

    def __init__(self, client: httpx.AsyncClient, tenant: Tenant) -> None:
        self.client = client
        self.tenant = tenant
        self.secrets: list[str] = [tenant.api_key, tenant.api_key[4:36]]
        self.statuses: list[int] = []

    def secret(self, value: str) -> str:
        self.secrets.append(value)
        if value.startswith("whsec_"):
            self.secrets.append(value.removeprefix("whsec_"))
        return value

    async def call(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        kwargs.setdefault("headers", self.tenant.headers)
        response = await self.client.request(method, url, **kwargs)
        self.statuses.append(response.status_code)
        return response

    async def authentication_failures(self) -> None:
        revoked = (await self.call("POST", f"{API}/onboard/api-key", json={"name": "to-revoke"})).json()
        self.secret(revoked["apiKey"])
        await self.call("DELETE", f"{API}/onboard/api-key/{revoked['publicId']}")
        unknown = self.secret(generate_api_key())
        typo = self.secret(unknown[:-1] + ("A" if unknown[-1] != "A" else "B"))
        for key in (unknown, typo, revoked["apiKey"], self.secret(f"not-a-key-{secrets.token_hex(16)}")):
            for headers in ({"apiKey": key}, {"X-API-Key": key}, {"Authorization": f"Bearer {key}"}):
                assert (await self.call("GET", f"{API}/channel", headers=headers)).status_code == 401

    async def channels(self) -> tuple[str, str]:
        """Channels created, edited and refused with credentials; returns a launched bot and its token."""
        bot_token = self.secret(f"bot-{secrets.token_urlsafe(24)}")
        smtp = self.secret(secrets.token_urlsafe(18))
        bodies = [
            {"applicationId": 10, "credentials": {"authToken": bot_token, "senderName": "Log Bot"}},
            {
                "applicationId": 11,
                "credentials": {
                    "phoneNumberId": "pn",
                    "wabaId": "waba",
                    "accessToken": self.secret(f"EAAG{secrets.token_urlsafe(30)}"),
                    "appSecret": self.secret(secrets.token_hex(16)),
                },
            },
            {
                "applicationId": 24,
                "credentials": {"from": "a@log.example", "smtpUrl": f"smtp://u:{smtp}@mx.example:587"},
            },
        ]
        created = []
        for body in bodies:
            answer = await self.call(
                "POST", f"{API}/channel", json={"name": "Log", **body, "webhookUrl": "https://8.8.8.8/h"}
            )
            assert answer.status_code == 201, answer.text
            created.append(answer.json()["publicId"])
            self.secret(answer.json()["webhookSecret"])
        refused = [
            {
                "applicationId": 11,
                "credentials": {
                    "phoneNumberId": "pn",
                    "wabaId": "w",
                    "accessToken": self.secret(f"EAAG{secrets.token_urlsafe(30)}"),
                },
            },
            {
                "applicationId": 10,
                "credentials": {
                    "authToken": self.secret(f"bot-{secrets.token_urlsafe(24)}"),
                    "senderName": "x",
                    "password": self.secret(secrets.token_urlsafe(20)),
                },
            },
            {
                "applicationId": 3,
                "credentials": {
                    "host": "h",
                    "port": 1,
                    "systemId": "s",
                    "sourceAddr": "a",
                    "password": self.secret(secrets.token_urlsafe(20)),
                },
            },
            {
                "applicationId": 6,
                "credentials": {
                    "pageId": "p",
                    "pageAccessToken": self.secret(f"EAAB{secrets.token_urlsafe(30)}"),
                    "appSecret": 12345,
                },
            },
        ]
        for body in refused:
            answer = await self.call("POST", f"{API}/channel", json={"name": "Refused", **body})
            assert answer.status_code == 400, answer.text
        rotated = self.secret(f"bot-{secrets.token_urlsafe(24)}")
        edit = {"credentials": {"authToken": rotated, "senderName": "Log Bot"}}
        assert (await self.call("POST", f"{API}/channel/{created[0]}", json=edit)).status_code == 200
        return created[0], rotated

    async def webhook_secrets(self, account: str) -> None:
        chosen = self.secret("whsec_" + base64.b64encode(secrets.token_bytes(32)).decode())
        url = f"{API}/channel/{account}/webhook"
        for secret in (chosen, None):
            answer = await self.call("POST", url, json={"url": "https://8.8.8.8/h2", "secret": secret})
            assert answer.status_code == 200, answer.text
            self.secret(answer.json()["secret"])
        too_short = self.secret("whsec_" + base64.b64encode(secrets.token_bytes(12)).decode())
        not_base64 = self.secret(f"whsec_{secrets.token_urlsafe(30)}!")
        for secret in (too_short, not_base64, self.secret(secrets.token_urlsafe(32))):
            assert (
                await self.call("POST", url, json={"url": "https://8.8.8.8/h3", "secret": secret})
            ).status_code == 400

    async def callbacks(self, account: str, token: str) -> None:
        user = f"log-user-{uuid.uuid4().hex}"
        inbound = {
            "event": "message",
            "timestamp": now_ms(),
            "message_token": uuid.uuid4().int % 10**18,
            "sender": {
                "id": user,
                "name": "Dara",
                "avatar": "",
                "country": "KH",
                "language": "km",
                "api_version": 10,
            },
            "message": {"type": "text", "text": "my card?"},
        }
        url = f"/callbacks/viber-bot/{account}"
        raw, headers = signed(inbound, token)
        assert (await self.call("POST", url, content=raw, headers=headers)).status_code == 200
        raw, headers = signed({**inbound, "message_token": 1}, "wrong-token-" + token[:6])
        assert (await self.call("POST", url, content=raw, headers=headers)).status_code == 401
        malformed = b'{"event": '
        sig = hmac.new(token.encode(), malformed, hashlib.sha256).hexdigest()
        answer = await self.call("POST", url, content=malformed, headers={"X-Viber-Content-Signature": sig})
        assert answer.status_code == 400
        raw, headers = signed(inbound, token)
        # On the Viber BM route the bot is not a channel of that provider.
        viber_bm = await self.call("POST", f"/callbacks/viber/{account}", content=raw, headers=headers)
        assert viber_bm.status_code == 404
        # A reply opens the channel's credentials to check the message against them.
        deliveries = (await self.call("GET", f"{API}/channel/{account}/webhook/deliveries")).json()["items"]
        detail = await self.call(
            "GET", f"{API}/channel/{account}/webhook/deliveries/{deliveries[0]['webhookId']}"
        )
        reply = {"to": detail.json()["body"]["from"], "message": {"type": "text", "message": "Yes"}}
        assert (
            await self.call("POST", f"{API}/channel/{account}/conversation", json=reply)
        ).status_code == 200


class TestLogsCarryNoSecret:
    async def test_requests_about_secrets_log_none_of_them(
        self, app, client: httpx.AsyncClient, tenant: Tenant, tmp_path: Path
    ):
        provoke = Provocations(client, tenant)
        with production_logs() as logs:
            await provoke.authentication_failures()
            account, token = await provoke.channels()
            async with app.state.db.write_sessions() as session, session.begin():
                await session.execute(update(Channel).where(Channel.public_id == account).values(status=3))
            await provoke.webhook_secrets(account)
            await provoke.callbacks(account, token)
            server_keyring("", tmp_path)  # a first start: the generated server secret is logged about
            provoke.secret((tmp_path / "secret.key").read_text().strip())

        events = [json.loads(line) for line in logs.getvalue().splitlines()]  # every line is a JSON event
        requests = [e for e in events if e.get("event") == "request"]
        assert sorted(e["status"] for e in requests) == sorted(provoke.statuses), "a request was not logged"
        assert {401, 400, 201, 200} <= {e["status"] for e in requests}
        assert any(e.get("event") == "server_secret_generated" for e in events)
        assert scan_for(provoke.secrets, logs.getvalue()) == []
