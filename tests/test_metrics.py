"""The metrics view: one-hot status, counters from transitions, series removal, promtool lint."""

from __future__ import annotations

import os
import shutil
import subprocess
from datetime import UTC, datetime

import pytest

from monitor.metrics import Metrics
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
