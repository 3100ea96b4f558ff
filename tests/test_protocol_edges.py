"""The daemon against a different, equally valid Amplify: a tiny stand-in written from botocore's
model, not from our simulator's habits.

It serves ListApps/ListBranches/ListJobs/GetJob as rest-json over loopback for the real aioboto3
client, and can answer the way another server may: optional members left out, `activeJobId`
naming the deployed job, a `totalNumberOfJobs` that never moves, one item per page whatever
`maxResults` says, `nextToken: ""` at the end, timestamps as ISO strings, bare 429s, 404s and
400s. The daemon is stepped on a fake clock (tests/stepper.py), as in tests/test_service.py.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qs, unquote

import pytest
from aiohttp import web
from structlog.testing import capture_logs

from monitor.model import FAILED, SUCCEED, BranchKey, Priority
from monitor.store.sqlite import SqliteStore
from monitor.tasks import PollBranch
from tests.conftest import make_settings
from tests.stepper import Stepper, stepped

T0 = 1_700_000_000.0


@dataclass
class StandInJob:
    job_id: str
    status: str
    start: float
    end: float | None = None


@dataclass
class StandInBranch:
    name: str
    jobs: list[StandInJob] = field(default_factory=list)  # oldest first


@dataclass
class StandIn:
    """Amplify as another vendor (or AWS on another day) might serve it."""

    apps: dict[str, dict[str, StandInBranch]] = field(default_factory=dict)
    page_size: int | None = None  # force this many items per page, ignoring maxResults
    final_token: str | None = None  # e.g. "": sent on the last page instead of no member
    loop_token: str | None = None  # a broken server: every page of a listing names it as next
    active_job: Literal["latest", "deployed", "omit"] = "latest"
    total_jobs: Literal["count", "frozen", "omit"] = "count"
    times: Literal["epoch", "iso", "iso_naive"] = "epoch"
    errors: dict[str, list[tuple[int, str | None]]] = field(default_factory=dict)
    lagging_jobs: set[str] = field(default_factory=set)  # left out of the next ListJobs
    before_list_jobs: Callable[[str, str], None] | None = None  # a job starting meanwhile
    listed: Counter[str] = field(default_factory=Counter)  # ListJobs per "app/branch"
    counts: Counter[str] = field(default_factory=Counter)
    url: str = ""

    def branch(self, app_id: str, name: str) -> StandInBranch:
        return self.apps.setdefault(app_id, {}).setdefault(name, StandInBranch(name))

    def add_job(self, app_id: str, name: str, status: str, job_id: str | None = None) -> str:
        jobs = self.branch(app_id, name).jobs
        job_id = job_id or str(int(jobs[-1].job_id) + 1 if jobs else 1)
        start = T0 + 100 * len(jobs)
        end = start + 42 if status in (SUCCEED, FAILED, "CANCELLED") else None
        jobs.append(StandInJob(job_id, status, start, end))
        return job_id

    def set_status(self, app_id: str, name: str, job_id: str, status: str) -> None:
        for job in self.branch(app_id, name).jobs:
            if job.job_id == job_id:
                job.status = status
                if status in (SUCCEED, FAILED, "CANCELLED"):
                    job.end = job.start + 42

    # -- wire -------------------------------------------------------------------------------

    def _time(self, value: float) -> Any:
        if self.times == "epoch":
            return value
        moment = datetime.fromtimestamp(value, UTC)
        if self.times == "iso_naive":
            return moment.replace(tzinfo=None).isoformat()
        return moment.isoformat().replace("+00:00", "Z")

    def _page(self, items: list[Any], query: dict[str, str], member: str) -> dict[str, Any]:
        token = query.get("nextToken") or "0"
        start = int(token) if token.isdigit() else 0
        size = self.page_size or int(query.get("maxResults") or 50)
        page = items[start : start + size]
        body: dict[str, Any] = {member: page}
        if self.loop_token is not None and member != "jobSummaries":
            return {member: items[:size], "nextToken": self.loop_token}
        if start + size < len(items):
            body["nextToken"] = str(start + size)
        elif self.final_token is not None:
            body["nextToken"] = self.final_token
        return body

    def _summary(self, job: StandInJob) -> dict[str, Any]:
        # Required members only, and not even commitMessage; endTime only once finished.
        wire: dict[str, Any] = {
            "jobArn": f"arn:aws:amplify:us-east-1:123456789012:jobs/{job.job_id}",
            "jobId": job.job_id,
            "commitId": "abc1234",
            "commitTime": self._time(job.start - 5),
            "startTime": self._time(job.start),
            "status": job.status,
            "jobType": "RELEASE",
        }
        if job.end is not None:
            wire["endTime"] = self._time(job.end)
        return wire

    def _branch(self, b: StandInBranch) -> dict[str, Any]:
        wire: dict[str, Any] = {"branchName": b.name, "stage": "PRODUCTION"}
        if self.active_job == "latest" and b.jobs:
            wire["activeJobId"] = b.jobs[-1].job_id
        elif self.active_job == "deployed":
            done = [j for j in b.jobs if j.status == SUCCEED]
            if done:
                wire["activeJobId"] = done[-1].job_id
        if self.total_jobs == "count":
            wire["totalNumberOfJobs"] = str(len(b.jobs))
        elif self.total_jobs == "frozen":
            wire["totalNumberOfJobs"] = "0"
        return wire

    async def handle(self, request: web.Request) -> web.Response:
        parts = [unquote(p) for p in request.rel_url.raw_path.strip("/").split("/")]
        query = {k: v[0] for k, v in parse_qs(request.rel_url.raw_query_string).items()}
        op = {1: "ListApps", 3: "ListBranches", 5: "ListJobs", 6: "GetJob"}[len(parts)]
        self.counts[op] += 1
        queued = self.errors.get(op)
        if queued:
            status, code = queued.pop(0)
            headers = {"x-amzn-ErrorType": code} if code else {}
            body = json.dumps({"message": code}) if code else ""
            return web.Response(status=status, text=body, headers=headers)
        if op == "ListApps":
            apps = [{"appId": a, "name": f"app-{a}"} for a in self.apps]
            return web.json_response(self._page(apps, query, "apps"))
        app = self.apps.get(parts[1])
        if app is None:
            return _error(404, "NotFoundException")
        if op == "ListBranches":
            branches = [self._branch(b) for b in app.values()]
            return web.json_response(self._page(branches, query, "branches"))
        branch = app.get(parts[3])
        if branch is None:
            return _error(404, "NotFoundException")
        jobs = [self._summary(j) for j in reversed(branch.jobs)]  # newest first
        if op == "ListJobs" and self.before_list_jobs is not None:
            self.before_list_jobs(parts[1], parts[3])
            jobs = [self._summary(j) for j in reversed(branch.jobs)]
        if op == "ListJobs":
            self.listed[f"{parts[1]}/{branch.name}"] += 1
            if self.lagging_jobs:
                jobs = [j for j in jobs if j["jobId"] not in self.lagging_jobs]
                self.lagging_jobs = set()
            return web.json_response(self._page(jobs, query, "jobSummaries"))
        for job in jobs:
            if job["jobId"] == parts[5]:
                return web.json_response({"job": {"summary": job, "steps": []}})
        return _error(404, "NotFoundException")


def _error(status: int, code: str) -> web.Response:
    return web.json_response({"message": code}, status=status, headers={"x-amzn-ErrorType": code})


@pytest.fixture
async def server() -> AsyncIterator[StandIn]:
    stand_in = StandIn()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", stand_in.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    stand_in.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        yield stand_in
    finally:
        await runner.cleanup()


@pytest.fixture(autouse=True)
def short_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")  # errors reach us at once


async def alerts(state: Path) -> list[tuple[str, str, str]]:
    store = await SqliteStore.open(state)
    try:
        entries = await store.pending(now=1e12)
    finally:
        await store.close()
    return [(e.alert.key.branch, e.alert.job.job_id, e.alert.status) for e in entries]


Daemon = Stepper


@pytest.fixture
async def daemon(server: StandIn, tmp_path: Path) -> AsyncIterator[Daemon]:
    settings = make_settings(
        server.url, tmp_path / "state.db", poll={"max_requests_per_second": 5000}
    )
    async with stepped(settings) as stepper:
        yield stepper


def metrics_text(d: Daemon) -> str:
    return d.edges.metrics.render().decode()


# --- change markers ---------------------------------------------------------------------------


async def test_failure_is_alerted_when_active_job_is_the_deployed_one_and_the_total_is_stuck(
    server: StandIn, daemon: Daemon, tmp_path: Path
) -> None:
    server.active_job, server.total_jobs = "deployed", "frozen"
    server.add_job("a1", "main", SUCCEED)
    server.add_job("a1", "dev", SUCCEED)
    assert await daemon.first()
    # Neither marker moves for a job that fails: only a look at the jobs can see it. The sweep
    # lists one of the app's two branches every twentieth interval: main within forty.
    failed = server.add_job("a1", "main", FAILED)
    for _ in range(40):
        assert await daemon.interval()
        if await alerts(tmp_path / "state.db"):
            break
    assert await alerts(tmp_path / "state.db") == [("main", failed, FAILED)]
    assert daemon.poller.markers_trusted  # it may have started just after ListBranches
    assert await daemon.interval()  # but the markers still say the same: they hide jobs
    assert not daemon.poller.markers_trusted
    # Once caught out, the markers are no longer trusted: the next one is seen at once.
    running = server.add_job("a1", "dev", "RUNNING")
    assert await daemon.interval()
    assert daemon.poller.states[BranchKey("a1", "dev")].unfinished == {running: "RUNNING"}
    assert 'amplify_monitor_api_anomalies_total{reason="markers_missed_job"} 1.0' in metrics_text(
        daemon
    )


async def test_markers_ahead_of_the_job_listing_are_not_remembered(
    server: StandIn, daemon: Daemon, tmp_path: Path
) -> None:
    server.add_job("a1", "main", SUCCEED)
    assert await daemon.first()
    failed = server.add_job("a1", "main", FAILED)
    # ListBranches already names the new job; the next ListJobs (a lagging replica) does not.
    server.lagging_jobs = {failed}
    assert await daemon.interval()
    assert await alerts(tmp_path / "state.db") == []
    assert await daemon.interval()
    assert await alerts(tmp_path / "state.db") == [("main", failed, FAILED)]


async def test_a_job_starting_between_list_branches_and_a_sweep_keeps_the_markers_trusted(
    server: StandIn, daemon: Daemon, tmp_path: Path
) -> None:
    server.add_job("a1", "main", SUCCEED)
    assert await daemon.first()
    started: list[str] = []

    def start_once(app_id: str, name: str) -> None:
        if not started:
            started.append(server.add_job(app_id, name, FAILED))

    server.before_list_jobs = start_once
    for _ in range(20):  # until the sweep lists main, before ListBranches announced job 2
        assert await daemon.interval()
        if started:
            break
    server.before_list_jobs = None
    assert await alerts(tmp_path / "state.db") == [("main", started[0], FAILED)]
    assert await daemon.interval()  # now the markers name it: an honest server
    assert daemon.poller.markers_trusted


async def test_an_event_refresh_ahead_of_a_frozen_listing_proves_nothing_about_the_markers(
    server: StandIn, daemon: Daemon, tmp_path: Path
) -> None:
    server.active_job, server.total_jobs = "deployed", "frozen"
    server.add_job("a1", "main", SUCCEED)
    assert await daemon.first()
    failed = server.add_job("a1", "main", FAILED)
    # Push mode: an event asks for main's jobs between two listings, which show no news.
    await daemon.poller.poll_branch(BranchKey("a1", "main"), Priority.EVENT)
    assert await alerts(tmp_path / "state.db") == [("main", failed, FAILED)]
    assert await daemon.interval()  # the listing still shows the old markers
    assert daemon.poller.markers_trusted  # only a sweep's find can prove they hide jobs


async def test_sweep_costs_a_twentieth_of_the_app_polls_and_reaches_every_branch(
    server: StandIn, daemon: Daemon
) -> None:
    for a in range(40):
        for b in range(4):
            server.add_job(f"app{a:02}", f"b{b}", SUCCEED)
    assert await daemon.first()
    server.listed.clear()
    server.counts.clear()
    assert await daemon.interval()
    # 40 apps, each sweeping one branch every twentieth poll, in turns: two an interval.
    assert server.counts["ListJobs"] == 2
    assert server.counts["ListBranches"] == 40
    for _ in range(79):
        assert await daemon.interval()
    # 160 branches at two an interval: 80 intervals list each of them exactly once.
    assert server.counts["ListJobs"] == 160
    assert server.counts["ListBranches"] == 40 * 80
    assert len(server.listed) == 160
    assert set(server.listed.values()) == {1}
    assert daemon.poller.markers_trusted


# --- pagination and shapes ----------------------------------------------------------------------


@pytest.mark.parametrize("operation", ["ListApps", "ListBranches"])
async def test_a_listing_whose_next_token_never_ends_fails_that_poll_and_drops_nothing(
    server: StandIn, daemon: Daemon, operation: str
) -> None:
    for name in ("main", "develop"):
        server.add_job("a1", name, SUCCEED)
    assert await daemon.first()
    watched = set(daemon.poller.branches)
    server.loop_token = "again"
    server.counts.clear()
    assert not await daemon.step(max(daemon.service.settings.poll.interval_seconds, 300))
    assert server.counts[operation] == 2  # the repeated token ends it at once
    assert set(daemon.poller.branches) == watched  # a cut listing would look like deletions
    assert 'amplify_monitor_api_anomalies_total{reason="repeated_next_token"}' in metrics_text(
        daemon
    )
    server.loop_token = None
    assert await daemon.interval()


async def test_one_job_per_page_and_an_empty_final_token_still_see_every_new_job(
    server: StandIn, daemon: Daemon, tmp_path: Path
) -> None:
    server.page_size, server.final_token = 1, ""
    server.add_job("a1", "main", SUCCEED)
    assert await daemon.first()
    failed = server.add_job("a1", "main", FAILED)
    for _ in range(14):  # more new jobs than ten one-job pages
        server.add_job("a1", "main", SUCCEED)
    server.counts.clear()
    assert await daemon.interval()
    # Its recovery too: the next job succeeded.
    assert await alerts(tmp_path / "state.db") == [("main", failed, FAILED), ("main", "3", SUCCEED)]
    assert server.counts["ListJobs"] == 16  # back to the last job seen, not further
    state = daemon.poller.states[BranchKey("a1", "main")]
    assert state.latest is not None and state.latest.job_id == "16"


@pytest.mark.parametrize("times", ["epoch", "iso", "iso_naive"])
async def test_timestamps_as_epoch_or_iso_strings_give_the_same_durations(
    server: StandIn, daemon: Daemon, tmp_path: Path, times: Literal["epoch", "iso", "iso_naive"]
) -> None:
    server.times = times
    server.add_job("a1", "main", SUCCEED)
    assert await daemon.first()
    running = server.add_job("a1", "main", "RUNNING")  # no endTime yet
    assert await daemon.interval()
    server.set_status("a1", "main", running, FAILED)
    assert await daemon.interval()
    assert await alerts(tmp_path / "state.db") == [("main", running, FAILED)]
    text = metrics_text(daemon)
    assert 'amplify_job_last_duration_seconds{app_id="a1",branch="main"} 42.0' in text
    success_end = T0 + 42
    assert (
        f'amplify_branch_last_success_timestamp_seconds{{app_id="a1",branch="main"}} '
        f"{success_end:.9e}" in text
    )


@pytest.mark.parametrize("name", ["release/1.0", "feature/with space", "fix/ünïcödé-枝"])
async def test_branch_names_with_slashes_spaces_and_unicode_are_followed(
    server: StandIn, daemon: Daemon, tmp_path: Path, name: str
) -> None:
    server.add_job("a1", name, SUCCEED)
    assert await daemon.first()
    failed = server.add_job("a1", name, FAILED)
    assert await daemon.interval()
    assert await alerts(tmp_path / "state.db") == [(name, failed, FAILED)]


async def test_app_without_branches_and_branch_without_jobs(
    server: StandIn, daemon: Daemon, tmp_path: Path
) -> None:
    server.apps["empty"] = {}
    server.branch("a1", "fresh")
    assert await daemon.first()
    assert daemon.poller.states[BranchKey("a1", "fresh")].latest is None
    assert await daemon.interval()
    failed = server.add_job("a1", "fresh", FAILED)
    assert await daemon.interval()
    assert await alerts(tmp_path / "state.db") == [("fresh", failed, FAILED)]
    assert daemon.edges.readiness.never_polled == set()


async def test_branches_without_any_change_markers_are_listed_every_interval(
    server: StandIn, daemon: Daemon, tmp_path: Path
) -> None:
    server.active_job, server.total_jobs = "omit", "omit"
    server.add_job("a1", "main", SUCCEED)
    assert await daemon.first()
    failed = server.add_job("a1", "main", FAILED)
    assert await daemon.interval()
    assert await alerts(tmp_path / "state.db") == [("main", failed, FAILED)]


async def test_newest_job_created_but_not_started_is_followed_without_active_polling(
    server: StandIn, daemon: Daemon, tmp_path: Path
) -> None:
    server.add_job("a1", "main", SUCCEED)
    created = server.add_job("a1", "main", "CREATED")
    assert await daemon.first()
    key = BranchKey("a1", "main")
    assert daemon.poller.states[key].unfinished == {created: "CREATED"}
    # Nobody may ever start it: the branch waits for the next interval, not the active one.
    queue = daemon.edges.scheduler.queue
    assert PollBranch(key) not in queue
    server.set_status("a1", "main", created, "RUNNING")
    assert await daemon.interval()
    entry = queue.entry(PollBranch(key))
    assert entry is not None and entry.priority is Priority.ACTIVE
    server.set_status("a1", "main", created, FAILED)
    assert await daemon.interval()
    assert await daemon.interval()
    assert await alerts(tmp_path / "state.db") == [("main", created, FAILED)]


async def test_a_followed_job_the_server_forgot_stops_being_followed(
    server: StandIn, daemon: Daemon
) -> None:
    running = server.add_job("a1", "main", "RUNNING")
    assert await daemon.first()
    server.branch("a1", "main").jobs.clear()
    assert await daemon.interval()
    assert daemon.poller.states[BranchKey("a1", "main")].unfinished == {}
    assert 'amplify_monitor_api_anomalies_total{reason="job_vanished"} 1.0' in metrics_text(daemon)
    assert running == "1"


# --- errors -----------------------------------------------------------------------------------


async def test_list_jobs_404_for_a_deleted_branch_drops_it(server: StandIn, daemon: Daemon) -> None:
    server.add_job("a1", "main", SUCCEED)
    server.add_job("a1", "gone", "RUNNING")
    assert await daemon.first()
    del server.apps["a1"]["gone"]  # ListBranches still cached it, ListJobs knows better
    server.errors["ListBranches"] = []
    assert await daemon.interval()
    assert BranchKey("a1", "gone") not in daemon.poller.states
    assert 'branch="gone"' not in metrics_text(daemon)


async def test_bad_request_for_an_unknown_app_fails_the_unit_not_the_daemon(
    server: StandIn, daemon: Daemon, tmp_path: Path
) -> None:
    server.add_job("a1", "main", SUCCEED)
    server.add_job("a2", "main", SUCCEED)
    assert await daemon.first()
    server.errors["ListBranches"] = [(400, "BadRequestException")]
    failed = server.add_job("a2", "main", FAILED)
    assert await daemon.interval()  # one app answered
    assert await daemon.interval()
    assert await alerts(tmp_path / "state.db") == [("main", failed, FAILED)]
    assert 'outcome="bad_request"' in metrics_text(daemon)


async def test_an_unauthorized_operation_is_told_once_with_the_permission_not_once_per_app(
    server: StandIn, daemon: Daemon
) -> None:
    for a in range(3):
        server.add_job(f"app{a}", "main", SUCCEED)
    assert await daemon.first()
    server.errors["ListBranches"] = [(403, "AccessDeniedException")] * 9
    with capture_logs() as logs:
        for _ in range(3):  # three intervals, three apps: nine denied calls
            assert not await daemon.interval()
    warnings = [e for e in logs if e["log_level"] == "warning"]
    assert [e["event"] for e in warnings] == ["api_unauthorized"]
    assert warnings[0]["operation"] == "ListBranches"
    assert "grant amplify:ListBranches" in warnings[0]["fix"]
    text = metrics_text(daemon)
    assert (
        'amplify_monitor_api_requests_total{operation="ListBranches",outcome="unauthorized"} 9.0'
        in text
    )
    # Still denied minutes later: told again, once.
    client = daemon.poller.client
    client._unauthorized_told = {op: t - 301 for op, t in client._unauthorized_told.items()}
    server.errors["ListBranches"] = [(403, "AccessDeniedException")] * 3
    with capture_logs() as later:
        assert not await daemon.interval()
    assert [e["event"] for e in later if e["log_level"] == "warning"] == ["api_unauthorized"]


@pytest.mark.parametrize(("status", "outcome"), [(429, "throttled"), (500, "error")])
async def test_bare_429_and_500_answers_are_counted_and_survived(
    server: StandIn, daemon: Daemon, tmp_path: Path, status: int, outcome: str
) -> None:
    server.add_job("a1", "main", SUCCEED)
    assert await daemon.first()
    failed = server.add_job("a1", "main", FAILED)
    server.errors["ListBranches"] = [(status, None)]  # no x-amzn-ErrorType, no body
    assert not await daemon.interval()
    assert await daemon.interval()
    assert await alerts(tmp_path / "state.db") == [("main", failed, FAILED)]
    assert (
        f'amplify_monitor_api_requests_total{{operation="ListBranches",outcome="{outcome}"}} 1.0'
        in metrics_text(daemon)
    )
