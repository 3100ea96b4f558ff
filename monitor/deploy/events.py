"""What `deploy` and `wait` report, as values, and the exit codes a CI system branches on.

Owns the event vocabulary, the pure step/status change detection between two GetJob answers,
the status -> exit code mapping, and the links and commands printed for a person (console URL,
resume and stop-job hints). No I/O and no clock: elapsed times are passed in.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from urllib.parse import quote

from monitor.model import CANCELLED, FAILED, SUCCEED, BranchKey, JobDetail, Step, is_terminal

# Public contract: documented in the README, relied on by CI scripts. Do not renumber.
EXIT_SUCCEED = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_CANCELLED = 3
EXIT_TIMEOUT = 4

_EXIT_BY_STATUS = {SUCCEED: EXIT_SUCCEED, FAILED: EXIT_FAILED, CANCELLED: EXIT_CANCELLED}


def exit_code(status: str) -> int:
    """Exit code for a terminal job status (a status the API might add later counts as failed)."""
    return _EXIT_BY_STATUS.get(status, EXIT_FAILED)


def signal_exit_code(signum: int) -> int:
    """Stopped by a signal: the shell convention 128 + N, so CI shows 'terminated', not 'failed'."""
    return 128 + signum


@dataclass(frozen=True)
class Target:
    """Where a deployment goes, and how to reach the API again (for the printed hints)."""

    key: BranchKey
    region: str
    endpoint_url: str | None = None
    config: str | None = None

    def console_url(self, job_id: str | None = None) -> str:
        # The same deep link the Slack alerts carry. A branch name may hold '/', and must stay
        # one path segment.
        url = (
            f"https://{self.region}.console.aws.amazon.com/amplify/apps/"
            f"{quote(self.key.app_id, safe='')}/branches/{quote(self.key.branch, safe='')}"
        )
        return f"{url}/deployments/{quote(job_id, safe='')}" if job_id else url

    def _connection_args(self) -> list[str]:
        args = ["--region", self.region]
        if self.endpoint_url:
            args += ["--endpoint-url", self.endpoint_url]
        if self.config:
            args += ["--config", self.config]
        return args

    def resume_command(self, job_id: str) -> str:
        args = [
            "amplify-monitor",
            "wait",
            "--app",
            self.key.app_id,
            "--branch",
            self.key.branch,
            "--job",
            job_id,
            *self._connection_args(),
        ]
        return shlex.join(args)

    def stop_command(self, job_id: str) -> str:
        args = [
            "aws",
            "amplify",
            "stop-job",
            "--app-id",
            self.key.app_id,
            "--branch-name",
            self.key.branch,
            "--job-id",
            job_id,
            "--region",
            self.region,
        ]
        return shlex.join(args)


# --- events -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Prepared:
    """The archive is ready to upload."""

    source: str
    files: int
    content_bytes: int
    archive_bytes: int
    built: bool


@dataclass(frozen=True)
class Uploaded:
    archive_bytes: int
    seconds: float
    attempts: int


@dataclass(frozen=True)
class Started:
    """The job exists: printed at once, so a CI log has its id and link even if killed."""

    target: Target
    job_id: str
    waiting: bool


@dataclass(frozen=True)
class Watching:
    """`wait` found the job it will follow."""

    target: Target
    job_id: str


@dataclass(frozen=True)
class JobChange:
    """The job's own status moved (from_status None: first sighting)."""

    job_id: str
    from_status: str | None
    to_status: str
    elapsed: float


@dataclass(frozen=True)
class StepChange:
    job_id: str
    step: Step
    from_status: str | None
    elapsed: float

    @property
    def to_status(self) -> str:
        return self.step.status


@dataclass(frozen=True)
class Retrying:
    """A poll did not get an answer; waiting goes on after `delay` seconds."""

    operation: str
    reason: str
    delay: float


@dataclass(frozen=True)
class Finished:
    target: Target
    detail: JobDetail
    elapsed: float

    @property
    def status(self) -> str:
        return self.detail.summary.status

    @property
    def exit_code(self) -> int:
        return exit_code(self.status)


@dataclass(frozen=True)
class TimedOut:
    target: Target
    job_id: str
    status: str
    elapsed: float
    exit_code: int = EXIT_TIMEOUT


@dataclass(frozen=True)
class Interrupted:
    """A signal stopped the command. `job_id` None: no job was started."""

    target: Target
    job_id: str | None
    signal_name: str
    exit_code: int


@dataclass(frozen=True)
class Refused:
    """Amplify or the user's input said no: usage, config, credentials or an API refusal."""

    message: str
    target: Target | None = None
    unfinished_job_id: str | None = None
    exit_code: int = EXIT_USAGE


@dataclass(frozen=True)
class Note:
    """A side remark for a person (e.g. --notify could not deliver); never changes the exit."""

    message: str


Event = (
    Prepared
    | Uploaded
    | Started
    | Watching
    | JobChange
    | StepChange
    | Retrying
    | Finished
    | TimedOut
    | Interrupted
    | Refused
    | Note
)


def job_changes(
    previous: JobDetail | None, current: JobDetail, elapsed: float
) -> list[JobChange | StepChange]:
    """What moved between two GetJob answers, in the order a person would tell it.

    On the first sighting everything present is reported, so `wait` on a running job shows how
    far it got. A job that starts reports its own status before its steps; a job that ends
    reports its steps first, so the last line is the verdict.
    """
    job_id = current.summary.job_id
    old_status = previous.summary.status if previous else None
    new_status = current.summary.status
    job: list[JobChange | StepChange] = []
    if old_status != new_status:
        job.append(JobChange(job_id, old_status, new_status, elapsed))

    old_steps = {s.name: s.status for s in previous.steps} if previous else {}
    steps: list[JobChange | StepChange] = [
        StepChange(job_id, step, old_steps.get(step.name), elapsed)
        for step in current.steps
        if old_steps.get(step.name) != step.status
    ]
    return steps + job if is_terminal(new_status) else job + steps
