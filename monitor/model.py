"""The values that cross module lines: apps, branches, jobs, branch state, transitions, alerts.

Everything here is a frozen dataclass or a plain constant; no I/O, no clock. Job statuses stay
raw strings so a status the API adds tomorrow flows through untouched.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import IntEnum
from typing import Literal

# The statuses botocore's model knows today. Kept as strings, not an Enum, on purpose: the API
# added CREATED late, and an unknown status must pass through rather than crash a parser.
CREATED = "CREATED"
PENDING = "PENDING"
PROVISIONING = "PROVISIONING"
RUNNING = "RUNNING"
CANCELLING = "CANCELLING"
SUCCEED = "SUCCEED"
FAILED = "FAILED"
CANCELLED = "CANCELLED"

KNOWN_STATUSES: tuple[str, ...] = (
    CREATED,
    PENDING,
    PROVISIONING,
    RUNNING,
    CANCELLING,
    SUCCEED,
    FAILED,
    CANCELLED,
)
TERMINAL_STATUSES: frozenset[str] = frozenset({SUCCEED, FAILED, CANCELLED})

# How far along a job is. Terminal statuses share the last rank: a job never leaves one.
_RANK: dict[str, int] = {
    CREATED: 0,
    PENDING: 1,
    PROVISIONING: 2,
    RUNNING: 3,
    CANCELLING: 4,
    SUCCEED: 5,
    FAILED: 5,
    CANCELLED: 5,
}


def is_terminal(status: str) -> bool:
    return status in TERMINAL_STATUSES


def is_unfinished(status: str) -> bool:
    """Unknown statuses count as unfinished: keep watching a job we cannot classify."""
    return status not in TERMINAL_STATUSES


def status_rank(status: str) -> int | None:
    """Progress rank of a status, or None for a status this code does not know."""
    return _RANK.get(status)


def job_number(job_id: str) -> int:
    """Job ids are per-branch increasing integers sent as strings; compare them as numbers."""
    try:
        return int(job_id)
    except ValueError:
        return -1


class Priority(IntEnum):
    """How urgent a piece of polling work is; lower is sooner. The scheduler orders due tasks by
    it and the pacer hands its tokens out by it, so a failure's GetJob never queues behind idle
    ListBranches."""

    ENRICH = 0  # the GetJob that adds the failed step to an alert
    EVENT = 1  # the refresh an Amplify event asked for (push mode)
    ACTIVE = 2  # ListJobs of a branch with a job in flight (its active interval)
    CHANGED = 3  # ListJobs of a branch whose ListBranches markers moved (or never listed)
    APP = 4  # ListBranches of an app (its interval)
    SWEEP = 5  # ListJobs that tests markers which said "no news"
    DISCOVERY = 6  # ListApps

    @property
    def label(self) -> str:
        return "discovery" if self is Priority.DISCOVERY else self.name.lower()


@dataclass(frozen=True, order=True)
class BranchKey:
    app_id: str
    branch: str

    def __str__(self) -> str:
        return f"{self.app_id}/{self.branch}"


@dataclass(frozen=True)
class App:
    app_id: str
    name: str
    default_domain: str = ""


# ListBranches' change markers of a branch: (totalNumberOfJobs, activeJobId).
Markers = tuple[int | None, str | None]


@dataclass(frozen=True)
class Branch:
    """A branch as ListBranches reports it, with the two fields that say whether it changed."""

    key: BranchKey
    app_name: str
    active_job_id: str | None = None
    total_jobs: int | None = None
    display_name: str = ""

    @property
    def markers(self) -> Markers:
        return (self.total_jobs, self.active_job_id)


@dataclass(frozen=True)
class JobSummary:
    job_id: str
    status: str
    job_type: str = ""
    commit_id: str = ""
    commit_message: str = ""
    commit_time: datetime | None = None
    start_time: datetime | None = None
    end_time: datetime | None = None

    @property
    def number(self) -> int:
        return job_number(self.job_id)

    @property
    def duration_seconds(self) -> float | None:
        if self.start_time is None or self.end_time is None:
            return None
        return max(0.0, (self.end_time - self.start_time).total_seconds())


@dataclass(frozen=True)
class Step:
    name: str
    status: str
    start_time: datetime | None = None
    end_time: datetime | None = None
    log_url: str = ""
    status_reason: str = ""


@dataclass(frozen=True)
class JobDetail:
    """GetJob's answer: the summary plus its steps (BUILD, DEPLOY, VERIFY, ...)."""

    summary: JobSummary
    steps: tuple[Step, ...] = ()

    @property
    def failed_step(self) -> Step | None:
        for step in self.steps:
            if step.status in (FAILED, CANCELLED):
                return step
        return None


