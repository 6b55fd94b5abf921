"""The portal's Templates pages (a company's list, editor with its live preview, details, update, delete)
and the operator's Review queue: the same rules and services as the Template API."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from openmmp.models import Template
from openmmp.portal.pages.template_pages import editor_fields, reviewer_of, stored_form
from openmmp.providers.registry import REGISTRY
from tests.conftest import Tenant
from tests.portal.conftest import PortalClient, look_at

API = "/api/v1/template"
HOOKS = "https://8.8.8.8/hooks"
"""A public address: the webhook guard takes it, and no worker runs here to call it."""

MakeChannel = Callable[..., Awaitable[dict[str, Any]]]


def editor(account_id: str, **overrides: str) -> dict[str, str]:
    """The editor's fields for a text template with the parameters `name` and `code`, and one button."""
    return {
        "name": "Welcome",
        "accountId": account_id,
        "description": "Sign-up",
        "expireType": "NONE",
        "messageType": "text",
        "text": "Hello {{name}}, your code is {{code}}",
        "button1Action": "open-url",
        "button1Text": "Open",
        "button1Data": "https://example.com/welcome",
        "samples": "name=Dara\ncode=4711",
    } | overrides


async def bot(make_channel: MakeChannel, tenant: Tenant) -> str:
    """A Viber Bot channel: its templates are the operator's to review (its upstream reviews none)."""
    channel = await make_channel(tenant, webhookUrl=HOOKS)
    return str(channel["publicId"])


async def create(admin: PortalClient, account_id: str, **overrides: str) -> str:
    """Create a template through the editor; its publicId, from the page the portal goes to."""
    response = await admin.post("/portal/templates", editor(account_id, **overrides))
    assert response.status_code == 303, response.text
    found = re.fullmatch(r"/portal/templates/([^/?]+)\?notice=.*", response.headers["location"])
    assert found, response.headers["location"]
    return found.group(1)


async def api_template(client: httpx.AsyncClient, tenant: Tenant, public_id: str) -> dict[str, Any]:
    response = await client.get(f"{API}/{public_id}", headers=tenant.headers)
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


async def type_3_webhooks(client: httpx.AsyncClient, tenant: Tenant, account_id: str) -> list[int]:
    """The template statuses the channel's `type: 3` webhooks told, oldest first."""
    listed = await client.get(
        f"/api/v1/channel/{account_id}/webhook/deliveries", params={"size": 100}, headers=tenant.headers
    )
    assert listed.status_code == 200, listed.text
    statuses = []
    for item in reversed(listed.json()["items"]):
        if item["eventType"] == 3:
            detail = await client.get(
                f"/api/v1/channel/{account_id}/webhook/deliveries/{item['webhookId']}", headers=tenant.headers
            )
            statuses.append(detail.json()["body"]["template"]["status"])
    return statuses


