"""Soak: the daemon's real edges stepped through thousands of poll cycles over a small fleet
whose jobs, branches and apps come and go, checking that nothing grows once warmed up: RSS,
open file descriptors, asyncio tasks, metric series and stored branch states.

A short run is part of the suite; `pytest -m slow tests/test_soak.py -s` runs the long one
(tens of thousands of cycles) and prints its figures.
"""

from __future__ import annotations

import asyncio
import os
import random
from dataclasses import dataclass
from pathlib import Path

import pytest

from monitor.model import CANCELLED, FAILED, SUCCEED
from monitor.simulator import Fleet, ManualClock, Simulator
from tests.conftest import make_settings
from tests.stepper import stepped

APPS, BRANCHES = 6, 3
STEP = 2.0  # seconds of fake time per step: the active interval


@dataclass(frozen=True)
class Reading:
    cycles: int
    rss_mib: float
    fds: int
    tasks: int
    series: int
    states: int


def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _app(fleet: Fleet, rng: random.Random, clock: ManualClock, n: int) -> None:
    app_id = fleet.add_app(f"app-{n}")
    for b in range(BRANCHES):
        fleet.add_branch(app_id, f"b{b}")
        fleet.start_job(app_id, f"b{b}", at=clock() - 3600)


def _churn(fleet: Fleet, rng: random.Random, clock: ManualClock, serial: list[int]) -> None:
    """Jobs start often; now and then a branch or a whole app is replaced by a new one."""
    apps = fleet.apps()
    for _ in range(3):
        app = rng.choice(apps)
        branch = rng.choice(list(app.branches))
        latest = app.branches[branch].latest
        if latest is None or latest.end_time(clock()) is not None:
            outcome = rng.choice((SUCCEED, SUCCEED, FAILED, CANCELLED))
            fleet.start_job(app.app_id, branch, outcome=outcome, durations={"RUNNING": 3.0})
    roll = rng.random()
    if roll < 0.02:
        victim = rng.choice(apps)
        fleet.delete_app(victim.app_id)
        serial[0] += 1
        _app(fleet, rng, clock, serial[0])
    elif roll < 0.06:
        app = rng.choice(apps)
        name = rng.choice(list(app.branches))
        fleet.delete_branch(app.app_id, name)
        serial[0] += 1
        fleet.add_branch(app.app_id, f"b-new-{serial[0]}")


async def soak(tmp_path: Path, steps: int) -> tuple[Reading, Reading]:
    """The reading after a warm-up (a fifth of the steps) and at the end."""
    clock = ManualClock()
    fleet = Fleet(clock, seed=3, durations={"PENDING": 1, "PROVISIONING": 1, "RUNNING": 3})
    rng = random.Random(3)
    serial = [0]
    for n in range(APPS):
        _app(fleet, rng, clock, n)
        serial[0] = n
    async with Simulator(fleet) as sim:
        settings = make_settings(
            sim.url,
            tmp_path / "state.db",
            poll={
                "interval_seconds": 4 * STEP,
                "active_interval_seconds": STEP,
                "discovery_interval_seconds": 10 * STEP,
                "max_requests_per_second": 100_000,
            },
            alerts={"digest_threshold": 100_000},
        )
        async with stepped(settings) as daemon:
            metrics = daemon.edges.metrics

            def reading() -> Reading:
                text = metrics.render().decode()
                count = metrics.registry.get_sample_value(
                    "amplify_monitor_poll_cycle_duration_seconds_count"
                )
                return Reading(
                    cycles=int(count or 0),
                    rss_mib=_rss_mib(),
                    fds=len(os.listdir("/proc/self/fd")),
                    tasks=len(asyncio.all_tasks()),
                    series=sum(1 for line in text.splitlines() if not line.startswith("#")),
                    states=len(daemon.poller.states),
                )

            assert await daemon.first()
            warm: Reading | None = None
            for i in range(steps):
                _churn(fleet, rng, clock, serial)
                clock.advance(STEP)
                await daemon.step(STEP)
                await daemon.edges.dispatcher.drain(timeout=5.0)
                if i == steps // 5:
                    warm = reading()
            assert warm is not None
            return warm, reading()


def _assert_flat(warm: Reading, end: Reading) -> None:
    assert end.fds <= warm.fds + 2, (warm, end)
    assert end.tasks <= warm.tasks, (warm, end)
    # Same fleet size (every deletion was replaced): series and states neither pile up with
    # the branches and apps that left nor with the jobs that ran.
    assert end.states == APPS * BRANCHES, (warm, end)
    assert end.series <= warm.series * 1.15, (warm, end)
    assert end.rss_mib <= warm.rss_mib + 12, (warm, end)


async def test_a_short_soak_leaves_nothing_growing(tmp_path: Path) -> None:
    warm, end = await soak(tmp_path, steps=300)
    assert end.cycles >= 1200  # each step polls several branches and apps
    _assert_flat(warm, end)


@pytest.mark.slow
@pytest.mark.timeout(1200)
async def test_a_long_soak_of_tens_of_thousands_of_cycles_leaves_nothing_growing(
    tmp_path: Path,
) -> None:
    warm, end = await soak(tmp_path, steps=6000)
    print(f"\nsoak: warm {warm}\nsoak: end  {end}")
    assert end.cycles >= 25_000
    _assert_flat(warm, end)
