"""The delivery log and replay API: /api/v1/channel/{accountId}/webhook/..."""

import asyncio
import time

import httpx
import orjson
import pytest
from tests.conftest import Tenant
from tests.webhooks.conftest import Answer, drive

from openmmp.models.webhook import DeliveryState

SUMMARY_FIELDS = {
    "webhookId",
    "eventType",
    "state",
    "attempts",
    "lastStatusCode",
    "lastError",
    "createdDate",
    "deliveredDate",
    "nextAttemptDate",
}


def event(n: int) -> dict:
    return {"messageId": f"m-{n}", "cause": "SEND", "type": 1, "status": 2, "text": "ção"}


async def _delivered(read_delivery, *webhook_ids: str) -> bool:
    for webhook_id in webhook_ids:
        if (await read_delivery(webhook_id))[0].state != DeliveryState.DELIVERED:
            return False
    return True


class TestListing:
    async def test_newest_first_with_state_filter_and_paging(
        self, hook_client: httpx.AsyncClient, make_hook, enqueue, receiver, make_deliverer, read_delivery
    ):
        hook = await make_hook()
        receiver.script(hook.path, Answer(500, b"no"))
        ids = [await enqueue(hook, event(n), ordering_key=f"k-{hook.account_id}") for n in range(3)]
        await make_deliverer().deliver_due()  # the first one fails once; the others wait their turn

        listing = await hook_client.get(f"{hook.base}/deliveries", headers=hook.tenant.headers)
        assert listing.status_code == 200, listing.text
        page = listing.json()
        assert (page["total"], page["page"], page["size"]) == (3, 1, 20)
        assert [d["webhookId"] for d in page["items"]] == ids[::-1]
        oldest = page["items"][-1]
        assert set(oldest) == SUMMARY_FIELDS
        assert oldest["eventType"] == 1
        assert oldest["state"] == "PENDING"
        assert (oldest["attempts"], oldest["lastStatusCode"], oldest["lastError"]) == (1, 500, "HTTP 500")
        assert oldest["nextAttemptDate"] >= oldest["createdDate"]
        assert oldest["deliveredDate"] is None

        await drive(make_deliverer(), lambda: _delivered(read_delivery, *ids))
        delivered = await hook_client.get(
            f"{hook.base}/deliveries?state=DELIVERED&size=2&page=2", headers=hook.tenant.headers
        )
        page = delivered.json()
        assert page["total"] == 3
        assert [d["webhookId"] for d in page["items"]] == [ids[0]]
        assert page["items"][0]["nextAttemptDate"] is None
        assert page["items"][0]["deliveredDate"] is not None
        held = await hook_client.get(f"{hook.base}/deliveries?state=HELD", headers=hook.tenant.headers)
        assert held.json()["total"] == 0

    @pytest.mark.parametrize("query", ["state=LOST", "state=1", "size=0", "size=101", "page=0"])
    async def test_bad_queries_are_400_naming_them(
        self, hook_client: httpx.AsyncClient, make_hook, query: str
    ):
        hook = await make_hook()
        response = await hook_client.get(f"{hook.base}/deliveries?{query}", headers=hook.tenant.headers)
        assert response.status_code == 400
        assert response.json()["errors"][0]["name"] == query.split("=")[0]


class TestDetail:
    async def test_the_body_as_json_and_every_attempt(
        self, hook_client: httpx.AsyncClient, make_hook, enqueue, receiver, make_deliverer, read_delivery
    ):
        hook = await make_hook()
        receiver.script(hook.path, Answer(503, b'{"error":"maintenance"}'))
        webhook_id = await enqueue(hook, event(1), ordering_key=None, event_type=2)
        await drive(make_deliverer(), lambda: _delivered(read_delivery, webhook_id))

        response = await hook_client.get(f"{hook.base}/deliveries/{webhook_id}", headers=hook.tenant.headers)
        assert response.status_code == 200, response.text
        detail = response.json()
        assert set(detail) == SUMMARY_FIELDS | {"body", "attemptLog"}
        assert detail["body"] == event(1)
        assert (detail["eventType"], detail["state"], detail["attempts"]) == (2, "DELIVERED", 2)
        failed, succeeded = detail["attemptLog"]
        assert set(failed) == {"attemptedDate", "url", "statusCode", "latencyMs", "responseExcerpt", "error"}
        assert (failed["statusCode"], failed["responseExcerpt"], failed["error"]) == (
            503,
            '{"error":"maintenance"}',
            "HTTP 503",
        )
        assert (succeeded["statusCode"], succeeded["error"], succeeded["url"]) == (204, None, hook.url)
        assert succeeded["attemptedDate"] >= failed["attemptedDate"]
        assert hook.secret not in response.text


