"""The scheduler: continuous workers, priorities, phases, the budget, against the simulator.

Timing tests run the real continuous scheduler in real time (a few seconds each) after a
baseline driven on a fake clock; the rule tests drive `run_due` with fake polling units.
"""

from __future__ import annotations

import functools
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from pathlib import Path

import anyio
import pytest
from structlog.testing import capture_logs

from monitor.config import PollSettings, Target
from monitor.metrics import Metrics
from monitor.model import App, Branch, BranchKey, BranchState, JobSummary, Priority
from monitor.pacing import Pacer
from monitor.scheduler import Scheduler
from monitor.service import Edges, Service
from monitor.simulator import Fleet, ManualClock, Simulator
from monitor.tasks import AppPoll, BranchPoll, Discovery, PollApp, PollBranch, next_slot, phase
from monitor.watch import Watched
from tests.conftest import make_settings
from tests.stepper import FakeClock


class SwitchClock(FakeClock):
    """Fake until `go_real`, then real time from where it stood plus a jump."""

    def __init__(self) -> None:
        super().__init__()
        self._real_from: float | None = None

    def __call__(self) -> float:
        if self._real_from is None:
            return self.now
        return self.now + time.monotonic() - self._real_from

    def go_real(self, jump: float = 0.0) -> None:
        self.now += jump
        self._real_from = time.monotonic()


def lag(metrics: Metrics, priority: str, le: str | None = None) -> float:
    name = "amplify_monitor_schedule_lag_seconds_" + ("bucket" if le else "count")
    labels = {"priority": priority, **({"le": le} if le else {})}
    return metrics.registry.get_sample_value(name, labels) or 0.0


class RecordingPacer(Pacer):
    """The real pacer, noting how long each call waited for its token, by priority."""

    def __init__(self, rate: float) -> None:
        super().__init__(rate)
        self.waits: dict[int, list[float]] = {}

    async def acquire(self, priority: int = 0, patience: float | None = None) -> float:
        waited = await super().acquire(priority, patience)
        self.waits.setdefault(priority, []).append(waited)
        return waited


async def run_for(edges: Edges, seconds: float) -> int:
    """Run the continuous scheduler for `seconds`; returns the pacer's waiters at the end."""
    async with anyio.create_task_group() as tg:
        await tg.start(edges.scheduler.run)
        await anyio.sleep(seconds)
        waiting = edges.poller.client.pacer.waiting
        tg.cancel_scope.cancel()
    return waiting


