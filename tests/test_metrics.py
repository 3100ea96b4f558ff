"""The metrics view: one-hot status, counters from transitions, series removal, promtool lint,
the exposition the per-branch collector renders, and the scheduler's lag histogram."""

from __future__ import annotations

import os
import shutil
import subprocess
from datetime import UTC, datetime

import pytest

from monitor.metrics import PRIORITIES, Metrics
from monitor.model import BranchKey, BranchState, JobSummary, Transition

KEY = BranchKey("d1", "main")
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def job(job_id: str, status: str, seconds: float = 90.0) -> JobSummary:
    end = datetime.fromtimestamp(T0.timestamp() + seconds, UTC)
    return JobSummary(job_id, status, "RELEASE", start_time=T0, end_time=end)


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of one series in an exposition, or None when absent."""
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    prefix = f"{name}{{{wanted}}} " if labels else f"{name} "
    for line in text.splitlines():
        if line.startswith(prefix):
            return float(line[len(prefix) :])
    return None


def test_status_is_one_hot_over_known_statuses() -> None:
    metrics = Metrics()
    metrics.apply(BranchState(KEY, "shop", latest=job("3", "RUNNING")))
    text = metrics.render().decode()
    labels = {"app_id": "d1", "app_name": "shop", "branch": "main"}
    assert sample(text, "amplify_job_status", **labels, status="RUNNING") == 1.0
    assert sample(text, "amplify_job_status", **labels, status="FAILED") == 0.0
    assert sample(text, "amplify_job_status", **labels, status="CREATED") == 0.0


def test_unknown_status_gets_its_own_series_without_crashing() -> None:
    metrics = Metrics()
    metrics.apply(BranchState(KEY, "shop", latest=job("3", "QUEUED_NEW")))
    text = metrics.render().decode()
    labels = {"app_id": "d1", "app_name": "shop", "branch": "main"}
    assert sample(text, "amplify_job_status", **labels, status="QUEUED_NEW") == 1.0
    assert sample(text, "amplify_job_status", **labels, status="RUNNING") == 0.0


def test_transitions_count_finished_jobs_and_durations() -> None:
    metrics = Metrics()
    failed = job("4", "FAILED", seconds=42.0)
    state = BranchState(KEY, "shop", latest=failed, last_success_time=T0)
    metrics.apply(
        state,
        (Transition(KEY, failed, None, "PENDING"), Transition(KEY, failed, "PENDING", "FAILED")),
    )
    text = metrics.render().decode()
    common = {"app_id": "d1", "branch": "main"}
    assert (
        sample(
            text, "amplify_job_transitions_total", **common, from_status="NEW", to_status="PENDING"
        )
        == 1.0
    )
    assert (
        sample(
            text,
            "amplify_job_transitions_total",
            **common,
            from_status="PENDING",
            to_status="FAILED",
        )
        == 1.0
    )
    assert sample(text, "amplify_jobs_finished_total", **common, status="FAILED") == 1.0
    assert sample(text, "amplify_job_last_duration_seconds", **common) == 42.0
    assert sample(text, "amplify_branch_last_success_timestamp_seconds", **common) == T0.timestamp()


def test_removing_a_branch_removes_every_series_it_had() -> None:
    metrics = Metrics()
    other = BranchKey("d1", "develop")
    failed = job("4", "FAILED")
    metrics.apply(
        BranchState(KEY, "shop", latest=failed, last_success_time=T0),
        (Transition(KEY, failed, "RUNNING", "FAILED"),),
    )
    metrics.apply(BranchState(other, "shop", latest=job("1", "SUCCEED")))
    metrics.remove_branch(KEY)
    text = metrics.render().decode()
    assert 'branch="main"' not in text
    assert 'branch="develop"' in text


def test_renamed_app_does_not_leave_stale_status_series() -> None:
    metrics = Metrics()
    metrics.apply(BranchState(KEY, "shop", latest=job("1", "SUCCEED")))
    metrics.apply(BranchState(KEY, "store", latest=job("1", "SUCCEED")))
    text = metrics.render().decode()
    assert 'app_name="shop"' not in text
    assert 'app_name="store"' in text


def test_exposition_passes_promtool_check_metrics() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is required in CI (.ci/run installs it)")
        pytest.skip("promtool not installed")
    metrics = Metrics()
    failed = job("4", "FAILED")
    metrics.apply(
        BranchState(KEY, "shop", latest=failed, last_success_time=T0),
        (Transition(KEY, failed, "RUNNING", "FAILED"),),
    )
    metrics.api_request("ListJobs", "ok", 0.05)
    metrics.alert("FAILED", "sent")
    metrics.slack_request(0.1)
    metrics.poll_done(0.3, True, 1.7e9)
    metrics.outbox_pending(0)
    metrics.set_watched(1)
    metrics.anomaly("status_went_backwards")
    metrics.schedule_lag("active", 0.4)
    result = subprocess.run(
        [promtool, "check", "metrics"], input=metrics.render(), capture_output=True, check=False
    )
    assert result.returncode == 0, (result.stdout + result.stderr).decode()
    assert result.stdout.decode().strip() == "", result.stdout.decode()


def test_finished_counters_start_at_zero_so_the_first_failure_shows_in_increase() -> None:
    metrics = Metrics()
    metrics.apply(BranchState(KEY, "shop", latest=job("1", "SUCCEED")))
    text = metrics.render().decode()
    common = {"app_id": "d1", "branch": "main"}
    for status in ("FAILED", "CANCELLED", "SUCCEED"):
        assert sample(text, "amplify_jobs_finished_total", **common, status=status) == 0.0


def unfinished(job_id: str, status: str) -> JobSummary:
    return JobSummary(job_id, status, "RELEASE", start_time=T0)


def domain_lines(text: str) -> list[str]:
    """The per-branch families' lines (HELP, TYPE and samples), sorted: order within a family
    carries no meaning, and the old children came out in creation order."""
    return sorted(
        line
        for line in text.splitlines()
        if line.removeprefix("# HELP ")
        .removeprefix("# TYPE ")
        .startswith(("amplify_job", "amplify_branch"))
        and PER_APP not in line
    )


PER_APP = "amplify_job_duration_seconds"  # per app, not per branch: tested on its own


MAIN = BranchKey("d1", "main")
DEVELOP = BranchKey("d1", "develop")
LOGIN = BranchKey("d2", "feature/login")
DOCS = BranchKey("d3", "main")


def polls() -> list[tuple[BranchState, tuple[Transition, ...]]]:
    """A job followed to success then one seen already failed, an unknown status, an app
    renamed between polls, and a branch with no job yet."""
    pending, running, succeeded = (
        unfinished("1", "PENDING"),
        unfinished("1", "RUNNING"),
        job("1", "SUCCEED", 90.0),
    )
    failed = job("2", "FAILED", 42.0)
    queued = unfinished("7", "QUEUED_NEW")
    login_running, login_cancelled = unfinished("3", "RUNNING"), job("3", "CANCELLED", 5.0)
    success = succeeded.end_time
    return [
        (BranchState(MAIN, "shop", latest=pending), (Transition(MAIN, pending, None, "PENDING"),)),
        (
            BranchState(MAIN, "shop", latest=running),
            (Transition(MAIN, running, "PENDING", "RUNNING"),),
        ),
        (
            BranchState(MAIN, "shop", latest=succeeded, last_success_time=success),
            (Transition(MAIN, succeeded, "RUNNING", "SUCCEED"),),
        ),
        (
            BranchState(MAIN, "shop", latest=failed, last_success_time=success),
            (Transition(MAIN, failed, None, "FAILED"),),
        ),
        (
            BranchState(DEVELOP, "shop", latest=queued),
            (Transition(DEVELOP, queued, None, "QUEUED_NEW"),),
        ),
        (
            BranchState(LOGIN, "blog", latest=login_running),
            (Transition(LOGIN, login_running, None, "RUNNING"),),
        ),
        (
            BranchState(LOGIN, "journal", latest=login_cancelled),
            (Transition(LOGIN, login_cancelled, "RUNNING", "CANCELLED"),),
        ),
        (BranchState(DOCS, "docs"), ()),
    ]


def status_lines(app_id: str, app_name: str, branch: str, hot: str) -> list[str]:
    statuses = ["CREATED", "PENDING", "PROVISIONING", "RUNNING", "CANCELLING", "SUCCEED"]
    statuses += ["FAILED", "CANCELLED"]
    if hot not in statuses:
        statuses.append(hot)
    labels = f'app_id="{app_id}",app_name="{app_name}",branch="{branch}"'
    return [
        f'amplify_job_status{{{labels},status="{s}"}} {1.0 if s == hot else 0.0}' for s in statuses
    ]


def finished_lines(app_id: str, branch: str, **counts: float) -> list[str]:
    return [
        f'amplify_jobs_finished_total{{app_id="{app_id}",branch="{branch}",status="{s}"}} '
        f"{counts.get(s, 0.0)}"
        for s in ("SUCCEED", "FAILED", "CANCELLED")
    ]


def test_collector_renders_the_series_the_prometheus_client_children_did() -> None:
    # The expected lines are what the Gauge/Counter children per label set produced for these
    # polls, less their `_created` gauges, which nothing reads.
    transitions = "amplify_job_transitions_total"
    expected = [
        "# HELP amplify_job_status 1 for the status of the branch's latest job, 0 for the other statuses.",
        "# TYPE amplify_job_status gauge",
        *status_lines("d1", "shop", "main", "FAILED"),
        *status_lines("d1", "shop", "develop", "QUEUED_NEW"),
        *status_lines("d2", "journal", "feature/login", "CANCELLED"),
        f"# HELP {transitions} Job status transitions seen.",
        f"# TYPE {transitions} counter",
        f'{transitions}{{app_id="d1",branch="main",from_status="NEW",to_status="PENDING"}} 1.0',
        f'{transitions}{{app_id="d1",branch="main",from_status="PENDING",to_status="RUNNING"}} 1.0',
        f'{transitions}{{app_id="d1",branch="main",from_status="RUNNING",to_status="SUCCEED"}} 1.0',
        f'{transitions}{{app_id="d1",branch="main",from_status="NEW",to_status="FAILED"}} 1.0',
        f'{transitions}{{app_id="d1",branch="develop",from_status="NEW",to_status="QUEUED_NEW"}} 1.0',
        f'{transitions}{{app_id="d2",branch="feature/login",from_status="NEW",to_status="RUNNING"}} 1.0',
        f'{transitions}{{app_id="d2",branch="feature/login",from_status="RUNNING",to_status="CANCELLED"}} 1.0',
        "# HELP amplify_jobs_finished_total Jobs seen reaching a terminal status.",
        "# TYPE amplify_jobs_finished_total counter",
        *finished_lines("d1", "main", SUCCEED=1.0, FAILED=1.0),
        *finished_lines("d1", "develop"),
        *finished_lines("d2", "feature/login", CANCELLED=1.0),
        *finished_lines("d3", "main"),
        "# HELP amplify_job_last_duration_seconds Duration of the branch's most recently finished job.",
        "# TYPE amplify_job_last_duration_seconds gauge",
        'amplify_job_last_duration_seconds{app_id="d1",branch="main"} 42.0',
        'amplify_job_last_duration_seconds{app_id="d2",branch="feature/login"} 5.0',
        "# HELP amplify_branch_last_success_timestamp_seconds End time of the branch's latest successful job (Unix seconds).",
        "# TYPE amplify_branch_last_success_timestamp_seconds gauge",
        'amplify_branch_last_success_timestamp_seconds{app_id="d1",branch="main"} 1.76722569e+09',
    ]
    metrics = Metrics()
    for state, transitions_seen in polls():
        metrics.apply(state, transitions_seen)
    assert domain_lines(metrics.render().decode()) == sorted(expected)


def test_domain_families_lead_the_exposition_in_their_usual_order() -> None:
    metrics = Metrics()
    for state, transitions in polls():
        metrics.apply(state, transitions)
    types = [
        line.split()[2]
        for line in metrics.render().decode().splitlines()
        if line.startswith("# TYPE")
    ]
    assert types[:5] == [
        "amplify_job_status",
        "amplify_job_transitions_total",
        "amplify_jobs_finished_total",
        "amplify_job_last_duration_seconds",
        "amplify_branch_last_success_timestamp_seconds",
    ]


def test_a_status_the_branch_left_keeps_no_series_at_one() -> None:
    metrics = Metrics()
    metrics.apply(BranchState(KEY, "shop", latest=unfinished("1", "QUEUED_NEW")))
    metrics.apply(BranchState(KEY, "shop", latest=unfinished("1", "RUNNING")))
    text = metrics.render().decode()
    hot = [line for line in text.splitlines() if line.startswith("amplify_job_status{")]
    assert [line for line in hot if line.endswith(" 1.0")] == [
        'amplify_job_status{app_id="d1",app_name="shop",branch="main",status="RUNNING"} 1.0'
    ]
    assert "QUEUED_NEW" not in text


def test_removed_branch_leaves_no_series_and_starts_from_zero_when_seen_again() -> None:
    metrics = Metrics()
    for state, transitions in polls():
        metrics.apply(state, transitions)
    before = domain_lines(metrics.render().decode())
    metrics.remove_branch(MAIN)
    text = metrics.render().decode()
    gone = [line for line in before if 'app_id="d1",' in line and 'branch="main"' in line]
    assert gone
    assert not [
        line for line in domain_lines(text) if 'app_id="d1",' in line and 'branch="main"' in line
    ]
    # The other branches are untouched.
    assert domain_lines(text) == [line for line in before if line not in gone]

    metrics.apply(BranchState(MAIN, "shop", latest=job("3", "SUCCEED")))
    text = metrics.render().decode()
    common = {"app_id": "d1", "branch": "main"}
    assert sample(text, "amplify_jobs_finished_total", **common, status="FAILED") == 0.0
    assert sample(text, "amplify_job_last_duration_seconds", **common) is None
    assert 'amplify_job_transitions_total{app_id="d1",branch="main"' not in text


def test_removing_an_unknown_branch_is_harmless() -> None:
    metrics = Metrics()
    metrics.remove_branch(KEY)
    assert 'branch="main"' not in metrics.render().decode()


def test_schedule_lag_histogram_shows_every_priority_before_any_lag() -> None:
    text = Metrics().render().decode()
    assert (
        "# HELP amplify_monitor_schedule_lag_seconds "
        "How late scheduled work started against its due time." in text
    )
    assert "# TYPE amplify_monitor_schedule_lag_seconds histogram" in text
    name = "amplify_monitor_schedule_lag_seconds"
    for priority in PRIORITIES:
        assert sample(text, f"{name}_count", priority=priority) == 0.0
        assert sample(text, f"{name}_bucket", le="300.0", priority=priority) == 0.0
    assert set(PRIORITIES) == {"enrich", "event", "active", "changed", "app", "sweep", "discovery"}


def test_schedule_lag_is_bucketed_and_a_negative_lag_counts_as_zero() -> None:
    metrics = Metrics()
    metrics.schedule_lag("sweep", 7.0)
    metrics.schedule_lag("enrich", -3.0)
    text = metrics.render().decode()
    name = "amplify_monitor_schedule_lag_seconds"
    assert sample(text, f"{name}_bucket", le="5.0", priority="sweep") == 0.0
    assert sample(text, f"{name}_bucket", le="10.0", priority="sweep") == 1.0
    assert sample(text, f"{name}_sum", priority="sweep") == 7.0
    assert sample(text, f"{name}_bucket", le="0.1", priority="enrich") == 1.0
    assert sample(text, f"{name}_sum", priority="enrich") == 0.0
    buckets = [
        line.split('le="')[1].split('"')[0]
        for line in text.splitlines()
        if line.startswith(f"{name}_bucket{{") and 'priority="app"' in line
    ]
    assert buckets == [
        "0.1",
        "0.25",
        "0.5",
        "1.0",
        "2.5",
        "5.0",
        "10.0",
        "30.0",
        "60.0",
        "120.0",
        "300.0",
        "+Inf",
    ]


def test_a_fleet_larger_than_one_slice_has_one_help_and_type_per_family_and_every_series() -> None:
    metrics = Metrics()
    branches = 1234  # more than two slices of SLICE
    for i in range(branches):
        key = BranchKey(f"d{i:04d}", "main")
        failed = job(str(i), "FAILED")
        metrics.apply(
            BranchState(key, "shop", latest=failed, last_success_time=T0),
            (Transition(key, failed, "RUNNING", "FAILED"),),
        )
    text = metrics.render().decode()
    lines = text.splitlines()
    for name in (
        "amplify_job_status",
        "amplify_jobs_finished_total",
        "amplify_job_transitions_total",
    ):
        assert sum(1 for line in lines if line.startswith(f"# TYPE {name} ")) == 1
        assert sum(1 for line in lines if line.startswith(f"# HELP {name} ")) == 1
    status = [line for line in lines if line.startswith("amplify_job_status{")]
    assert len(status) == branches * 8
    # Each family's samples stay together, as the text format requires.
    names = [
        line.split("{")[0]
        for line in lines
        if line.startswith(("amplify_job", "amplify_branch"))  # the per-branch families
        and not line.startswith(PER_APP)  # a histogram interleaves _bucket/_count/_sum
    ]
    firsts = {n: names.index(n) for n in set(names)}
    lasts = {n: len(names) - 1 - names[::-1].index(n) for n in set(names)}
    for n in set(names):
        assert names[firsts[n] : lasts[n] + 1] == [n] * (lasts[n] - firsts[n] + 1)


async def test_metrics_endpoint_streams_the_same_exposition_as_render() -> None:
    import aiohttp

    from monitor.metrics import serve

    metrics = Metrics()
    for i in range(700):
        metrics.apply(BranchState(BranchKey(f"d{i}", "main"), "shop", latest=job("1", "RUNNING")))
    async with (
        serve(metrics, "127.0.0.1", 0, lambda: (True, "ready")) as port,
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}/metrics") as response,
    ):
        body = await response.read()
        assert response.headers["Content-Type"].startswith("text/plain")
    assert body == metrics.render()


def _finished(metrics: Metrics, app_id: str, branch: str, status: str, seconds: float) -> None:
    key = BranchKey(app_id, branch)
    done = job("7", status, seconds)
    metrics.apply(
        BranchState(key, "shop", latest=done), (Transition(key, done, "RUNNING", status),)
    )


def test_finished_jobs_durations_are_a_histogram_per_app_and_status() -> None:
    metrics = Metrics()
    _finished(metrics, "d1", "main", "SUCCEED", 45.0)
    _finished(metrics, "d1", "develop", "SUCCEED", 200.0)
    _finished(metrics, "d1", "main", "FAILED", 4000.0)  # beyond the last bucket
    _finished(metrics, "d2", "main", "SUCCEED", 30.0)  # on a bucket's bound: inside it
    text = metrics.render().decode()
    bucket = "amplify_job_duration_seconds_bucket"
    assert sample(text, bucket, app_id="d1", le="30.0", status="SUCCEED") == 0
    assert sample(text, bucket, app_id="d1", le="60.0", status="SUCCEED") == 1
    assert sample(text, bucket, app_id="d1", le="300.0", status="SUCCEED") == 2
    assert sample(text, bucket, app_id="d1", le="+Inf", status="SUCCEED") == 2
    assert sample(text, "amplify_job_duration_seconds_sum", app_id="d1", status="SUCCEED") == 245
    assert sample(text, bucket, app_id="d1", le="3600.0", status="FAILED") == 0
    assert sample(text, bucket, app_id="d1", le="+Inf", status="FAILED") == 1
    assert sample(text, bucket, app_id="d2", le="30.0", status="SUCCEED") == 1
    assert sample(text, "amplify_job_duration_seconds_count", app_id="d2", status="SUCCEED") == 1
    assert "branch=" not in "".join(x for x in text.splitlines() if x.startswith(PER_APP))


def test_a_restart_loading_saved_states_observes_no_duration_again() -> None:
    metrics = Metrics()
    key = BranchKey("d1", "main")
    metrics.apply(BranchState(key, "shop", latest=job("7", "FAILED", 300.0)))  # no transition
    assert PER_APP + "_count" not in metrics.render().decode()


def test_an_apps_durations_leave_with_its_last_branch() -> None:
    metrics = Metrics()
    _finished(metrics, "d1", "main", "SUCCEED", 45.0)
    _finished(metrics, "d1", "develop", "SUCCEED", 45.0)
    metrics.remove_branch(BranchKey("d1", "develop"))
    assert sample(metrics.render().decode(), PER_APP + "_count", app_id="d1", status="SUCCEED") == 2
    metrics.remove_branch(BranchKey("d1", "main"))
    assert PER_APP not in metrics.render().decode().replace("# HELP " + PER_APP, "").replace(
        "# TYPE " + PER_APP, ""
    )
