"""The Prometheus registry and the only code that touches it, plus /metrics /healthz /readyz.

Domain series (`amplify_*`) are a view of branch state and transitions, updated through
`apply`; the monitor's own series (`amplify_monitor_*`) come through the Observer methods.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from monitor import __version__
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
NEW_JOB = "NEW"  # from_status of a job seen for the first time (an empty label would vanish)


class Metrics:
    """Owns a private CollectorRegistry so tests and several daemons never share series."""

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
            "Duration of one scheduler pass over the due apps and branches.",
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
        # Label sets created per branch, so a vanished branch's series can all be removed.
        self._series: dict[BranchKey, set[tuple[str, tuple[str, ...]]]] = defaultdict(set)

    def _track(self, key: BranchKey, metric: str, labels: tuple[str, ...]) -> None:
        self._series[key].add((metric, labels))

    # --- domain view -------------------------------------------------------------------------

    def apply(self, state: BranchState, transitions: tuple[Transition, ...] = ()) -> None:
        """Bring a branch's series in line with its state and count its transitions."""
        key = state.key
        if key not in self._series:
            # Zero the outcome counters up front: increase() cannot see a series' first sample,
            # so a branch's first failure would otherwise be invisible to rules and dashboards.
            for status in TERMINAL:
                self.finished.labels(key.app_id, key.branch, status)
                self._track(key, "finished", (key.app_id, key.branch, status))
        for metric, labels in list(self._series.get(key, ())):
            # A renamed app leaves status series under its old name: drop them.
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
            labels = (key.app_id, key.branch, t.from_status or NEW_JOB, t.to_status)
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

    def remove_branch(self, key: BranchKey) -> None:
        metrics = {
            "job_status": self.job_status,
            "transitions": self.transitions,
            "finished": self.finished,
            "last_duration": self.last_duration,
            "last_success": self.last_success,
        }
        for metric, labels in self._series.pop(key, set()):
            metrics[metric].remove(*labels)

    def set_watched(self, count: int) -> None:
        self.watched.set(count)

    def poll_done(self, seconds: float, succeeded: bool, now: float) -> None:
        self.poll_cycle.observe(seconds)
        if succeeded:
            self.last_poll.set(now)

    def anomaly(self, reason: str) -> None:
        self.anomalies.labels(reason).inc()

    # --- Observer protocol -------------------------------------------------------------------

    def api_request(self, operation: str, outcome: str, seconds: float) -> None:
        self.api_requests.labels(operation, outcome).inc()
        self.api_duration.labels(operation).observe(seconds)

    def alert(self, status: str, outcome: str) -> None:
        self.alerts.labels(status, outcome).inc()

    def outbox_pending(self, count: int) -> None:
        self.pending.set(count)

    def slack_request(self, seconds: float) -> None:
        self.slack_duration.observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)


@asynccontextmanager
async def serve(
    metrics: Metrics,
    host: str,
    port: int,
    ready: Callable[[], tuple[bool, str]],
) -> AsyncIterator[int]:
    """Serve /metrics, /healthz and /readyz; yields the bound port (useful with port 0)."""

    async def handle_metrics(_: web.Request) -> web.Response:
        return web.Response(body=metrics.render(), headers={"Content-Type": CONTENT_TYPE_LATEST})

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
