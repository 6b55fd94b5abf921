"""`openmmp portal ...`: the portal's people. A password is only ever set through a one-time link."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from openmmp.cli.config import load_settings
from openmmp.companies import repository as companies_repository
from openmmp.kit.db import Database
from openmmp.portal import accounts
from openmmp.portal import repository as portal_repository
from openmmp.portal.web import PORTAL
from openmmp.settings import Settings

app = typer.Typer(help="People who sign in to the web portal at /portal.", no_args_is_help=True)


def setup_url(settings: Settings, token: str) -> str:
    return f"{settings.resolved_public_url}{PORTAL}/setup/{token}"


class NoSuchUser(Exception):
    pass


async def new_link(settings: Settings, email: str, company: str | None) -> str:
    """A fresh one-time set-up link for the user (any earlier link stops working)."""
    db = Database(settings.resolved_database_url)
    try:
        async with db.write_sessions() as session, session.begin():
            found = await portal_repository.users_by_email(session, email.strip())
            if company is not None:
                chosen = await companies_repository.get_by_public_id(session, company)
                found = [u for u in found if chosen is not None and u.company_id == chosen.id]
            if not found:
                where = f" in company {company}" if company else ""
                raise NoSuchUser(f"No portal user has the e-mail address {email}{where}")
            if len(found) > 1:
                raise NoSuchUser(f"Several companies have a user {email}: name one with --company")
            token = await accounts.issue_setup_link(session, found[0], hours=settings.portal.setup_link_hours)
        return setup_url(settings, token)
    finally:
        await db.dispose()


async def sandbox_links(settings: Settings, emails: tuple[str, ...]) -> dict[str, str]:
    """A fresh set-up link for each of these users who has no password yet (the demo's people)."""
    db = Database(settings.resolved_database_url)
    links: dict[str, str] = {}
    try:
        async with db.write_sessions() as session, session.begin():
            for user in await portal_repository.users_without_password(session, emails):
                token = await accounts.issue_setup_link(session, user, hours=settings.portal.setup_link_hours)
                links[user.email] = setup_url(settings, token)
    finally:
        await db.dispose()
    return links


@app.command("link")
def link(
    email: Annotated[str, typer.Argument(help="The person's e-mail address")],
    company: Annotated[
        str | None, typer.Option(help="The company's publicId, when several companies have this address")
    ] = None,
) -> None:
    """Print a one-time link where the person chooses a password (it replaces any earlier link)."""
    settings = load_settings()
    try:
        url = asyncio.run(new_link(settings, email, company))
    except NoSuchUser as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    typer.echo(f"One-time link for {email} (works for {settings.portal.setup_link_hours:g} hours):\n{url}")


@app.command("operator")
def operator(
    email: Annotated[str, typer.Option(help="The operator's e-mail address")],
    name: Annotated[str, typer.Option(help="The operator's name")] = "Operator",
    company: Annotated[
        str | None, typer.Option(help="The operator's partner company (publicId); default: the first one")
    ] = None,
) -> None:
    """Make a person the operator (every company's pages; reviews templates) and print their set-up link."""
    settings = load_settings()
    if "@" not in email or len(email) > 320 or not name.strip() or len(name) > 200:
        raise typer.BadParameter("give an e-mail address and a name of 1 to 200 characters")

    async def run() -> str:
        db = Database(settings.resolved_database_url)
        try:
            async with db.write_sessions() as session, session.begin():
                partner = (
                    await companies_repository.get_by_public_id(session, company)
                    if company
                    else await portal_repository.first_partner(session)
                )
                if partner is None:
                    raise NoSuchUser(
                        "No partner company: create it first with `openmmp bootstrap --name ...`"
                    )
                user = await accounts.add_operator(session, partner, name=name.strip(), email=email.strip())
                token = await accounts.issue_setup_link(session, user, hours=settings.portal.setup_link_hours)
                return setup_url(settings, token)
        finally:
            await db.dispose()

    try:
        url = asyncio.run(run())
    except NoSuchUser as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    typer.echo(f"{email} is the operator. One-time link to choose a password:\n{url}")
