"""Conversation flows through the API: a CONVERSATION template started by Broadcast Template Message, moved
on by the end user's replies (Viber Bot callbacks, signed as the upstream signs them) and a worker's
FlowRunner, with every step a send of the company's."""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, update
from tests.conftest import BOT_TOKENS, Tenant
from tests.templates.conftest import API, HOOKS, create

from openmmp.kit.time import now_ms
from openmmp.models import Channel, Job, Message, TemplateFlow
from openmmp.templates import flows
from openmmp.templates.flows import KIND, FlowRunner

pytestmark = pytest.mark.timeout(120)


def step(id: str, status: str, text: str, **fields: Any) -> dict[str, Any]:
    return {"id": id, "name": id, "status": status, "message": {"type": "text", "message": text}, **fields}


BANK = [
    step("start", "START", "Hello {{name}}, your account number?", answerId="account"),
    step(
        "menu",
        "NORMAL",
        "Reply 1 for the balance of {{account}}, 2 for its card",
        answerId="choice",
        nextMessageBaseOn="start",
    ),
    step("balance", "COMPLETE", "{{account}}: 100 USD, {{name}}", nextMessageBaseOn="menu:1"),
    step("card", "COMPLETE", "The card of {{account}} is blocked", nextMessageBaseOn="menu:2"),
    step("oops", "ERROR", "Sorry {{name}}, we did not understand"),
]


class User:
    """An end user of the bot, writing through signed Viber callbacks."""

    def __init__(self, client: httpx.AsyncClient, account: str) -> None:
        self.client, self.account = client, account
        self.id = f"u-{uuid.uuid4().hex[:12]}"
        self.phone = f"85512{uuid.uuid4().int % 10**6:06d}"
        self.token = uuid.uuid4().int % 10**12

    async def _post(self, message: dict[str, Any]) -> httpx.Response:
        self.token += 1
        body = {
            "event": "message",
            "timestamp": now_ms(),
            "message_token": self.token,
            "sender": {"id": self.id, "name": "Dara", "avatar": "", "country": "KH", "language": "km"},
            "message": message,
        }
        raw = json.dumps(body).encode()
        signature = hmac.new(BOT_TOKENS[self.account].encode(), raw, hashlib.sha256).hexdigest()
        return await self.client.post(
            f"/callbacks/viber-bot/{self.account}",
            content=raw,
            headers={"X-Viber-Content-Signature": signature, "content-type": "application/json"},
        )

    async def shares_phone(self) -> None:
        response = await self._post({"type": "contact", "contact": {"phone_number": f"+{self.phone}"}})
        assert response.status_code == 200, response.text

    async def writes(self, text: str) -> httpx.Response:
        response = await self._post({"type": "text", "text": text})
        assert response.status_code == 200, response.text
        return response


@pytest.fixture
async def channel(app, tenant: Tenant, make_channel) -> dict[str, Any]:
    made = await make_channel(tenant, webhookUrl=HOOKS)
    async with app.state.db.write_sessions() as session, session.begin():
        await session.execute(update(Channel).where(Channel.public_id == made["publicId"]).values(status=3))
    return made


@pytest.fixture
async def user(client: httpx.AsyncClient, channel: dict[str, Any]) -> User:
    found = User(client, channel["publicId"])
    await found.shares_phone()
    return found


async def approved(
    client: httpx.AsyncClient, tenant: Tenant, partner: Tenant, account: str, messages: list[dict[str, Any]]
) -> str:
    body = {"name": "Bank bot", "type": 2, "applicationId": 10, "accountId": account, "messages": messages}
    template = (await create(client, tenant, body))["publicId"]
    response = await client.post(f"{API}/{template}/approve", headers=partner.headers)
    assert response.status_code == 200, response.text
    return str(template)


async def started(
    client: httpx.AsyncClient, tenant: Tenant, account: str, template: str, phone: str, **extra: Any
) -> httpx.Response:
    body = {"templateId": template, "phone": f"+{phone}", "params": {"name": "Dara"}, **extra}
    return await client.post(
        f"/api/v1/channel/{account}/broadcast-template", json=body, headers=tenant.headers
    )


