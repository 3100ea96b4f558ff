"""Measure the memory of the per-branch metric series: prometheus_client children, as the
monitor kept them before, against `Metrics` and its collector, for the same branches.

Run: .venv/bin/python benchmarks/metrics_memory.py [--branches 10000]
Each branch gets a few jobs (PENDING -> RUNNING -> SUCCEED/FAILED/CANCELLED), so it has a
latest job, transitions and finished counts, a last duration and mostly a last success.
tracemalloc counts what each variant retains, in this process; RSS growth is taken in a fresh
child process per variant, since freed memory muddles RSS for whatever is measured second.
"""

from __future__ import annotations

import argparse
import gc
import random
import resource
import subprocess
import sys
import time
import tracemalloc
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from monitor.metrics import Metrics
from monitor.model import (
    CANCELLED,
    FAILED,
    KNOWN_STATUSES,
    PENDING,
    RUNNING,
    SUCCEED,
    BranchKey,
    BranchState,
    JobSummary,
    Transition,
    is_terminal,
)

MIB = 1024 * 1024
T0 = 1.7e9
BRANCH_NAMES = ("main", "develop", "staging", "feature/login-page", "release/2026.01")


class Variant(Protocol):
    def apply(self, state: BranchState, transitions: tuple[Transition, ...] = ()) -> None: ...

    def render(self) -> bytes: ...


