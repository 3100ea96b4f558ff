"""Builders for the notify tests: alerts, settings, a fake clock and an observer that records."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from monitor import config
from monitor.model import FAILED, SUCCEED, Alert, AlertKind, BranchKey, JobSummary, Priority, Step

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
REGION = "eu-west-1"


class FakeClock:
    """Seconds since the epoch, moved only by the test."""

    def __init__(self, now: float = 1_714_564_800.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class RecordingObserver:
    """The Observer protocol, remembering every report."""

    alerts: Counter[tuple[str, str]] = field(default_factory=Counter)
    pending: list[int] = field(default_factory=list)
    slack_seconds: list[float] = field(default_factory=list)
    resend_checks: Counter[str] = field(default_factory=Counter)

    def api_request(self, operation: str, outcome: str, seconds: float) -> None:
        pass

    def budget_wait(self, priority: Priority, seconds: float) -> None:
        pass

    def anomaly(self, reason: str) -> None:
        pass

    def alert(self, status: str, outcome: str) -> None:
        self.alerts[(status, outcome)] += 1

    def outbox_pending(self, count: int) -> None:
        self.pending.append(count)

    def slack_request(self, seconds: float) -> None:
        self.slack_seconds.append(seconds)

    def resend_check(self, outcome: str) -> None:
        self.resend_checks[outcome] += 1

    def outcomes(self, outcome: str) -> int:
        return sum(n for (_, o), n in self.alerts.items() if o == outcome)


def make_alert(
    job_id: str = "42",
    status: str = FAILED,
    *,
    app_id: str = "d1abc2def",
    app_name: str = "shop",
    branch: str = "main",
    kind: AlertKind = "failure",
    message: str = "Fix the checkout page\n\nLonger body that is not shown.",
    failed_job_id: str | None = None,
    steps: tuple[Step, ...] | None = None,
    region: str = REGION,
    last_success: datetime | None = T0 - timedelta(days=2, hours=3),
) -> Alert:
    job = JobSummary(
        job_id=job_id,
        status=status,
        job_type="RELEASE",
        commit_id="3f9a1c7e5b2d4f6a8c0e1b3d5f7a9c1e3b5d7f9a",
        commit_message=message,
        commit_time=T0 - timedelta(minutes=1),
        start_time=T0,
        end_time=T0 + timedelta(minutes=4, seconds=12),
    )
    if steps is None:
        steps = (
            (
                Step(
                    "BUILD",
                    FAILED,
                    T0,
                    T0 + timedelta(minutes=4),
                    log_url=log_url(),
                    status_reason="npm ERR! code ELIFECYCLE\nnpm ERR! errno 1",
                ),
            )
            if status == FAILED and kind == "failure"
            else ()
        )
    return Alert(
        key=BranchKey(app_id, branch),
        app_name=app_name,
        kind=kind,
        job=job,
        last_success_time=last_success,
        failed_job_id=failed_job_id,
        steps=steps,
        region=region,
    )


def make_recovery(job_id: str = "43", failed_job_id: str = "42", **kw: Any) -> Alert:
    return make_alert(job_id, SUCCEED, kind="recovery", failed_job_id=failed_job_id, **kw)


def log_url() -> str:
    return (
        "https://aws-amplify-prod-eu-west-1-artifacts.s3.eu-west-1.amazonaws.com/d1abc2def/main/"
        "0000000042/BUILD/log.txt?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Date=20240501T120412Z"
        "&X-Amz-Expires=3600&X-Amz-Signature=abcdef0123456789"
    )


def slack_settings(slack: dict[str, Any] | None, **alerts: Any) -> config.Settings:
    data: dict[str, Any] = {"alerts": alerts}
    if slack is not None:
        data["slack"] = slack
    return config.parse(data, "test", env={})
