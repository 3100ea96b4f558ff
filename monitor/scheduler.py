"""All timing policy: what is due when, how urgent it is, and a pool of workers that runs it.

Continuous, not in passes: each of `poll.max_concurrency` workers takes the most urgent due task
whenever it is free, so a slow or hung call holds one worker, never the fleet. Apps are spread
over the interval by a stable phase from their id; branches with a job in flight are followed at
the active interval; when the API budget cannot keep up, the lowest priorities stretch first.
Work can also be asked for from outside (`refresh`: an Amplify event says "look now").
Also keeps readiness and reports the progress of the first full poll. Its vocabulary (tasks,
unit results, readiness, phases) is monitor.tasks.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

import anyio
import anyio.abc

from monitor import log
from monitor.config import PollSettings
from monitor.model import BranchKey, Priority, job_number
from monitor.taskqueue import Entry, TaskQueue
from monitor.tasks import (
    DISCOVER,
    AppPoll,
    BranchPoll,
    Discover,
    Discovery,
    PollApp,
    PollBranch,
    Readiness,
    ScheduleObserver,
    Task,
    Work,
    next_slot,
)

_log = log.get(__name__)

PROGRESS_EVERY = 10.0
FOLLOW_FOR_JOB_INTERVALS = 10  # how long a STARTED job no listing shows yet is waited for
R = TypeVar("R")


@dataclass
class _Ask:
    """One wait for a task's next run: any run taken after the ask answers it."""

    after: int  # how many runs had been taken when it was asked
    done: anyio.Event = field(default_factory=anyio.Event)
    ok: bool = False


