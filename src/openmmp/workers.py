"""The worker process role: dispatch, webhook delivery, channel set-up, campaigns, background tasks, sweeps.

The composition root of the workers (as `app.py` is the API's): it builds each provider's context from
the settings and wires the domains' loops together. Runs under `openmmp serve` (by default as one child
process, `WorkerProcesses`; `--worker-processes 0` in the API's own process) or alone as `openmmp worker`,
any number of times over one database: every piece claims its work with a lease, so
workers never step on each other. At every start it queues each channel's set-up again (an upstream, or
the sandbox's in-process simulator, may have forgotten it).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import sys
from asyncio.subprocess import PIPE
from collections.abc import Callable, Mapping

import structlog

from openmmp.billing.cdr import CdrExport
from openmmp.callbacks.batching import CallbackReceiver
from openmmp.callbacks.service import prune_events, reconcile
from openmmp.campaigns.imports import ContactImport
from openmmp.campaigns.runner import CampaignRunner
from openmmp.channels.phone_check import PhoneCheck
from openmmp.channels.tasks import AgentSync, ChannelSetup, fingerprint_identities, queue_setup_at_start
from openmmp.dispatch.flows import Dispatcher
from openmmp.dispatch.links import Links
from openmmp.dispatch.listeners import ProviderListeners
from openmmp.kit.crypto import Keyring
from openmmp.kit.db import Database
from openmmp.kit.http import HttpClient
from openmmp.kit.limits import Limiter, LocalLimiter
from openmmp.kit.time import now_ms
from openmmp.messages import fallback, tallies
from openmmp.messages.tasks import expire_sent
from openmmp.providers.base import ProviderContext
from openmmp.queue.notify import JOBS, WEBHOOKS, Listener
from openmmp.queue.redis_limiter import RedisLimiter
from openmmp.settings import Settings
from openmmp.tasks import service as tasks
from openmmp.tasks import uploads
from openmmp.tasks.runner import TaskHandler, TaskRunner
from openmmp.templates import flows
from openmmp.templates.flows import FlowRunner
from openmmp.webhooks.guard import upstream_target_check
from openmmp.webhooks.tasks import WebhookDeliverer, webhooks_allow_private

log = structlog.get_logger(__name__)

WAKE = b"w"
_RESTART_FIRST_S = 1.0
_RESTART_MAX_S = 30.0
_STOP_WAIT_S = 30.0
_DAY_MS = 86_400_000


def task_handlers(
    db: Database,
    keyring: Keyring,
    contexts: Mapping[str, ProviderContext],
    limiter: Limiter,
    settings: Settings,
) -> dict[str, TaskHandler]:
    """Every kind of background task the workers run, by its `type`: the one place a new kind is added.

    Handlers are built from what the workers have: the database, the keyring (channel credentials), the
    providers' contexts and the shared rate limiter.
    """
    handlers: list[TaskHandler] = [
        PhoneCheck(db, keyring, contexts, limiter),
        ContactImport(db, settings.campaigns, settings.data_dir / "imports"),
        CdrExport(db),
    ]
    return {handler.type: handler for handler in handlers}


class Workers:
    def __init__(
        self,
        db: Database,
        http: HttpClient,
        keyring: Keyring,
        settings: Settings,
        limiter: Limiter | None = None,
    ) -> None:
        self.db = db
        self.keyring = keyring
        self.settings = settings
        # Connections to hosts the tenants named (an SMSC) are checked when they are made.
        check = upstream_target_check(settings.providers.allowed_host_list)
        contexts = {
            name: dataclasses.replace(ctx, target_check=check)
            for name, ctx in settings.provider_contexts(http).items()
        }
        self.deliverer = WebhookDeliverer(
            db, http, keyring, settings.webhooks, allow_private=webhooks_allow_private(settings)
        )
        # What arrives on the links is applied as callbacks are in the API process.
        receiver = CallbackReceiver(db, keyring, contexts, settings.callbacks, on_commit=self.deliverer.wake)
        self.links = Links(
            db, keyring, contexts, receiver, sync_seconds=settings.dispatch.sweep_interval_seconds
        )
        self.listeners = ProviderListeners(contexts, receiver)
        # Limits shared across processes live in Redis when configured; else each process keeps its own.
        self._redis_limiter = (
            RedisLimiter(settings.redis_url) if limiter is None and settings.redis_url else None
        )
        chosen = limiter or self._redis_limiter or LocalLimiter()
        self.dispatcher = Dispatcher(
            db, keyring, settings, contexts, chosen, on_commit=self.deliverer.wake, links=self.links
        )
        self.setup = ChannelSetup(db, keyring, contexts, settings.channel_setup)
        self.agent_sync = AgentSync(db, keyring, contexts, settings.channel_setup)
        self.task_runner = TaskRunner(
            db, task_handlers(db, keyring, contexts, chosen, settings), settings.tasks
        )
        self.flows = FlowRunner(db, keyring, on_commit=self._flow_sent)
        self.campaigns = CampaignRunner(db, keyring, settings, on_commit=self._flow_sent)
        self.tallies = tallies.Folder()

    def _flow_sent(self) -> None:
        """Sends were queued here (a flow's next step, a campaign's contacts)."""
        self.dispatcher.wake()
        self.deliverer.wake()

    def wake(self) -> None:
        """New sends, events or tasks were committed by this process."""
        self.dispatcher.wake()
        self.deliverer.wake()
        self.task_runner.wake()
        self.flows.wake()
        self.campaigns.wake()

    async def run(self, stop: asyncio.Event) -> None:
        log.info("workers_started", shared_limits=self._redis_limiter is not None)
        # The links close only once dispatch has stopped: a submit still in flight when its connection
        # closed would be sent again, its answer lost.
        links_stop = asyncio.Event()

        async def dispatch() -> None:
            try:
                await self.dispatcher.run(stop)
            finally:
                links_stop.set()

        loops = [
            dispatch(),
            self.deliverer.run(stop),
            self.links.run(links_stop),
            self.listeners.run(stop),
            self.task_runner.run(stop),
            self.flows.run(stop),
            self.campaigns.run(stop),
            self._periodic(stop),
        ]
        if not self.db.is_sqlite:
            handlers = {
                JOBS: self.dispatcher.wake,
                WEBHOOKS: self.deliverer.wake,
                tasks.NOTIFY_CHANNEL: self.task_runner.wake,
                flows.NOTIFY_CHANNEL: self.flows.wake,
            }
            loops.append(Listener(self.db.url, handlers).run(stop))
        try:
            await asyncio.gather(*loops)
        finally:
            if self._redis_limiter is not None:
                await self._redis_limiter.aclose()
        log.info("workers_stopped")

    async def _periodic(self, stop: asyncio.Event) -> None:
        dispatch = self.settings.dispatch
        while not stop.is_set():
            try:
                async with self.db.write_sessions() as session, session.begin():
                    fingerprinted = await fingerprint_identities(session, self.keyring)
                    queued = await queue_setup_at_start(session, sandbox=self.settings.sandbox)
                log.info("channels_started", setups_queued=queued, identities_fingerprinted=fingerprinted)
                break
            except Exception:
                log.exception("channel_setup_queue_failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=dispatch.sweep_interval_seconds)
        while not stop.is_set():
            try:
                while await self.setup.run_once():
                    pass
                while await self.agent_sync.run_once():
                    pass
                async with self.db.write_sessions() as session, session.begin():
                    changed = await expire_sent(session)
                    changed += await reconcile(
                        session, max_age_ms=int(dispatch.unmatched_callback_max_age_seconds * 1000)
                    )
                    await prune_events(session, self.settings.callbacks)
                    retention_ms = int(self.settings.tasks.retention_days * _DAY_MS)
                    await tasks.prune(session, finished_before=now_ms() - retention_ms)
                    await uploads.prune(session, created_before=now_ms() - retention_ms)
                    legs = await fallback.run_due(session, now=now_ms(), skip_locked=not self.db.is_sqlite)
                    await self.tallies.fold(session)
                if changed or legs:
                    self.deliverer.wake()
                if legs:
                    self.dispatcher.wake()
            except Exception:
                log.exception("periodic_round_failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=dispatch.sweep_interval_seconds)


class WorkerProcesses:
    """`openmmp serve`'s workers as child processes (`openmmp worker --wake-stdin`), each on a core of its
    own, so that the API's requests never queue behind dispatch and webhook deliveries.

    Each child's stdin is a pipe from the API: a byte wakes it (new sends or events were committed here,
    as `Workers.wake` does in one process), and the pipe's end — the API stopping, or dying, even by
    SIGKILL — stops it once its work in flight is done. A child that exits by itself is started again
    (after 1 s, doubling up to 30 s while it keeps failing). Each serves its metrics on a port of its own,
    which the API's /metrics adds to its own.
    """

    def __init__(self, env: dict[str, str], metrics_ports: list[int]) -> None:
        """One child per port of `metrics_ports`, child n serving its metrics on the n-th."""
        self._env = env
        self._metrics_ports = metrics_ports
        self._children: list[asyncio.subprocess.Process | None] = [None] * len(metrics_ports)
        self._stopping = asyncio.Event()
        self._keepers: list[asyncio.Task[None]] = []
        self._wake_scheduled = False

    async def start(self) -> None:
        for n in range(len(self._children)):
            await self._spawn(n)
        self._keepers = [
            asyncio.create_task(self._keep(n), name=f"openmmp-worker-process-{n + 1}")
            for n in range(len(self._children))
        ]

    async def _spawn(self, n: int) -> asyncio.subprocess.Process:
        env = {**self._env, "OPENMMP_METRICS_PORT": str(self._metrics_ports[n])}
        child = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "openmmp.cli", "worker", "--wake-stdin", stdin=PIPE, env=env
        )
        self._children[n] = child
        log.info("worker_process_started", worker=n + 1, pid=child.pid)
        return child

    async def _keep(self, n: int) -> None:
        loop = asyncio.get_running_loop()
        delay = _RESTART_FIRST_S
        while True:
            child = self._children[n]
            assert child is not None
            started = loop.time()
            code = await child.wait()
            if self._stopping.is_set():
                return
            log.error("worker_process_exited", worker=n + 1, pid=child.pid, code=code, restart_in_s=delay)
            if loop.time() - started > _RESTART_MAX_S:
                delay = _RESTART_FIRST_S  # it ran a while: a new failure, not the same one again
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=delay)
            if self._stopping.is_set():
                return
            delay = min(delay * 2, _RESTART_MAX_S)
            await self._spawn(n)

    def wake(self) -> None:
        """Wake every child, at most once per turn of the event loop."""
        if not self._wake_scheduled:
            self._wake_scheduled = True
            asyncio.get_running_loop().call_soon(self._send_wake)

    def _send_wake(self) -> None:
        self._wake_scheduled = False
        for child in self._children:
            pipe = child.stdin if child is not None else None
            # A byte still in the pipe's buffer wakes the child anyway: never queue more behind it.
            if pipe is not None and not pipe.is_closing() and pipe.transport.get_write_buffer_size() == 0:
                pipe.write(WAKE)

    async def stop(self) -> None:
        """End every child's pipe and wait for it to finish its work in flight (killed after 30 s)."""
        self._stopping.set()
        for child in self._children:
            if child is not None and child.stdin is not None:
                child.stdin.close()
        for n, child in enumerate(self._children):
            if child is None:
                continue
            try:
                await asyncio.wait_for(child.wait(), timeout=_STOP_WAIT_S)
            except TimeoutError:
                log.error("worker_process_killed", worker=n + 1, pid=child.pid, waited_s=_STOP_WAIT_S)
                child.kill()
                await child.wait()
        await asyncio.gather(*self._keepers, return_exceptions=True)


class _WakePipe(asyncio.Protocol):
    """The child's end of `WorkerProcesses`' pipe: bytes wake the workers, its end stops them."""

    def __init__(self, wake: Callable[[], None], stop: asyncio.Event) -> None:
        self._wake = wake
        self._stop = stop

    def data_received(self, data: bytes) -> None:
        self._wake()

    def eof_received(self) -> bool:
        self._stop.set()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop.set()


async def follow_wake_pipe(wake: Callable[[], None], stop: asyncio.Event) -> None:
    """In a worker started by `WorkerProcesses`: wake on each byte of stdin, stop at its end."""
    loop = asyncio.get_running_loop()
    await loop.connect_read_pipe(lambda: _WakePipe(wake, stop), sys.stdin)
