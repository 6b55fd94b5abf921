"""Sandbox demo data: a partner, a company with an API key, and one channel per application.

Created on the first sandbox start of an empty database. The demo key is kept in the data folder (mode
0600) so every later sandbox start can print it again; outside sandbox mode keys are never kept. At every
later sandbox start the demo channels get the sandbox credentials of the version starting, should they
have changed since (a simulator that now checks a key the old demo credentials lack would refuse them).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from openmmp.api_keys.auth import Subject
from openmmp.channels import repository as channels_repository
from openmmp.channels.credentials import validate_credentials
from openmmp.channels.schemas import CreateChannelRequest, EditChannelRequest
from openmmp.channels.service import channels, open_credentials
from openmmp.companies import repository as companies_repository
from openmmp.companies.schemas import OnboardRequest
from openmmp.companies.service import companies
from openmmp.kit.crypto import Keyring
from openmmp.kit.db import Database
from openmmp.models import Channel
from openmmp.portal import accounts
from openmmp.providers.applications import Application
from openmmp.providers.registry import REGISTRY

DEMO_FILE = "demo.json"
# The portal's people of the demo: the company's admin (from onboarding) and the operator.
ADMIN_EMAIL = "admin@demo.openmmp.local"
OPERATOR_EMAIL = "operator@demo.openmmp.local"
OPERATOR_NAME = "Demo Operator"
PORTAL_PEOPLE = (ADMIN_EMAIL, OPERATOR_EMAIL)


@dataclass(frozen=True)
class Demo:
    api_key: str
    company_public_id: str
    channels: dict[str, str]


def load_saved(data_dir: Path) -> Demo | None:
    path = data_dir / DEMO_FILE
    if not path.exists():
        return None
    saved = json.loads(path.read_text())
    return Demo(saved["apiKey"], saved["companyPublicId"], saved["channels"])


def save(data_dir: Path, demo: Demo) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(data_dir / DEMO_FILE, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(
            {"apiKey": demo.api_key, "companyPublicId": demo.company_public_id, "channels": demo.channels},
            handle,
        )


async def ensure_demo(db: Database, keyring: Keyring, saved: Demo | None) -> Demo:
    """The saved demo if its company is still in the database, else newly created demo data."""
    async with db.write_sessions() as session, session.begin():
        company = (
            await companies_repository.get_by_public_id(session, saved.company_public_id)
            if saved is not None
            else None
        )
        if saved is not None and company is not None:
            await _refresh(session, keyring, Subject(company.id, company.public_id, company.type, 0), saved)
            partner = (
                await companies_repository.get(session, company.partner_id) if company.partner_id else None
            )
            if partner is not None:
                await accounts.add_operator(session, partner, name=OPERATOR_NAME, email=OPERATOR_EMAIL)
            return saved
        partner, _ = await companies.create_partner(session, keyring, name="Demo Partner")
        await accounts.add_operator(session, partner, name=OPERATOR_NAME, email=OPERATOR_EMAIL)
        partner_subject = Subject(partner.id, partner.public_id, partner.type, 0)
        request = OnboardRequest.model_validate(
            {
                "company": {"name": "Demo Company", "country": "KH"},
                "admin": {"name": "Demo Admin", "email": ADMIN_EMAIL},
            }
        )
        onboarded = await companies.onboard(session, keyring, partner_subject, request=request)
        subject = Subject(onboarded.company.id, onboarded.company.public_id, onboarded.company.type, 0)
        for application in Application:
            create = CreateChannelRequest.model_validate(
                {
                    "name": f"Demo {application.name}",
                    "applicationId": application.value,
                    "credentials": dict(REGISTRY.sandbox_credentials(application)),
                    "settings": {"defaultCountry": "KH"},
                }
            )
            await channels.create(session, keyring, subject, request=create, sandbox=True)
        rows = await session.execute(select(Channel).where(Channel.company_id == onboarded.company.id))
        by_name = {Application(c.application_id).name: c.public_id for c in rows.scalars()}
    return Demo(onboarded.api_key, onboarded.company.public_id, by_name)


async def _refresh(session: AsyncSession, keyring: Keyring, subject: Subject, demo: Demo) -> None:
    """Give each demo channel the current sandbox credentials of its application, where they differ."""
    for public_id in demo.channels.values():
        channel = await channels_repository.get(session, subject, public_id)
        if channel is None:
            continue
        application = Application(channel.application_id)
        current = dict(REGISTRY.sandbox_credentials(application))
        stored_form = validate_credentials(application, current).model_dump(by_alias=True, exclude_none=True)
        if open_credentials(keyring, channel) != stored_form:
            await channels.edit(
                session,
                keyring,
                subject,
                public_id=public_id,
                request=EditChannelRequest(credentials=current),
                sandbox=True,
            )
