"""Templates an upstream reviews, with the real provider of the application whose provider says so
(`reviews_templates`) and its simulator on a port of its own: the platform submits the template at once
over HTTP, the simulator decides after a moment and calls back, and the verdict applies to the template
of the callback channel's company only.

The simulator's verdicts reach a recording endpoint of the test, which hands them to the platform's
callback route as they came (raw body, signature), or signed anew as another channel would be: so the
test decides when each verdict arrives, and where.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import random
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from tests.conftest import TEST_SECRET, Tenant, asgi_client, running_app
from tests.providers.viber_harness import CallbackReceiver, Inbox, Received, serve
from tests.templates.conftest import API, HOOKS, create, errors, form, read, template_webhooks

from openmmp.kit.http import HttpClient
from openmmp.models import Channel, Template
from openmmp.providers.base import Provider, ProviderError
from openmmp.providers.registry import REGISTRY
from openmmp.providers.simulation import SimulatorConfig
from openmmp.settings import Settings

REVIEWERS = [p for p in REGISTRY.providers if p.reviews_templates]
pytestmark = pytest.mark.skipif(not REVIEWERS, reason="no provider reviews templates")
PROVIDER: Provider = REVIEWERS[0] if REVIEWERS else REGISTRY.providers[0]
APPLICATION = int(PROVIDER.application)
REVIEW_SECONDS = 0.1
SIGNATURE = "X-Hub-Signature-256"


def credentials() -> dict[str, Any]:
    """A phone number of an account of its own."""
    number = str(random.randrange(10**14, 10**15))
    return {
        "phoneNumberId": number,
        "wabaId": f"9{number}",
        "accessToken": f"EAAT{random.randrange(10**9)}",
        "appSecret": f"templates-app-secret-{uuid.uuid4().hex}",
    }


def upstream_form(account_id: str, name: str | None = None) -> dict[str, Any]:
    """The upstream's form: a body with two positional variables and their samples."""
    return {
        "name": name or f"card_ready_{uuid.uuid4().hex[:8]}",
        "accountId": account_id,
        "category": "UTILITY",
        "language": "en_US",
        "components": [
            {
                "type": "BODY",
                "text": "Hello {{1}}, your card {{2}} is ready",
                "example": {"body_text": [["Dara", "4711"]]},
            }
        ],
    }


@dataclass
class Upstream:
    """The platform (in process, its upstream the simulator) and where the simulator's verdicts land."""

    api: httpx.AsyncClient
    sim_url: str
    receiver: CallbackReceiver
    http: HttpClient

    async def channel(self, tenant: Tenant) -> tuple[dict[str, Any], dict[str, Any], Inbox]:
        """A channel of the application, its credentials, and the inbox its account's verdicts go to."""
        given = credentials()
        body = {"name": "Line", "applicationId": APPLICATION, "credentials": given, "webhookUrl": HOOKS}
        response = await self.api.post("/api/v1/channel", json=body, headers=tenant.headers)
        assert response.status_code == 201, response.text
        inbox = self.receiver.inbox()
        registered = await self.http.post(
            f"{self.sim_url}/_sandbox/webhooks",
            json={
                "phoneNumberId": given["phoneNumberId"],
                "wabaId": given["wabaId"],
                "callbackUrl": inbox.url,
                "appSecret": given["appSecret"],
            },
        )
        assert registered.status_code == 200, registered.text
        return response.json(), given, inbox

    async def verdict(self, inbox: Inbox, count: int = 1) -> Received:
        """The `count`th verdict the simulator sent to `inbox`."""
        received = await inbox.wait_for(lambda items: len(items) >= count, timeout=10)
        return received[count - 1]

    async def hand_over(self, verdict: Received, account_id: str, app_secret: str | None = None) -> None:
        """Deliver `verdict` to the channel's callback route: as it came, or signed with `app_secret`."""
        signature = verdict.headers[SIGNATURE.lower()]
        if app_secret is not None:
            signature = "sha256=" + hmac.new(app_secret.encode(), verdict.body, hashlib.sha256).hexdigest()
        answer = await self.api.post(
            f"/callbacks/{PROVIDER.name}/{account_id}",
            content=verdict.body,
            headers={SIGNATURE: signature, "content-type": "application/json"},
        )
        assert answer.status_code == 200, answer.text


