"""The daemon's polling passes against the simulator, through the real aioboto3 client.

Time is the only fake: the simulator runs on a ManualClock and the scheduler on a fake monotonic
clock, stepped by hand (tests/stepper.py), so every case is deterministic and fast.
"""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from monitor.config import Settings
from monitor.model import FAILED, BranchKey
from monitor.service import Service
from monitor.simulator import Faults, Fleet, ManualClock, Simulator
from monitor.store.sqlite import SqliteStore
from monitor.tasks import Readiness
from tests.conftest import make_settings
from tests.stepper import stepped

FAST = {"PENDING": 1, "PROVISIONING": 1, "RUNNING": 3}


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def fleet(clock: ManualClock) -> Fleet:
    fleet = Fleet(clock, durations=FAST)
    app = fleet.add_app("shop", app_id="dshop")
    for name in ("main", "develop", "release/1.0"):
        fleet.add_branch(app, name)
        fleet.start_job(app, name, at=clock() - 600)
    clock.advance(1)
    return fleet


@pytest.fixture
async def sim(fleet: Fleet) -> AsyncIterator[Simulator]:
    async with Simulator(fleet, Faults()) as simulator:
        yield simulator


async def pending_alerts(state: Path) -> list[tuple[str, str]]:
    store = await SqliteStore.open(state)
    try:
        return [(e.alert.job.job_id, e.alert.status) for e in await store.pending(now=1e12)]
    finally:
        await store.close()


async def full_pass(settings: Settings) -> None:
    """Discovery plus every app and branch, as the daemon's first poll does."""
    async with stepped(settings) as daemon:
        assert await daemon.first()


async def test_job_that_fails_while_daemon_is_down_is_alerted_once_after_restart(
    sim: Simulator, fleet: Fleet, clock: ManualClock, tmp_path: Path
) -> None:
    state = tmp_path / "state.db"
    settings = make_settings(sim.url, state)
    await full_pass(settings)  # baseline: history raises nothing
    assert await pending_alerts(state) == []

    job_id = fleet.start_job("dshop", "main", outcome=FAILED, reason="npm ERR! build")
    clock.advance(30)  # the job starts and fails while no daemon runs

    await full_pass(settings)
    assert await pending_alerts(state) == [(job_id, FAILED)]

    await full_pass(settings)  # and a second restart raises it no more
    assert await pending_alerts(state) == [(job_id, FAILED)]


async def test_failure_alert_carries_failed_step_and_reason_from_getjob(
    sim: Simulator, fleet: Fleet, clock: ManualClock, tmp_path: Path
) -> None:
    state = tmp_path / "state.db"
    async with stepped(make_settings(sim.url, state)) as daemon:
        await daemon.first()
        job_id = fleet.start_job(
            "dshop", "develop", outcome=FAILED, fail_step="DEPLOY", reason="boom"
        )
        clock.advance(2)  # under way by now
        await daemon.interval()
        key = BranchKey("dshop", "develop")
        assert daemon.poller.states[key].unfinished.get(job_id) in ("PROVISIONING", "RUNNING")
        clock.advance(30)
        await daemon.step(daemon.service.settings.poll.active_interval_seconds)
        assert not daemon.poller.states[key].has_unfinished
        text = daemon.edges.metrics.render().decode()
    store = await SqliteStore.open(state)
    try:
        [entry] = await store.pending(now=1e12)
    finally:
        await store.close()
    assert entry.alert.job.job_id == job_id
    assert entry.alert.failed_step is not None
    assert entry.alert.failed_step.name == "DEPLOY"
    assert entry.alert.failed_step.status_reason == "boom"
    assert (
        'amplify_job_status{app_id="dshop",app_name="shop",branch="develop",status="FAILED"} 1.0'
        in text
    )
    assert (
        'amplify_jobs_finished_total{app_id="dshop",branch="develop",status="FAILED"} 1.0' in text
    )