class TestTheEditor:
    async def test_the_editor_offers_the_channel_and_a_live_preview(
        self, admin: PortalClient, tenant: Tenant, make_channel: MakeChannel
    ):
        account_id = await bot(make_channel, tenant)
        page = await admin.get(f"/portal/templates/new?accountId={account_id}")
        assert page.status_code == 200, page.text
        assert f'<option value="{account_id}" selected>' in page.text
        assert 'hx-post="/portal/templates/preview"' in page.text
        assert 'hx-trigger="input changed delay:400ms"' in page.text
        assert 'id="template-preview"' in page.text

    async def test_the_preview_fills_in_the_sample_values_and_keeps_the_others(
        self, admin: PortalClient, tenant: Tenant, make_channel: MakeChannel
    ):
        account_id = await bot(make_channel, tenant)
        response = await admin.htmx(
            "POST", "/portal/templates/preview", editor(account_id, samples="name=Dara")
        )
        assert response.status_code == 200, response.text
        assert "Hello Dara, your code is {{code}}" in response.text
        assert "<code>code</code> (no sample value)" in response.text
        assert "Bot (VIBER_BOT)" in response.text
        assert "Open" in response.text

    async def test_the_preview_checks_the_message_as_the_channel_sends_it(
        self, admin: PortalClient, tenant: Tenant, make_channel: MakeChannel
    ):
        account_id = await bot(make_channel, tenant)
        response = await admin.htmx(
            "POST", "/portal/templates/preview", editor(account_id, messageType="location")
        )
        assert response.status_code == 400
        assert "<strong>messageType</strong>" in response.text
        assert "not allowed on VIBER_BOT channels" in response.text

    async def test_a_template_is_created_waiting_for_the_operators_review(
        self, admin: PortalClient, client: httpx.AsyncClient, tenant: Tenant, make_channel: MakeChannel
    ):
        account_id = await bot(make_channel, tenant)
        public_id = await create(admin, account_id)

        found = await api_template(client, tenant, public_id)
        assert (found["name"], found["status"], found["accountId"]) == ("Welcome", 1, account_id)
        assert found["variables"] == ["code", "name"]
        assert found["messages"][0]["message"] == {
            "type": "text",
            "message": "Hello {{name}}, your code is {{code}}",
            "suggestions": [
                {"action": "open-url", "text": "Open", "postbackData": "https://example.com/welcome"}
            ],
        }
        page = await admin.get(f"/portal/templates/{public_id}")
        assert page.status_code == 200
        assert '<span class="status status-request">REQUEST</span>' in page.text
        assert "operator" in page.text
        listed = await admin.get("/portal/templates")
        assert f'id="template-{public_id}"' in listed.text

    async def test_the_saved_template_previews_as_the_api_does(
        self, admin: PortalClient, tenant: Tenant, make_channel: MakeChannel
    ):
        account_id = await bot(make_channel, tenant)
        public_id = await create(admin, account_id)
        filled = await admin.htmx(
            "POST", f"/portal/templates/{public_id}/preview", {"samples": "name=Dara\ncode=4711"}
        )
        assert filled.status_code == 200, filled.text
        assert "Hello Dara, your code is 4711" in filled.text
        missing = await admin.htmx("POST", f"/portal/templates/{public_id}/preview", {"samples": "name=Dara"})
        assert missing.status_code == 400
        assert "<strong>params.code</strong>: missing value" in missing.text

    async def test_bad_input_is_a_400_naming_the_field_with_the_values_kept(
        self, admin: PortalClient, tenant: Tenant, make_channel: MakeChannel
    ):
        account_id = await bot(make_channel, tenant)
        no_name = await admin.post("/portal/templates", editor(account_id, name=""))
        assert no_name.status_code == 400
        assert "<strong>name</strong>" in no_name.text
        assert "Hello {{name}}, your code is {{code}}</textarea>" in no_name.text
        second_button = {
            "button1Text": "",
            "button1Data": "",
            "button2Action": "reply",
            "button2Text": "x" * 300,
        }
        long_button = await admin.post("/portal/templates", editor(account_id, **second_button))
        assert long_button.status_code == 400
        assert "<strong>button2Text</strong>" in long_button.text
        ttl = await admin.post("/portal/templates", editor(account_id, expireType="TTL"))
        assert ttl.status_code == 400
        assert "<strong>ttl</strong>: required when expireType is TTL" in ttl.text

    async def test_a_template_is_updated_and_waits_for_review_again(
        self, admin: PortalClient, client: httpx.AsyncClient, tenant: Tenant, make_channel: MakeChannel
    ):
        account_id = await bot(make_channel, tenant)
        public_id = await create(admin, account_id)
        page = await admin.get(f"/portal/templates/{public_id}/edit")
        assert page.status_code == 200
        assert 'value="https://example.com/welcome"' in page.text

        response = await admin.post(f"/portal/templates/{public_id}", editor(account_id, text="Bye {{name}}"))
        assert response.status_code == 303, response.text
        found = await api_template(client, tenant, public_id)
        assert (found["status"], found["variables"]) == (1, ["name"])

    async def test_a_template_is_deleted(
        self, admin: PortalClient, client: httpx.AsyncClient, tenant: Tenant, make_channel: MakeChannel
    ):
        account_id = await bot(make_channel, tenant)
        public_id = await create(admin, account_id)
        response = await admin.post(f"/portal/templates/{public_id}/delete")
        assert response.status_code == 303
        gone = await client.get(f"{API}/{public_id}", headers=tenant.headers)
        assert gone.status_code == 404


