"""The Prometheus registry, the one place that updates it, and /metrics /healthz /readyz.

Domain series (`amplify_*`) are a view of branch state and transitions, kept as plain values and
rendered at scrape time (monitor.series); the monitor's own series (`amplify_monitor_*`) are
few and stay prometheus_client objects, fed by the Observer methods.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from typing import cast

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from monitor import __version__
from monitor.model import BranchKey, BranchState, Priority, Transition, is_terminal
from monitor.series import BranchSeries, JobDurations

# The scheduler's priorities, created up front so dashboards see zeros before the first lag.
PRIORITIES = tuple(p.label for p in Priority)
EVENT_OUTCOMES = ("refreshed", "ignored", "malformed", "unknown_branch")


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
        self._durations = JobDurations()
        r.register(self._durations)
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
        self.resend_checks = Counter(
            "amplify_monitor_slack_resend_checks",
            "Resends that read Slack's history first, by outcome (found, absent, unavailable, "
            "failed).",
            ["outcome"],
            registry=r,
        )
        for outcome in ("found", "absent", "unavailable", "failed"):
            self.resend_checks.labels(outcome)
        self.anomalies = Counter(
            "amplify_monitor_api_anomalies",
            "Oddities in API answers that were ignored (status going backwards, ...).",
            ["reason"],
            registry=r,
        )
        self.cluster_replicas = Gauge(
            "amplify_monitor_cluster_replicas",
            "Live replicas sharing the fleet, as this one sees them (1 without Redis).",
            registry=r,
        )
        self.cluster_replicas.set(1)
        self.owned_apps = Gauge(
            "amplify_monitor_owned_apps",
            "Apps whose lease this replica holds (every watched app without Redis).",
            registry=r,
        )
        self.lease_takeovers = Counter(
            "amplify_monitor_lease_takeovers",
            "Apps this replica took over from another (dead or leaving) replica.",
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
        for t in transitions:
            if is_terminal(t.to_status) and t.job.duration_seconds is not None:
                self._durations.observe(state.key.app_id, t.to_status, t.job.duration_seconds)

    def remove_branch(self, key: BranchKey) -> None:
        """A branch is gone; its app's build durations go with the app's last branch."""
        if self._branches.remove(key) == 0:
            self._durations.remove_app(key.app_id)

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

    def cluster(self, replicas: int, owned: int) -> None:
        self.cluster_replicas.set(replicas)
        self.owned_apps.set(owned)

    def takeover(self) -> None:
        self.lease_takeovers.inc()

    def slack_request(self, seconds: float) -> None:
        self.slack_duration.observe(seconds)

    def resend_check(self, outcome: str) -> None:
        self.resend_checks.labels(outcome).inc()

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
