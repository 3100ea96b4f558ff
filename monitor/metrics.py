"""The Prometheus registry and the only code that touches it, plus /metrics /healthz /readyz.

Domain series (`amplify_*`) are a view of branch state and transitions, kept as plain values per
branch and rendered at scrape time by `BranchSeries`; the monitor's own series
(`amplify_monitor_*`) are few and stay prometheus_client objects, fed by the Observer methods.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any, cast

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from monitor import __version__
from monitor.model import (
    CANCELLED,
    FAILED,
    KNOWN_STATUSES,
    SUCCEED,
    BranchKey,
    BranchState,
    Priority,
    Transition,
    is_terminal,
)

TERMINAL = (SUCCEED, FAILED, CANCELLED)
SLICE = 500  # branches per slice of a per-branch family at scrape time
NEW_JOB = "NEW"  # from_status of a job seen for the first time (an empty label would vanish)
# The scheduler's priorities, created up front so dashboards see zeros before the first lag.
PRIORITIES = tuple(p.label for p in Priority)
EVENT_OUTCOMES = ("refreshed", "ignored", "malformed", "unknown_branch")

STATUS_HELP = "1 for the status of the branch's latest job, 0 for the other statuses."
TRANSITIONS_HELP = "Job status transitions seen."
FINISHED_HELP = "Jobs seen reaching a terminal status."
DURATION_HELP = "Duration of the branch's most recently finished job."
SUCCESS_HELP = "End time of the branch's latest successful job (Unix seconds)."


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
        # One shared tuple per (from, to) pair, instead of one per branch that saw it.
        self._pairs: dict[tuple[str, str], tuple[str, str]] = {}

    def apply(self, state: BranchState, transitions: tuple[Transition, ...]) -> None:
        key = state.key
        branch = self._branches.get(key)
        if branch is None:
            branch = self._branches[key] = _Branch(sys.intern(state.app_name))
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

    def remove(self, key: BranchKey) -> None:
        self._branches.pop(key, None)

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


class _One:
    """One metric family posing as a registry, for `generate_latest`."""

    def __init__(self, family: Metric) -> None:
        self._family = family

    def collect(self) -> Iterator[Metric]:
        yield self._family


class Metrics:
    """Owns a private CollectorRegistry so tests and several daemons never share series."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        # Registered first, so the domain series lead the exposition as they always have.
        self._branches = BranchSeries()
        r.register(self._branches)
        self.api_requests = Counter(
            "amplify_monitor_api_requests",
            "Amplify API calls made, by operation and outcome.",
            ["operation", "outcome"],
            registry=r,
        )
        self.api_duration = Histogram(
            "amplify_monitor_api_request_duration_seconds",
            "Amplify API call latency, retries included.",
            ["operation"],
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=r,
        )
        self.poll_cycle = Histogram(
            "amplify_monitor_poll_cycle_duration_seconds",
            "Duration of one poll task: an app's ListBranches, a branch's ListJobs, or discovery.",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
            registry=r,
        )
        self.watched = Gauge(
            "amplify_monitor_watched_branches", "Branches currently watched.", registry=r
        )
        self.last_poll = Gauge(
            "amplify_monitor_last_successful_poll_timestamp_seconds",
            "When a poll last succeeded (Unix seconds).",
            registry=r,
        )
        self.alerts = Counter(
            "amplify_monitor_alerts",
            "Alerts by status and outcome (sent, failed, retried, suppressed, digested).",
            ["status", "outcome"],
            registry=r,
        )
        self.pending = Gauge(
            "amplify_monitor_outbox_pending", "Alerts waiting in the outbox.", registry=r
        )
        self.slack_duration = Histogram(
            "amplify_monitor_slack_request_duration_seconds",
            "Latency of HTTP calls to Slack.",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )
        self.anomalies = Counter(
            "amplify_monitor_api_anomalies",
            "Oddities in API answers that were ignored (status going backwards, ...).",
            ["reason"],
            registry=r,
        )
        self.build_info = Gauge(
            "amplify_monitor_build_info", "Build information.", ["version"], registry=r
        )
        self.build_info.labels(version=__version__).set(1)
        for status in ("FAILED", "CANCELLED", "SUCCEED"):
            for outcome in ("sent", "failed"):
                self.alerts.labels(status, outcome)
        self.lag = Histogram(
            "amplify_monitor_schedule_lag_seconds",
            "How late scheduled work started against its due time.",
            ["priority"],
            buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
            registry=r,
        )
        for priority in PRIORITIES:
            self.lag.labels(priority)
        self.events = Counter(
            "amplify_monitor_events",
            "Amplify events read from SQS, by outcome (refreshed, ignored, malformed, "
            "unknown_branch).",
            ["outcome"],
            registry=r,
        )
        for outcome in EVENT_OUTCOMES:
            self.events.labels(outcome)
        self.event_lag = Histogram(
            "amplify_monitor_event_lag_seconds",
            "From an Amplify event's time to its branch refreshed (job ends; a STARTED waits "
            "for the active interval on purpose and is not counted).",
            buckets=(0.5, 1, 2, 3, 5, 10, 20, 30, 60, 120, 300),
            registry=r,
        )
        self.sqs_requests = Counter(
            "amplify_monitor_sqs_requests",
            "SQS calls made for push mode, by operation and outcome.",
            ["operation", "outcome"],
            registry=r,
        )

    # --- domain view -------------------------------------------------------------------------

    def apply(self, state: BranchState, transitions: tuple[Transition, ...] = ()) -> None:
        """Bring a branch's series in line with its state and count its transitions."""
        self._branches.apply(state, transitions)

    def remove_branch(self, key: BranchKey) -> None:
        self._branches.remove(key)

    def set_watched(self, count: int) -> None:
        self.watched.set(count)

    def poll_done(self, seconds: float, succeeded: bool, now: float) -> None:
        self.poll_cycle.observe(seconds)
        if succeeded:
            self.last_poll.set(now)

    def anomaly(self, reason: str) -> None:
        self.anomalies.labels(reason).inc()

    def schedule_lag(self, priority: str, seconds: float) -> None:
        # A task picked up early (clock jitter) is not late; a negative sum would look broken.
        self.lag.labels(priority).observe(max(0.0, seconds))

    # --- Observer protocol -------------------------------------------------------------------

    def api_request(self, operation: str, outcome: str, seconds: float) -> None:
        self.api_requests.labels(operation, outcome).inc()
        self.api_duration.labels(operation).observe(seconds)

    def budget_wait(self, priority: Priority, seconds: float) -> None:
        # An alert's GetJob is not a scheduled task; its wait for the API budget is its lag.
        if priority is Priority.ENRICH:
            self.schedule_lag(priority.label, seconds)

    def event(self, outcome: str, lag_seconds: float | None) -> None:
        self.events.labels(outcome).inc()
        if lag_seconds is not None:
            self.event_lag.observe(lag_seconds)

    def sqs_request(self, operation: str, outcome: str, seconds: float) -> None:
        self.sqs_requests.labels(operation, outcome).inc()

    def alert(self, status: str, outcome: str) -> None:
        self.alerts.labels(status, outcome).inc()

    def outbox_pending(self, count: int) -> None:
        self.pending.set(count)

    def slack_request(self, seconds: float) -> None:
        self.slack_duration.observe(seconds)

    def render_chunks(self) -> Iterator[bytes]:
        """The exposition, family slice by family slice. A slice that continues the family
        before it drops its HELP and TYPE lines: the text format allows one of each per name."""
        previous = None
        for family in self.registry.collect():
            text = generate_latest(cast(CollectorRegistry, _One(family)))
            if family.name == previous:
                text = text.split(b"\n", 2)[2]
            previous = family.name
            yield text

    def render(self) -> bytes:
        return b"".join(self.render_chunks())


@asynccontextmanager
async def serve(
    metrics: Metrics,
    host: str,
    port: int,
    ready: Callable[[], tuple[bool, str]],
) -> AsyncIterator[int]:
    """Serve /metrics, /healthz and /readyz; yields the bound port (useful with port 0)."""

    async def handle_metrics(request: web.Request) -> web.StreamResponse:
        # Streamed slice by slice: a large fleet's exposition is tens of MB, which would
        # otherwise be built whole in memory and block the event loop while it is.
        response = web.StreamResponse(headers={"Content-Type": CONTENT_TYPE_LATEST})
        await response.prepare(request)
        for chunk in metrics.render_chunks():
            await response.write(chunk)
        await response.write_eof()
        return response

    async def handle_health(_: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def handle_ready(_: web.Request) -> web.Response:
        ok, reason = ready()
        return web.Response(text=f"{reason}\n", status=200 if ok else 503)

    app = web.Application()
    app.router.add_get("/metrics", handle_metrics)
    app.router.add_get("/healthz", handle_health)
    app.router.add_get("/readyz", handle_ready)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    try:
        yield int(runner.addresses[0][1])
    finally:
        await runner.cleanup()
