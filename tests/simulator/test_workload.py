"""The benchmark workload: seeded, replayed from the clock, one job per branch at a time."""

from __future__ import annotations

import pytest

from monitor.model import CANCELLED, FAILED, SUCCEED
from monitor.simulator import Fleet, ManualClock, Script, Workload, lasting


def _fleet(clock: ManualClock, apps: int = 20) -> Fleet:
    return Fleet.idle(apps=apps, branches=5, jobs_per_branch=1, clock=clock, seed=3)


def _jobs(fleet: Fleet) -> list[tuple[str, str, str, str, float]]:
    now = fleet.now()
    return [
        (app_id, branch, job.job_id, job.status(now), job.start_time)
        for app_id, branch, job in fleet.workload_jobs()
    ]


def test_workload_depends_only_on_the_seed_and_the_clock() -> None:
    stepped_clock, jumped_clock = ManualClock(), ManualClock()
    stepped, jumped = _fleet(stepped_clock), _fleet(jumped_clock)
    workload = Workload(starts_per_minute=0.5, seconds=(10, 40))
    stepped.start_workload(workload, 300, seed=9)
    jumped.start_workload(workload, 300, seed=9)
    for _ in range(400):
        stepped_clock.advance(1)
        stepped.tick()
    jumped_clock.advance(400)
    assert _jobs(stepped) == _jobs(jumped)
    other_clock = ManualClock()
    other = _fleet(other_clock)
    other.start_workload(workload, 300, seed=10)
    other_clock.advance(400)
    assert _jobs(other) != _jobs(jumped)


def test_workload_rate_outcomes_and_durations_follow_its_parameters() -> None:
    clock = ManualClock()
    fleet = _fleet(clock, apps=40)
    began = clock.now
    fleet.start_workload(Workload(0.25, (10, 40), failed=0.2, cancelled=0.05), 600, seed=1)
    clock.advance(700)
    jobs = fleet.workload_jobs()
    # 200 branches x 0.25 a minute x 10 minutes = 500 on average.
    assert 420 < len(jobs) < 580
    assert all(began < job.start_time < began + 600 for _, _, job in jobs)
    outcomes = [job.status(clock.now) for _, _, job in jobs]
    assert 0.12 < outcomes.count(FAILED) / len(jobs) < 0.28
    assert 0.01 < outcomes.count(CANCELLED) / len(jobs) < 0.1
    assert set(outcomes) == {SUCCEED, FAILED, CANCELLED}
    for _, _, job in jobs:
        end = job.end_time(clock.now)
        assert end is not None
        assert 10 - 1e-6 <= end - job.start_time <= 40 + 1e-6


def test_workload_never_starts_a_job_over_an_unfinished_one() -> None:
    clock = ManualClock()
    fleet = Fleet.idle(apps=2, branches=2, jobs_per_branch=1, clock=clock)
    # Far more starts than four branches can take: the extra ones are dropped, not stacked.
    fleet.start_workload(Workload(10, (5, 8)), 120, seed=2)
    clock.advance(200)
    assert len(fleet.workload_jobs()) > 40
    for app in fleet.apps():
        for branch in app.branches.values():
            for before, after in zip(branch.jobs, branch.jobs[1:], strict=False):
                assert before.end_time(after.start_time) is not None


@pytest.mark.parametrize(
    "script",
    [Script(SUCCEED), Script(CANCELLED), *(Script(FAILED, step) for step in ("BUILD", "VERIFY"))],
)
def test_lasting_durations_end_the_job_on_time(script: Script) -> None:
    clock = ManualClock()
    fleet = Fleet(clock)
    app_id = fleet.add_app("shop")
    fleet.add_branch(app_id, "main")
    durations = lasting(12.5, script)
    job_id = fleet.start_job(
        app_id, "main", outcome=script.outcome, fail_step=script.fail_step, durations=durations
    )
    job = fleet.job(app_id, "main", job_id)
    assert job.end_time(clock.now + 12.4) is None
    assert job.end_time(clock.now + 12.5) == pytest.approx(clock.now + 12.5)
    clock.advance(12.5)
    assert job.status(clock.now) == script.outcome


def test_workload_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="starts_per_minute"):
        Workload(0)
    with pytest.raises(ValueError, match="seconds"):
        Workload(seconds=(40, 10))
    with pytest.raises(ValueError, match="shares"):
        Workload(failed=0.8, cancelled=0.3)