async def upstream_names(upstream: Upstream, given: dict[str, Any]) -> list[str]:
    """The names of the templates the simulator's account holds (Meta's list)."""
    listed = await upstream.http.get(
        f"{upstream.sim_url}/{given['wabaId']}/message_templates",
        headers={"Authorization": f"Bearer {given['accessToken']}"},
    )
    assert listed.status_code == 200, listed.text
    return [t["name"] for t in listed.json()["data"]]


@pytest.fixture(scope="module")
async def upstream(settings: Settings) -> AsyncIterator[Upstream]:
    http = HttpClient(timeout=5.0)
    config = SimulatorConfig(
        callback_latency_s=0.01, options={PROVIDER.name: {"template_review_seconds": REVIEW_SECONDS}}
    )
    receiver = CallbackReceiver()
    async with serve(PROVIDER.simulator(config, http)) as sim_url, serve(receiver.app) as receiver_url:
        receiver.base_url = receiver_url
        platform = Settings(
            database_url=settings.database_url,
            data_dir=settings.data_dir,
            secret_key=TEST_SECRET,
            sandbox=False,
            providers={f"{PROVIDER.name.replace('-', '_')}_base_url": sim_url},
        )
        async with running_app(platform) as app, asgi_client(app) as api:
            yield Upstream(api, sim_url, receiver, http)
    await http.aclose()