async def start_flow(
    client: httpx.AsyncClient,
    tenant: Tenant,
    partner: Tenant,
    account: str,
    phone: str,
    messages: list[dict[str, Any]] = BANK,
) -> str:
    """An approved CONVERSATION template of `messages`, started with `phone`: its START messageId."""
    template = await approved(client, tenant, partner, account, messages)
    answer = await started(client, tenant, account, template, phone)
    assert answer.status_code == 200, answer.text
    return str(answer.json()["messageId"])


async def flow(client: httpx.AsyncClient, tenant: Tenant, message_id: str) -> dict[str, Any]:
    response = await client.get(f"{API}/flow/{message_id}", headers=tenant.headers)
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


async def texts(app, message_ids: list[str]) -> list[str]:
    async with app.state.db.read_sessions() as session:
        rows = (await session.execute(select(Message).where(Message.public_id.in_(message_ids)))).scalars()
        by_id = {m.public_id: m.content["message"] for m in rows}
    return [by_id[i] for i in message_ids]


async def run_flows(app) -> int:
    """What a worker does when a reply's job is due; returns the jobs it took."""
    return await FlowRunner(app.state.db, app.state.keyring, on_commit=lambda: None).run_once()


async def jobs_of(app, account: str) -> int:
    async with app.state.db.read_sessions() as session:
        statement = (
            select(func.count())
            .select_from(Job)
            .join(Channel, Channel.id == Job.channel_id)
            .where(Job.kind == KIND, Channel.public_id == account)
        )
        return int(await session.scalar(statement) or 0)


class TestAFlowRuns:
    async def test_replies_pick_the_steps_and_the_answers_fill_them(
        self, app, client, tenant, partner, channel, user
    ):
        account = channel["publicId"]
        template = await approved(client, tenant, partner, account, BANK)
        assert (await client.get(f"{API}/{template}", headers=tenant.headers)).json()["variables"] == ["name"]
        answer = await started(client, tenant, account, template, user.phone)
        assert answer.status_code == 200, answer.text
        first = answer.json()["messageId"]
        state = await flow(client, tenant, first)
        assert (state["status"], state["step"], state["answers"], state["messages"]) == (
            "WAITING",
            "start",
            {},
            [first],
        )
        assert state["accountId"] == account and state["templateId"] == template and state["to"]
        assert await texts(app, [first]) == ["Hello Dara, your account number?"]

        await user.writes("ACC-42")
        assert await run_flows(app) == 1
        state = await flow(client, tenant, first)
        assert (state["status"], state["step"], state["answers"]) == (
            "WAITING",
            "menu",
            {"account": "ACC-42"},
        )
        await user.writes(" 2 ")
        await run_flows(app)
        state = await flow(client, tenant, first)
        assert (state["status"], state["step"]) == ("COMPLETE", "card")
        assert state["answers"] == {"account": "ACC-42", "choice": "2"}
        assert await texts(app, state["messages"]) == [
            "Hello Dara, your account number?",
            "Reply 1 for the balance of ACC-42, 2 for its card",
            "The card of ACC-42 is blocked",
        ]
        # Each step is a send of the company's, with the statuses of any send.
        status = await client.get(f"/api/v1/message/{state['messages'][2]}/status", headers=tenant.headers)
        assert status.status_code == 200 and status.json()["status"] == 1

        # An ended flow takes no more replies, and queues no job for them.
        await user.writes("1")
        assert await jobs_of(app, account) == 0
        assert await flow(client, tenant, first) == state

    async def test_a_reply_that_fits_no_step_gets_the_error_message_and_ends_the_flow(
        self, app, client, tenant, partner, channel, user
    ):
        account = channel["publicId"]
        first = await start_flow(client, tenant, partner, account, user.phone)
        await user.writes("ACC-1")
        await run_flows(app)
        await user.writes("7")
        await run_flows(app)
        state = await flow(client, tenant, first)
        assert (state["status"], state["step"], state["cause"]) == ("ERROR", "oops", None)
        assert (await texts(app, state["messages"]))[-1] == "Sorry Dara, we did not understand"

    async def test_without_an_error_message_the_flow_ends_with_the_cause(
        self, app, client, tenant, partner, channel, user
    ):
        account = channel["publicId"]
        first = await start_flow(client, tenant, partner, account, user.phone, BANK[:-1])
        await user.writes("ACC-1")
        await user.writes("maybe")  # both replies wait for one run: taken in order
        await run_flows(app)
        state = await flow(client, tenant, first)
        assert state["status"] == "ERROR"
        assert state["cause"] == "the reply to step 'menu' fits no step"
        assert len(state["messages"]) == 2

    async def test_steps_that_ask_nothing_go_at_once(self, app, client, tenant, partner, channel, user):
        account = channel["publicId"]
        messages = [
            step("hi", "START", "Hi {{name}}"),
            step("ask", "NORMAL", "Rate us 1-5", answerId="rating", nextMessageBaseOn="hi"),
            step("thanks", "NORMAL", "Thanks for {{rating}}", nextMessageBaseOn="ask"),
            step("bye", "COMPLETE", "Bye", nextMessageBaseOn="thanks"),
        ]
        first = await start_flow(client, tenant, partner, account, user.phone, messages)
        state = await flow(client, tenant, first)
        assert (state["status"], state["step"], len(state["messages"])) == ("WAITING", "ask", 2)
        await user.writes("5")
        await run_flows(app)
        state = await flow(client, tenant, first)
        assert state["status"] == "COMPLETE"
        assert await texts(app, state["messages"]) == ["Hi Dara", "Rate us 1-5", "Thanks for 5", "Bye"]


