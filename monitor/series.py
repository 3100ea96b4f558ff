"""The domain series (`amplify_*`), kept as plain values and rendered at scrape time.

A prometheus_client child per label set costs kilobytes; a fleet of 10,000 branches has
hundreds of thousands of them. Here each branch is one small object (`_Branch`) and each app's
build durations a few lists, turned into metric families only when Prometheus scrapes, in slices
so a scrape never holds the whole fleet's samples at once.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from monitor.model import (
    CANCELLED,
    FAILED,
    KNOWN_STATUSES,
    SUCCEED,
    BranchKey,
    BranchState,
    Transition,
    is_terminal,
)

TERMINAL = (SUCCEED, FAILED, CANCELLED)
SLICE = 500  # branches per slice of a per-branch family at scrape time
NEW_JOB = "NEW"  # from_status of a job seen for the first time (an empty label would vanish)

STATUS_HELP = "1 for the status of the branch's latest job, 0 for the other statuses."
TRANSITIONS_HELP = "Job status transitions seen."
FINISHED_HELP = "Jobs seen reaching a terminal status."
DURATION_HELP = "Duration of the branch's most recently finished job."
SUCCESS_HELP = "End time of the branch's latest successful job (Unix seconds)."
JOB_DURATION_HELP = "Durations of finished jobs, per app and terminal status."
# Builds take from half a minute to an hour; per app, not per branch, to bound cardinality.
JOB_DURATION_BUCKETS = (
    30.0, 60.0, 120.0, 180.0, 300.0, 450.0, 600.0, 900.0, 1200.0, 1800.0, 2700.0, 3600.0
)  # fmt: skip
# The `le` label as Prometheus clients write it ("30.0", "+Inf").
_LE = {
    le: ("+Inf" if le == float("inf") else repr(le)) for le in (*JOB_DURATION_BUCKETS, float("inf"))
}


class _Branch:
    """One branch's domain series as plain values: about 370 bytes, where a prometheus_client
    child per label set (15 or so per branch) cost about 13 KB (benchmarks/metrics_memory.py)."""

    __slots__ = ("app_name", "last_duration", "last_success", "status", "transitions")

    def __init__(self, app_name: str) -> None:
        self.app_name = app_name
        self.status: str | None = None  # of the latest job; None until a job is seen
        self.last_duration: float | None = None
        self.last_success: float | None = None
        # (from_status, to_status) -> count. The finished counts are not stored: each terminal
        # transition counted one finished job, so they are these counts summed by to_status.
        self.transitions: dict[tuple[str, str], int] = {}


class BranchSeries(Collector):
    """The per-branch domain series, rendered at scrape time from `_Branch` values.

    The counters carry no `_created` samples: nothing reads them, and in the text format each
    would be one more gauge series per counter series, per branch, in Prometheus.
    """

    def __init__(self) -> None:
        self._branches: dict[BranchKey, _Branch] = {}
        self._per_app: Counter[str] = Counter()
        # One shared tuple per (from, to) pair, instead of one per branch that saw it.
        self._pairs: dict[tuple[str, str], tuple[str, str]] = {}

    def apply(self, state: BranchState, transitions: tuple[Transition, ...]) -> None:
        key = state.key
        branch = self._branches.get(key)
        if branch is None:
            branch = self._branches[key] = _Branch(sys.intern(state.app_name))
            self._per_app[key.app_id] += 1
        elif branch.app_name != state.app_name:
            # Rendering under the new name is what drops the old name's status series.
            branch.app_name = sys.intern(state.app_name)
        if state.latest is not None:
            branch.status = sys.intern(state.latest.status)
        for t in transitions:
            pair = (t.from_status or NEW_JOB, t.to_status)
            pair = self._pairs.setdefault(pair, (sys.intern(pair[0]), sys.intern(pair[1])))
            branch.transitions[pair] = branch.transitions.get(pair, 0) + 1
            if is_terminal(t.to_status) and t.job.duration_seconds is not None:
                branch.last_duration = t.job.duration_seconds
        if state.last_success_time is not None:
            branch.last_success = state.last_success_time.timestamp()

    def remove(self, key: BranchKey) -> int:
        """Drop a branch's series; returns how many branches of its app are left."""
        if self._branches.pop(key, None) is not None:
            self._per_app[key.app_id] -= 1
        left = self._per_app[key.app_id]
        if left <= 0:
            del self._per_app[key.app_id]
        return max(0, left)

    def describe(self) -> Iterator[Metric]:
        """Names and types only, for the registry's duplicate check (no samples to build)."""
        for make in _FAMILIES:
            yield make()

    def collect(self) -> Iterator[Metric]:
        """Each family in slices of SLICE branches: a scrape holds one slice's samples at a
        time, and `/metrics` writes (and yields the event loop) between slices. The branches
        are listed first, since a poll may add or drop one between two slices."""
        branches = list(self._branches.items())
        for make, fill in zip(_FAMILIES, _SAMPLES, strict=True):
            for start in range(0, max(1, len(branches)), SLICE):
                family = make()
                for key, branch in branches[start : start + SLICE]:
                    fill(family, key, branch)
                yield family


