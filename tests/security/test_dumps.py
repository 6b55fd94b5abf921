"""A copy of the database gives away no secret (README "Secrets", architecture invariant 7).

After companies, API keys (live, expiring, revoked), channels of every application with credentials,
and webhook secrets (generated and chosen) have been created through the API, a dump of the whole
database must contain none of: the API keys or their random part, any credential secret, any `whsec_`
secret or its base64 part. The dump is what an operator would make: SQLite's `iterdump` of the file;
PostgreSQL's `pg_dump` when the binary is there; and, on both, a SELECT of every column of every table
the live schema has (whether or not a model maps it).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import secrets
import shutil
import sqlite3
import subprocess
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import inspect, make_url, select, text
from tests.conftest import Tenant, create_channel

from openmmp.kit.time import now_ms
from openmmp.models import Channel

API = "/api/v1"
PG_DUMP = ("/usr/lib/postgresql/15/bin/pg_dump", "/usr/bin/pg_dump")


def token(label: str) -> str:
    return f"{label}-{secrets.token_urlsafe(24)}"


def every_application() -> list[tuple[int, dict[str, Any], list[str]]]:
    """(applicationId, credentials, the secret values among them) for every application."""
    bot, wa_token, wa_secret = token("bot"), token("wa-access"), token("wa-app")
    zalo = [token("zalo-access"), token("zalo-refresh"), token("zalo-key")]
    apple, fb_token, fb_secret, telegram = token("apple"), token("fb-page"), token("fb-app"), token("tg")
    smpp = secrets.token_hex(3) + "x"  # SMPP passwords have at most 8 characters
    mm7 = token("mm7")
    # RCS key files are checked when saved: the key must be a real RSA key (its PEM lines are the secret).
    private_key = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        .private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        .decode()
    )
    rcs = json.dumps({"type": "service_account", "client_email": "a@b.iam", "private_key": private_key})
    smtp_password = token("smtp")
    zalo_credentials = {
        "oaId": "oa-1",
        "appId": "app-1",
        "accessToken": zalo[0],
        "refreshToken": zalo[1],
        "secretKey": zalo[2],
    }
    return [
        (1, {"serviceId": uuid.uuid4().int % 10**9 + 1}, []),
        (
            2,
            {"agentId": "agent-1", "serviceAccountJson": rcs},
            [rcs, private_key, private_key.splitlines()[1]],
        ),
        (
            3,
            {
                "host": "smpp.example.net",
                "port": 2775,
                "systemId": "sys",
                "password": smpp,
                "sourceAddr": "MMP",
            },
            [smpp],
        ),
        (4, {"businessId": "biz-1", "mspId": "msp-1", "secret": apple}, [apple]),
        (5, {"botToken": telegram}, [telegram]),
        (6, {"pageId": "page-1", "pageAccessToken": fb_token, "appSecret": fb_secret}, [fb_token, fb_secret]),
        (7, zalo_credentials, zalo),
        (8, {**zalo_credentials, "accessToken": zalo[0] + "-zns"}, [zalo[0] + "-zns"]),
        (10, {"authToken": bot, "senderName": "Dump Bot"}, [bot]),
        (
            11,
            {"phoneNumberId": "pn-1", "wabaId": "waba-1", "accessToken": wa_token, "appSecret": wa_secret},
            [wa_token, wa_secret],
        ),
        (
            15,
            {
                "url": "https://mmsc.example.net/mm7",
                "vaspId": "vasp-1",
                "vasId": "vas-1",
                "senderAddress": "MMP",
                "username": "vasp",
                "password": mm7,
            },
            [mm7],
        ),
        (
            24,
            {
                "from": "noreply@dump.example",
                "smtpUrl": f"smtp://mailer:{smtp_password}@smtp.example.net:587",
            },
            [smtp_password],
        ),
    ]


@dataclass
class Issued:
    """Everything secret this test made, and things that must be in the dump (so it is a real one)."""

    secrets: dict[str, str] = field(default_factory=dict)  # value -> what it is
    expected: list[str] = field(default_factory=list)
    channels: list[str] = field(default_factory=list)

    def api_key(self, key: str, what: str) -> None:
        self.secrets[key] = what
        self.secrets[key[4:36]] = f"{what}, random part"
        self.expected.append(key[:8])  # the hint, shown in lists, is stored

    def webhook_secret(self, secret: str, what: str) -> None:
        assert secret.startswith("whsec_"), what
        self.secrets[secret] = what
        self.secrets[secret.removeprefix("whsec_")] = f"{what}, base64 part"


async def issue_everything(
    client: httpx.AsyncClient, partner: Tenant, new_company: Callable[..., Awaitable[Tenant]]
) -> Issued:
    issued = Issued()
    issued.api_key(partner.api_key, "partner key")
    name = f"Dump Co {uuid.uuid4().hex[:8]}"
    company = await new_company(name)
    issued.expected.append(name)
    issued.api_key(company.api_key, "onboarding key")
    keys = f"{API}/onboard/api-key"
    for body in (
        {"name": "backend"},
        {"name": "expiring", "expiredDate": now_ms() + 3_600_000},
        {"name": "revoked"},
    ):
        created = await client.post(keys, json=body, headers=company.headers)
        assert created.status_code == 201, created.text
        issued.api_key(created.json()["apiKey"], f"API key {body['name']}")
    revoked = await client.delete(f"{keys}/{created.json()['publicId']}", headers=company.headers)
    assert revoked.status_code == 200

    for application_id, credentials, secret_values in every_application():
        channel_name = f"dump-{application_id}-{uuid.uuid4().hex[:6]}"
        body = {"name": channel_name, "applicationId": application_id, "credentials": credentials}
        if application_id in (1, 10):
            body["webhookUrl"] = "https://8.8.8.8/dump-hooks"
        created = await create_channel(client, company, partner, body)
        assert created.status_code == 201, (application_id, created.text)
        issued.expected.append(channel_name)
        issued.channels.append(created.json()["publicId"])
        issued.secrets.update(dict.fromkeys(secret_values, f"applicationId {application_id} credential"))
        if created.json().get("webhookSecret"):
            issued.webhook_secret(created.json()["webhookSecret"], "generated webhook secret")

    viber_bot = issued.channels[[a for a, _, _ in every_application()].index(10)]
    chosen = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    for given in (chosen, None):
        answer = await client.post(
            f"{API}/channel/{viber_bot}/webhook",
            json={"url": "https://8.8.8.8/dump-hooks-2", "secret": given},
            headers=company.headers,
        )
        assert answer.status_code == 200, answer.text
        issued.webhook_secret(
            answer.json()["secret"], "chosen webhook secret" if given else "regenerated webhook secret"
        )
    new_token = token("bot-rotated")
    edited = await client.post(
        f"{API}/channel/{viber_bot}",
        json={"credentials": {"authToken": new_token, "senderName": "Dump Bot"}},
        headers=company.headers,
    )
    assert edited.status_code == 200, edited.text
    issued.secrets[new_token] = "rotated Viber Bot token"
    return issued


def sqlite_dump(database_url: str) -> str:
    connection = sqlite3.connect(str(make_url(database_url).database))
    try:
        return "\n".join(connection.iterdump())
    finally:
        connection.close()


def pg_dump(database_url: str) -> str | None:
    binary = shutil.which("pg_dump") or next((p for p in PG_DUMP if os.path.exists(p)), None)
    if binary is None:
        return None
    url = make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)
    done = subprocess.run(
        [binary, "--no-owner", "--dbname", url], capture_output=True, text=True, check=False, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


async def select_dump(app: Any) -> str:
    """Every column of every row of every table of the live schema, as text."""
    lines: list[str] = []
    async with app.state.db.read_sessions() as session:
        connection = await session.connection()
        tables = await connection.run_sync(lambda sync: inspect(sync).get_table_names())
        assert "channels" in tables and "api_keys" in tables
        for table in tables:
            rows = await session.execute(text(f'SELECT * FROM "{table}"'))  # noqa: S608 - names from the schema
            lines.extend(f"{table}: " + " | ".join(str(value) for value in row) for row in rows)
    return "\n".join(lines)


def leaked(issued: Issued, dump: str) -> list[str]:
    return [f"{what} ({value[:4]}…)" for value, what in issued.secrets.items() if value in dump]


class TestDatabaseDumps:
    async def test_no_key_credential_or_webhook_secret_is_in_any_dump_only_their_ciphertexts(
        self, app, client: httpx.AsyncClient, partner: Tenant, new_company, database_url: str
    ):
        issued = await issue_everything(client, partner, new_company)
        assert len(issued.secrets) > 30
        dumps = {"SELECT of every column": await select_dump(app)}
        if database_url.startswith("sqlite"):
            dumps["sqlite3 iterdump"] = await asyncio.to_thread(sqlite_dump, database_url)
        else:
            dumped = await asyncio.to_thread(pg_dump, database_url)
            if dumped is not None:
                dumps["pg_dump"] = dumped
        for kind, dump in dumps.items():
            missing = [e for e in issued.expected if e not in dump]
            assert missing == [], f"the {kind} does not hold this test's rows: {missing}"
            assert leaked(issued, dump) == [], f"secrets in the {kind}"

        # What is stored instead: Fernet tokens (api.md §4.2 "stored encrypted").
        async with app.state.db.read_sessions() as session:
            statement = select(Channel).where(Channel.public_id.in_(issued.channels))
            channels = list((await session.execute(statement)).scalars())
        assert len(channels) == len(issued.channels)
        for channel in channels:
            assert channel.credentials.startswith("gAAAAA"), channel.application_id
            assert channel.webhook_secret is None or channel.webhook_secret.startswith("gAAAAA")
