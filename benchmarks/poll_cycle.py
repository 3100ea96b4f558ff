"""Measure what a poll costs: API calls and wall time per interval, idle and busy fleets.

Run: .venv/bin/python benchmarks/poll_cycle.py [--apps 200] [--branches 5] [--busy 50]
Drives the real service passes through the real aioboto3 client against the simulator on
loopback; the simulator's own request counters are the source of the call counts.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from monitor import config, log
from monitor.scheduler import DISCOVER, Schedule
from monitor.service import Service
from monitor.simulator import Fleet, ManualClock, Simulator


async def measure(apps: int, branches: int, busy: int) -> None:
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    clock = ManualClock()
    fleet = Fleet.idle(apps=apps, branches=branches, clock=clock)
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
            service = Service(settings)
            interval = settings.poll.interval_seconds
            async with service.edges() as (_metrics, poller, _dispatcher):
                schedule = Schedule()
                started = time.perf_counter()
                await service.run_pass(poller, schedule, [DISCOVER], now=0.0)
                baseline = time.perf_counter() - started
                print(f"fleet: {apps} apps x {branches} branches = {len(poller.branches)} branches")
                print(
                    f"baseline pass: {baseline:.2f} s, {sum(sim.counts.values())} calls {dict(sim.counts)}"
                )

                sim.reset_counts()
                started = time.perf_counter()
                await service.run_pass(
                    poller, schedule, [DISCOVER, *schedule.pop_due(interval)], now=interval
                )
                idle = time.perf_counter() - started
                print(
                    f"idle interval: {idle:.2f} s, {sum(sim.counts.values())} calls {dict(sim.counts)}"
                )

                app_ids = [a.app_id for a in fleet.apps()]
                for i in range(busy):
                    app = fleet.app(app_ids[i % len(app_ids)])
                    branch = sorted(app.branches)[i // len(app_ids) % len(app.branches)]
                    fleet.start_job(
                        app.app_id,
                        branch,
                        durations={"PENDING": 30, "PROVISIONING": 30, "RUNNING": 600},
                    )
                clock.advance(1)
                sim.reset_counts()
                now = 2 * interval
                started = time.perf_counter()
                await service.run_pass(poller, schedule, schedule.pop_due(now), now=now)
                print(
                    f"interval with {busy} new jobs: {time.perf_counter() - started:.2f} s, {sum(sim.counts.values())} calls {dict(sim.counts)}"
                )
                active = settings.poll.active_interval_seconds
                sim.reset_counts()
                now += active
                started = time.perf_counter()
                await service.run_pass(poller, schedule, schedule.pop_due(now), now=now)
                print(
                    f"active interval ({active:g} s) with {busy} running jobs: {time.perf_counter() - started:.2f} s, {sum(sim.counts.values())} calls {dict(sim.counts)}"
                )
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS (daemon pieces and simulator in one process): {rss:.0f} MiB")


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