class TestSubmittedAtOnce:
    async def test_the_upstream_approves_and_the_channel_is_told(
        self, upstream: Upstream, tenant: Tenant, partner: Tenant
    ):
        channel, _, inbox = await upstream.channel(tenant)
        account = channel["publicId"]
        body = upstream_form(account)
        created = await create(upstream.api, tenant, body)
        assert created["status"] == 1
        found = await read(upstream.api, tenant, created["publicId"])
        assert (found["status"], found["accountId"], found["applicationId"]) == (1, account, APPLICATION)
        assert (found["upstream"]["name"], found["upstream"]["components"]) == (
            body["name"],
            body["components"],
        )
        assert found["upstreamId"]
        assert (found["messages"], found["variables"]) == ([], ["1", "2"])

        await upstream.hand_over(await upstream.verdict(inbox), account)
        found = await read(upstream.api, tenant, created["publicId"])
        assert (found["status"], found["cause"]) == (2, "APPROVED")
        webhooks = await template_webhooks(upstream.api, tenant, account)
        assert [w["template"]["status"] for w in webhooks] == [1, 2]
        assert {w["template"]["publicId"] for w in webhooks} == {created["publicId"]}

        # The operator has no say over it.
        response = await upstream.api.post(f"{API}/{created['publicId']}/approve", headers=partner.headers)
        assert (response.status_code, errors(response)) == (409, [("templateId", "EXISTED")])

    async def test_the_upstream_rejects_with_its_reason(self, upstream: Upstream, tenant: Tenant):
        channel, _, inbox = await upstream.channel(tenant)
        created = await create(
            upstream.api, tenant, upstream_form(channel["publicId"], f"reject_{uuid.uuid4().hex[:6]}")
        )
        await upstream.hand_over(await upstream.verdict(inbox), channel["publicId"])
        found = await read(upstream.api, tenant, created["publicId"])
        assert found["status"] == 3
        assert "INVALID_FORMAT" in found["cause"]

    async def test_a_verdict_that_overtakes_the_write_of_its_submission_is_applied(
        self, upstream: Upstream, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
    ):
        channel, _, inbox = await upstream.channel(tenant)
        submit = PROVIDER.submit_template

        async def slow_to_answer(*args: Any) -> Any:
            template_id = await submit(*args)
            # The upstream decided, and called back, before the platform stored the template's id.
            await upstream.hand_over(await upstream.verdict(inbox), channel["publicId"])
            return template_id

        monkeypatch.setattr(PROVIDER, "submit_template", slow_to_answer)
        created = await create(upstream.api, tenant, upstream_form(channel["publicId"]))
        assert created["status"] == 2
        webhooks = await template_webhooks(upstream.api, tenant, channel["publicId"])
        assert [w["template"]["status"] for w in webhooks] == [1, 2]

    async def test_a_verdict_on_another_channel_of_the_company_applies(
        self, upstream: Upstream, tenant: Tenant
    ):
        channel, _, inbox = await upstream.channel(tenant)
        other, other_given, _ = await upstream.channel(tenant)
        created = await create(upstream.api, tenant, upstream_form(channel["publicId"]))
        verdict = await upstream.verdict(inbox)
        await upstream.hand_over(verdict, other["publicId"], app_secret=other_given["appSecret"])
        assert (await read(upstream.api, tenant, created["publicId"]))["status"] == 2

    async def test_a_verdict_on_another_companys_channel_changes_nothing(
        self, upstream: Upstream, tenant: Tenant, new_company: Callable[..., Awaitable[Tenant]]
    ):
        channel, _, inbox = await upstream.channel(tenant)
        created = await create(upstream.api, tenant, upstream_form(channel["publicId"]))
        intruder = await new_company()
        theirs, their_credentials, _ = await upstream.channel(intruder)
        verdict = await upstream.verdict(inbox)
        await upstream.hand_over(verdict, theirs["publicId"], app_secret=their_credentials["appSecret"])
        assert (await read(upstream.api, tenant, created["publicId"]))["status"] == 1
        assert len(await template_webhooks(upstream.api, tenant, channel["publicId"])) == 1

    async def test_an_update_edits_the_upstreams_copy_which_reviews_it_again(
        self, upstream: Upstream, tenant: Tenant
    ):
        channel, _, inbox = await upstream.channel(tenant)
        account = channel["publicId"]
        body = upstream_form(account)
        created = await create(upstream.api, tenant, body)
        first = await read(upstream.api, tenant, created["publicId"])
        await upstream.hand_over(await upstream.verdict(inbox, 1), account)
        assert (await read(upstream.api, tenant, created["publicId"]))["status"] == 2
        # Meta times its webhooks in seconds: two verdicts alike within one second are one to the platform.
        await asyncio.sleep(1.0)

        edited = body | {"components": [{**body["components"][0], "text": "Hi {{1}}, card {{2}} is ready"}]}
        response = await upstream.api.post(
            f"{API}/{created['publicId']}", json=edited, headers=tenant.headers
        )
        assert response.status_code == 200, response.text
        second = response.json()
        assert (second["status"], second["upstreamId"]) == (1, first["upstreamId"])
        assert second["upstream"]["components"] == edited["components"]
        await upstream.hand_over(await upstream.verdict(inbox, 2), account)
        assert (await read(upstream.api, tenant, created["publicId"]))["status"] == 2
        statuses = [w["template"]["status"] for w in await template_webhooks(upstream.api, tenant, account)]
        assert statuses == [1, 2, 1, 2]

    async def test_an_update_with_a_new_name_is_a_new_template_upstream(
        self, upstream: Upstream, tenant: Tenant
    ):
        channel, given, inbox = await upstream.channel(tenant)
        account = channel["publicId"]
        created = await create(upstream.api, tenant, upstream_form(account))
        first = await read(upstream.api, tenant, created["publicId"])
        renamed = upstream_form(account, f"card_out_{uuid.uuid4().hex[:6]}")
        response = await upstream.api.post(
            f"{API}/{created['publicId']}", json=renamed, headers=tenant.headers
        )
        assert response.status_code == 200, response.text
        assert response.json()["upstreamId"] != first["upstreamId"]
        assert await upstream_names(upstream, given) == [renamed["name"]]
        # Deleted while in review, the earlier one gets no verdict: the first is the new one's.
        verdict = await upstream.verdict(inbox, 1)
        assert renamed["name"].encode() in verdict.body
        await upstream.hand_over(verdict, account)
        assert (await read(upstream.api, tenant, created["publicId"]))["status"] == 2

    async def test_a_delete_deletes_the_upstreams_copy(self, upstream: Upstream, tenant: Tenant):
        channel, given, _ = await upstream.channel(tenant)
        created = await create(upstream.api, tenant, upstream_form(channel["publicId"]))
        assert len(await upstream_names(upstream, given)) == 1
        response = await upstream.api.delete(f"{API}/{created['publicId']}", headers=tenant.headers)
        assert response.status_code == 204, response.text
        assert await upstream_names(upstream, given) == []
        gone = await upstream.api.get(f"{API}/{created['publicId']}", headers=tenant.headers)
        assert gone.status_code == 404

    async def test_meta_changing_the_category_is_recorded_and_told(self, upstream: Upstream, tenant: Tenant):
        channel, _, inbox = await upstream.channel(tenant)
        account = channel["publicId"]
        created = await create(upstream.api, tenant, upstream_form(account, f"promo_{uuid.uuid4().hex[:6]}"))
        await upstream.hand_over(await upstream.verdict(inbox, 1), account)
        await upstream.hand_over(await upstream.verdict(inbox, 2), account)
        found = await read(upstream.api, tenant, created["publicId"])
        assert (found["status"], found["upstream"]["category"]) == (2, "MARKETING")
        assert "MARKETING" in found["cause"]
        [*_, last] = await template_webhooks(upstream.api, tenant, account)
        assert (last["template"]["status"], last["template"]["cause"]) == (2, found["cause"])

    async def test_a_submission_whose_answer_was_lost_is_found_again(
        self, upstream: Upstream, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
    ):
        channel, given, inbox = await upstream.channel(tenant)
        account = channel["publicId"]
        body = upstream_form(account)
        submit = PROVIDER.submit_template

        async def answer_lost(*args: Any) -> Any:
            await submit(*args)
            raise ProviderError("TIMEOUT", "the connection closed before the answer", retryable=True)

        monkeypatch.setattr(PROVIDER, "submit_template", answer_lost)
        lost = await upstream.api.post(API, json=body, headers=tenant.headers)
        assert lost.status_code == 502, lost.text
        monkeypatch.undo()
        await upstream.verdict(inbox, 1)  # Meta decided meanwhile: the template is APPROVED there
        again = await create(upstream.api, tenant, body)
        assert again["status"] == 2
        found = await read(upstream.api, tenant, again["publicId"])
        assert found["upstreamId"] and await upstream_names(upstream, given) == [body["name"]]
        # The same again is the company's template already.
        twice = await upstream.api.post(API, json=body, headers=tenant.headers)
        assert (twice.status_code, errors(twice)) == (409, [("name", "EXISTED")])
        assert again["publicId"] in twice.json()["errors"][0]["message"]

    async def test_preview_is_the_upstreams_template_message(self, upstream: Upstream, tenant: Tenant):
        channel, _, _ = await upstream.channel(tenant)
        body = upstream_form(channel["publicId"])
        created = await create(upstream.api, tenant, body)
        url = f"{API}/{created['publicId']}/preview"
        response = await upstream.api.post(
            url, json={"params": {"1": "Dara", "2": "4711"}}, headers=tenant.headers
        )
        assert response.status_code == 200, response.text
        message = response.json()
        assert message["type"] in PROVIDER.message_types
        assert body["name"] in str(message)
        assert "Dara" in str(message) and "4711" in str(message)
        missing = await upstream.api.post(url, json={"params": {"1": "Dara"}}, headers=tenant.headers)
        assert (missing.status_code, errors(missing)) == (400, [("params.2", "INVALID")])


