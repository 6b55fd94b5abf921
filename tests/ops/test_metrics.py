"""The operator's metrics, scraped from the real app's /metrics while real work happens.

A sandbox app (simulators at /sim) over a database of each kind that only this module uses, so the
backlog gauges can be compared exactly. Counters are process-global: every assertion is a difference
between two scrapes.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import delete, select, update
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from tests.conftest import (
    TEST_SECRET,
    Tenant,
    asgi_client,
    create_channel,
    migrated_database,
    running_app,
    viber_credentials,
)
from tests.providers.viber_harness import serve

from openmmp.companies.service import companies
from openmmp.dispatch.flows import Dispatcher
from openmmp.kit.http import HttpClient
from openmmp.kit.limits import LocalLimiter
from openmmp.kit.metrics import count_on_commit
from openmmp.kit.time import now_ms
from openmmp.models import Channel, Job, Message
from openmmp.providers.base import ProviderContext
from openmmp.providers.registry import REGISTRY
from openmmp.providers.simulation import SimulatorConfig, create_simulators_app
from openmmp.settings import Settings, WebhookSettings
from openmmp.webhooks import service as webhooks
from openmmp.webhooks.tasks import WebhookDeliverer

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
TEXT = {"type": "text", "message": "hello"}


# --- fixtures -------------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
async def metrics_app(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, worker_name: str
) -> AsyncIterator[Any]:
    url = migrated_database(request.param, tmp_path_factory, f"{worker_name}_metrics")
    settings = Settings(
        database_url=url,
        data_dir=tmp_path_factory.mktemp("metrics-data"),
        secret_key=TEST_SECRET,
        sandbox=True,
        webhooks=WebhookSettings(allow_private=True),  # the test receiver is on 127.0.0.1
    )
    async with running_app(settings) as application:
        yield application


@pytest.fixture(scope="module")
async def metrics_client(metrics_app: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(metrics_app) as client:
        yield client


@pytest.fixture(scope="module")
async def operator(metrics_app: Any) -> Tenant:
    async with metrics_app.state.db.write_sessions() as session, session.begin():
        company, key = await companies.create_partner(session, metrics_app.state.keyring, name="Operator")
        return Tenant(company.public_id, key)


@pytest.fixture(scope="module")
async def company(metrics_client: httpx.AsyncClient, operator: Tenant) -> Tenant:
    body = {
        "company": {"name": "Metered", "country": "KH"},
        "admin": {"name": "Admin", "email": "admin@metered.example"},
    }
    response = await metrics_client.post("/api/v1/onboard", json=body, headers=operator.headers)
    assert response.status_code == 201, response.text
    return Tenant(response.json()["companyPublicId"], response.json()["apiKey"])


@pytest.fixture(scope="module")
async def simulators() -> AsyncIterator[str]:
    """Every provider's simulator over real HTTP (sandbox outcomes: phone ending 8 → final error)."""
    http = HttpClient(timeout=5.0)
    app = create_simulators_app(SimulatorConfig(callback_latency_s=0.01, callback_retries=0), http)
    try:
        async with app.router.lifespan_context(app), serve(app) as base_url:
            yield base_url
    finally:
        await http.aclose()


@pytest.fixture
def viber_channel(
    metrics_app: Any, metrics_client: httpx.AsyncClient, company: Tenant, operator: Tenant
) -> Callable[..., Awaitable[str]]:
    """A launched Viber channel of the company; returns its accountId."""

    async def make(**extra: Any) -> str:
        body = {"name": "Viber", "applicationId": 1, "credentials": viber_credentials(), **extra}
        response = await create_channel(metrics_client, company, operator, body)
        assert response.status_code == 201, response.text
        account = str(response.json()["publicId"])
        async with metrics_app.state.db.write_sessions() as session, session.begin():
            await session.execute(update(Channel).where(Channel.public_id == account).values(status=3))
        return account

    return make


@pytest.fixture
def send(metrics_client: httpx.AsyncClient, company: Tenant) -> Callable[[str, str], Awaitable[str]]:
    async def post(account: str, phone: str) -> str:
        response = await metrics_client.post(
            f"/api/v1/channel/{account}/broadcast",
            json={"phone": phone, "message": TEXT},
            headers=company.headers,
        )
        assert response.status_code == 200, response.text
        return str(response.json()["messageId"])

    return post


@pytest.fixture
async def dispatch(metrics_app: Any, simulators: str) -> AsyncIterator[Callable[[], Awaitable[None]]]:
    """Run dispatch rounds against the simulators until nothing is due."""
    http = HttpClient(timeout=5.0)
    contexts = {
        p.name: ProviderContext(http, f"{simulators}/{p.name}", "http://127.0.0.1:9", sandbox=False)
        for p in REGISTRY.providers
    }
    state = metrics_app.state
    dispatcher = Dispatcher(state.db, state.keyring, state.settings, contexts, LocalLimiter())

    async def rounds() -> None:
        while await dispatcher.run_once():
            pass

    yield rounds
    await http.aclose()