class TestNotFound:
    @pytest.mark.parametrize(
        "webhook_id", ["00000000-0000-4000-8000-000000000000", "not-an-id", "x" * 300, "%00"]
    )
    async def test_unknown_or_malformed_ids_are_404(
        self, hook_client: httpx.AsyncClient, make_hook, webhook_id: str
    ):
        hook = await make_hook()
        for method, path in (
            ("GET", f"{hook.base}/deliveries/{webhook_id}"),
            ("POST", f"{hook.base}/deliveries/{webhook_id}/replay"),
        ):
            response = await hook_client.request(method, path, headers=hook.tenant.headers)
            assert response.status_code == 404, response.text
            assert response.json()["errors"][0]["code"] == "RESOURCE_NOT_FOUND"

    async def test_another_companys_channel_and_deliveries_look_absent(
        self, hook_client: httpx.AsyncClient, make_hook, enqueue, new_owner
    ):
        victim = await make_hook(await new_owner())
        webhook_id = await enqueue(victim, event(1))
        intruder: Tenant = await new_owner()
        for method, path, body in (
            ("GET", f"{victim.base}/deliveries", None),
            ("GET", f"{victim.base}/deliveries/{webhook_id}", None),
            ("POST", f"{victim.base}/deliveries/{webhook_id}/replay", None),
            ("POST", f"{victim.base}/replay", {}),
        ):
            response = await hook_client.request(method, path, json=body, headers=intruder.headers)
            assert response.status_code == 404, (method, path, response.text)
            assert response.json()["errors"][0]["name"] == "accountId"

    async def test_a_delivery_is_only_found_under_its_own_channel(
        self, hook_client: httpx.AsyncClient, make_hook, enqueue, owner: Tenant
    ):
        first, second = await make_hook(), await make_hook()
        webhook_id = await enqueue(first, event(1))
        response = await hook_client.get(f"{second.base}/deliveries/{webhook_id}", headers=owner.headers)
        assert response.status_code == 404
        assert response.json()["errors"][0]["name"] == "webhookId"

    async def test_an_api_key_is_required(self, hook_client: httpx.AsyncClient, make_hook):
        hook = await make_hook()
        assert (await hook_client.get(f"{hook.base}/deliveries")).status_code == 401