class TestReview:
    async def test_the_operator_approves_a_template_from_the_queue(
        self,
        admin: PortalClient,
        operator: PortalClient,
        client: httpx.AsyncClient,
        tenant: Tenant,
        make_channel: MakeChannel,
    ):
        account_id = await bot(make_channel, tenant)
        public_id = await create(admin, account_id)

        queue = await operator.get("/portal/review")
        assert queue.status_code == 200, queue.text
        assert f'id="approve-{public_id}"' in queue.text and f'id="reject-{public_id}"' in queue.text
        section = queue.text[queue.text.index(f'id="review-{public_id}"') :]
        assert "Hello {{name}}, your code is {{code}}" in section
        assert tenant.company_id in section and account_id in section

        response = await operator.post(f"/portal/review/{public_id}/approve")
        assert response.status_code == 303, response.text
        assert (await api_template(client, tenant, public_id))["status"] == 2
        assert await type_3_webhooks(client, tenant, account_id) == [1, 2]
        assert f'id="review-{public_id}"' not in (await operator.get("/portal/review")).text
        page = await admin.get(f"/portal/templates/{public_id}")
        assert '<span class="status status-approved">APPROVED</span>' in page.text

    async def test_the_queue_is_oldest_first(
        self, admin: PortalClient, operator: PortalClient, tenant: Tenant, make_channel: MakeChannel
    ):
        account_id = await bot(make_channel, tenant)
        first = await create(admin, account_id, name="First")
        second = await create(admin, account_id, name="Second")
        queue = (await operator.get("/portal/review")).text
        assert queue.index(f'id="review-{first}"') < queue.index(f'id="review-{second}"')

    async def test_a_rejection_needs_a_cause_which_the_company_reads(
        self,
        admin: PortalClient,
        operator: PortalClient,
        client: httpx.AsyncClient,
        tenant: Tenant,
        make_channel: MakeChannel,
    ):
        account_id = await bot(make_channel, tenant)
        public_id = await create(admin, account_id)
        without = await operator.post(f"/portal/review/{public_id}/reject", {"cause": " "})
        assert without.status_code == 400
        assert "<strong>cause</strong>" in without.text
        assert (await api_template(client, tenant, public_id))["status"] == 1

        response = await operator.post(f"/portal/review/{public_id}/reject", {"cause": "Too pushy"})
        assert response.status_code == 303, response.text
        found = await api_template(client, tenant, public_id)
        assert (found["status"], found["cause"]) == (3, "Too pushy")
        page = await admin.get(f"/portal/templates/{public_id}")
        assert '<span class="status status-rejected">REJECTED</span>' in page.text
        assert '<span id="template-cause">Too pushy</span>' in page.text
        assert 'id="submit-template"' in page.text

        again = await admin.post(f"/portal/templates/{public_id}/submit")
        assert again.status_code == 303, again.text
        assert (await api_template(client, tenant, public_id))["status"] == 1
        assert await type_3_webhooks(client, tenant, account_id) == [1, 3, 1]

    async def test_a_template_reviewed_already_is_a_409(
        self, admin: PortalClient, operator: PortalClient, tenant: Tenant, make_channel: MakeChannel
    ):
        account_id = await bot(make_channel, tenant)
        public_id = await create(admin, account_id)
        assert (await operator.post(f"/portal/review/{public_id}/approve")).status_code == 303
        again = await operator.post(f"/portal/review/{public_id}/reject", {"cause": "Changed my mind"})
        assert again.status_code == 409
        assert "it is APPROVED" in again.text

    async def test_a_company_admin_may_not_review(
        self, admin: PortalClient, tenant: Tenant, make_channel: MakeChannel
    ):
        account_id = await bot(make_channel, tenant)
        public_id = await create(admin, account_id)
        assert (await admin.get("/portal/review")).status_code == 403
        assert (await admin.post(f"/portal/review/{public_id}/approve")).status_code == 403

    async def test_the_operator_looking_at_a_company_sees_its_templates(
        self, admin: PortalClient, operator: PortalClient, tenant: Tenant, make_channel: MakeChannel
    ):
        account_id = await bot(make_channel, tenant)
        public_id = await create(admin, account_id)
        await look_at(operator, tenant)
        page = await operator.get("/portal/templates")
        assert f'id="template-{public_id}"' in page.text


