"""The fleet benchmark's two children: the simulator process and the plain poller.

Started by benchmarks/fleet.py as `fleet.py --serve-simulator` (reads JSON commands on stdin,
answers JSON lines on stdout) and `fleet.py --plain-poller URL` (prints JSON lines: ready,
alert, error). The plain poller is the obvious design the daemon is measured against.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import resource
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import anyio

from monitor import log
from monitor.amplify import AmplifyClient, AmplifyError
from monitor.config import AwsSettings
from monitor.model import CANCELLED, FAILED, BranchKey, is_unfinished
from monitor.simulator import Faults, Fleet, Simulator, Workload
from monitor.simulator.events import EventFeed, publish

ALERT_ON = frozenset({FAILED, CANCELLED})
# No pacing for the plain poller unless a quota says otherwise.
UNPACED = 1e9

T = TypeVar("T")
Json = dict[str, Any]


def _emit(message: Json) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


# -- child: the simulator ------------------------------------------------------------------


def _report(sim: Simulator, fleet: Fleet, faults: Faults, feed: EventFeed | None) -> Json:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    now = fleet.now()
    jobs = [
        {
            "app_id": app_id,
            "branch": branch,
            "job_id": job.job_id,
            "status": job.status(now),
            "outcome": job.script.outcome,
            "start": job.start_time,
            # Known ahead: the workload scripts each job's whole timeline when it starts it.
            "end": job.end_time(math.inf),
        }
        for app_id, branch, job in fleet.workload_jobs()
    ]
    return {
        "now": now,
        "counts": dict(sim.counts),
        "throttled": faults.throttled,
        "errors": {f"{op} {code}": n for (op, code), n in faults.errors.items()},
        "cpu_seconds": usage.ru_utime + usage.ru_stime,
        "jobs": jobs,
        "events_sent": dict(feed.sent) if feed else {},
        "events_dropped": dict(feed.dropped) if feed else {},
    }


async def serve_simulator(args: argparse.Namespace) -> None:
    """Serve the fleet; answer `start`, `report` and `stop` commands, one JSON line each."""
    log.setup("json", "warning")
    fleet = Fleet.idle(apps=args.apps, branches=args.branches, jobs_per_branch=3, seed=args.seed)
    faults = Faults(seed=args.seed)
    if args.latency_ms > 0:
        faults.latency(args.latency_ms / 1000)
    if args.quota:
        faults.quota(args.quota)
    workload = Workload(args.start_rate, args.job_seconds, args.fail_share, args.cancel_share)
    sim = Simulator(fleet, faults)
    url = await sim.start("127.0.0.1", 0)
    _emit({"url": url})
    stdin = anyio.wrap_file(sys.stdin)
    feed: EventFeed | None = None
    try:
        async with anyio.create_task_group() as tg:
            while line := await stdin.readline():
                command = json.loads(line)["cmd"]
                if command == "start":
                    fleet.start_workload(workload, args.minutes * 60, seed=args.seed)
                    if args.sqs_queue_url:
                        # Push mode: the simulator plays EventBridge into the SQS stand-in.
                        feed = EventFeed(fleet, drop_share=args.drop_share, seed=args.seed)
                        tg.start_soon(
                            functools.partial(
                                publish, feed, args.sqs_queue_url, endpoint_url=args.sqs_endpoint
                            )
                        )
                elif command == "stop":
                    break
                _emit(_report(sim, fleet, faults, feed))
            tg.cancel_scope.cancel()
    finally:
        await sim.stop()


# -- child: the plain poller ---------------------------------------------------------------


@dataclass
class _Tracked:
    key: BranchKey
    last: int = -1
    unfinished: set[str] = field(default_factory=set)
    active: bool = False
    busy: bool = False
    alerted: set[tuple[str, str]] = field(default_factory=set)


class PlainPoller:
    """The obvious design: list every branch's jobs each interval, busy ones more often."""

    def __init__(self, client: AmplifyClient, interval: float, active_interval: float) -> None:
        self._client = client
        self._interval = interval
        self._active_interval = active_interval
        self._branches: list[_Tracked] = []

    async def run(self, workers: int = 16) -> None:
        apps = await self._client.list_apps()
        found: list[BranchKey] = []

        async def discover(app: Any) -> None:
            found.extend(b.key for b in await self._client.list_branches(app))

        await _each(apps, discover, workers)
        self._branches = [_Tracked(key) for key in sorted(found)]
        await self._round(self._branches, baseline=True, workers=workers)
        _emit({"event": "ready", "t": time.time(), "branches": len(self._branches)})
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._every, self._interval, lambda: self._branches, workers)
            tg.start_soon(
                self._every,
                self._active_interval,
                lambda: [t for t in self._branches if t.active],
                workers,
            )

    async def _every(self, period: float, pick: Callable[[], list[_Tracked]], workers: int) -> None:
        due = time.monotonic() + period
        while True:
            await anyio.sleep(max(0.0, due - time.monotonic()))
            await self._round(pick(), baseline=False, workers=workers)
            # A round longer than the period starts the next one at once, not a backlog.
            due = max(due + period, time.monotonic())

    async def _round(self, branches: list[_Tracked], *, baseline: bool, workers: int) -> None:
        async def poll(tracked: _Tracked) -> None:
            if not tracked.busy:
                await self._poll(tracked, baseline)

        await _each(branches, poll, workers)

    async def _poll(self, t: _Tracked, baseline: bool) -> None:
        t.busy = True
        try:
            jobs = await self._client.list_jobs(t.key)
        except AmplifyError as exc:
            _emit({"event": "error", "outcome": exc.outcome, "operation": exc.operation})
            return
        finally:
            t.busy = False
        for job in reversed(jobs):  # oldest first
            newer = job.number > t.last
            if (
                not baseline
                and (newer or job.job_id in t.unfinished)
                and job.status in ALERT_ON
                and (job.job_id, job.status) not in t.alerted
            ):
                t.alerted.add((job.job_id, job.status))
                _emit(
                    {
                        "event": "alert",
                        "t": time.time(),
                        "app_id": t.key.app_id,
                        "branch": t.key.branch,
                        "job_id": job.job_id,
                        "status": job.status,
                    }
                )
        if jobs:
            t.last = max(t.last, *(job.number for job in jobs))
        t.unfinished = {job.job_id for job in jobs if is_unfinished(job.status)}
        t.active = bool(jobs) and is_unfinished(jobs[0].status)


async def _each(items: list[T], work: Callable[[T], Awaitable[None]], workers: int) -> None:
    """Run `work` over `items` with at most `workers` at a time (the client caps calls too)."""
    pending = iter(items)

    async def worker() -> None:
        for item in pending:
            await work(item)

    async with anyio.create_task_group() as tg:
        for _ in range(min(workers, len(items))):
            tg.start_soon(worker)


async def plain_poller(args: argparse.Namespace) -> None:
    log.setup("json", "warning")
    aws = AwsSettings(region="us-east-1", endpoint_url=args.plain_poller)
    rate = args.quota or UNPACED
    async with AmplifyClient.connect(aws, max_concurrency=16, requests_per_second=rate) as client:
        await PlainPoller(client, args.interval, args.active_interval).run()