class TestOnce:
    async def test_a_replayed_start_starts_no_second_flow(self, app, client, tenant, partner, channel, user):
        account = channel["publicId"]
        template = await approved(client, tenant, partner, account, BANK)
        again = [
            await started(client, tenant, account, template, user.phone, clientMessageId="start-1")
            for _ in range(2)
        ]
        assert [r.status_code for r in again] == [200, 200]
        assert again[0].json()["messageId"] == again[1].json()["messageId"]
        async with app.state.db.read_sessions() as session:
            count = await session.scalar(
                select(func.count())
                .select_from(TemplateFlow)
                .where(TemplateFlow.template_public_id == template)
            )
        assert count == 1
        other = await client.post(
            f"/api/v1/channel/{account}/broadcast-template",
            json={
                "templateId": template,
                "phone": f"+{user.phone}",
                "params": {"name": "Vy"},
                "clientMessageId": "start-1",
            },
            headers=tenant.headers,
        )
        assert other.status_code == 409, other.text

    async def test_a_reply_is_taken_once_however_often_its_job_runs(
        self, app, client, tenant, partner, channel, user
    ):
        account = channel["publicId"]
        first = await start_flow(client, tenant, partner, account, user.phone)
        await user.writes("ACC-9")
        # A second job for the same reply (a worker died after its commit, before its acknowledgement).
        async with app.state.db.write_sessions() as session, session.begin():
            channel_id = await session.scalar(select(Channel.id).where(Channel.public_id == account))
            company_id = await session.scalar(select(Channel.company_id).where(Channel.public_id == account))
            session.add(Job(kind=KIND, company_id=company_id, channel_id=channel_id))
        await run_flows(app)
        await run_flows(app)
        state = await flow(client, tenant, first)
        assert (state["step"], len(state["messages"])) == ("menu", 2)
        assert await jobs_of(app, account) == 0

    async def test_a_newer_flow_ends_the_waiting_one(self, app, client, tenant, partner, channel, user):
        account = channel["publicId"]
        template = await approved(client, tenant, partner, account, BANK)
        older = (await started(client, tenant, account, template, user.phone)).json()["messageId"]
        newer = (await started(client, tenant, account, template, user.phone)).json()["messageId"]
        state = await flow(client, tenant, older)
        assert (state["status"], state["cause"]) == ("ERROR", "a newer flow started with this recipient")
        await user.writes("ACC-3")
        await run_flows(app)
        assert (await flow(client, tenant, newer))["answers"] == {"account": "ACC-3"}
        assert (await flow(client, tenant, older))["answers"] == {}

    async def test_a_step_that_cannot_be_sent_ends_the_flow_with_the_reason(
        self, app, client, tenant, partner, channel, user
    ):
        account = channel["publicId"]
        first = await start_flow(client, tenant, partner, account, user.phone)
        await user.writes("ACC-5")
        async with app.state.db.write_sessions() as session, session.begin():
            await session.execute(update(Channel).where(Channel.public_id == account).values(status=4))
        await run_flows(app)
        state = await flow(client, tenant, first)
        assert state["status"] == "ERROR"
        assert state["cause"].startswith("step 'menu' could not be sent: The channel is not launched")


