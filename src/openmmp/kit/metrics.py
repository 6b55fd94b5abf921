"""Every Prometheus metric of OpenMMP, in one place (docs/metrics.md describes each one).

Labels are low-cardinality by construction: route templates, provider and application names, kinds,
states and outcomes from fixed sets; never ids, phone numbers or URLs. Code on a per-message path takes
its labelled children through `children(metric)`, which keeps them (a `.labels()` call takes a lock and
builds a tuple each time).

Counters that describe what a transaction wrote are counted when it commits (`count_on_commit`), so a
rolled-back transaction (a failed commit retried, a callback's savepoint undone) is never counted.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session, SessionTransaction

# --- HTTP (ops/middleware.py) ---------------------------------------------------------------------

REQUESTS = Counter("openmmp_http_requests_total", "HTTP requests answered", ["method", "route", "status"])
REQUEST_LATENCY = Histogram(
    "openmmp_http_request_duration_seconds",
    "Time to answer HTTP requests",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)

# --- Messages and callbacks -----------------------------------------------------------------------

MESSAGES = Counter(
    "openmmp_messages_total",
    "Message status steps committed (PENDING when accepted, then SENT, DELIVERED, READ or FAIL)",
    ["application", "status"],
)
CALLBACKS = Counter("openmmp_callbacks_total", "Provider callbacks received", ["provider", "outcome"])

# --- Dispatch -------------------------------------------------------------------------------------

PROVIDER_SEND = Histogram(
    "openmmp_provider_send_seconds",
    "Time of one upstream send request, by provider and outcome (accepted, rate_limited, retryable, "
    "final, error)",
    ["provider", "outcome"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
LIMITER_WAIT = Histogram(
    "openmmp_limiter_wait_seconds",
    "Time an upstream request waited for its channel's rate limit before it was sent (0 when it had not "
    "to wait), by provider",
    ["limit"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
UPSTREAM_LINKS = Gauge(
    "openmmp_upstream_links",
    "Channels whose connections to a connected upstream (SMPP binds) this worker process keeps",
    ["provider"],
)
UPSTREAM_CONNECTIONS_UP = Gauge(
    "openmmp_upstream_connections_up",
    "Of those channels' connections, how many are up now (read at each sweep)",
    ["provider"],
)
LIMITER_DEFERRED = Counter(
    "openmmp_limiter_deferred_total",
    "Upstream requests handed back to the queue instead of waiting for their rate limit, by provider and "
    "reason (over_max_wait, limiter_unavailable, recipient)",
    ["limit", "reason"],
)

# --- Webhooks -------------------------------------------------------------------------------------

WEBHOOK_DELIVERIES = Counter(
    "openmmp_webhook_deliveries_total",
    "Webhook deliveries by outcome (delivered, retry, failed = given up, held) and reason (none, http, "
    "timeout, connection, refused, config, error; endpoint_inactive for held)",
    ["outcome", "reason"],
)

# --- Database (kit/db.py) -------------------------------------------------------------------------

DB_STATEMENTS = Counter(
    "openmmp_db_statements_total",
    "SQL statements sent to the database, by verb (SELECT, INSERT, UPDATE, DELETE, SAVEPOINT, ...)",
    ["verb"],
)
DB_TRANSACTIONS = Counter("openmmp_db_transactions_total", "Database transactions begun")

# --- Backlog, read from the database when /metrics is scraped (ops/endpoints.py) ------------------


@dataclass(frozen=True, slots=True)
class JobBacklog:
    due: int
    scheduled: int
    leased: int
    oldest_due_age_seconds: float


@dataclass(frozen=True, slots=True)
class Backlog:
    """What one scrape read from the database; `up` False when it could not (then nothing else)."""

    up: bool
    read_seconds: float = 0.0
    jobs: Mapping[str, JobBacklog] = field(default_factory=dict)
    webhooks: Mapping[str, int] = field(default_factory=dict)


class BacklogCollector(Collector):
    """Exports the backlog the last scrape read. A process that never reads it (`openmmp worker`)
    exports none of these series, rather than zeros that would look like an empty queue or an outage."""

    def __init__(self) -> None:
        self.last: Backlog | None = None

    def describe(self) -> Iterable[Metric]:
        return self._families()

    def collect(self) -> Iterable[Metric]:
        last = self.last
        if last is None:
            return []
        families = self._families()
        jobs, oldest, webhooks, up, read = families
        up.add_metric([], 1.0 if last.up else 0.0)
        if last.up:
            read.add_metric([], last.read_seconds)
        for kind, backlog in sorted(last.jobs.items()):
            jobs.add_metric([kind, "due"], backlog.due)
            jobs.add_metric([kind, "scheduled"], backlog.scheduled)
            jobs.add_metric([kind, "leased"], backlog.leased)
            oldest.add_metric([kind], backlog.oldest_due_age_seconds)
        for state, count in sorted(last.webhooks.items()):
            webhooks.add_metric([state], count)
        return families

    @staticmethod
    def _families() -> list[GaugeMetricFamily]:
        return [
            GaugeMetricFamily(
                "openmmp_queue_jobs",
                "Jobs of the outbox queue by kind and state (due, scheduled, leased), at this scrape",
                labels=["kind", "state"],
            ),
            GaugeMetricFamily(
                "openmmp_queue_oldest_due_age_seconds",
                "How long the oldest due job of each kind has been due (0 when none is), at this scrape",
                labels=["kind"],
            ),
            GaugeMetricFamily(
                "openmmp_webhook_backlog",
                "Webhook deliveries not delivered yet, by state (due, scheduled, held), at this scrape",
                labels=["state"],
            ),
            GaugeMetricFamily(
                "openmmp_backlog_up",
                "1 when this scrape read the backlog from the database, 0 when it could not in time",
            ),
            GaugeMetricFamily(
                "openmmp_backlog_read_seconds", "Time this scrape took to read the backlog from the database"
            ),
        ]


BACKLOG = BacklogCollector()
REGISTRY.register(BACKLOG)


M = TypeVar("M", Counter, Gauge, Histogram)


def children(metric: M) -> Callable[..., M]:
    """`metric.labels`, memoised: for label values from small fixed sets, looked up per message."""
    cache: dict[tuple[str, ...], M] = {}

    def get(*values: str) -> M:
        child = cache.get(values)
        if child is None:
            child = cache[values] = metric.labels(*values)
        return child

    return get


# --- Counting when a transaction commits ----------------------------------------------------------

_PENDING = "openmmp.metrics.pending"
"""`Session.info` key: {root or SAVEPOINT transaction: {counter child: amount}}."""
_COMMITTED = "openmmp.metrics.committed"
"""`Session.info` key: the transactions of the pending counts that have committed, until they end."""


def _boundary(transaction: SessionTransaction) -> SessionTransaction:
    """The transaction whose rollback would undo work done in `transaction`: a SAVEPOINT or the root."""
    while transaction.parent is not None and not transaction.nested:
        transaction = transaction.parent
    return transaction


def count_on_commit(session: AsyncSession | Session, child: Counter, amount: float = 1.0) -> None:
    """Increment `child` by `amount` once the session's transaction commits; never if it rolls back.

    Inside a SAVEPOINT the count waits for the savepoint and then for the transaction around it. Outside
    any transaction it is counted at once.
    """
    sync = session.sync_session if isinstance(session, AsyncSession) else session
    transaction = sync.get_nested_transaction() or sync.get_transaction()
    if transaction is None:
        child.inc(amount)
        return
    pending: dict[SessionTransaction, dict[Counter, float]] = sync.info.setdefault(_PENDING, {})
    counts = pending.setdefault(_boundary(transaction), {})
    counts[child] = counts.get(child, 0.0) + amount


@event.listens_for(Session, "after_commit")
def _committed(session: Session) -> None:
    if not session.info.get(_PENDING):
        return
    # Called while the committing transaction is still the session's innermost SAVEPOINT, or its root.
    transaction = session.get_nested_transaction() or session.get_transaction()
    if transaction is not None:
        session.info.setdefault(_COMMITTED, set()).add(transaction)


@event.listens_for(Session, "after_transaction_end")
def _ended(session: Session, transaction: SessionTransaction) -> None:
    pending: dict[SessionTransaction, dict[Counter, float]] | None = session.info.get(_PENDING)
    if not pending:
        return
    committed: set[Any] = session.info.get(_COMMITTED, set())
    was_committed = transaction in committed
    committed.discard(transaction)
    counts = pending.pop(transaction, None)
    if counts is None or not was_committed:
        return  # nothing waited on it, or it rolled back: its counts go with it
    if transaction.parent is None:
        for child, amount in counts.items():
            child.inc(amount)
        return
    # A SAVEPOINT released: its counts now wait for the transaction around it.
    outer = pending.setdefault(_boundary(transaction.parent), {})
    for child, amount in counts.items():
        outer[child] = outer.get(child, 0.0) + amount


# --- one scrape for several processes (`openmmp serve` and its worker processes) --------------------


def merge_exposition(texts: Iterable[str]) -> bytes:
    """Several processes' metrics (Prometheus text) as one: samples with the same name and labels are
    added up (every metric of more than one process here is a counter or a histogram), `_created`
    timestamps keep the earliest."""
    families: dict[str, Metric] = {}
    values: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]] = {}
    for text in texts:
        for family in text_string_to_metric_families(text):
            if family.name not in families:
                families[family.name] = Metric(family.name, family.documentation, family.type, family.unit)
                values[family.name] = {}
            kept = values[family.name]
            for sample in family.samples:
                key = (sample.name, tuple(sample.labels.items()))
                if key not in kept:
                    kept[key] = sample.value
                elif sample.name.endswith("_created"):
                    kept[key] = min(kept[key], sample.value)
                else:
                    kept[key] += sample.value
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Fixed(families, values))
    return generate_latest(registry)


class _Fixed(Collector):
    def __init__(
        self,
        families: dict[str, Metric],
        values: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]],
    ) -> None:
        self._families = families
        self._values = values

    def collect(self) -> Iterable[Metric]:
        for name, family in self._families.items():
            for (sample, labels), value in self._values[name].items():
                family.add_sample(sample, dict(labels), value)
            yield family