async def test_a_followed_branch_keeps_its_active_interval_behind_a_thousand_queued_app_polls(
    tmp_path: Path,
) -> None:
    fleet_clock = ManualClock()
    fleet = Fleet.idle(apps=1000, branches=1, jobs_per_branch=1, clock=fleet_clock)
    busy = fleet.add_app("busy")
    fleet.add_branch(busy, "main")
    fleet.start_job(busy, "main", durations={"PENDING": 1, "PROVISIONING": 1, "RUNNING": 1e9})
    fleet_clock.advance(5)  # RUNNING, and it stays so: the fleet's clock stands still
    async with Simulator(fleet) as sim:
        settings = make_settings(
            sim.url,
            tmp_path / "state.db",
            poll={
                "interval_seconds": 60,
                "active_interval_seconds": 0.5,
                "max_requests_per_second": 5000,
            },
        )
        clock = SwitchClock()
        async with Service(settings, clock=clock).edges() as edges:
            assert await edges.scheduler.run_due()  # the baseline, at full speed
            assert edges.readiness.never_polled == set()
            assert BranchKey(busy, "main") in edges.scheduler.followed
            # Now a tight budget, and two intervals later: all 1,001 ListBranches are due and
            # take 25 s at 40 calls/s.
            pacer = edges.poller.client.pacer = RecordingPacer(40.0)
            sim.reset_counts()
            clock.go_real(jump=120.0)
            waiting = await run_for(edges, 4.0)
            metrics = edges.metrics
    assert waiting >= 10  # the budget was saturated throughout
    assert sim.counts["ListBranches"] < 300  # most app polls still queued
    # One ListJobs every half second for the running job, on time, all along.
    assert sim.counts["ListJobs"] >= 7
    assert lag(metrics, "active") >= 7
    # All but the first (due before the clock jumped) started within a quarter second, and
    # their calls got the next token, while each ListBranches waited behind the others.
    assert lag(metrics, "active", le="0.25") == lag(metrics, "active") - 1
    assert max(pacer.waits[Priority.ACTIVE]) < 0.1
    app_waits = sorted(pacer.waits[Priority.APP])
    assert app_waits[len(app_waits) // 2] > 0.2
    assert lag(metrics, "app", le="1.0") < lag(metrics, "app")  # the idle apps wait instead


async def test_one_hung_list_branches_does_not_delay_any_other_app(tmp_path: Path) -> None:
    fleet = Fleet.idle(apps=20, branches=1, jobs_per_branch=1, clock=ManualClock())
    async with Simulator(fleet) as sim:
        settings = make_settings(
            sim.url,
            tmp_path / "state.db",
            poll={"interval_seconds": 1, "max_concurrency": 4, "max_requests_per_second": 5000},
        )
        clock = SwitchClock()
        async with Service(settings, clock=clock).edges() as edges:
            assert await edges.scheduler.run_due()
            sim.reset_counts()
            sim.faults.latency(4.0, op="ListBranches", times=1)  # the next one hangs
            clock.go_real()
            await run_for(edges, 3.2)
            metrics = edges.metrics
    # 19 other apps, each polled in each of three intervals (and the hung one started once).
    assert sim.counts["ListBranches"] >= 19 * 3
    assert lag(metrics, "app", le="0.25") == lag(metrics, "app")


async def test_a_hung_answer_is_cut_at_the_read_timeout_and_counted_while_the_fleet_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")  # the timeout itself, not botocore's retries
    fleet = Fleet.idle(apps=20, branches=1, jobs_per_branch=1, clock=ManualClock())
    async with Simulator(fleet) as sim:
        settings = make_settings(
            sim.url,
            tmp_path / "state.db",
            aws={"read_timeout_seconds": 0.5, "connect_timeout_seconds": 0.5},
            poll={"interval_seconds": 1, "max_concurrency": 4, "max_requests_per_second": 5000},
        )
        clock = SwitchClock()
        async with Service(settings, clock=clock).edges() as edges:
            assert await edges.scheduler.run_due()
            sim.reset_counts()
            # The next answer hangs for longer than this test looks: counted as an error at
            # 3.2 s, it was cut by the timeout, not answered.
            sim.faults.latency(5.0, op="ListBranches", times=1)
            clock.go_real()
            await run_for(edges, 3.2)
            text = edges.metrics.render().decode()
    assert (
        'amplify_monitor_api_requests_total{operation="ListBranches",outcome="error"} 1.0' in text
    )
    assert sim.counts["ListBranches"] >= 19 * 3  # the others, every interval


# --- the rules, with fake polling units ---------------------------------------------------------


class FakeWork:
    """Polling units that answer at once: every app has one idle branch."""

    calls_per_app = 1.05

    def __init__(self, app_ids: list[str]) -> None:
        self.watched = Watched((Target(),), {})
        self.app_ids = app_ids
        self.polled: Counter[str] = Counter()

    async def discover(self) -> Discovery:
        apps = {a: App(a, a) for a in self.app_ids}
        added = frozenset(apps) - frozenset(self.watched.apps)
        self.watched.apps = apps
        return Discovery(ok=True, added=added)

    async def poll_app(self, app_id: str) -> AppPoll:
        self.polled[app_id] += 1
        self.watched.listed.add(app_id)
        return AppPoll(ok=True)

    async def poll_branch(self, key: BranchKey, priority: Priority) -> BranchPoll:
        return BranchPoll(ok=True)


def rules_scheduler(work: FakeWork, clock: FakeClock, **poll: float) -> Scheduler:
    settings = PollSettings(**{"interval_seconds": 30.0, **poll})  # type: ignore[arg-type]
    return Scheduler(work, settings, Metrics(), clock=clock, budget=lambda: 20.0)


def test_an_app_phase_is_stable_and_a_fleet_is_spread_evenly_over_the_interval() -> None:
    ids = [f"d{i:04d}example{i * 7919 % 1000:03d}" for i in range(2000)]
    assert phase(ids[0], 30.0) == phase(ids[0], 30.0)
    bins = Counter(int(next_slot(app_id, 30.0, after=0.0) // 3) for app_id in ids)
    assert sorted(bins) == list(range(10))  # every tenth of the interval has its share
    assert max(bins.values()) < 1.3 * 200
    assert min(bins.values()) > 0.7 * 200


def test_a_poll_that_ran_late_skips_the_slots_it_missed() -> None:
    slot = next_slot("app", 30.0, after=0.0)
    assert 0.0 < slot <= 30.0
    assert next_slot("app", 30.0, after=slot) == slot + 30.0
    assert next_slot("app", 30.0, after=slot + 95.0) == slot + 120.0


async def test_first_discovery_is_polled_at_once_and_a_later_app_joins_at_its_phase() -> None:
    work = FakeWork(["a1", "a2"])
    clock = FakeClock(1000.0)
    scheduler = rules_scheduler(work, clock)
    assert await scheduler.run_due()
    assert work.polled == {"a1": 1, "a2": 1}
    assert scheduler.readiness.check(time.time()) == (True, "ready")
    work.app_ids.append("a3")
    clock.now += scheduler.poll.discovery_interval_seconds
    await scheduler.run_due()
    entry = scheduler.queue.entry(PollApp("a3"))
    assert entry is not None and entry.due == next_slot("a3", 30.0, clock.now)
    assert entry.due > clock.now
    assert scheduler.readiness.check(time.time())[0]  # a new app does not unready the daemon


async def test_an_interval_that_cannot_be_kept_is_logged_once_with_the_rate_it_needs() -> None:
    work = FakeWork([f"a{i}" for i in range(40)])
    clock = FakeClock()
    scheduler = rules_scheduler(work, clock, interval_seconds=10.0)
    await scheduler.run_due()
    with capture_logs() as logs:
        clock.now += 35.0  # every app polled a whole interval late
        await scheduler.run_due()
        clock.now += 10.0
        await scheduler.run_due()  # on time again
    warnings = [e for e in logs if e["event"] == "interval_not_kept"]
    assert len(warnings) == 1
    assert warnings[0]["needed_calls_per_second"] == pytest.approx(40 * 1.05 / 10, abs=0.05)
    assert warnings[0]["budget_calls_per_second"] == 20.0
    assert [e["event"] for e in logs].count("interval_kept") == 1


async def test_a_branch_in_flight_is_followed_at_the_active_interval_and_dropped_when_done() -> (
    None
):
    work = FakeWork(["a1"])
    clock = FakeClock()
    scheduler = rules_scheduler(work, clock, active_interval_seconds=5.0)
    await scheduler.run_due()
    key = BranchKey("a1", "main")
    work.watched.branches[key] = None  # type: ignore[assignment]
    scheduler._branch_polled(key, BranchPoll(ok=True, in_flight=True), start=clock.now)
    entry = scheduler.queue.entry(PollBranch(key))
    assert entry is not None and (entry.due, entry.priority) == (5.0, Priority.ACTIVE)
    # The app poll saying "changed" does not pull a followed branch forward.
    scheduler._app_polled("a1", AppPoll(ok=True, changed=(key,)), start=clock.now)
    assert scheduler.queue.entry(PollBranch(key)) == entry
    scheduler._branch_polled(key, BranchPoll(ok=True, in_flight=False), start=clock.now)
    assert key not in scheduler.followed


class SlowWork(FakeWork):
    """One app's first ListBranches waits until released."""

    def __init__(self, app_ids: list[str], slow: str) -> None:
        super().__init__(app_ids)
        self.slow = slow
        self.release = anyio.Event()

    async def poll_app(self, app_id: str) -> AppPoll:
        if app_id == self.slow:
            await self.release.wait()
        return await super().poll_app(app_id)


async def test_the_first_poll_logs_its_progress_until_ready(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("monitor.scheduler.PROGRESS_EVERY", 0.05)
    work = SlowWork(["a1", "a2"], slow="a2")
    scheduler = rules_scheduler(work, FakeClock())
    scheduler.clock = time.monotonic
    with capture_logs() as logs:
        async with anyio.create_task_group() as tg:
            await tg.start(scheduler.run)
            await anyio.sleep(0.3)
            work.release.set()
            await anyio.sleep(0.3)
            tg.cancel_scope.cancel()
    events = [e for e in logs if e["event"] in ("baseline_progress", "ready")]
    progress = [e for e in events if e["event"] == "baseline_progress"]
    assert len(progress) >= 3
    assert (progress[0]["apps_listed"], progress[0]["apps"]) == (1, 2)
    assert [e["event"] for e in events][-1] == "ready"  # and nothing after it
    assert [e["event"] for e in events].count("ready") == 1


class CrashingWork(FakeWork):
    """An app whose poll raises (a bug, a store fault) on its first try."""

    def __init__(self, app_ids: list[str], crashing: str) -> None:
        super().__init__(app_ids)
        self.crashing = crashing

    async def poll_app(self, app_id: str) -> AppPoll:
        if app_id == self.crashing and not self.polled[app_id]:
            self.polled[app_id] += 1
            raise RuntimeError("store is on fire")
        return await super().poll_app(app_id)


async def test_a_crashing_unit_is_logged_and_tried_again_at_its_next_slot() -> None:
    work = CrashingWork(["a1", "a2"], crashing="a2")
    clock = FakeClock()
    scheduler = rules_scheduler(work, clock)
    with capture_logs() as logs:
        assert await scheduler.run_due()  # a1 and discovery went well
    crashes = [e for e in logs if e["event"] == "poll_unit_crashed"]
    assert [e["app_id"] for e in crashes] == ["a2"]
    assert scheduler.readiness.never_polled == {"a2"}
    entry = scheduler.queue.entry(PollApp("a2"))
    assert entry is not None and entry.due == next_slot("a2", 30.0, 0.0)
    clock.now = entry.due
    await scheduler.run_due()
    assert work.polled["a2"] == 2
    assert scheduler.readiness.never_polled == set()


class BranchWork(FakeWork):
    """Notes each branch poll and its priority; a poll can be held until released."""

    def __init__(self, app_ids: list[str]) -> None:
        super().__init__(app_ids)
        self.branch_polls: list[tuple[BranchKey, Priority]] = []
        self.hold: anyio.Event | None = None
        self.results: list[bool] = []  # each poll's outcome in turn; then success

    async def poll_branch(self, key: BranchKey, priority: Priority) -> BranchPoll:
        self.branch_polls.append((key, priority))
        if self.hold is not None:
            await self.hold.wait()
        return BranchPoll(ok=self.results.pop(0) if self.results else True)


async def _asked(scheduler: Scheduler, results: list[bool], *, started: bool = False) -> None:
    key = BranchKey("a1", "main")
    results.append(await (scheduler.follow(key) if started else scheduler.refresh(PollBranch(key))))


async def test_refreshes_asked_before_a_run_coalesce_into_one_poll_at_event_priority() -> None:
    work = BranchWork(["a1"])
    clock = FakeClock()
    scheduler = rules_scheduler(work, clock)
    await scheduler.run_due()
    results: list[bool] = []
    async with anyio.create_task_group() as tg:
        for _ in range(3):
            tg.start_soon(_asked, scheduler, results)
        await anyio.wait_all_tasks_blocked()
        await scheduler.run_due()
    assert results == [True, True, True]
    assert work.branch_polls == [(BranchKey("a1", "main"), Priority.EVENT)]


async def test_a_refresh_asked_during_a_poll_is_answered_by_the_next_poll_not_that_one() -> None:
    work = BranchWork(["a1"])
    clock = FakeClock()
    scheduler = rules_scheduler(work, clock)
    await scheduler.run_due()
    first: list[bool] = []
    second: list[bool] = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(_asked, scheduler, first)
        await anyio.wait_all_tasks_blocked()
        work.hold = anyio.Event()
        tg.start_soon(scheduler.run_due)
        await anyio.wait_all_tasks_blocked()  # the first poll is running, held
        tg.start_soon(_asked, scheduler, second)
        await anyio.wait_all_tasks_blocked()
        work.results = [True, False]  # the running poll succeeds, the next one fails
        work.hold.set()
        work.hold = None
    assert first == [True]
    assert second == [False]  # answered by the poll that began after it was asked
    assert len(work.branch_polls) == 2


async def test_a_started_job_has_its_branch_followed_from_one_active_interval_on() -> None:
    work = BranchWork(["a1"])
    clock = FakeClock()
    scheduler = rules_scheduler(work, clock, active_interval_seconds=5.0)
    await scheduler.run_due()
    key = BranchKey("a1", "main")
    results: list[bool] = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(functools.partial(_asked, scheduler, results, started=True))
        await anyio.wait_all_tasks_blocked()
        assert key in scheduler.followed
        entry = scheduler.queue.entry(PollBranch(key))
        assert entry is not None and (entry.due, entry.priority) == (5.0, Priority.ACTIVE)
        await scheduler.run_due()
        assert work.branch_polls == []  # not before its active interval
        clock.now += 5.0
        await scheduler.run_due()
    assert results == [True]
    assert work.branch_polls == [(key, Priority.ACTIVE)]


async def test_the_watchdog_sees_progress_when_idle_or_finishing_work_not_when_work_is_stuck() -> (
    None
):
    work = BranchWork(["a1"])
    clock = FakeClock()
    scheduler = rules_scheduler(work, clock)
    await scheduler.run_due()
    assert scheduler.making_progress(within=2.0)  # nothing overdue: idle is fine
    clock.now += 60.0  # the app poll is overdue, and nothing has finished since
    assert not scheduler.making_progress(within=2.0)
    await scheduler.run_due()  # it ran: progress
    assert scheduler.making_progress(within=2.0)


class HeldApps(FakeWork):
    """App polls wait until released, so a refresh can be asked while one runs."""

    def __init__(self, app_ids: list[str]) -> None:
        super().__init__(app_ids)
        self.hold: anyio.Event | None = None

    async def poll_app(self, app_id: str) -> AppPoll:
        if self.hold is not None:
            await self.hold.wait()
        return await super().poll_app(app_id)


async def test_a_refresh_asked_while_its_task_runs_is_run_next_not_at_the_next_slot() -> None:
    work = HeldApps(["a1"])
    clock = FakeClock()
    scheduler = rules_scheduler(work, clock, interval_seconds=300.0)
    await scheduler.run_due()
    clock.now = scheduler.queue.entry(PollApp("a1")).due  # type: ignore[union-attr]
    results: list[bool] = []

    async def ask() -> None:
        results.append(await scheduler.refresh(PollApp("a1")))

    with anyio.fail_after(5):  # without the fix the refresh waits for the next slot, 300 s
        await _ask_during_a_held_run(scheduler, work, ask)
    # The run that began after the ask came straight after, at the same clock reading.
    assert results == [True]
    assert work.polled["a1"] == 3


async def _ask_during_a_held_run(
    scheduler: Scheduler, work: HeldApps, ask: Callable[[], Coroutine[None, None, None]]
) -> None:
    async with anyio.create_task_group() as tg:
        work.hold = anyio.Event()
        tg.start_soon(scheduler.run_due)
        await anyio.wait_all_tasks_blocked()  # its regular poll is running, held
        tg.start_soon(ask)
        await anyio.wait_all_tasks_blocked()
        work.hold.set()
        work.hold = None


async def test_a_started_job_no_listing_shows_yet_keeps_its_branch_followed_until_seen() -> None:
    work = BranchWork(["a1"])
    clock = FakeClock()
    scheduler = rules_scheduler(work, clock, active_interval_seconds=5.0)
    await scheduler.run_due()
    key = BranchKey("a1", "main")
    work.watched.branches[key] = Branch(key, "a1")
    work.watched.states[key] = BranchState(key, "a1", latest=JobSummary("6", "SUCCEED"))
    results: list[bool] = []

    async def started() -> None:
        results.append(await scheduler.follow(key, "7"))

    async with anyio.create_task_group() as tg:
        tg.start_soon(started)
        await anyio.wait_all_tasks_blocked()
        clock.now += 5.0
        await scheduler.run_due()  # a lagging listing: job 7 not there, nothing in flight
    assert results == [True]
    assert key in scheduler.followed  # still waiting to see job 7
    entry = scheduler.queue.entry(PollBranch(key))
    assert entry is not None and (entry.due, entry.priority) == (10.0, Priority.ACTIVE)
    work.watched.states[key] = BranchState(key, "a1", latest=JobSummary("7", "CANCELLED"))
    clock.now += 5.0
    await scheduler.run_due()  # job 7 seen (and over): the follow ends
    assert key not in scheduler.followed
    assert scheduler.queue.entry(PollBranch(key)) is None


async def test_a_started_job_never_listed_is_waited_for_ten_active_intervals_only() -> None:
    work = BranchWork(["a1"])
    clock = FakeClock()
    scheduler = rules_scheduler(work, clock, active_interval_seconds=5.0)
    await scheduler.run_due()
    key = BranchKey("a1", "main")
    work.watched.branches[key] = Branch(key, "a1")
    async with anyio.create_task_group() as tg:
        tg.start_soon(functools.partial(scheduler.follow, key, "99"))  # a job that never shows
        await anyio.wait_all_tasks_blocked()
        for _ in range(12):
            clock.now += 5.0
            await scheduler.run_due()
    assert key not in scheduler.followed
    assert 10 <= len(work.branch_polls) <= 11


class WaitingApps(FakeWork):
    """Each app poll takes `wait` seconds of the fake clock, as a call waiting for the budget."""

    def __init__(self, app_ids: list[str], clock: FakeClock, wait: float) -> None:
        super().__init__(app_ids)
        self.clock = clock
        self.wait = wait

    async def poll_app(self, app_id: str) -> AppPoll:
        self.clock.now += self.wait
        return await super().poll_app(app_id)


async def test_an_app_poll_that_waited_for_the_budget_plans_its_next_slot_after_its_answer() -> (
    None
):
    clock = FakeClock()
    offset = phase("a1", 30.0)
    work = WaitingApps(["a1"], clock, wait=offset + 1.0)  # answered after its first slot
    scheduler = rules_scheduler(work, clock, interval_seconds=30.0)
    await scheduler.run_due()
    entry = scheduler.queue.entry(PollApp("a1"))
    assert entry is not None and entry.due == offset + 30.0  # not `offset`, already past
    assert work.polled["a1"] == 1
