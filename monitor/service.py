"""Wiring and lifecycle: builds the edges from Settings, owns the task group, supervises.

Timing lives in the scheduler; this module starts it beside the dispatcher, the metrics
endpoint and (in push mode) the event listener, handles signals for a clean stop, and runs the
`once` command's first poll and table.
"""

from __future__ import annotations

import functools
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import TextIO

import anyio
import anyio.abc
import redis.asyncio

from monitor import __version__, log
from monitor.amplify import AmplifyClient, AmplifyError
from monitor.cluster import RedisCluster, SharedBucket, default_replica_id
from monitor.config import Settings
from monitor.events import EventListener
from monitor.metrics import Metrics, serve
from monitor.model import FAILED, BranchState
from monitor.notify.factory import build_dispatcher
from monitor.notify.outbox import Dispatcher
from monitor.pacing import Pacer
from monitor.poller import Poller
from monitor.scheduler import Scheduler
from monitor.sqs import QueueError, SqsQueue
from monitor.store.factory import StoreError, open_store
from monitor.systemd import Notifier, supervise, watchdog_interval
from monitor.tasks import Readiness

_log = log.get(__name__)

SHUTDOWN_DRAIN_SECONDS = 2.0
PROGRESS_LINE_EVERY = 0.5


@dataclass
class Edges:
    """Everything a running daemon is made of, wired; what tests and the demo reach into."""

    metrics: Metrics
    poller: Poller
    scheduler: Scheduler
    dispatcher: Dispatcher
    events: EventListener | None = None  # push mode only
    cluster: RedisCluster | None = None  # `run` on the Redis backend only

    @property
    def readiness(self) -> Readiness:
        return self.scheduler.readiness

    def ready(self, now: float) -> tuple[bool, str]:
        if self.cluster is not None and not self.cluster.settled:
            return False, "app leases not taken yet"
        return self.readiness.check(now)


@dataclass
class Running:
    """What a started service exposes to its caller (tests, demo)."""

    metrics_port: int
    edges: Edges


