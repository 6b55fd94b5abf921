"""`openmmp template approve|reject|list` as the operator runs them: a real process on the real database.

`env` (a fixture) and `run` are the CLI tests' own (tests/cli/test_cli.py).
"""

from __future__ import annotations

import json

import httpx
from tests.cli.test_cli import run
from tests.conftest import Tenant
from tests.templates.conftest import create, form, read, template_webhooks


class TestTheOperatorReviewsOnTheMachine:
    async def test_approve_lists_and_tells_the_channel(
        self, env: dict[str, str], client: httpx.AsyncClient, tenant: Tenant, bot
    ):
        channel = await bot(tenant)
        created = await create(client, tenant, form(10, channel["publicId"]))
        template_id = created["publicId"]

        listed = run(["template", "list", "--status", "1", "--json", "--limit", "10000"], env)
        assert listed.returncode == 0, listed.stderr
        waiting = [json.loads(line) for line in listed.stdout.splitlines()]
        [mine] = [item for item in waiting if item["publicId"] == template_id]
        assert mine == {
            "publicId": template_id,
            "status": 1,
            "applicationId": 10,
            "companyPublicId": tenant.company_id,
            "accountId": channel["publicId"],
            "name": "Welcome",
            "reviewedUpstream": False,
        }

        done = run(["template", "approve", template_id], env)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == f"Template {template_id} is APPROVED."
        assert (await read(client, tenant, template_id))["status"] == 2
        webhooks = await template_webhooks(client, tenant, channel["publicId"])
        assert [w["template"]["status"] for w in webhooks] == [1, 2]
        listed = run(["template", "list", "--status", "1", "--limit", "10000"], env)
        assert template_id not in listed.stdout

    async def test_reject_with_a_cause(self, env: dict[str, str], client: httpx.AsyncClient, tenant: Tenant):
        created = await create(client, tenant, form(3))
        done = run(["template", "reject", created["publicId"], "--cause", "Names a competitor"], env)
        assert done.returncode == 0, done.stderr
        found = await read(client, tenant, created["publicId"])
        assert (found["status"], found["cause"]) == (3, "Names a competitor")
        listed = run(["template", "list", "--status", "3", "--limit", "10000"], env)
        [line] = [line for line in listed.stdout.splitlines() if created["publicId"] in line]
        assert "REJECTED" in line and "reviewer=operator" in line and "account=-" in line

    async def test_a_template_not_waiting_or_unknown_is_refused(
        self, env: dict[str, str], client: httpx.AsyncClient, tenant: Tenant
    ):
        created = await create(client, tenant, form(3))
        assert run(["template", "approve", created["publicId"]], env).returncode == 0
        again = run(["template", "reject", created["publicId"]], env)
        assert again.returncode == 1
        assert "APPROVED" in again.stderr
        unknown = run(["template", "approve", "01a24c84-0000-7000-8000-000000000000"], env)
        assert (unknown.returncode, "No such template" in unknown.stderr) == (1, True)
        assert (await read(client, tenant, created["publicId"]))["status"] == 2

    def test_a_status_that_is_none_is_refused(self, env: dict[str, str]):
        done = run(["template", "list", "--status", "7"], env)
        assert done.returncode == 2
        assert "--status" in done.stderr