@dataclass(frozen=True)
class BranchState:
    """What the monitor remembers of one branch between polls (and across restarts).

    `unfinished` maps job id -> last seen status for every job still to be followed.
    `active_job_id` and `total_jobs` are ListBranches' change markers: when both are unchanged
    and nothing is unfinished, the branch has no news and ListJobs is skipped.
    """

    key: BranchKey
    app_name: str
    latest: JobSummary | None = None
    unfinished: dict[str, str] = field(default_factory=dict)
    last_success_time: datetime | None = None
    failing_job_id: str | None = None
    active_job_id: str | None = None
    total_jobs: int | None = None

    @property
    def markers(self) -> Markers:
        return (self.total_jobs, self.active_job_id)

    @property
    def last_job_number(self) -> int:
        return self.latest.number if self.latest else -1

    @property
    def has_unfinished(self) -> bool:
        return bool(self.unfinished)

    @property
    def in_flight(self) -> bool:
        """A job has started and not finished. A CREATED job (a manual deployment nobody
        started, maybe never) is still listed every interval, not every active interval."""
        return any(status != CREATED for status in self.unfinished.values())


@dataclass(frozen=True)
class Transition:
    """One job moving from one status to another; from_status is None for a job first seen."""

    key: BranchKey
    job: JobSummary
    from_status: str | None
    to_status: str


# "progress": a step in a job's story (started, running, ended) for a route that keeps one
# living message per job (`notify_start`); wanted nowhere else.
AlertKind = Literal["failure", "recovery", "progress"]


@dataclass(frozen=True)
class Alert:
    """Something a person should hear about. Its dedup_key makes delivery idempotent."""

    key: BranchKey
    app_name: str
    kind: AlertKind
    job: JobSummary
    last_success_time: datetime | None = None
    # For a recovery: the failed job whose message it answers (Slack thread).
    failed_job_id: str | None = None
    steps: tuple[Step, ...] = ()
    # The console hostname of the app, for links; filled in by the poller when known.
    region: str = ""
    # The deployed branch's own site (https://<branch display name>.<app default domain>),
    # filled in by the poller from what ListApps and ListBranches already said.
    branch_url: str = ""

    @property
    def status(self) -> str:
        return self.job.status

    @property
    def dedup_key(self) -> str:
        return dedup_key(self.key, self.job.job_id, self.job.status)

    @property
    def failed_step(self) -> Step | None:
        return JobDetail(self.job, self.steps).failed_step

    @property
    def job_key(self) -> str:
        return job_key(self.key, self.job.job_id)


def dedup_key(key: BranchKey, job_id: str, status: str) -> str:
    return f"{key.app_id}/{key.branch}/{job_id}/{status}"


def job_key(key: BranchKey, job_id: str) -> str:
    """One job, whatever its status: the key its Slack message is remembered under."""
    return f"{key.app_id}/{key.branch}/{job_id}"


@dataclass(frozen=True)
class MessageRef:
    """The Slack message that tells one job's story, kept in the store so updates and thread
    replies still find it after a restart.

    :param receipt: the notifier's handle (Slack: "<channel id>:<ts>").
    :param payload: what the message shows now (the notifier's own encoding), so that a later
        update (a recovery's "recovered" line) can keep the rest of it.
    """

    receipt: str
    payload: str = ""


@dataclass(frozen=True)
class Anomaly:
    """Something odd in the API's answer that the diff ignored; the caller logs and counts it."""

    key: BranchKey
    job_id: str
    reason: str
    detail: str = ""


@dataclass(frozen=True)
class DiffResult:
    state: BranchState
    transitions: tuple[Transition, ...] = ()
    alerts: tuple[Alert, ...] = ()
    anomalies: tuple[Anomaly, ...] = ()
    # A new job turned up on a branch whose ListBranches markers said "no news".
    unannounced: bool = False


@dataclass(frozen=True)
class OutboxEntry:
    """An alert waiting in (or delivered from) the store's outbox."""

    alert: Alert
    attempts: int = 0
    created_at: float = 0.0
    next_attempt_at: float = 0.0
    last_error: str = ""
    # When a send of it was first begun. Set before the request leaves, so after a crash it says
    # "the receiver may have it already": the notifier then looks before posting again.
    first_attempt_at: float | None = None