async def test_deleted_branch_is_dropped_and_its_series_removed(
    sim: Simulator, fleet: Fleet, clock: ManualClock, tmp_path: Path
) -> None:
    state = tmp_path / "state.db"
    async with stepped(make_settings(sim.url, state)) as daemon:
        await daemon.first()
        metrics = daemon.edges.metrics
        assert 'branch="develop"' in metrics.render().decode()
        fleet.delete_branch("dshop", "develop")
        await daemon.interval()
        text = metrics.render().decode()
        assert 'branch="develop"' not in text
        assert 'branch="main"' in text
        assert "amplify_monitor_watched_branches 2.0" in text
        assert BranchKey("dshop", "develop") not in daemon.poller.states
    store = await SqliteStore.open(state)
    try:
        assert BranchKey("dshop", "develop") not in await store.load_all()
    finally:
        await store.close()


async def test_throttling_is_survived_and_the_failure_still_detected(
    sim: Simulator,
    fleet: Fleet,
    clock: ManualClock,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")  # keep botocore's real backoff short
    state = tmp_path / "state.db"
    async with stepped(make_settings(sim.url, state)) as daemon:
        await daemon.first()
        job_id = fleet.start_job("dshop", "main", outcome=FAILED)
        clock.advance(30)
        sim.faults.throttle(times=50)  # more than botocore's retries can absorb
        assert not await daemon.interval()
        assert await pending_alerts(state) == []
        sim.faults.clear()
        assert await daemon.interval()
        text = daemon.edges.metrics.render().decode()
    assert await pending_alerts(state) == [(job_id, FAILED)]
    assert (
        'amplify_monitor_api_requests_total{operation="ListBranches",outcome="throttled"}' in text
    )


async def test_idle_fleet_of_1000_branches_costs_at_most_1_05_calls_per_app_per_interval(
    tmp_path: Path,
) -> None:
    clock = ManualClock()
    fleet = Fleet.idle(apps=200, branches=5, clock=clock)
    async with Simulator(fleet) as sim:
        settings = make_settings(
            sim.url,
            tmp_path / "state.db",
            poll={"max_concurrency": 32, "max_requests_per_second": 5000},
        )
        async with stepped(settings) as daemon:
            await daemon.first()
            assert len(daemon.poller.branches) == 1000
            sim.reset_counts()
            interval = settings.poll.interval_seconds
            # Ten whole intervals, in steps of a second, as the apps' phases come due.
            for _ in range(int(10 * interval)):
                await daemon.step(1.0)
            calls = dict(sim.counts)
    print(f"API calls for ten intervals over 200 apps x 5 idle branches: {calls}")
    # No branch changed: the only ListJobs are the safety net's, a twentieth of the apps' worth
    # (each app lists one of its branches every twentieth interval, in case its markers lie).
    assert calls["ListBranches"] == 2000
    assert calls.get("ListJobs", 0) == 100
    assert sum(calls.values()) - calls.get("ListApps", 0) <= 1.05 * 2000


def test_readiness_needs_a_full_first_poll_and_goes_stale_after_three_intervals() -> None:
    readiness = Readiness(stale_after=30.0)
    assert readiness.check(0.0)[0] is False
    readiness.discovered = True
    readiness.never_polled = {"a1"}
    readiness.last_success = 0.0
    assert readiness.check(1.0) == (False, "1 apps not polled yet")
    readiness.never_polled.clear()
    assert readiness.check(1.0) == (True, "ready")
    assert readiness.check(31.0)[0] is False


async def test_once_shows_its_progress_on_a_terminal_and_ends_with_the_full_count(
    sim: Simulator, tmp_path: Path
) -> None:
    progress, table = io.StringIO(), io.StringIO()
    code = await Service(make_settings(sim.url, tmp_path / "state.db")).once(table, progress)
    assert code == 0
    lines = progress.getvalue()
    assert lines.startswith("\rpolling: ")
    assert lines.endswith("\rpolling: 1/1 apps listed, 3/3 branches read\n")
    assert "release/1.0" in table.getvalue()  # the table itself stays on stdout