async def scrape(client: httpx.AsyncClient) -> Samples:
    response = await client.get("/metrics")
    assert response.status_code == 200, response.text
    return parse(response.text)


def parse(text: str) -> Samples:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def delta(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


async def job_of(app: Any, message_id: str) -> Job:
    async with app.state.db.read_sessions() as session:
        found = await session.execute(
            select(Job).join(Message, Message.id == Job.message_id).where(Message.public_id == message_id)
        )
        return found.scalar_one()


# --- the queue backlog ----------------------------------------------------------------------------


class TestQueueBacklog:
    async def test_a_send_is_a_due_job_whose_age_is_reported_then_leased_then_scheduled(
        self, metrics_app: Any, metrics_client: httpx.AsyncClient, viber_channel, send
    ):
        account = await viber_channel()
        before = await scrape(metrics_client)
        message_id = await send(account, "85512345670")
        sent = await scrape(metrics_client)
        assert value(sent, "openmmp_backlog_up") == 1
        assert delta(before, sent, "openmmp_queue_jobs", kind="dispatch", state="due") == 1
        assert delta(before, sent, "openmmp_queue_jobs", kind="dispatch", state="leased") == 0

        job = await job_of(metrics_app, message_id)
        db = metrics_app.state.db
        async with db.write_sessions() as session, session.begin():
            await session.execute(update(Job).where(Job.id == job.id).values(run_at=now_ms() - 120_000))
        aged = await scrape(metrics_client)
        assert 120 <= value(aged, "openmmp_queue_oldest_due_age_seconds", kind="dispatch") < 180

        # Claimed: run_at and lease_until move to the end of the lease together.
        lease_end = now_ms() + 30_000
        async with db.write_sessions() as session, session.begin():
            await session.execute(
                update(Job).where(Job.id == job.id).values(run_at=lease_end, lease_until=lease_end)
            )
        leased = await scrape(metrics_client)
        assert delta(before, leased, "openmmp_queue_jobs", kind="dispatch", state="due") == 0
        assert delta(before, leased, "openmmp_queue_jobs", kind="dispatch", state="leased") == 1
        assert delta(before, leased, "openmmp_queue_jobs", kind="dispatch", state="scheduled") == 0

        # Handed back for a retry later: the lease is released.
        async with db.write_sessions() as session, session.begin():
            await session.execute(update(Job).where(Job.id == job.id).values(lease_until=0))
        scheduled = await scrape(metrics_client)
        assert delta(before, scheduled, "openmmp_queue_jobs", kind="dispatch", state="leased") == 0
        assert delta(before, scheduled, "openmmp_queue_jobs", kind="dispatch", state="scheduled") == 1

        async with db.write_sessions() as session, session.begin():
            await session.execute(delete(Job).where(Job.id == job.id))
        assert value(await scrape(metrics_client), "openmmp_backlog_read_seconds") > 0

    async def test_metrics_answer_without_the_backlog_when_the_database_is_unreachable(self, tmp_path: Path):
        settings = Settings(
            database_url="postgresql://nobody@127.0.0.1:1/none", data_dir=tmp_path, secret_key=TEST_SECRET
        )
        async with running_app(settings) as app, asgi_client(app) as client:
            response = await client.get("/metrics")
        assert response.status_code == 200
        samples = parse(response.text)
        assert value(samples, "openmmp_backlog_up") == 0
        assert not [name for name, _ in samples if name.startswith("openmmp_queue_")]
        assert "process_cpu_seconds_total" in response.text or "python_info" in response.text


# --- messages, sends and the limiter --------------------------------------------------------------


class TestMessagesAndSends:
    async def test_an_accepted_send_counts_pending_then_sent_and_its_upstream_request(
        self, metrics_client: httpx.AsyncClient, viber_channel, send, dispatch
    ):
        account = await viber_channel()
        before = await scrape(metrics_client)
        await send(account, "85512345670")
        accepted = await scrape(metrics_client)
        assert delta(before, accepted, "openmmp_messages_total", application="viber", status="PENDING") == 1
        assert delta(before, accepted, "openmmp_messages_total", application="viber", status="SENT") == 0

        await dispatch()
        after = await scrape(metrics_client)
        assert delta(before, after, "openmmp_messages_total", application="viber", status="SENT") == 1
        sends = {"provider": "viber", "outcome": "accepted"}
        assert delta(before, after, "openmmp_provider_send_seconds_count", **sends) == 1
        assert delta(before, after, "openmmp_provider_send_seconds_sum", **sends) > 0
        assert "85512345670" not in (await metrics_client.get("/metrics")).text

    async def test_statements_and_transactions_are_counted_by_verb(
        self, metrics_client: httpx.AsyncClient, viber_channel, send, dispatch
    ):
        account = await viber_channel()
        before = await scrape(metrics_client)
        await send(account, "85512345671")
        after = await scrape(metrics_client)
        # One send: the message, its job and its channel's tally change are inserted in one transaction
        # (the scrape reads too).
        assert delta(before, after, "openmmp_db_statements_total", verb="INSERT") == 3
        assert delta(before, after, "openmmp_db_statements_total", verb="SELECT") >= 1
        assert delta(before, after, "openmmp_db_transactions_total") >= 2
        await dispatch()  # send it, so that later tests count only their own messages

    async def test_a_final_refusal_counts_fail_and_a_final_upstream_request(
        self, metrics_client: httpx.AsyncClient, viber_channel, send, dispatch
    ):
        account = await viber_channel()
        before = await scrape(metrics_client)
        await send(account, "85512345678")  # the sandbox refuses it for good
        await dispatch()
        after = await scrape(metrics_client)
        assert delta(before, after, "openmmp_messages_total", application="viber", status="FAIL") == 1
        assert delta(before, after, "openmmp_messages_total", application="viber", status="SENT") == 0
        final = {"provider": "viber", "outcome": "final"}
        assert delta(before, after, "openmmp_provider_send_seconds_count", **final) == 1

    async def test_a_channel_over_its_rate_limit_waits_and_the_wait_is_recorded(
        self, metrics_client: httpx.AsyncClient, viber_channel, send, dispatch
    ):
        # 20 per second, burst 1: the second request waits ~53 ms, the third ~105 ms.
        account = await viber_channel(settings={"rateLimitPerSecond": 20})
        for digit in "012":
            await send(account, f"8551234567{digit}")
        before = await scrape(metrics_client)
        await dispatch()
        after = await scrape(metrics_client)
        assert delta(before, after, "openmmp_limiter_wait_seconds_count", limit="viber") == 3
        assert delta(before, after, "openmmp_limiter_wait_seconds_sum", limit="viber") >= 0.1
        waited = delta(before, after, "openmmp_limiter_wait_seconds_bucket", limit="viber", le="0.01")
        assert waited == 1  # only the first went at once


# --- webhooks -------------------------------------------------------------------------------------


class Receiver:
    """Answers 204 on /ok and 500 on anything else."""

    @staticmethod
    async def answer(request: Request) -> Response:
        return Response(status_code=204 if request.url.path == "/ok" else 500)

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/{path:path}", self.answer, methods=["POST"])])


class TestWebhookDeliveries:
    async def test_each_outcome_is_counted_and_the_backlog_reported(
        self,
        metrics_app: Any,
        metrics_client: httpx.AsyncClient,
        company: Tenant,
        operator: Tenant,
    ):
        state = metrics_app.state
        async with serve(Receiver().app()) as receiver:

            async def hooked(path: str) -> Channel:
                body = {
                    "name": "Hooked",
                    "applicationId": 1,
                    "credentials": viber_credentials(),
                    "webhookUrl": f"{receiver}{path}",
                }
                response = await create_channel(metrics_client, company, operator, body)
                assert response.status_code == 201, response.text
                async with state.db.read_sessions() as session:
                    found = select(Channel).where(Channel.public_id == response.json()["publicId"])
                    return (await session.execute(found)).scalar_one()

            async def enqueue(channel: Channel) -> None:
                async with state.db.write_sessions() as session, session.begin():
                    await webhooks.enqueue(
                        session, channel=channel, event_type=1, body={"type": 1}, ordering_key=None
                    )

            http = HttpClient(timeout=5.0)

            def deliverer(*, allow_private: bool = True, max_attempts: int = 5) -> WebhookDeliverer:
                settings = WebhookSettings(retry_schedule_s=[600], max_attempts=max_attempts)
                return WebhookDeliverer(state.db, http, state.keyring, settings, allow_private=allow_private)

            try:
                ok, failing = await hooked("/ok"), await hooked("/fail")
                before = await scrape(metrics_client)
                await enqueue(ok)
                queued = await scrape(metrics_client)
                assert delta(before, queued, "openmmp_webhook_backlog", state="due") == 1

                assert await deliverer().deliver_due() == 1
                await enqueue(failing)
                assert await deliverer().deliver_due() == 1  # 500: retried in 10 minutes
                await enqueue(failing)
                assert await deliverer(max_attempts=1).deliver_due() == 1  # 500, its last attempt
                await enqueue(ok)
                assert await deliverer(allow_private=False).deliver_due() == 1  # 127.0.0.1 is refused
                after = await scrape(metrics_client)
            finally:
                await http.aclose()

        deliveries = "openmmp_webhook_deliveries_total"
        assert delta(before, after, deliveries, outcome="delivered", reason="none") == 1
        assert delta(before, after, deliveries, outcome="retry", reason="http") == 1
        assert delta(before, after, deliveries, outcome="failed", reason="http") == 1
        assert delta(before, after, deliveries, outcome="retry", reason="refused") == 1
        assert delta(before, after, "openmmp_webhook_backlog", state="due") == 0
        assert delta(before, after, "openmmp_webhook_backlog", state="scheduled") == 2


# --- routes of the mounted simulators -------------------------------------------------------------


class TestSimulatorRoutes:
    async def test_sim_requests_are_labelled_with_the_mounted_template(
        self, metrics_client: httpx.AsyncClient
    ):
        before = await scrape(metrics_client)
        assert (await metrics_client.get("/sim/viber/_sandbox/stats")).status_code == 200
        await metrics_client.post("/sim/viber/_sandbox/services/424242", json={})
        assert (await metrics_client.get("/sim/viber/no/such/route")).status_code == 404
        after = await scrape(metrics_client)
        requests = "openmmp_http_requests_total"
        stats = {"method": "GET", "route": "/sim/viber/_sandbox/stats", "status": "200"}
        assert delta(before, after, requests, **stats) == 1
        services = [
            labels
            for (name, labels), count in after.items()
            if name == requests and dict(labels)["route"].startswith("/sim/viber/_sandbox/services/")
        ]
        assert [dict(labels)["route"] for labels in services] == [
            "/sim/viber/_sandbox/services/{service_id:int}"
        ]
        assert delta(before, after, requests, method="GET", route="unmatched", status="404") == 1
        assert not [labels for (name, labels) in after if name == requests and "424242" in str(labels)]


# --- the worker process -------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class TestWorkerMetrics:
    def test_openmmp_worker_serves_its_metrics_on_the_metrics_port(
        self, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
    ):
        port = free_port()
        env = {
            **os.environ,
            "OPENMMP_DATABASE_URL": migrated_database("sqlite", tmp_path_factory, "worker-metrics"),
            "OPENMMP_DATA_DIR": str(tmp_path / "data"),
            "OPENMMP_SECRET_KEY": TEST_SECRET,
            "OPENMMP_HOST": "127.0.0.1",
            "OPENMMP_METRICS_PORT": str(port),
        }
        process = subprocess.Popen(
            [sys.executable, "-m", "openmmp.cli", "worker"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            text = None
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and process.poll() is None:
                with contextlib.suppress(httpx.HTTPError):
                    response = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=1)
                    if response.status_code == 200:
                        text = response.text
                        break
                time.sleep(0.1)
        finally:
            process.send_signal(signal.SIGINT)
            try:
                _, stderr = process.communicate(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                _, stderr = process.communicate()
        assert text is not None, stderr
        families = {family.name for family in text_string_to_metric_families(text)}
        assert {"openmmp_messages", "openmmp_provider_send_seconds", "openmmp_webhook_deliveries"} <= families
        # The worker reads no backlog: it reports none rather than zeros.
        assert "openmmp_backlog_up" not in text
        assert process.returncode == 0, stderr


# --- counting on commit ---------------------------------------------------------------------------


class TestCountOnCommit:
    async def test_only_what_commits_is_counted_savepoints_included(self, metrics_app: Any):
        registry = CollectorRegistry()
        counter = Counter("probe", "a probe", ["case"], registry=registry)
        db = metrics_app.state.db

        def counted(case: str) -> float:
            return registry.get_sample_value("probe_total", {"case": case}) or 0.0

        async with db.write_sessions() as session, session.begin():
            count_on_commit(session, counter.labels("committed"), 2)
            assert counted("committed") == 0  # not before the commit
        assert counted("committed") == 2

        async def rolled_back() -> None:
            async with db.write_sessions() as session, session.begin():
                count_on_commit(session, counter.labels("rolled_back"))
                raise RuntimeError("rolled back")

        with pytest.raises(RuntimeError):
            await rolled_back()
        assert counted("rolled_back") == 0

        async with db.write_sessions() as session, session.begin():
            with contextlib.suppress(RuntimeError):
                async with session.begin_nested():
                    count_on_commit(session, counter.labels("savepoint_undone"))
                    raise RuntimeError("undone")
            async with session.begin_nested():
                count_on_commit(session, counter.labels("savepoint_kept"))
            assert counted("savepoint_kept") == 0  # the outer transaction has not committed yet
        assert (counted("savepoint_undone"), counted("savepoint_kept")) == (0, 1)