class TestReads:
    async def test_a_message_that_started_no_flow_and_another_companys_are_404(
        self, app, client, tenant, new_company, partner, channel, user
    ):
        account = channel["publicId"]
        first = await start_flow(client, tenant, partner, account, user.phone)
        other = await new_company()
        for who, message_id in ((other, first), (tenant, str(uuid.uuid4())), (tenant, "not-an-id")):
            response = await client.get(f"{API}/flow/{message_id}", headers=who.headers)
            assert response.status_code == 404, response.text
            assert response.json()["errors"][0]["name"] == "messageId"

    async def test_a_group_starts_one_flow_each(self, app, client, tenant, partner, channel, user):
        account = channel["publicId"]
        second = User(client, account)
        await second.shares_phone()
        template = await approved(client, tenant, partner, account, BANK)
        response = await client.post(
            f"/api/v1/channel/{account}/broadcast-template",
            json={
                "templateId": template,
                "subscribers": [
                    {"phone": f"+{user.phone}", "params": {"name": "Dara"}},
                    {"phone": f"+{second.phone}", "params": {"name": "Vy"}},
                ],
            },
            headers=tenant.headers,
        )
        assert response.status_code == 200, response.text
        ids = [m["messageId"] for m in response.json()["messages"]]
        await second.writes("B-2")
        await user.writes("A-1")
        await run_flows(app)
        assert [(await flow(client, tenant, i))["answers"] for i in ids] == [
            {"account": "A-1"},
            {"account": "B-2"},
        ]

    async def test_a_single_subscribers_fault_is_named_as_broadcast_message_names_it(
        self, client, tenant, partner, channel
    ):
        account = channel["publicId"]
        template = await approved(client, tenant, partner, account, BANK)
        # Nobody with this phone has talked to the bot: a BOT channel cannot reach them.
        response = await started(client, tenant, account, template, "85599999999")
        assert response.status_code == 400, response.text
        assert response.json()["errors"][0]["name"] == "phone"


class TestAFailingFlow:
    async def test_ends_alone_and_the_other_flows_of_the_batch_go_on(
        self, app, client, tenant, partner, channel, user, monkeypatch: pytest.MonkeyPatch
    ):
        account = channel["publicId"]
        other = User(client, account)
        await other.shares_phone()
        template = await approved(client, tenant, partner, account, BANK)
        failing = (await started(client, tenant, account, template, user.phone)).json()["messageId"]
        fine = (await started(client, tenant, account, template, other.phone)).json()["messageId"]
        reply = flows._Run.reply

        async def boom(run: flows._Run, text: str, *args: Any) -> None:
            if text == "boom":
                raise RuntimeError("a bug")
            await reply(run, text, *args)

        monkeypatch.setattr(flows._Run, "reply", boom)
        await user.writes("boom")
        await other.writes("ACC-8")
        await run_flows(app)
        broken = await flow(client, tenant, failing)
        assert (broken["status"], broken["cause"]) == ("ERROR", "an internal error ended the flow")
        assert (await flow(client, tenant, fine))["answers"] == {"account": "ACC-8"}
        assert await jobs_of(app, account) == 0