_BRANCH = ("app_id", "branch")


def _status_family() -> GaugeMetricFamily:
    return GaugeMetricFamily(
        "amplify_job_status", STATUS_HELP, labels=("app_id", "app_name", "branch", "status")
    )


def _transitions_family() -> CounterMetricFamily:
    return CounterMetricFamily(
        "amplify_job_transitions", TRANSITIONS_HELP, labels=(*_BRANCH, "from_status", "to_status")
    )


def _finished_family() -> CounterMetricFamily:
    return CounterMetricFamily("amplify_jobs_finished", FINISHED_HELP, labels=(*_BRANCH, "status"))


def _duration_family() -> GaugeMetricFamily:
    return GaugeMetricFamily("amplify_job_last_duration_seconds", DURATION_HELP, labels=_BRANCH)


def _success_family() -> GaugeMetricFamily:
    return GaugeMetricFamily(
        "amplify_branch_last_success_timestamp_seconds", SUCCESS_HELP, labels=_BRANCH
    )


def _status_samples(family: GaugeMetricFamily, key: BranchKey, b: _Branch) -> None:
    if b.status is None:
        return
    for s in KNOWN_STATUSES:
        family.add_metric((key.app_id, b.app_name, key.branch, s), 1.0 if s == b.status else 0.0)
    if b.status not in KNOWN_STATUSES:
        family.add_metric((key.app_id, b.app_name, key.branch, b.status), 1.0)


def _transition_samples(family: CounterMetricFamily, key: BranchKey, b: _Branch) -> None:
    for (from_status, to_status), count in b.transitions.items():
        family.add_metric((key.app_id, key.branch, from_status, to_status), count)


def _finished_samples(family: CounterMetricFamily, key: BranchKey, b: _Branch) -> None:
    # Zero until the first one: increase() cannot see a series' first sample, so a branch's
    # first failure would otherwise be invisible to rules and dashboards.
    counts = dict.fromkeys(TERMINAL, 0)
    for (_, to_status), count in b.transitions.items():
        if to_status in counts:
            counts[to_status] += count
    for s, count in counts.items():
        family.add_metric((key.app_id, key.branch, s), count)


def _duration_samples(family: GaugeMetricFamily, key: BranchKey, b: _Branch) -> None:
    if b.last_duration is not None:
        family.add_metric((key.app_id, key.branch), b.last_duration)


def _success_samples(family: GaugeMetricFamily, key: BranchKey, b: _Branch) -> None:
    if b.last_success is not None:
        family.add_metric((key.app_id, key.branch), b.last_success)


_FAMILIES: tuple[Callable[[], Metric], ...] = (
    _status_family,
    _transitions_family,
    _finished_family,
    _duration_family,
    _success_family,
)
_SAMPLES: tuple[Callable[[Any, BranchKey, _Branch], None], ...] = (
    _status_samples,
    _transition_samples,
    _finished_samples,
    _duration_samples,
    _success_samples,
)


class _Durations:
    """One app's and status's histogram: a count per bucket (not cumulative), +Inf, the sum."""

    __slots__ = ("counts", "total")

    def __init__(self) -> None:
        self.counts = [0] * (len(JOB_DURATION_BUCKETS) + 1)
        self.total = 0.0


class JobDurations(Collector):
    """`amplify_job_duration_seconds{app_id,status}`, a histogram of finished jobs' durations."""

    def __init__(self) -> None:
        self._apps: dict[str, dict[str, _Durations]] = {}

    def observe(self, app_id: str, status: str, seconds: float) -> None:
        per_status = self._apps.setdefault(sys.intern(app_id), {})
        durations = per_status.get(status)
        if durations is None:
            durations = per_status[sys.intern(status)] = _Durations()
        index = next(
            (i for i, le in enumerate(JOB_DURATION_BUCKETS) if seconds <= le),
            len(JOB_DURATION_BUCKETS),
        )
        durations.counts[index] += 1
        durations.total += seconds

    def remove_app(self, app_id: str) -> None:
        self._apps.pop(app_id, None)

    def describe(self) -> Iterator[Metric]:
        yield _job_duration_family()

    def collect(self) -> Iterator[Metric]:
        family = _job_duration_family()
        for app_id, per_status in list(self._apps.items()):
            for status, d in list(per_status.items()):
                cumulative, buckets = 0, []
                for le, count in zip((*JOB_DURATION_BUCKETS, float("inf")), d.counts, strict=True):
                    cumulative += count
                    buckets.append((_LE[le], cumulative))
                family.add_metric((app_id, status), buckets, d.total)
        yield family


def _job_duration_family() -> HistogramMetricFamily:
    return HistogramMetricFamily(
        "amplify_job_duration_seconds", JOB_DURATION_HELP, labels=("app_id", "status")
    )