class Service:
    def __init__(
        self,
        settings: Settings,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.wall = wall

    @asynccontextmanager
    async def edges(self, *, clustered: bool = False) -> AsyncIterator[Edges]:
        """:param clustered: on the Redis backend, share the fleet and the API budget with
        the other replicas (`run`); `once` polls everything itself."""
        settings = self.settings
        metrics = Metrics()
        store = await open_store(settings.state)
        try:
            async with AsyncExitStack() as stack:
                redis_client = None
                if clustered and settings.state.backend == "redis":
                    redis_client = await stack.enter_async_context(_redis(settings))
                # Replicas start from nothing: an app's states are read when its lease is taken.
                states = {} if redis_client is not None else await store.load_all()
                for state in states.values():
                    metrics.apply(state)
                rate = settings.poll.max_requests_per_second
                shared = (
                    SharedBucket(
                        redis_client,
                        f"{settings.state.redis_prefix}:budget:{settings.aws.region}",
                        rate=rate,
                        burst=max(1.0, rate),
                    )
                    if redis_client is not None
                    else None
                )
                client = await stack.enter_async_context(
                    AmplifyClient.connect(
                        settings.aws,
                        observer=metrics,
                        max_concurrency=settings.poll.max_concurrency,
                        requests_per_second=rate,
                        shared_budget=shared,
                    )
                )
                dispatcher = build_dispatcher(settings, store, metrics)
                poller = Poller(client, store, metrics, settings, states, dispatcher.poke)
                scheduler = Scheduler(
                    poller,
                    settings.poll,
                    metrics,
                    budget=lambda: client.pacer.rate,
                    clock=self.clock,
                    wall=self.wall,
                )
                cluster = None
                if redis_client is not None:

                    async def adopt(app_ids: list[str]) -> None:
                        await poller.adopt(app_ids)
                        scheduler.adopted(app_ids)

                    cluster = RedisCluster(
                        redis_client,
                        settings.state.redis_prefix,
                        settings.cluster.lease_seconds,
                        settings.cluster.replica_id or default_replica_id(),
                        apps=lambda: list(poller.watched.apps),
                        acquired=adopt,
                        released=poller.release,
                        observer=_ClusterReport(metrics, client.pacer, rate),
                    )
                    scheduler.owns = cluster.owns
                events = None
                if settings.events is not None:
                    queue = await stack.enter_async_context(
                        SqsQueue.connect(settings.events, settings.aws, metrics.sqs_request)
                    )
                    events = EventListener(
                        queue,
                        scheduler,
                        poller.watched,
                        settings.aws.region,
                        metrics,
                        wall=self.wall,
                    )
                yield Edges(metrics, poller, scheduler, dispatcher, events, cluster)
        finally:
            with anyio.CancelScope(shield=True):
                await store.close()

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[Running] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Run until cancelled. Reports `Running` once the metrics endpoint is up."""
        m = self.settings.metrics
        notifier = Notifier.from_environment()
        async with self.edges(clustered=True) as edges:
            try:
                async with (
                    serve(edges.metrics, m.host, m.port, lambda: edges.ready(self.wall())) as port,
                    anyio.create_task_group() as tg,
                ):
                    _log.info(
                        "started",
                        version=__version__,
                        metrics=f"http://{m.host}:{port}/metrics",
                        region=self.settings.aws.region,
                        endpoint_url=self.settings.aws.endpoint_url,
                        events=self.settings.events.sqs_queue_url if self.settings.events else None,
                    )
                    await tg.start(edges.dispatcher.run)
                    await tg.start(edges.scheduler.run)
                    if edges.cluster is not None:
                        tg.start_soon(edges.cluster.run, name="cluster leases")
                    if edges.events is not None:
                        await tg.start(edges.events.run)
                    if notifier.enabled:
                        tg.start_soon(
                            functools.partial(
                                supervise,
                                notifier,
                                edges.scheduler,
                                interval=watchdog_interval(),
                                wall=self.wall,
                            )
                        )
                    task_status.started(Running(port, edges))
            finally:
                notifier.send(STOPPING="1")
                # A held digest would otherwise wait for the next start; bounded so that a
                # stop still completes within the promised 5 s even when Slack is down.
                with anyio.move_on_after(SHUTDOWN_DRAIN_SECONDS, shield=True):
                    left = await edges.dispatcher.drain(timeout=SHUTDOWN_DRAIN_SECONDS)
                    if left:
                        _log.info("outbox_left_for_next_start", pending=left)
                notifier.close()

    async def once(self, out: TextIO, progress: TextIO | None = None) -> int:
        """One full poll of everything, the outbox drained, a table printed. With `progress`
        (a terminal), a line there shows how far the first poll is."""
        async with self.edges() as edges:
            async with anyio.create_task_group() as tg:
                if progress is not None:
                    tg.start_soon(_show_progress, edges.poller, progress)
                await edges.scheduler.run_due()
                tg.cancel_scope.cancel()
            if progress is not None:
                print(_progress_line(edges.poller), file=progress)
            readiness = edges.readiness
            if not readiness.discovered:
                print("amplify-monitor: could not list apps (see log)", file=sys.stderr)
                return 1
            await edges.dispatcher.drain(timeout=10.0)
            poller = edges.poller
            states = [poller.states[k] for k in sorted(poller.branches) if k in poller.states]
            print_table(states, self.wall(), out)
            if readiness.never_polled:
                print("amplify-monitor: some apps could not be polled (see log)", file=sys.stderr)
                return 1
            return 1 if any(s.latest and s.latest.status == FAILED for s in states) else 0


@dataclass
class _ClusterReport:
    """Where the cluster's rounds report: the metrics, and this replica's budget share."""

    metrics: Metrics
    pacer: Pacer
    budget: float

    def cluster(self, replicas: int, owned: int) -> None:
        self.metrics.cluster(replicas, owned)

    def takeover(self) -> None:
        self.metrics.takeover()

    def budget_share(self, share: float) -> None:
        self.pacer.share(self.budget * share)


@asynccontextmanager
async def _redis(settings: Settings) -> AsyncIterator[redis.asyncio.Redis]:
    url = settings.state.redis_url
    if url is None:  # the config requires it with this backend
        raise StoreError("state.redis_url is required with backend = 'redis'")
    client = redis.asyncio.Redis.from_url(
        url.get_secret_value(),
        decode_responses=True,
        socket_connect_timeout=5.0,
        socket_timeout=10.0,
    )
    try:
        yield client
    finally:
        await client.aclose()


def _progress_line(poller: Poller) -> str:
    p = poller.watched.progress()
    return (
        f"\rpolling: {p.apps_listed}/{p.apps} apps listed, "
        f"{p.branches_baselined}/{p.branches} branches read"
    )


async def _show_progress(poller: Poller, out: TextIO) -> None:
    while True:
        print(_progress_line(poller), end="", file=out, flush=True)
        await anyio.sleep(PROGRESS_LINE_EVERY)


def _age(state: BranchState, now: float) -> str:
    job = state.latest
    when = (job.end_time or job.start_time) if job else None
    if when is None:
        return "-"
    seconds = max(0, int(now - when.timestamp()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def print_table(states: list[BranchState], now: float, out: TextIO) -> None:
    header = ("APP", "BRANCH", "JOB", "STATUS", "TYPE", "COMMIT", "AGE")
    rows = [header]
    for s in states:
        job = s.latest
        rows.append(
            (
                f"{s.app_name} ({s.key.app_id})",
                s.key.branch,
                job.job_id if job else "-",
                job.status if job else "NO JOBS",
                job.job_type if job else "-",
                job.commit_id[:7] if job and job.commit_id else "-",
                _age(s, now),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for row in rows:
        print(
            "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip(), file=out
        )


async def until_signal(scope: anyio.CancelScope) -> None:
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for signum in signals:
            _log.info("stopping", signal=signal.Signals(signum).name)
            scope.cancel()
            return


def expected_failure(exc: BaseException) -> Exception | None:
    """The operator-facing cause inside a (possibly grouped) failure: a port in use, a store
    that cannot open, AWS settings that cannot work. None for a bug, which keeps its traceback."""
    if isinstance(exc, OSError | StoreError | AmplifyError | QueueError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = expected_failure(inner)
            if found is not None:
                return found
    return None


def run_daemon(settings: Settings) -> int:
    log.setup(settings.log.format, settings.log.level)

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(until_signal, tg.cancel_scope)
            await Service(settings).run()

    try:
        anyio.run(main)
    except Exception as exc:
        fatal = expected_failure(exc)
        if fatal is None:
            raise
        _log.error("startup_failed", error=str(fatal))
        print(f"amplify-monitor: {fatal}", file=sys.stderr)
        return 1
    _log.info("stopped")
    return 0


def run_once(settings: Settings, out: TextIO = sys.stdout) -> int:
    log.setup(
        settings.log.format, "warning" if settings.log.level == "info" else settings.log.level
    )
    progress = sys.stderr if sys.stderr.isatty() else None
    return anyio.run(Service(settings).once, out, progress)
