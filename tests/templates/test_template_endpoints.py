"""Templates the operator reviews (every application whose upstream does not review them), through the API:
create, review by the partner key, update, list the approved ones, delete, preview; every status change a
`type: 3` webhook; another company's template a 404 everywhere."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from tests.conftest import Tenant
from tests.templates.conftest import (
    API,
    HOOKS,
    TEXT,
    create,
    errors,
    form,
    read,
    sms_credentials,
    template_webhooks,
)


async def approve(client: httpx.AsyncClient, partner: Tenant, template_id: str) -> httpx.Response:
    return await client.post(f"{API}/{template_id}/approve", headers=partner.headers)


async def approved_template(
    client: httpx.AsyncClient, tenant: Tenant, partner: Tenant, body: dict[str, Any]
) -> str:
    created = await create(client, tenant, body)
    response = await approve(client, partner, created["publicId"])
    assert response.status_code == 200, response.text
    return str(created["publicId"])


class TestCreatingATemplate:
    async def test_it_waits_for_review_with_the_placeholders_as_its_variables(
        self, client: httpx.AsyncClient, tenant: Tenant, bot
    ):
        channel = await bot(tenant)
        created = await create(client, tenant, form(10, channel["publicId"], description="Sign-up"))
        assert set(created) == {"publicId", "name", "status"}
        assert (created["name"], created["status"]) == ("Welcome", 1)

        found = await read(client, tenant, created["publicId"])
        assert found == {
            "publicId": created["publicId"],
            "name": "Welcome",
            "type": 1,
            "status": 1,
            "cause": None,
            "applicationId": 10,
            "accountId": channel["publicId"],
            "description": "Sign-up",
            "expireType": "NONE",
            "ttl": None,
            "expireTime": None,
            "messages": [{"id": "m1", "name": "first", "status": "START", "message": TEXT}],
            "upstream": None,
            "upstreamId": None,
            "variables": ["code", "name"],
            "createdDate": found["createdDate"],
            "updatedDate": found["updatedDate"],
        }

    async def test_its_channel_gets_a_type_3_webhook(self, client: httpx.AsyncClient, tenant: Tenant, bot):
        channel = await bot(tenant)
        created = await create(client, tenant, form(10, channel["publicId"]))
        [webhook] = await template_webhooks(client, tenant, channel["publicId"])
        assert webhook == {
            "type": 3,
            "timestamp": webhook["timestamp"],
            "publicId": channel["publicId"],
            "applicationId": 10,
            "template": {"publicId": created["publicId"], "status": 1, "cause": None},
        }

    async def test_without_a_channel_it_serves_the_application_and_no_channel_is_told(
        self, client: httpx.AsyncClient, tenant: Tenant, make_channel
    ):
        sms = await make_channel(tenant, applicationId=3, credentials=sms_credentials(), webhookUrl=HOOKS)
        created = await create(client, tenant, form(3))
        found = await read(client, tenant, created["publicId"])
        assert (found["accountId"], found["applicationId"], found["status"]) == (None, 3, 1)
        assert await template_webhooks(client, tenant, sms["publicId"]) == []

    async def test_placeholders_may_stand_anywhere_and_a_flow_keeps_its_shape(
        self, client: httpx.AsyncClient, tenant: Tenant, bot
    ):
        channel = await bot(tenant)
        card = {
            "type": "rich_card",
            "richCards": [
                {
                    "title": "{{title}}",
                    "image": "https://cdn.example.com/{{picture}}.png",
                    "suggestions": [
                        {
                            "action": "open-url",
                            "text": "{{cta}}",
                            "postbackData": "https://s.example/{{order}}",
                        }
                    ],
                }
            ],
        }
        thanks = {"type": "text", "message": "{{choice}} it is, {{name}}: your code is {{code}}"}
        messages = [
            {"id": "start", "name": "offer", "status": "START", "message": card, "answerId": "choice"},
            {
                "id": "yes",
                "name": "thanks",
                "status": "COMPLETE",
                "message": thanks,
                "nextMessageBaseOn": "start:Yes",
            },
        ]
        created = await create(client, tenant, form(10, channel["publicId"], type=2, messages=messages))
        found = await read(client, tenant, created["publicId"])
        # The answers are the end user's to give: a send gives the other placeholders.
        assert found["variables"] == ["code", "cta", "name", "order", "picture", "title"]
        assert found["messages"][0]["answerId"] == "choice"
        assert found["messages"][1]["nextMessageBaseOn"] == "start:Yes"


class TestBadBodiesAre400NamingTheField:
    @pytest.mark.parametrize(
        ("change", "name"),
        [
            ({"messages": None}, "messages"),
            ({"messages": []}, "messages"),
            ({"type": 3}, "type"),
            ({"applicationId": 99}, "applicationId"),
            ({"name": ""}, "name"),
            ({"colour": "red"}, "colour"),
            ({"expireType": "TTL"}, "ttl"),
            ({"expireType": "EXPIRE_TIME", "ttl": 60}, "ttl"),
            ({"expireType": "EXPIRE_TIME"}, "expireTime"),
            ({"ttl": 60}, "ttl"),
            ({"expireType": "SOMETIME"}, "expireType"),
            ({"messages": [{"id": "m1", "name": "x", "status": "START"}]}, "messages[0].message"),
            (
                {"messages": [{"id": "m1", "name": "x", "status": "LATER", "message": TEXT}]},
                "messages[0].status",
            ),
            (
                {"messages": [{"id": "m1", "name": "x", "status": "START", "message": {"type": "fax"}}]},
                "messages[0].message.type",
            ),
            ({"messages": [{"id": "", "name": "x", "status": "START", "message": TEXT}]}, "messages[0].id"),
        ],
    )
    async def test_a_bad_field(
        self, client: httpx.AsyncClient, tenant: Tenant, bot, change: dict[str, Any], name: str
    ):
        channel = await bot(tenant)
        body = {k: v for k, v in (form(10, channel["publicId"]) | change).items() if v is not None}
        response = await client.post(API, json=body, headers=tenant.headers)
        assert response.status_code == 400, response.text
        assert name in [e[0] for e in errors(response)], response.text

    async def test_a_body_that_is_no_object(self, client: httpx.AsyncClient, tenant: Tenant):
        response = await client.post(API, json=["Welcome"], headers=tenant.headers)
        assert response.status_code == 400, response.text
        assert errors(response) == [("body", "BAD_REQUEST")]

    async def test_a_broadcast_has_one_message_and_a_flow_unique_ids(
        self, client: httpx.AsyncClient, tenant: Tenant, bot
    ):
        channel = await bot(tenant)
        two = [
            {"id": "m1", "name": "a", "status": "START", "message": TEXT},
            {"id": "m1", "name": "b", "status": "NORMAL", "message": TEXT},
        ]
        broadcast = await client.post(
            API, json=form(10, channel["publicId"], messages=two), headers=tenant.headers
        )
        assert errors(broadcast) == [("messages", "INVALID")]
        flow = await client.post(
            API, json=form(10, channel["publicId"], type=2, messages=two), headers=tenant.headers
        )
        assert errors(flow) == [("messages[1].id", "INVALID")]

    async def test_a_message_the_application_does_not_send_is_refused_as_a_send_would_be(
        self, client: httpx.AsyncClient, tenant: Tenant, make_channel
    ):
        await make_channel(tenant, applicationId=3, credentials=sms_credentials())
        picture = {"type": "picture", "fileUrl": "https://cdn.example.com/{{p}}.png"}
        body = form(3, messages=[{"id": "m1", "name": "x", "status": "START", "message": picture}])
        response = await client.post(API, json=body, headers=tenant.headers)
        assert response.status_code == 400, response.text
        assert errors(response) == [("messages[0].message.type", "INVALID")]
        assert "allowed: text" in response.json()["errors"][0]["message"]

    async def test_a_message_beyond_the_upstreams_limits_is_refused_naming_its_field(
        self, client: httpx.AsyncClient, tenant: Tenant, bot
    ):
        channel = await bot(tenant)
        long = {"type": "text", "message": "x" * 7001}
        body = form(
            10, channel["publicId"], messages=[{"id": "m1", "name": "x", "status": "START", "message": long}]
        )
        response = await client.post(API, json=body, headers=tenant.headers)
        assert response.status_code == 400, response.text
        [(name, code)] = errors(response)
        assert (name.startswith("messages[0].message"), code) == (True, "INVALID"), response.text

    @pytest.mark.parametrize(
        ("application", "why"), [(11, "WhatsappFormCreateTemplateMessage"), (24, "e-mail")]
    )
    async def test_an_application_templates_cannot_serve(
        self, client: httpx.AsyncClient, tenant: Tenant, application: int, why: str
    ):
        response = await client.post(API, json=form(application), headers=tenant.headers)
        assert response.status_code == 400, response.text
        assert errors(response) == [("applicationId", "INVALID")]
        assert why in response.json()["errors"][0]["message"]

    async def test_a_channel_of_another_application_or_company(
        self, client: httpx.AsyncClient, tenant: Tenant, new_company, bot
    ):
        channel = await bot(tenant)
        other = await bot(await new_company())
        mismatch = await client.post(API, json=form(3, channel["publicId"]), headers=tenant.headers)
        assert (mismatch.status_code, errors(mismatch)) == (400, [("accountId", "INVALID")])
        foreign = await client.post(API, json=form(10, other["publicId"]), headers=tenant.headers)
        assert (foreign.status_code, errors(foreign)) == (404, [("accountId", "RESOURCE_NOT_FOUND")])


class TestTheOperatorReviews:
    async def test_the_partner_approves_and_the_channel_is_told(
        self, client: httpx.AsyncClient, tenant: Tenant, partner: Tenant, bot
    ):
        channel = await bot(tenant)
        created = await create(client, tenant, form(10, channel["publicId"]))
        response = await approve(client, partner, created["publicId"])
        assert response.status_code == 200, response.text
        assert (response.json()["status"], response.json()["cause"]) == (2, None)
        assert (await read(client, tenant, created["publicId"]))["status"] == 2
        webhooks = await template_webhooks(client, tenant, channel["publicId"])
        assert [w["template"]["status"] for w in webhooks] == [1, 2]

    async def test_the_partner_rejects_with_a_cause(
        self, client: httpx.AsyncClient, tenant: Tenant, partner: Tenant, bot
    ):
        channel = await bot(tenant)
        created = await create(client, tenant, form(10, channel["publicId"]))
        response = await client.post(
            f"{API}/{created['publicId']}/reject", json={"cause": "Promises a prize"}, headers=partner.headers
        )
        assert response.status_code == 200, response.text
        found = await read(client, tenant, created["publicId"])
        assert (found["status"], found["cause"]) == (3, "Promises a prize")
        last = (await template_webhooks(client, tenant, channel["publicId"]))[-1]
        assert last["template"] == {"publicId": created["publicId"], "status": 3, "cause": "Promises a prize"}

    async def test_only_a_template_waiting_for_review_is_reviewed(
        self, client: httpx.AsyncClient, tenant: Tenant, partner: Tenant, bot
    ):
        channel = await bot(tenant)
        template_id = await approved_template(client, tenant, partner, form(10, channel["publicId"]))
        again = await approve(client, partner, template_id)
        assert (again.status_code, errors(again)) == (409, [("templateId", "EXISTED")])
        reject = await client.post(
            f"{API}/{template_id}/reject", json={"cause": "x"}, headers=partner.headers
        )
        assert reject.status_code == 409, reject.text
        assert len(await template_webhooks(client, tenant, channel["publicId"])) == 2

    async def test_a_rejection_needs_a_cause(
        self, client: httpx.AsyncClient, tenant: Tenant, partner: Tenant
    ):
        created = await create(client, tenant, form(3))
        response = await client.post(f"{API}/{created['publicId']}/reject", json={}, headers=partner.headers)
        assert (response.status_code, errors(response)) == (400, [("cause", "INVALID")])

    async def test_no_key_but_the_partner_of_the_templates_company_reviews(
        self, app, client: httpx.AsyncClient, tenant: Tenant, new_company
    ):
        from openmmp.companies.service import companies

        created = await create(client, tenant, form(3))
        async with app.state.db.write_sessions() as session, session.begin():
            _, stranger_key = await companies.create_partner(
                session, app.state.keyring, name="Another partner"
            )
        for key in (tenant.api_key, (await new_company()).api_key, stranger_key):
            response = await client.post(f"{API}/{created['publicId']}/approve", headers={"apiKey": key})
            assert (response.status_code, errors(response)) == (404, [("templateId", "RESOURCE_NOT_FOUND")])
        assert (await read(client, tenant, created["publicId"]))["status"] == 1


class TestUpdating:
    async def test_an_approved_template_waits_for_review_again_with_its_new_content(
        self, client: httpx.AsyncClient, tenant: Tenant, partner: Tenant, bot
    ):
        channel = await bot(tenant)
        template_id = await approved_template(client, tenant, partner, form(10, channel["publicId"]))
        text = {"type": "text", "message": "Hi {{first_name}}"}
        body = form(
            10,
            channel["publicId"],
            name="Welcome 2",
            messages=[{"id": "m", "name": "m", "status": "START", "message": text}],
        )
        response = await client.post(f"{API}/{template_id}", json=body, headers=tenant.headers)
        assert response.status_code == 200, response.text
        updated = response.json()
        assert (updated["publicId"], updated["name"], updated["status"]) == (template_id, "Welcome 2", 1)
        assert updated["variables"] == ["first_name"]
        assert updated == await read(client, tenant, template_id)
        webhooks = await template_webhooks(client, tenant, channel["publicId"])
        assert [w["template"]["status"] for w in webhooks] == [1, 2, 1]
        listed = await client.get(f"{API}/approved", headers=tenant.headers)
        assert listed.json()["total"] == 0

    async def test_a_bad_update_changes_nothing(self, client: httpx.AsyncClient, tenant: Tenant, bot):
        channel = await bot(tenant)
        created = await create(client, tenant, form(10, channel["publicId"]))
        before = await read(client, tenant, created["publicId"])
        response = await client.post(
            f"{API}/{created['publicId']}", json=form(10, channel["publicId"], type=9), headers=tenant.headers
        )
        assert (response.status_code, errors(response)) == (400, [("type", "INVALID")])
        assert await read(client, tenant, created["publicId"]) == before


class TestListingTheApprovedOnes:
    async def test_by_channel_application_and_page(
        self, client: httpx.AsyncClient, tenant: Tenant, partner: Tenant, bot, make_channel
    ):
        first, second = await bot(tenant), await bot(tenant)
        await make_channel(tenant, applicationId=3, credentials=sms_credentials())
        own = await approved_template(client, tenant, partner, form(10, first["publicId"], name="own"))
        shared = await approved_template(client, tenant, partner, form(10, name="shared"))
        sms = await approved_template(client, tenant, partner, form(3, name="sms"))
        await create(client, tenant, form(10, name="waiting"))

        async def listed(**query: Any) -> tuple[int, list[str]]:
            response = await client.get(f"{API}/approved", params=query, headers=tenant.headers)
            assert response.status_code == 200, response.text
            page = response.json()
            assert all(item["status"] == 2 for item in page["items"])
            return page["total"], [item["publicId"] for item in page["items"]]

        assert await listed() == (3, [own, shared, sms])
        assert await listed(size=2) == (3, [own, shared])
        assert await listed(size=2, page=2) == (3, [sms])
        assert await listed(accountId=first["publicId"]) == (2, [own, shared])
        assert await listed(accountId=second["publicId"]) == (1, [shared])
        assert await listed(applicationId=3) == (1, [sms])
        assert await listed(applicationId=10, accountId=second["publicId"]) == (1, [shared])

    async def test_another_companys_channel_is_404(
        self, client: httpx.AsyncClient, tenant: Tenant, new_company, bot
    ):
        foreign = await bot(await new_company())
        response = await client.get(
            f"{API}/approved", params={"accountId": foreign["publicId"]}, headers=tenant.headers
        )
        assert (response.status_code, errors(response)) == (404, [("accountId", "RESOURCE_NOT_FOUND")])

    @pytest.mark.parametrize("query", [{"page": 0}, {"size": 101}, {"applicationId": 99}])
    async def test_bad_queries_are_400(
        self, client: httpx.AsyncClient, tenant: Tenant, query: dict[str, Any]
    ):
        response = await client.get(f"{API}/approved", params=query, headers=tenant.headers)
        assert response.status_code == 400, response.text
        assert [e[0] for e in errors(response)] == list(query)


class TestDeleting:
    async def test_a_deleted_template_is_gone(
        self, client: httpx.AsyncClient, tenant: Tenant, partner: Tenant
    ):
        template_id = await approved_template(client, tenant, partner, form(3))
        response = await client.delete(f"{API}/{template_id}", headers=tenant.headers)
        assert (response.status_code, response.content) == (204, b"")
        for answer in (
            await client.get(f"{API}/{template_id}", headers=tenant.headers),
            await client.delete(f"{API}/{template_id}", headers=tenant.headers),
            await approve(client, partner, template_id),
        ):
            assert (answer.status_code, errors(answer)) == (404, [("templateId", "RESOURCE_NOT_FOUND")])
        assert (await client.get(f"{API}/approved", headers=tenant.headers)).json()["total"] == 0


class TestPreview:
    async def test_the_message_with_its_params(self, client: httpx.AsyncClient, tenant: Tenant, bot):
        channel = await bot(tenant)
        created = await create(client, tenant, form(10, channel["publicId"]))
        response = await client.post(
            f"{API}/{created['publicId']}/preview",
            json={"params": {"name": "Dara", "code": 4711}},
            headers=tenant.headers,
        )
        assert response.status_code == 200, response.text
        assert response.json() == {"type": "text", "message": "Hello Dara, your code is 4711"}

    async def test_missing_and_unknown_params_are_named(self, client: httpx.AsyncClient, tenant: Tenant):
        created = await create(client, tenant, form(3))
        response = await client.post(
            f"{API}/{created['publicId']}/preview",
            json={"params": {"name": "Dara", "coupon": "X"}},
            headers=tenant.headers,
        )
        assert response.status_code == 400, response.text
        assert errors(response) == [("params.code", "INVALID"), ("params.coupon", "INVALID")]
        assert [e["message"] for e in response.json()["errors"]] == [
            "missing value",
            "not a variable of the template",
        ]

    async def test_on_a_channel_the_template_is_not_for(self, client: httpx.AsyncClient, tenant: Tenant, bot):
        own, other = await bot(tenant), await bot(tenant)
        created = await create(client, tenant, form(10, own["publicId"]))
        params = {"name": "Dara", "code": "1"}
        response = await client.post(
            f"{API}/{created['publicId']}/preview",
            json={"params": params, "accountId": other["publicId"]},
            headers=tenant.headers,
        )
        assert (response.status_code, errors(response)) == (400, [("accountId", "INVALID")])

    async def test_checked_on_the_channel_as_a_send_there_would_be(
        self, client: httpx.AsyncClient, tenant: Tenant, bot
    ):
        channel = await bot(tenant)
        created = await create(client, tenant, form(10, channel["publicId"]))
        response = await client.post(
            f"{API}/{created['publicId']}/preview",
            json={"params": {"name": "D" * 7000, "code": "1"}},
            headers=tenant.headers,
        )
        assert response.status_code == 400, response.text
        assert errors(response)[0][0].startswith("message"), response.text


class TestAnotherCompanysTemplate:
    async def test_is_404_everywhere_and_unchanged(
        self, client: httpx.AsyncClient, tenant: Tenant, new_company, bot
    ):
        channel = await bot(tenant)
        created = await create(client, tenant, form(10, channel["publicId"]))
        before = await read(client, tenant, created["publicId"])
        intruder = await new_company()
        url = f"{API}/{created['publicId']}"
        for method, path, body in (
            ("GET", url, None),
            ("POST", url, form(3)),
            ("DELETE", url, None),
            ("POST", f"{url}/preview", {"params": {"name": "x", "code": "y"}}),
            ("POST", f"{url}/approve", None),
            ("POST", f"{url}/reject", {"cause": "x"}),
        ):
            response = await client.request(method, path, json=body, headers=intruder.headers)
            assert (response.status_code, errors(response)) == (
                404,
                [("templateId", "RESOURCE_NOT_FOUND")],
            ), (
                method,
                path,
            )
        assert await read(client, tenant, created["publicId"]) == before
        # ... and its channel was told nothing new.
        assert len(await template_webhooks(client, tenant, channel["publicId"])) == 1
