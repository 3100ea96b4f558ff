"""Wiring and lifecycle: builds the edges from Settings, owns the task group, runs the loop.

Also owns readiness (first full poll done, a poll succeeded within 3 intervals), signal
handling for a clean stop, and the `once` command's single pass and table.
"""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TextIO

import anyio
import anyio.abc

from monitor import __version__, log
from monitor.amplify import AmplifyClient, AmplifyError
from monitor.config import Settings
from monitor.metrics import Metrics, serve
from monitor.model import FAILED, BranchState
from monitor.notify.factory import build_dispatcher
from monitor.notify.outbox import Dispatcher
from monitor.poller import Poller
from monitor.scheduler import DISCOVER, PollApp, PollBranch, Schedule, Task
from monitor.store.factory import StoreError, open_store

_log = log.get(__name__)

SHUTDOWN_DRAIN_SECONDS = 2.0


@dataclass
class Readiness:
    """Ready once every discovered app was polled, and while polls keep succeeding."""

    stale_after: float
    discovered: bool = False
    never_polled: set[str] = field(default_factory=set)
    last_success: float | None = None

    def check(self, now: float) -> tuple[bool, str]:
        if not self.discovered:
            return False, "discovery has not succeeded yet"
        if self.never_polled:
            return False, f"{len(self.never_polled)} apps not polled yet"
        if self.last_success is None or now - self.last_success > self.stale_after:
            return False, "no successful poll recently"
        return True, "ready"


@dataclass
class Running:
    """What a started service exposes to its caller (tests, demo)."""

    metrics_port: int
    metrics: Metrics
    poller: Poller
    readiness: Readiness


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
        self.readiness = Readiness(stale_after=3 * settings.poll.interval_seconds)

    @asynccontextmanager
    async def edges(self) -> AsyncIterator[tuple[Metrics, Poller, Dispatcher]]:
        settings = self.settings
        metrics = Metrics()
        store = await open_store(settings.state)
        try:
            states = await store.load_all()
            for state in states.values():
                metrics.apply(state)
            async with AmplifyClient.connect(
                settings.aws,
                observer=metrics,
                max_concurrency=settings.poll.max_concurrency,
                requests_per_second=settings.poll.max_requests_per_second,
            ) as client:
                dispatcher = build_dispatcher(settings, store, metrics)
                poller = Poller(client, store, metrics, settings, states, dispatcher.poke)
                yield metrics, poller, dispatcher
        finally:
            with anyio.CancelScope(shield=True):
                await store.close()

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[Running] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Run until cancelled. Reports `Running` once the metrics endpoint is up."""
        m = self.settings.metrics
        async with self.edges() as (metrics, poller, dispatcher):
            try:
                async with (
                    serve(
                        metrics, m.host, m.port, lambda: self.readiness.check(self.wall())
                    ) as port,
                    anyio.create_task_group() as tg,
                ):
                    _log.info(
                        "started",
                        version=__version__,
                        metrics=f"http://{m.host}:{port}/metrics",
                        region=self.settings.aws.region,
                        endpoint_url=self.settings.aws.endpoint_url,
                    )
                    await tg.start(dispatcher.run)
                    tg.start_soon(self._loop, poller, metrics)
                    task_status.started(Running(port, metrics, poller, self.readiness))
            finally:
                # A held digest would otherwise wait for the next start; bounded so that a
                # stop still completes within the promised 5 s even when Slack is down.
                with anyio.move_on_after(SHUTDOWN_DRAIN_SECONDS, shield=True):
                    left = await dispatcher.drain(timeout=SHUTDOWN_DRAIN_SECONDS)
                    if left:
                        _log.info("outbox_left_for_next_start", pending=left)

    async def _loop(self, poller: Poller, metrics: Metrics) -> None:
        schedule = Schedule()
        schedule.at(DISCOVER, self.clock())
        while True:
            now = self.clock()
            due = schedule.pop_due(now)
            if not due:
                next_due = schedule.next_due()
                await anyio.sleep(1.0 if next_due is None else max(0.01, next_due - now))
                continue
            ok = await self.run_pass(poller, schedule, due, now)
            metrics.poll_done(self.clock() - now, ok, self.wall())
            if ok:
                self.readiness.last_success = self.wall()

    async def run_pass(
        self, poller: Poller, schedule: Schedule, due: list[Task], now: float
    ) -> bool:
        """Run the due tasks concurrently, reschedule them; True if any unit succeeded."""
        poll = self.settings.poll
        results: list[bool] = []
        if DISCOVER in due:
            try:
                added, removed = await poller.discover()
            except AmplifyError as exc:
                _log.warning("discovery_failed", operation=exc.operation, error=exc.detail)
                schedule.at(
                    DISCOVER, now + min(poll.interval_seconds, poll.discovery_interval_seconds)
                )
                results.append(False)
            else:
                self.readiness.discovered = True
                self.readiness.never_polled |= added
                self.readiness.never_polled -= removed
                schedule.at(DISCOVER, now + poll.discovery_interval_seconds)
                for app_id in removed:
                    schedule.remove(PollApp(app_id))
                for app_id in added:
                    schedule.remove(PollApp(app_id))
                    due.append(PollApp(app_id))
                results.append(True)

        apps = {t.app_id for t in due if isinstance(t, PollApp)}

        async def app_task(app_id: str) -> None:
            ok = await _guarded(poller.poll_app(app_id), app_id=app_id)
            results.append(ok)
            if ok:
                self.readiness.never_polled.discard(app_id)
            if app_id in poller.apps:
                schedule.at(PollApp(app_id), now + poll.interval_seconds)
            else:
                self.readiness.never_polled.discard(app_id)

        async def branch_task(task: PollBranch) -> None:
            branch = poller.branches.get(task.key)
            if branch is not None:
                results.append(
                    await _guarded(
                        poller.poll_branch(branch), app_id=task.key.app_id, branch=task.key.branch
                    )
                )

        async with anyio.create_task_group() as tg:
            for app_id in apps:
                tg.start_soon(app_task, app_id)
            for task in due:
                if isinstance(task, PollBranch) and task.key.app_id not in apps:
                    tg.start_soon(branch_task, task)

        # Branches with a job in flight are followed at the active interval.
        for key in poller.branches:
            state = poller.states.get(key)
            if state is not None and state.in_flight:
                schedule.at_latest(PollBranch(key), now + poll.active_interval_seconds)
            else:
                schedule.remove(PollBranch(key))
        return any(results)

    async def once(self, out: TextIO) -> int:
        """One full pass over everything, the outbox drained, a table printed."""
        async with self.edges() as (_metrics, poller, dispatcher):
            # The daemon's first pass, exactly: discovery, then every app it found.
            await self.run_pass(poller, Schedule(), [DISCOVER], self.clock())
            if not self.readiness.discovered:
                print("amplify-monitor: could not list apps (see log)", file=sys.stderr)
                return 1
            await dispatcher.drain(timeout=10.0)
            states = [poller.states[k] for k in sorted(poller.branches) if k in poller.states]
            print_table(states, self.wall(), out)
            if self.readiness.never_polled:
                print("amplify-monitor: some apps could not be polled (see log)", file=sys.stderr)
                return 1
            return 1 if any(s.latest and s.latest.status == FAILED for s in states) else 0


async def _guarded(work: Awaitable[bool], **context: str) -> bool:
    """A bug or a store fault in one unit is logged and retried next cycle, never fatal."""
    try:
        return await work
    except Exception:
        _log.exception("poll_unit_crashed", **context)
        return False


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
    if isinstance(exc, OSError | StoreError | AmplifyError):
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
    return anyio.run(Service(settings).once, out)