class TestReplay:
    async def test_a_delivered_webhook_goes_out_again_with_the_same_id_and_bytes(
        self, hook_client: httpx.AsyncClient, make_hook, enqueue, receiver, make_deliverer, read_delivery
    ):
        hook = await make_hook()
        webhook_id = await enqueue(hook, event(1))
        deliverer = make_deliverer()
        await drive(deliverer, lambda: _delivered(read_delivery, webhook_id))

        response = await hook_client.post(
            f"{hook.base}/deliveries/{webhook_id}/replay", headers=hook.tenant.headers
        )
        assert response.status_code == 200, response.text
        replayed = response.json()
        assert (replayed["webhookId"], replayed["state"], replayed["attempts"]) == (webhook_id, "PENDING", 0)
        assert replayed["deliveredDate"] is None
        assert replayed["nextAttemptDate"] <= int(time.time() * 1000)

        await drive(deliverer, lambda: _delivered(read_delivery, webhook_id))
        first, again = receiver.of(hook.path)
        assert first.webhook_id == again.webhook_id == webhook_id
        assert first.body == again.body
        _, attempts = await read_delivery(webhook_id)
        assert [a.status_code for a in attempts] == [204, 204]

    async def test_bulk_replay_by_date_and_state(
        self, hook_client: httpx.AsyncClient, make_hook, enqueue, receiver, make_deliverer, read_delivery
    ):
        hook = await make_hook()
        early = [await enqueue(hook, event(n)) for n in range(2)]
        middle = int(time.time() * 1000) + 1
        await asyncio.sleep(0.01)
        late = [await enqueue(hook, event(n)) for n in range(2, 5)]
        deliverer = make_deliverer()
        await drive(deliverer, lambda: _delivered(read_delivery, *early, *late))
        url = f"{hook.base}/replay"

        response = await hook_client.post(
            url, json={"fromDate": middle, "state": "DELIVERED"}, headers=hook.tenant.headers
        )
        assert response.status_code == 200, response.text
        assert response.json() == {"count": 3}
        states = {i: (await read_delivery(i))[0].state for i in early + late}
        assert [states[i] for i in early] == [DeliveryState.DELIVERED] * 2
        assert [states[i] for i in late] == [DeliveryState.PENDING] * 3
        await drive(deliverer, lambda: _delivered(read_delivery, *late))
        seen = [r.webhook_id for r in receiver.of(hook.path)]
        assert sorted(seen) == sorted(early + late + late)

        assert (await hook_client.post(url, json={"toDate": middle}, headers=hook.tenant.headers)).json() == {
            "count": 2
        }
        assert (await hook_client.post(url, json={"state": "HELD"}, headers=hook.tenant.headers)).json() == {
            "count": 0
        }
        everything = await hook_client.post(url, json={}, headers=hook.tenant.headers)
        assert everything.json() == {"count": 5}
        await drive(deliverer, lambda: _delivered(read_delivery, *early, *late))

    @pytest.mark.parametrize(
        ("body", "name"),
        [
            ({"fromDate": 10, "toDate": 5}, "toDate"),
            ({"fromDate": -1}, "fromDate"),
            ({"state": "LOST"}, "state"),
            ({"since": 1}, "since"),
            ({"fromDate": "yesterday"}, "fromDate"),
        ],
    )
    async def test_bad_bulk_replay_bodies_are_400_naming_the_field(
        self, hook_client: httpx.AsyncClient, make_hook, body: dict, name: str
    ):
        hook = await make_hook()
        response = await hook_client.post(f"{hook.base}/replay", json=body, headers=hook.tenant.headers)
        assert response.status_code == 400
        assert response.json()["errors"][0]["name"] == name

    async def test_while_the_endpoint_is_failed_a_replay_is_held(
        self,
        hook_client: httpx.AsyncClient,
        make_hook,
        enqueue,
        receiver,
        make_deliverer,
        read_delivery,
    ):
        hook = await make_hook()
        receiver.always(hook.path, Answer(500))
        webhook_id = await enqueue(hook, event(1))
        deliverer = make_deliverer(endpoint_failed_after_s=0.1, retry_schedule_s=[0.03])

        async def held() -> bool:
            return (await read_delivery(webhook_id))[0].state == DeliveryState.HELD

        await drive(deliverer, held)
        response = await hook_client.post(
            f"{hook.base}/deliveries/{webhook_id}/replay", headers=hook.tenant.headers
        )
        assert response.json()["state"] == "HELD"
        bulk = await hook_client.post(f"{hook.base}/replay", json={}, headers=hook.tenant.headers)
        assert bulk.json() == {"count": 1}
        assert (await read_delivery(webhook_id))[0].state == DeliveryState.HELD

        receiver.always(hook.path, Answer())
        reactivated = await hook_client.post(
            hook.base, json={"url": hook.url, "secret": hook.secret}, headers=hook.tenant.headers
        )
        assert reactivated.status_code == 200
        await drive(deliverer, lambda: _delivered(read_delivery, webhook_id))


class TestOpenApi:
    async def test_the_routes_are_documented_under_webhooks(self, hook_client: httpx.AsyncClient):
        schema = orjson.loads((await hook_client.get("/openapi.json")).content)
        base = "/api/v1/channel/{accountId}/webhook"
        for path, method in (
            (f"{base}/deliveries", "get"),
            (f"{base}/deliveries/{{webhookId}}", "get"),
            (f"{base}/deliveries/{{webhookId}}/replay", "post"),
            (f"{base}/replay", "post"),
        ):
            operation = schema["paths"][path][method]
            assert operation["tags"] == ["Webhooks"]
            assert "404" in operation["responses"]
            assert "422" not in operation["responses"]
        assert "Webhooks" in [tag["name"] for tag in schema["tags"]]