class TestIsolationAndForgery:
    async def test_another_companys_template_is_a_404(
        self,
        admin: PortalClient,
        client: httpx.AsyncClient,
        tenant: Tenant,
        new_company: Callable[..., Awaitable[Tenant]],
        sign_in_admin: Callable[[Tenant], Awaitable[PortalClient]],
        make_channel: MakeChannel,
    ):
        account_id = await bot(make_channel, tenant)
        public_id = await create(admin, account_id)
        other = await sign_in_admin(await new_company())

        assert (await other.get(f"/portal/templates/{public_id}")).status_code == 404
        assert (await other.get(f"/portal/templates/{public_id}/edit")).status_code == 404
        preview = await other.htmx("POST", f"/portal/templates/{public_id}/preview", {"samples": ""})
        assert preview.status_code == 404
        assert (await other.post(f"/portal/templates/{public_id}/delete")).status_code == 404
        assert (await other.post(f"/portal/templates/{public_id}/submit")).status_code == 404
        update = await other.post(f"/portal/templates/{public_id}", editor(account_id))
        assert update.status_code == 404
        assert f'id="template-{public_id}"' not in (await other.get("/portal/templates")).text
        assert (await api_template(client, tenant, public_id))["status"] == 1

    async def test_another_companys_channel_is_refused(
        self,
        admin: PortalClient,
        new_company: Callable[..., Awaitable[Tenant]],
        make_channel: MakeChannel,
    ):
        theirs = await bot(make_channel, await new_company())
        response = await admin.post("/portal/templates", editor(theirs))
        assert response.status_code == 400
        assert "<strong>accountId</strong>" in response.text

    async def test_every_change_needs_the_csrf_token(
        self,
        admin: PortalClient,
        operator: PortalClient,
        client: httpx.AsyncClient,
        tenant: Tenant,
        make_channel: MakeChannel,
    ):
        account_id = await bot(make_channel, tenant)
        public_id = await create(admin, account_id)
        forged = {"csrf": "forged"}
        assert (await admin.post("/portal/templates", editor(account_id) | forged)).status_code == 403
        assert (
            await admin.post(f"/portal/templates/{public_id}", editor(account_id) | forged)
        ).status_code == 403
        assert (await admin.post(f"/portal/templates/{public_id}/delete", forged)).status_code == 403
        assert (await operator.post(f"/portal/review/{public_id}/approve", forged)).status_code == 403
        rejected = await operator.post(f"/portal/review/{public_id}/reject", forged | {"cause": "No"})
        assert rejected.status_code == 403
        assert (await api_template(client, tenant, public_id))["status"] == 1


class TestTemplatesReviewedUpstream:
    """An upstream's own form (WhatsApp's) is read, submitted again and deleted in the portal, not edited."""

    def test_it_is_submitted_again_with_its_own_form_and_never_edited(self):
        provider = next(p for p in REGISTRY.providers if p.reviews_templates)
        form = {
            "name": "card_ready",
            "accountId": "01a24ed4-8f0f-7969-9675-4f5f528c8add",
            "category": "UTILITY",
            "language": "en_US",
            "components": [
                {"type": "BODY", "text": "Hello {{1}}", "example": {"body_text": [["Dara"]]}},
            ],
        }
        template = Template(
            name="card_ready", type=1, application_id=int(provider.application), messages=[], upstream=form
        )
        assert isinstance(stored_form(template, form["accountId"]), provider.template_model)
        assert editor_fields(template, form["accountId"]) is None
        assert reviewer_of(template) == f"{provider.title} (upstream)"