class OldBranchSeries:
    """The domain series exactly as monitor/metrics.py kept them before the collector: one
    prometheus_client child per label set, tracked per branch for removal."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.job_status = Gauge(
            "amplify_job_status",
            "1 for the status of the branch's latest job, 0 for the other statuses.",
            ["app_id", "app_name", "branch", "status"],
            registry=r,
        )
        self.transitions = Counter(
            "amplify_job_transitions",
            "Job status transitions seen.",
            ["app_id", "branch", "from_status", "to_status"],
            registry=r,
        )
        self.finished = Counter(
            "amplify_jobs_finished",
            "Jobs seen reaching a terminal status.",
            ["app_id", "branch", "status"],
            registry=r,
        )
        self.last_duration = Gauge(
            "amplify_job_last_duration_seconds",
            "Duration of the branch's most recently finished job.",
            ["app_id", "branch"],
            registry=r,
        )
        self.last_success = Gauge(
            "amplify_branch_last_success_timestamp_seconds",
            "End time of the branch's latest successful job (Unix seconds).",
            ["app_id", "branch"],
            registry=r,
        )
        self._series: dict[BranchKey, set[tuple[str, tuple[str, ...]]]] = defaultdict(set)

    def _track(self, key: BranchKey, metric: str, labels: tuple[str, ...]) -> None:
        self._series[key].add((metric, labels))

    def apply(self, state: BranchState, transitions: tuple[Transition, ...] = ()) -> None:
        key = state.key
        if key not in self._series:
            for status in (SUCCEED, FAILED, CANCELLED):
                self.finished.labels(key.app_id, key.branch, status)
                self._track(key, "finished", (key.app_id, key.branch, status))
        for metric, labels in list(self._series.get(key, ())):
            if metric == "job_status" and labels[1] != state.app_name:
                self.job_status.remove(*labels)
                self._series[key].discard((metric, labels))
        if state.latest is not None:
            current = state.latest.status
            statuses = KNOWN_STATUSES if current in KNOWN_STATUSES else (*KNOWN_STATUSES, current)
            for status in statuses:
                labels = (key.app_id, state.app_name, key.branch, status)
                self.job_status.labels(*labels).set(1 if status == current else 0)
                self._track(key, "job_status", labels)
        for t in transitions:
            labels = (key.app_id, key.branch, t.from_status or "NEW", t.to_status)
            self.transitions.labels(*labels).inc()
            self._track(key, "transitions", labels)
            if is_terminal(t.to_status):
                self.finished.labels(key.app_id, key.branch, t.to_status).inc()
                self._track(key, "finished", (key.app_id, key.branch, t.to_status))
                duration = t.job.duration_seconds
                if duration is not None:
                    self.last_duration.labels(key.app_id, key.branch).set(duration)
                    self._track(key, "last_duration", (key.app_id, key.branch))
        if state.last_success_time is not None:
            self.last_success.labels(key.app_id, key.branch).set(
                state.last_success_time.timestamp()
            )
            self._track(key, "last_success", (key.app_id, key.branch))

    def render(self) -> bytes:
        return generate_latest(self.registry)


def fleet(branches: int) -> list[tuple[BranchKey, str]]:
    """Keys and app names, made before measuring: the poller holds these, not the metrics."""
    rng = random.Random(1)
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    out: list[tuple[BranchKey, str]] = []
    for a in range(-(-branches // len(BRANCH_NAMES))):
        app_id = "d" + "".join(rng.choice(alphabet) for _ in range(13))
        app_name = f"storefront-{a:05d}"
        out.extend((BranchKey(app_id, b), app_name) for b in BRANCH_NAMES)
    return out[:branches]


def history(
    key: BranchKey, app_name: str, rng: random.Random
) -> Iterator[tuple[BranchState, tuple[Transition, ...]]]:
    """A branch's polls: each job is seen PENDING, then RUNNING, then finished; one branch in
    twenty ends with a job still running."""
    last_success: datetime | None = None
    jobs = rng.randint(2, 4)
    for n in range(1, jobs + 1):
        start = T0 + n * 3600
        end = start + rng.uniform(60, 900)
        roll = rng.random()
        final = FAILED if roll < 0.1 else CANCELLED if roll < 0.13 else SUCCEED
        running_at_end = n == jobs and rng.random() < 0.05
        steps = [(None, PENDING), (PENDING, RUNNING)]
        if not running_at_end:
            steps.append((RUNNING, final))
        for from_status, to_status in steps:
            finished = is_terminal(to_status)
            job = JobSummary(
                str(n),
                to_status,
                "RELEASE",
                start_time=datetime.fromtimestamp(start, UTC),
                end_time=datetime.fromtimestamp(end, UTC) if finished else None,
            )
            if to_status == SUCCEED:
                last_success = job.end_time
            state = BranchState(key, app_name, latest=job, last_success_time=last_success)
            yield state, (Transition(key, job, from_status, to_status),)


def populate(variant: Variant, keys: list[tuple[BranchKey, str]]) -> None:
    rng = random.Random(2)
    for key, app_name in keys:
        for state, transitions in history(key, app_name, rng):
            variant.apply(state, transitions)


def make(name: str) -> Variant:
    return OldBranchSeries() if name == "old" else Metrics()


def rss_bytes() -> int:
    with open("/proc/self/statm", encoding="ascii") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def peak_rss_bytes() -> int:
    # VmHWM, not ru_maxrss: the latter survives exec, so a child reports its parent's peak.
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def measure_rss(name: str, branches: int) -> None:
    """In a fresh process: RSS growth from populating one variant, its peak with one scrape,
    and what stays after the scrape."""
    keys = fleet(branches)
    variant = make(name)
    gc.collect()
    before = rss_bytes()
    started = time.perf_counter()
    populate(variant, keys)
    populated = time.perf_counter() - started
    gc.collect()
    after = rss_bytes()
    started = time.perf_counter()
    size = len(variant.render())
    rendered = time.perf_counter() - started
    peak = peak_rss_bytes()
    gc.collect()
    scraped = rss_bytes()
    print(after - before, peak - before, scraped - before, populated, rendered, size)


def measure_traced(name: str, keys: list[tuple[BranchKey, str]]) -> tuple[int, int]:
    """Bytes the populated variant retains, and the extra peak of one scrape."""
    variant = make(name)
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    populate(variant, keys)
    gc.collect()
    retained = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.reset_peak()
    held = tracemalloc.get_traced_memory()[0]
    variant.render()
    scrape_peak = tracemalloc.get_traced_memory()[1] - held
    tracemalloc.stop()
    del variant
    gc.collect()
    return retained, scrape_peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--branches", type=int, default=10_000)
    parser.add_argument("--rss", choices=("old", "new"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    n: int = args.branches
    if args.rss:
        measure_rss(args.rss, n)
        return

    keys = fleet(n)
    per_10k = 10_000 / n
    print(f"{n} branches in {len(keys) // len(BRANCH_NAMES)} apps")
    print(
        f"{'':44} {'retained':>10} {'per branch':>11} {'scrape peak':>12} "
        f"{'RSS growth':>11} {'RSS peak':>10} {'after scrape':>13} {'apply all':>10} "
        f"{'scrape':>8} {'/metrics':>9}"
    )
    for name, label in (
        ("old", "old: prometheus_client children"),
        ("new", "new: Metrics (collector over plain values)"),
    ):
        retained, peak = measure_traced(name, keys)
        child = subprocess.run(
            [sys.executable, __file__, "--branches", str(n), "--rss", name],
            capture_output=True,
            text=True,
            check=True,
        )
        grew, peak_rss, scraped, populated, rendered, size = child.stdout.split()
        print(
            f"{label:44} {retained * per_10k / MIB:7.1f} MiB {retained / n:7.0f} B "
            f"{peak * per_10k / MIB:8.1f} MiB {int(grew) * per_10k / MIB:7.1f} MiB "
            f"{int(peak_rss) * per_10k / MIB:6.1f} MiB {int(scraped) * per_10k / MIB:9.1f} MiB {float(populated):8.2f} s "
            f"{float(rendered):6.2f} s {int(size) / MIB:5.1f} MiB"
        )
    print(
        "MiB figures are per 10,000 branches. retained, scrape peak: tracemalloc, in this process;"
        " RSS growth (populated), RSS peak (populated + one scrape), after scrape: a fresh process"
        " per variant."
    )


if __name__ == "__main__":
    main()
