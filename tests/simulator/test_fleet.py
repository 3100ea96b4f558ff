"""The fleet on its own (scripts, factories, demo traffic) and the `python -m` entry point."""

from __future__ import annotations

import asyncio
import signal
import sys

import aioboto3
import pytest

from monitor.simulator import Fleet, ManualClock, Script


def _snapshot(fleet: Fleet) -> list[tuple[str, str, str, str, float]]:
    now = fleet.now()
    return [
        (app.name, branch.name, job.job_id, job.status(now), job.start_time)
        for app in fleet.apps()
        for branch in app.branches.values()
        for job in branch.jobs
    ]


def test_demo_traffic_depends_only_on_the_clock_not_on_how_often_it_is_read() -> None:
    stepped_clock, jumped_clock = ManualClock(), ManualClock()
    stepped, jumped = Fleet.demo(clock=stepped_clock), Fleet.demo(clock=jumped_clock)
    for _ in range(600):
        stepped_clock.advance(1)
        stepped.tick()
    jumped_clock.advance(600)
    assert _snapshot(stepped) == _snapshot(jumped)
    new_jobs = [s for s in _snapshot(jumped) if s[4] > jumped_clock.now - 600]
    statuses = {status for *_, status, _ in new_jobs}
    assert len(new_jobs) > 50
    assert {"SUCCEED", "FAILED", "CANCELLED"} <= statuses


def test_demo_traffic_never_starts_a_job_over_an_unfinished_one() -> None:
    clock = ManualClock()
    fleet = Fleet.demo(clock=clock)
    clock.advance(900)
    for app in fleet.apps():
        for branch in app.branches.values():
            for before, after in zip(branch.jobs, branch.jobs[1:], strict=False):
                assert before.end_time(after.start_time) is not None


def test_idle_fleet_is_large_and_finished() -> None:
    fleet = Fleet.idle(apps=20, branches=5, jobs_per_branch=3, clock=ManualClock())
    snapshot = _snapshot(fleet)
    assert len(fleet.apps()) == 20
    assert len(snapshot) == 20 * 5 * 3
    assert {status for *_, status, _ in snapshot} == {"SUCCEED"}


def test_scripted_cancel_passes_through_cancelling() -> None:
    clock = ManualClock()
    fleet = Fleet(clock, durations={"PENDING": 1, "PROVISIONING": 1, "RUNNING": 4})
    app_id = fleet.add_app("shop")
    fleet.add_branch(app_id, "main")
    job_id = fleet.start_job(app_id, "main", outcome="CANCELLED")
    seen = []
    for _ in range(6):
        seen.append(fleet.job_status(app_id, "main", job_id))
        clock.advance(1)
    assert seen == ["PENDING", "PROVISIONING", "RUNNING", "RUNNING", "CANCELLING", "CANCELLED"]


def test_scripts_refuse_unknown_outcomes_and_steps() -> None:
    with pytest.raises(ValueError, match="outcome"):
        Script("EXPLODED")
    with pytest.raises(ValueError, match="fail_step"):
        Script("FAILED", "TEST")


async def test_module_entry_serves_a_fleet_and_prints_its_url() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        *("-m", "monitor.simulator", "--port", "0", "--fleet", "idle", "--apps", "3"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        assert proc.stdout is not None
        url = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode().strip()
        assert url.startswith("http://127.0.0.1:")
        async with aioboto3.Session().client(
            "amplify",
            endpoint_url=url,
            region_name="us-east-1",
            aws_access_key_id="x",
            aws_secret_access_key="x",
        ) as client:
            assert len((await client.list_apps())["apps"]) == 3
        proc.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(proc.wait(), 30) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
