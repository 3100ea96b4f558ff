"""Measure what polling costs in API calls: the first poll, idle intervals, busy intervals.

Run: .venv/bin/python benchmarks/poll_cycle.py [--apps 200] [--branches 5] [--busy 50]
Drives the real scheduler, poller and aioboto3 client against the simulator on loopback, on a
fake monotonic clock stepped a second at a time (apps come due at their phases), with an
unlimited budget; the simulator's own request counters are the source of the call counts.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from monitor import config, log
from monitor.service import Service
from monitor.simulator import Fleet, ManualClock, Simulator


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def calls(sim: Simulator) -> str:
    return f"{sum(sim.counts.values())} calls {dict(sorted(sim.counts.items()))}"


async def measure(apps: int, branches: int, busy: int) -> None:
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    fleet_clock = ManualClock()
    fleet = Fleet.idle(apps=apps, branches=branches, clock=fleet_clock)
    async with Simulator(fleet) as sim:
        with tempfile.TemporaryDirectory() as tmp:
            settings = config.parse(
                {
                    "aws": {"endpoint_url": sim.url},
                    "metrics": {"listen": "127.0.0.1:0"},
                    "state": {"path": str(Path(tmp) / "bench.db")},
                    "poll": {"max_concurrency": 32, "max_requests_per_second": 10000},
                    "log": {"level": "error"},
                },
                "bench",
            )
            clock = FakeClock()
            interval = settings.poll.interval_seconds
            active = settings.poll.active_interval_seconds
            async with Service(settings, clock=clock).edges() as edges:
                scheduler = edges.scheduler

                async def run(seconds: float) -> float:
                    started = time.perf_counter()
                    for _ in range(round(seconds)):
                        clock.now += 1.0
                        await scheduler.run_due()
                    return time.perf_counter() - started

                started = time.perf_counter()
                await scheduler.run_due()
                baseline = time.perf_counter() - started
                print(f"fleet: {apps} apps x {branches} branches = {len(edges.poller.branches)}")
                print(f"first poll: {baseline:.2f} s, {calls(sim)}")

                sim.reset_counts()
                idle = await run(10 * interval)
                print(f"ten idle intervals ({interval:g} s): {idle:.2f} s, {calls(sim)}")

                app_ids = [a.app_id for a in fleet.apps()]
                for i in range(busy):
                    app = fleet.app(app_ids[i % len(app_ids)])
                    branch = sorted(app.branches)[i // len(app_ids) % len(app.branches)]
                    fleet.start_job(
                        app.app_id,
                        branch,
                        durations={"PENDING": 30, "PROVISIONING": 30, "RUNNING": 600},
                    )
                fleet_clock.advance(1)
                sim.reset_counts()
                await run(interval)
                print(f"the interval in which {busy} jobs start: {calls(sim)}")
                sim.reset_counts()
                await run(active)
                print(f"an active interval ({active:g} s) with {busy} jobs running: {calls(sim)}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--apps", type=int, default=200)
    parser.add_argument("--branches", type=int, default=5)
    parser.add_argument("--busy", type=int, default=50)
    args = parser.parse_args()
    log.setup("console", "error")
    anyio.run(measure, args.apps, args.branches, args.busy)


if __name__ == "__main__":
    main()
