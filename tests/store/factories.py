"""Values the store tests save: a fake clock and builders for states and alerts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from monitor.model import (
    FAILED,
    RUNNING,
    SUCCEED,
    Alert,
    AlertKind,
    BranchKey,
    BranchState,
    JobSummary,
    Step,
)

T0 = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)
# A non-UTC offset on purpose: the codec must keep the instant, whatever the zone.
IST = timezone(timedelta(hours=5, minutes=30))


class FakeClock:
    """Seconds since the epoch, moved only by the test."""

    def __init__(self, now: float = 1_714_564_800.25) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def make_job(job_id: str = "7", status: str = FAILED, message: str = "Fix the build") -> JobSummary:
    return JobSummary(
        job_id=job_id,
        status=status,
        job_type="RELEASE",
        commit_id="0123456789abcdef",
        commit_message=message,
        commit_time=T0,
        start_time=T0 + timedelta(seconds=5),
        end_time=(T0 + timedelta(minutes=3)).astimezone(IST),
    )


def make_state(
    app_id: str = "d1abc",
    branch: str = "main",
    *,
    latest_id: str = "7",
    total_jobs: int | None = 7,
) -> BranchState:
    return BranchState(
        key=BranchKey(app_id, branch),
        app_name="shop",
        latest=make_job(latest_id),
        unfinished={"8": RUNNING, "9": "SOMETHING_NEW"},
        last_success_time=T0 - timedelta(days=1),
        failing_job_id=latest_id,
        active_job_id="8",
        total_jobs=total_jobs,
    )


def make_alert(
    job_id: str = "7",
    status: str = FAILED,
    *,
    app_id: str = "d1abc",
    branch: str = "main",
    kind: AlertKind = "failure",
) -> Alert:
    return Alert(
        key=BranchKey(app_id, branch),
        app_name="shop",
        kind=kind,
        job=make_job(job_id, status),
        last_success_time=T0 - timedelta(days=1),
        failed_job_id="6" if kind == "recovery" else None,
        steps=(
            Step("BUILD", SUCCEED, T0, T0 + timedelta(minutes=1), "https://logs/build"),
            Step("DEPLOY", status, T0, None, "", "exit status 1"),
        ),
        region="us-east-1",
    )