class TestTheUpstreamsFormIsChecked:
    async def test_before_anything_is_submitted(self, upstream: Upstream, tenant: Tenant, bot):
        channel, _, inbox = await upstream.channel(tenant)
        account = channel["publicId"]
        no_body = upstream_form(account) | {"components": [{"type": "FOOTER", "text": "Bank"}]}
        response = await upstream.api.post(API, json=no_body, headers=tenant.headers)
        assert response.status_code == 400, response.text
        assert errors(response)[0][0].startswith("components"), response.text

        no_account = {k: v for k, v in upstream_form(account).items() if k != "accountId"}
        response = await upstream.api.post(API, json=no_account, headers=tenant.headers)
        assert (response.status_code, errors(response)) == (400, [("accountId", "INVALID")])

        other = await bot(tenant)
        response = await upstream.api.post(API, json=upstream_form(other["publicId"]), headers=tenant.headers)
        assert (response.status_code, errors(response)) == (400, [("accountId", "INVALID")])

        response = await upstream.api.post(API, json=form(APPLICATION, account), headers=tenant.headers)
        assert (response.status_code, errors(response)) == (400, [("applicationId", "INVALID")])
        assert inbox.received == []

    async def test_a_refusal_of_the_upstream_is_400_and_stores_nothing(
        self, app: Any, upstream: Upstream, tenant: Tenant
    ):
        channel, _, _ = await upstream.channel(tenant)
        body = upstream_form(channel["publicId"])
        await create(upstream.api, tenant, body)
        other = body | {"components": [{**body["components"][0], "text": "Dear {{1}}, card {{2}} is here"}]}
        again = await upstream.api.post(API, json=other, headers=tenant.headers)  # the name is taken upstream
        assert (again.status_code, errors(again)) == (400, [("upstream", "BAD_REQUEST")])
        async with app.state.db.read_sessions() as session:
            names = select(Template.name).join(Channel, Channel.id == Template.channel_id)
            stored = await session.execute(names.where(Channel.public_id == channel["publicId"]))
            assert list(stored.scalars()) == [body["name"]]