class Scheduler:
    def __init__(
        self,
        work: Work,
        poll: PollSettings,
        observer: ScheduleObserver,
        *,
        budget: Callable[[], float] = lambda: float("inf"),
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        owns: Callable[[str], bool] = lambda app_id: True,
    ) -> None:
        """:param owns: whether this replica polls the app now (replicas share the fleet)."""
        self.work = work
        self.poll = poll
        self.observer = observer
        self.budget = budget
        self.clock = clock
        self.wall = wall
        self.owns = owns
        self.queue: TaskQueue[Task] = TaskQueue()
        self.queue.at(DISCOVER, clock(), Priority.DISCOVERY)
        self.readiness = Readiness(stale_after=3 * poll.interval_seconds)
        self.followed: set[BranchKey] = set()  # branches with a job in flight
        self._first_discovery = True
        self._behind = False
        self._wake = anyio.Event()
        self._taken = 0  # runs taken so far, to tell which runs answer an ask
        # Branches followed for a started job no poll has listed yet: (job number, until).
        self._awaited: dict[BranchKey, tuple[int, float]] = {}
        self._last_done = clock()  # when a run last finished (the watchdog's evidence)
        self._asks: dict[Task, list[_Ask]] = {}

    # --- work asked for from outside ---------------------------------------------------------

    async def refresh(
        self, task: Task, *, delay: float = 0.0, priority: Priority = Priority.EVENT
    ) -> bool:
        """Run `task` within `delay` (at once by default, above all polling but alert
        enrichment) and wait for a run of it that began after this call; True if it succeeded.
        Asks coalesce: one run answers every ask made before it began."""
        ask = _Ask(self._taken)
        self._asks.setdefault(task, []).append(ask)
        try:
            self.queue.at_latest(task, self.clock() + delay, priority)
            self._notify()
            await ask.done.wait()
        finally:
            waiting = self._asks.get(task, [])
            if ask in waiting:
                waiting.remove(ask)
            if not waiting:
                self._asks.pop(task, None)
        return ask.ok

    async def follow(self, key: BranchKey, job_id: str | None = None) -> bool:
        """A job started on `key` (an event said so, before any listing did): follow the branch
        at the active interval from now, so its end is found even if no event announces it.
        With `job_id`, the branch stays followed until a poll has seen that job (a lagging
        listing may not show it yet), for at most ten active intervals.
        Waits for that first active poll (or an earlier one) like `refresh`."""
        self.followed.add(key)
        if job_id is not None and job_number(job_id) >= 0:
            until = self.clock() + FOLLOW_FOR_JOB_INTERVALS * self.poll.active_interval_seconds
            self._awaited[key] = (job_number(job_id), until)
        return await self.refresh(
            PollBranch(key), delay=self.poll.active_interval_seconds, priority=Priority.ACTIVE
        )

    def making_progress(self, within: float) -> bool:
        """False only when work has been overdue for `within` seconds and nothing finished
        meanwhile: every worker is stuck (a hung call, a blocked loop). Idle is progress."""
        now = self.clock()
        due = self.queue.next_due()
        if due is None or now - due <= within:
            return True
        return now - self._last_done <= within

    def _answer(self, task: Task, run: int, ok: bool) -> None:
        for ask in self._asks.get(task, ()):
            if ask.after <= run and not ask.done.is_set():
                ask.ok = ok
                ask.done.set()

    # --- running ----------------------------------------------------------------------------

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Run until cancelled: the worker pool plus the progress reporter."""
        async with anyio.create_task_group() as tg:
            for _ in range(self.poll.max_concurrency):
                tg.start_soon(self._worker)
            tg.start_soon(self._report_progress)
            task_status.started()

    async def _worker(self) -> None:
        while True:
            now = self.clock()
            taken = self.queue.take(now)
            if taken is None:
                await self._sleep_until(self.queue.next_due())
                continue
            await self._run(*taken, start=now)

    async def _sleep_until(self, due: float | None) -> None:
        timeout = 1.0 if due is None else due - self.clock()
        if timeout > 0:
            with anyio.move_on_after(timeout):
                await self._wake.wait()

    def _notify(self) -> None:
        self._wake.set()
        self._wake = anyio.Event()

    async def run_due(self) -> bool:
        """Run what is due now, and what that makes due now, until nothing is left; the clock
        is read once. One full first poll for `once`; one step of a fake clock for tests.
        True if any unit succeeded."""
        now = self.clock()
        results: list[bool] = []

        async def worker() -> None:
            while True:
                taken = self.queue.take(now)
                if taken is not None:
                    results.append(await self._run(*taken, start=now))
                elif self.queue.running:
                    await self._wake.wait()  # a running task may plan more for now
                else:
                    self._notify()  # let the other idle workers see there is no more
                    return

        async with anyio.create_task_group() as tg:
            for _ in range(self.poll.max_concurrency):
                tg.start_soon(worker)
        return any(results)

    def adopted(self, app_ids: list[str]) -> None:
        """These apps just became this replica's: poll them now, at the app priority."""
        now = self.clock()
        for app_id in app_ids:
            self.queue.at_latest(PollApp(app_id), now, Priority.APP)
        self._notify()

    def _skip(self, task: Task, start: float) -> bool:
        """Another replica polls this app: keep its slot (it may come back), poll nothing."""
        if isinstance(task, PollApp):
            self.readiness.never_polled.discard(task.app_id)
            self.queue.at_latest(task, self._slot(task.app_id, start), Priority.APP)
        elif isinstance(task, PollBranch):
            self.followed.discard(task.key)
        return True

    async def _run(self, task: Task, entry: Entry, *, start: float) -> bool:
        app_id = (
            task.app_id
            if isinstance(task, PollApp)
            else task.key.app_id
            if isinstance(task, PollBranch)
            else None
        )
        if app_id is not None and not self.owns(app_id):
            try:
                return self._skip(task, start)
            finally:
                self.queue.done(task)
                self._notify()
        run = self._taken
        self._taken += 1
        lag = max(0.0, start - entry.due)
        self.observer.schedule_lag(entry.priority.label, lag)
        try:
            if isinstance(task, Discover):
                ok = self._discovered(await _guarded(self.work.discover(), Discovery(False)), start)
            elif isinstance(task, PollApp):
                self._check_pace(lag)
                result = await _guarded(
                    self.work.poll_app(task.app_id), AppPoll(False), app_id=task.app_id
                )
                ok = self._app_polled(task.app_id, result, start)
            else:
                polled = await _guarded(
                    self.work.poll_branch(task.key, entry.priority),
                    BranchPoll(False),
                    app_id=task.key.app_id,
                    branch=task.key.branch,
                )
                ok = self._branch_polled(task.key, polled, start)
        finally:
            self.queue.done(task)
            self._last_done = self.clock()
            self._notify()
        self._answer(task, run, ok)
        self.observer.poll_done(self.clock() - start, ok, self.wall())
        if ok:
            self.readiness.last_success = self.wall()
        return ok

    # --- the rules: what each result plans next ---------------------------------------------

    def _discovered(self, result: Discovery, start: float) -> bool:
        poll = self.poll
        if not result.ok:
            retry = min(poll.interval_seconds, poll.discovery_interval_seconds)
            self.queue.at_latest(DISCOVER, start + retry, Priority.DISCOVERY)
            return False
        # at_latest, like every re-plan after a run: a refresh asked while this one ran (an
        # event for an app not seen yet) stays planned for now, not for the next slot.
        self.queue.at_latest(DISCOVER, start + poll.discovery_interval_seconds, Priority.DISCOVERY)
        self.readiness.discovered = True
        for app_id in result.removed:
            self.queue.remove(PollApp(app_id))
            self.readiness.never_polled.discard(app_id)
        for app_id in result.added:
            # The first discovery is polled as fast as the budget allows (readiness waits for
            # it); an app created later joins at its phase, so it adds no burst.
            when = start if self._first_discovery else self._slot(app_id, start)
            self.queue.at(PollApp(app_id), when, Priority.APP)
            if self._first_discovery:
                self.readiness.never_polled.add(app_id)
        self._first_discovery = False
        return True

    def _app_polled(self, app_id: str, result: AppPoll, start: float) -> bool:
        if app_id in self.work.watched.apps:
            # The next slot after the answer, not after the take: a ListBranches that waited
            # for the budget (the first poll, a saturated pacer) could otherwise find its next
            # slot already past and list the app twice in a row.
            done = max(start, self.clock())
            self.queue.at_latest(PollApp(app_id), self._slot(app_id, done), Priority.APP)
        else:
            self.readiness.never_polled.discard(app_id)
        for key in result.dropped:
            self.queue.remove(PollBranch(key))
            self.followed.discard(key)
        for key in result.changed:
            if key not in self.followed:  # else its active poll will see the news soon
                self.queue.at_latest(PollBranch(key), start, Priority.CHANGED)
        for key in result.swept:
            self.queue.at_latest(PollBranch(key), start, Priority.SWEEP)
        self._settle_readiness(app_id)
        return result.ok

    def _still_awaited(self, key: BranchKey, start: float) -> bool:
        """A started job an event announced that no poll has listed yet (see `follow`)."""
        awaited = self._awaited.get(key)
        if awaited is None:
            return False
        number, until = awaited
        state = self.work.watched.states.get(key)
        if start > until or (state is not None and state.last_job_number >= number):
            del self._awaited[key]
            return False
        return True

    def _branch_polled(self, key: BranchKey, result: BranchPoll, start: float) -> bool:
        awaited = self._still_awaited(key, start)
        if (result.in_flight or awaited) and key in self.work.watched.branches:
            self.followed.add(key)
            when = start + self.poll.active_interval_seconds
            self.queue.at_latest(PollBranch(key), when, Priority.ACTIVE)
        else:
            self.followed.discard(key)
        self._settle_readiness(key.app_id)
        return result.ok

    def _settle_readiness(self, app_id: str) -> None:
        if app_id in self.readiness.never_polled and self.work.watched.baselined(app_id):
            self.readiness.never_polled.discard(app_id)

    def _slot(self, app_id: str, after: float) -> float:
        return next_slot(app_id, self.poll.interval_seconds, after)

    def needed_rate(self) -> float:
        """Calls per second the configured intervals need, about: each app's ListBranches (and
        sweep share) every interval, each followed branch's ListJobs every active interval."""
        apps = len(self.work.watched.apps) * self.work.calls_per_app / self.poll.interval_seconds
        return apps + len(self.followed) / self.poll.active_interval_seconds

    def _check_pace(self, lag: float) -> None:
        """An app poll starting a whole interval late means the interval is not kept: say so
        once (and once when it is kept again), with the call rate it would take."""
        behind = lag > self.poll.interval_seconds
        if behind and not self._behind:
            _log.warning(
                "interval_not_kept",
                interval_seconds=self.poll.interval_seconds,
                lag_seconds=round(lag, 1),
                needed_calls_per_second=round(self.needed_rate(), 1),
                budget_calls_per_second=round(self.budget(), 1),
                detail="idle apps are polled less often; raise poll.max_requests_per_second "
                "(within the account's limit) or poll.interval_seconds",
            )
        elif self._behind and lag < self.poll.interval_seconds / 2:
            _log.info("interval_kept", interval_seconds=self.poll.interval_seconds)
        else:
            return
        self._behind = behind

    # --- progress ---------------------------------------------------------------------------

    async def _report_progress(self) -> None:
        """Until ready, a line every 10 s (a first poll over a large fleet takes minutes);
        then one line as soon as it is ready."""
        last = self.clock()
        while not self.readiness.check(self.wall())[0]:
            await anyio.sleep(min(1.0, PROGRESS_EVERY))
            if self.clock() - last >= PROGRESS_EVERY:
                last = self.clock()
                p = self.work.watched.progress()
                _log.info(
                    "baseline_progress",
                    branches_baselined=p.branches_baselined,
                    branches=p.branches,
                    apps_listed=p.apps_listed,
                    apps=p.apps,
                )
        p = self.work.watched.progress()
        _log.info("ready", branches=p.branches, apps=p.apps)


async def _guarded(work: Awaitable[R], failed: R, **context: str) -> R:
    """A bug or a store fault in one unit is logged and tried again later, never fatal."""
    try:
        return await work
    except Exception:
        _log.exception("poll_unit_crashed", **context)
        return failed
