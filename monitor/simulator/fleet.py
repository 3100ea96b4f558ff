"""The simulator's world: apps -> branches -> jobs, each job following a scripted timeline.

A job's status and steps are computed from the clock when read, so a manual clock makes every
transition deterministic. `Fleet` is also the scripting API tests and the demo use; it knows
nothing of HTTP (the server turns its objects into wire shapes).
"""

from __future__ import annotations

import hashlib
import math
import random
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from monitor.model import (
    CANCELLED,
    CANCELLING,
    CREATED,
    FAILED,
    PENDING,
    PROVISIONING,
    RUNNING,
    SUCCEED,
    is_unfinished,
)

Clock = Callable[[], float]

STEPS: tuple[str, ...] = ("BUILD", "DEPLOY", "VERIFY")
OUTCOMES: frozenset[str] = frozenset({SUCCEED, FAILED, CANCELLED})
JOB_TYPES: frozenset[str] = frozenset({"RELEASE", "RETRY", "MANUAL", "WEB_HOOK"})


def wall_clock() -> Clock:
    """Epoch seconds that never jump backwards: anchored on time.time(), advanced by monotonic."""
    base_wall, base_mono = time.time(), time.monotonic()
    return lambda: base_wall + (time.monotonic() - base_mono)


class ManualClock:
    """A clock tests move by hand; starts at a fixed, realistic epoch."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class ApiError(Exception):
    """An error the API answers with; `code` is the botocore error shape name."""

    code = "InternalFailureException"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(ApiError):
    code = "BadRequestException"


class NotFound(ApiError):
    code = "NotFoundException"


@dataclass(frozen=True)
class Durations:
    """Seconds spent in each status; RUNNING is split evenly over the steps."""

    pending: float = 1.0
    provisioning: float = 1.0
    running: float = 3.0
    cancelling: float = 1.0

    @classmethod
    def of(cls, value: Durations | Mapping[str, float] | None) -> Durations | None:
        """Accept `{"PENDING": 1, "RUNNING": 3, ...}` too, for brevity in tests."""
        if value is None or isinstance(value, Durations):
            return value
        return cls(**{k.lower(): float(v) for k, v in value.items()})


@dataclass(frozen=True)
class Script:
    """How a job will end. A CANCELLED outcome behaves as if stopped halfway through RUNNING."""

    outcome: str = SUCCEED
    fail_step: str = "BUILD"
    reason: str = ""
    durations: Durations | None = None

    def __post_init__(self) -> None:
        if self.outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {sorted(OUTCOMES)}, not {self.outcome!r}")
        if self.fail_step not in STEPS:
            raise ValueError(f"fail_step must be one of {STEPS}, not {self.fail_step!r}")


@dataclass(frozen=True)
class StepState:
    name: str
    status: str
    start: float
    end: float
    reason: str = ""


@dataclass
class Upload:
    """What arrived at a CreateDeployment upload URL."""

    name: str
    size: int | None = None
    sha256: str | None = None


@dataclass
class Job:
    job_id: str
    job_type: str
    created_at: float
    commit_id: str
    commit_message: str
    commit_time: float
    script: Script
    durations: Durations
    # None while a CreateDeployment job waits for StartDeployment (status CREATED).
    started_at: float | None
    stop_at: float | None = None
    source_url: str = ""
    source_url_type: str = ""
    uploads: list[Upload] = field(default_factory=list)

    @property
    def number(self) -> int:
        return int(self.job_id)

    @property
    def start_time(self) -> float:
        return self.started_at if self.started_at is not None else self.created_at

    def begin(self, at: float, script: Script, durations: Durations) -> None:
        """Start the job's timeline at `at` following `script`."""
        self.started_at, self.script, self.durations = at, script, durations
        if script.outcome == CANCELLED:
            self.stop_at = self._steps_start() + durations.running / 2

    def _steps_start(self) -> float:
        if self.started_at is None:
            return math.inf
        return self.started_at + self.durations.pending + self.durations.provisioning

    def _natural_end(self) -> float:
        """When the job would end if nobody stopped it."""
        step_len = self.durations.running / len(STEPS)
        done = len(STEPS)
        if self.script.outcome == FAILED:
            done = STEPS.index(self.script.fail_step) + 1
        return self._steps_start() + done * step_len

    def _effective_stop(self) -> float | None:
        if self.stop_at is not None and self.stop_at < self._natural_end():
            return self.stop_at
        return None

    def status(self, now: float) -> str:
        stop = self._effective_stop()
        if stop is not None and now >= stop:
            return CANCELLING if now < stop + self.durations.cancelling else CANCELLED
        if self.started_at is None:
            return CREATED
        if now < self.started_at + self.durations.pending:
            return PENDING
        if now < self._steps_start():
            return PROVISIONING
        if now < self._natural_end():
            return RUNNING
        # A scripted cancel has its stop_at set at creation, so it never reaches this line.
        return self.script.outcome

    def end_time(self, now: float) -> float | None:
        stop = self._effective_stop()
        end = self._natural_end() if stop is None else stop + self.durations.cancelling
        return end if now >= end else None

    def steps(self, now: float) -> list[StepState]:
        step_len = self.durations.running / len(STEPS)
        stop = self._effective_stop()
        out: list[StepState] = []
        for i, name in enumerate(STEPS):
            start = self._steps_start() + i * step_len
            end = start + step_len
            if now < start or (stop is not None and stop <= start):
                break
            if stop is not None and stop < end and now >= stop:
                out.append(
                    StepState(name, CANCELLED, start, stop, f"Job {self.job_id} was stopped")
                )
                break
            if now < end:
                # The model requires endTime even for a step in progress: report "so far".
                out.append(StepState(name, RUNNING, start, now))
                break
            if self.script.outcome == FAILED and name == self.script.fail_step:
                reason = self.script.reason or f"{name} failed"
                out.append(StepState(name, FAILED, start, end, reason))
                break
            out.append(StepState(name, SUCCEED, start, end))
        return out


@dataclass
class Branch:
    name: str
    seq: int
    created_at: float
    stage: str
    framework: str
    jobs: list[Job] = field(default_factory=list)
    next_script: Script | None = None

    @property
    def latest(self) -> Job | None:
        return self.jobs[-1] if self.jobs else None

    def updated_at(self) -> float:
        return self.latest.start_time if self.latest else self.created_at


@dataclass
class App:
    app_id: str
    name: str
    seq: int
    created_at: float
    platform: str
    repository: str
    branches: dict[str, Branch] = field(default_factory=dict)


_COMMIT_MESSAGES = (
    "Fix header layout on mobile",
    "Bump dependencies",
    "Add checkout analytics",
    "Refactor build config",
    "Update copy on landing page",
    "Merge pull request #42 from feature/search",
)
_FAIL_REASONS = {
    "BUILD": ("npm ERR! code ELIFECYCLE", "Build timed out after 30 minutes"),
    "DEPLOY": ("Failed to upload artifacts: AccessDenied", "CloudFront invalidation failed"),
    "VERIFY": ("Smoke test failed: GET / returned 502",),
}


@dataclass(frozen=True)
class Workload:
    """Seeded jobs for benchmarks: on average `starts_per_minute` jobs per branch a minute, as one
    Poisson stream over the fleet (spread out, never a burst), each lasting a uniform `seconds`
    from start to end; `failed` and `cancelled` are the shares of those outcomes. A branch with a
    job in flight starts no other: another, idle branch gets the job."""

    starts_per_minute: float = 0.05
    seconds: tuple[float, float] = (10.0, 40.0)
    failed: float = 0.2
    cancelled: float = 0.05

    def __post_init__(self) -> None:
        low, high = self.seconds
        if self.starts_per_minute <= 0:
            raise ValueError("starts_per_minute must be positive")
        if not 0 < low <= high:
            raise ValueError("seconds must be a range (low, high) with 0 < low <= high")
        if self.failed < 0 or self.cancelled < 0 or self.failed + self.cancelled > 1:
            raise ValueError("failed and cancelled must be shares that add up to at most 1")


@dataclass
class _WorkloadRun:
    workload: Workload
    rng: random.Random
    branches: list[tuple[str, Branch]]
    next_at: float
    until: float
    jobs: list[tuple[str, str, Job]] = field(default_factory=list)


def lasting(seconds: float, script: Script) -> Durations:
    """Durations that make a job following `script` end exactly `seconds` after it starts."""
    queued = seconds / 10  # each of PENDING and PROVISIONING (and CANCELLING, when it applies)
    rest = seconds - 2 * queued
    if script.outcome == FAILED:
        # RUNNING is split over the steps; the job ends with its failing step.
        running = rest * len(STEPS) / (STEPS.index(script.fail_step) + 1)
    elif script.outcome == CANCELLED:
        # Stopped halfway through RUNNING, then CANCELLING for `queued` seconds.
        running = 2 * (rest - queued)
    else:
        running = rest
    return Durations(queued, queued, running, queued)


@dataclass
class _Traffic:
    """The demo's background activity: a seeded schedule of jobs, replayed as the clock moves."""

    rng: random.Random
    next_at: float
    min_gap: float = 3.0
    max_gap: float = 8.0


class Fleet:
    """All apps, branches and jobs of one fake AWS account, plus the scripting API."""

    def __init__(
        self,
        clock: Clock | None = None,
        *,
        seed: int = 0,
        durations: Durations | Mapping[str, float] | None = None,
        region: str = "us-east-1",
        account_id: str = "123456789012",
    ) -> None:
        self.clock: Clock = clock or wall_clock()
        self.region = region
        self.account_id = account_id
        self.durations = Durations.of(durations) or Durations()
        self._rng = random.Random(seed)
        self._apps: dict[str, App] = {}
        self._seq = 0
        self._uploads: dict[str, tuple[Job, Upload]] = {}
        self._traffic: _Traffic | None = None
        self._workload: _WorkloadRun | None = None

    def now(self) -> float:
        return self.clock()

    # -- reading --------------------------------------------------------------------------

    def apps(self) -> list[App]:
        self.tick()
        return list(self._apps.values())

    def app(self, app_id: str) -> App:
        self.tick()
        try:
            return self._apps[app_id]
        except KeyError:
            raise NotFound(f"App {app_id} not found.") from None

    def branch(self, app_id: str, branch: str) -> Branch:
        try:
            return self.app(app_id).branches[branch]
        except KeyError:
            raise NotFound(f"Branch {branch} not found for app {app_id}.") from None

    def job(self, app_id: str, branch: str, job_id: str) -> Job:
        for job in self.branch(app_id, branch).jobs:
            if job.job_id == job_id:
                return job
        raise NotFound(f"Job {job_id} not found for branch {branch}.")

    def job_status(self, app_id: str, branch: str, job_id: str) -> str:
        return self.job(app_id, branch, job_id).status(self.now())

    # -- scripting ------------------------------------------------------------------------

    def add_app(
        self,
        name: str,
        *,
        app_id: str | None = None,
        platform: str = "WEB",
        repository: str = "",
    ) -> str:
        app_id = app_id or self._new_app_id()
        if app_id in self._apps:
            raise ValueError(f"app {app_id} exists")
        self._seq += 1
        repository = repository or f"https://github.com/example/{name}"
        self._apps[app_id] = App(app_id, name, self._seq, self.now(), platform, repository)
        return app_id

    def add_branch(
        self, app_id: str, name: str, *, stage: str | None = None, framework: str = "React"
    ) -> str:
        app = self.app(app_id)
        if name in app.branches:
            raise ValueError(f"branch {name} exists in {app_id}")
        self._seq += 1
        stage = stage or ("PRODUCTION" if name in ("main", "master") else "DEVELOPMENT")
        app.branches[name] = Branch(name, self._seq, self.now(), stage, framework)
        return name

    def delete_branch(self, app_id: str, branch: str) -> None:
        self.branch(app_id, branch)
        del self._apps[app_id].branches[branch]

    def delete_app(self, app_id: str) -> None:
        self.app(app_id)
        del self._apps[app_id]

    def start_job(
        self,
        app_id: str,
        branch: str,
        *,
        outcome: str = SUCCEED,
        fail_step: str = "BUILD",
        reason: str = "",
        commit_message: str | None = None,
        commit_id: str | None = None,
        job_type: str = "RELEASE",
        durations: Durations | Mapping[str, float] | None = None,
        at: float | None = None,
    ) -> str:
        """Start a scripted job now (or at `at`, to back-date history). Never refused."""
        script = Script(outcome, fail_step, reason, Durations.of(durations))
        job = self._new_job(self.branch(app_id, branch), script, job_type, at=at)
        job.commit_message = commit_message if commit_message is not None else job.commit_message
        job.commit_id = commit_id if commit_id is not None else job.commit_id
        return job.job_id

    def set_next_outcome(
        self,
        app_id: str,
        branch: str,
        outcome: str,
        *,
        fail_step: str = "BUILD",
        reason: str = "",
        durations: Durations | Mapping[str, float] | None = None,
    ) -> None:
        """Script the next job started through the API (StartJob/StartDeployment); one-shot."""
        script = Script(outcome, fail_step, reason, Durations.of(durations))
        self.branch(app_id, branch).next_script = script

    def stop_job(self, app_id: str, branch: str, job_id: str) -> Job:
        job = self.job(app_id, branch, job_id)
        now = self.now()
        status = job.status(now)
        if not is_unfinished(status):
            raise BadRequest(f"Job {job_id} is already finished with status {status}.")
        if status != CANCELLING:
            job.stop_at = now
        return job

    # -- API-driven jobs ------------------------------------------------------------------

    def api_start_job(
        self,
        app_id: str,
        branch: str,
        job_type: str,
        *,
        retry_of: str | None = None,
        commit_id: str | None = None,
        commit_message: str | None = None,
        commit_time: float | None = None,
    ) -> Job:
        b = self.branch(app_id, branch)
        base = None
        if job_type == "RETRY":
            if not retry_of:
                raise BadRequest("jobId is required when jobType is RETRY.")
            base = self.job(app_id, branch, retry_of)
        self._refuse_if_busy(b, "job", "starting a new job")
        job = self._new_job(b, self._take_script(b), job_type)
        if base is not None:
            job.commit_id, job.commit_message = base.commit_id, base.commit_message
            job.commit_time = base.commit_time
        job.commit_id = commit_id or job.commit_id
        job.commit_message = commit_message if commit_message is not None else job.commit_message
        job.commit_time = commit_time if commit_time is not None else job.commit_time
        return job

    def create_deployment(
        self, app_id: str, branch: str, files: list[str]
    ) -> tuple[Job, dict[str, str]]:
        """Reserve a CREATED job; returns it and upload tokens keyed by file name ("" = zip)."""
        b = self.branch(app_id, branch)
        job = self._new_job(b, Script(), "MANUAL", started=False)
        job.commit_id, job.commit_message = "HEAD", "Manual deployment"
        tokens: dict[str, str] = {}
        for name in ["", *files]:
            token = uuid.uuid4().hex
            upload = Upload(name)
            job.uploads.append(upload)
            self._uploads[token] = (job, upload)
            tokens[name] = token
        return job, tokens

    def upload_target(self, token: str) -> Upload:
        try:
            return self._uploads[token][1]
        except KeyError:
            raise NotFound("Upload URL is unknown or expired.") from None

    def start_deployment(
        self,
        app_id: str,
        branch: str,
        *,
        job_id: str | None = None,
        source_url: str | None = None,
        source_url_type: str | None = None,
    ) -> Job:
        b = self.branch(app_id, branch)
        if not job_id and not source_url:
            raise BadRequest("Must specify jobId or sourceUrl for StartDeploymentRequest.")
        if job_id:
            job = self.job(app_id, branch, job_id)
            if job.started_at is not None or job.stop_at is not None:
                raise BadRequest(f"Job {job_id} has already been started.")
            self._refuse_if_busy(b, "job(deployment)", "creating a new deployment", skip=job)
            script = self._take_script(b)
            if not any(u.size is not None for u in job.uploads):
                # Amplify would find no artifact to deploy; the job fails rather than the call.
                script = Script(FAILED, "DEPLOY", "No deployment artifact was uploaded.")
            job.begin(self.now(), script, script.durations or self.durations)
            return job
        self._refuse_if_busy(b, "job(deployment)", "creating a new deployment")
        job = self._new_job(b, self._take_script(b), "MANUAL")
        job.commit_id, job.commit_message = "HEAD", "Manual deployment"
        job.source_url, job.source_url_type = source_url or "", source_url_type or "ZIP"
        return job

    # -- background traffic ---------------------------------------------------------------

    def start_workload(self, workload: Workload, seconds: float, *, seed: int = 0) -> None:
        """Start `workload` now, over the branches that exist now; it starts jobs for `seconds`.
        Replayed by `tick()` like the demo traffic, so the same seed gives the same jobs."""
        rng = random.Random(seed)
        branches = [(a.app_id, b) for a in self._apps.values() for b in a.branches.values()]
        if not branches:
            raise ValueError("the fleet has no branches")
        now = self.now()
        run = _WorkloadRun(workload, rng, branches, now, now + seconds)
        run.next_at = now + self._workload_gap(run)
        self._workload = run

    def workload_jobs(self) -> list[tuple[str, str, Job]]:
        """(app_id, branch, job) for every job the workload started so far, oldest first."""
        self.tick()
        return list(self._workload.jobs) if self._workload is not None else []

    def tick(self) -> None:
        """Replay the demo traffic and the workload up to now. Jobs are back-dated to their slot,
        so the outcome depends only on the clock, not on how often anyone calls this."""
        self._tick_workload()
        traffic = self._traffic
        if traffic is None:
            return
        now = self.clock()
        # After a long pause (laptop asleep), skip ahead rather than replaying hours of jobs.
        if now - traffic.next_at > 100 * traffic.max_gap:
            traffic.next_at = now
        while traffic.next_at <= now:
            at = traffic.next_at
            traffic.next_at += traffic.rng.uniform(traffic.min_gap, traffic.max_gap)
            idle = [
                b
                for app in self._apps.values()
                for b in app.branches.values()
                if b.latest is None or not is_unfinished(b.latest.status(at))
            ]
            if not idle:
                continue
            b = traffic.rng.choice(idle)
            script = _random_script(traffic.rng)
            job_type = traffic.rng.choice(("WEB_HOOK", "WEB_HOOK", "RELEASE"))
            self._new_job(b, script, job_type, at=at)

    def _workload_gap(self, run: _WorkloadRun) -> float:
        per_second = run.workload.starts_per_minute * len(run.branches) / 60.0
        return run.rng.expovariate(per_second)

    def _tick_workload(self) -> None:
        run = self._workload
        if run is None:
            return
        now = self.clock()
        while run.next_at <= now and run.next_at < run.until:
            at = run.next_at
            run.next_at += self._workload_gap(run)
            app_id, branch = run.rng.choice(run.branches)
            script = self._workload_script(run)
            if _busy(branch, at):
                idle = [(a, b) for a, b in run.branches if not _busy(b, at)]
                if not idle:
                    continue
                app_id, branch = run.rng.choice(idle)
            job = self._new_job(branch, script, "WEB_HOOK", at=at)
            run.jobs.append((app_id, branch.name, job))

    def _workload_script(self, run: _WorkloadRun) -> Script:
        w, rng = run.workload, run.rng
        roll = rng.random()
        seconds = rng.uniform(*w.seconds)
        step = rng.choices(STEPS, weights=(6, 3, 1))[0]
        if roll < w.failed:
            script = Script(FAILED, step, rng.choice(_FAIL_REASONS[step]))
        elif roll < w.failed + w.cancelled:
            script = Script(CANCELLED)
        else:
            script = Script(SUCCEED)
        return Script(script.outcome, script.fail_step, script.reason, lasting(seconds, script))

    # -- factories ------------------------------------------------------------------------

    @classmethod
    def idle(
        cls,
        apps: int = 200,
        branches: int = 5,
        jobs_per_branch: int = 3,
        *,
        clock: Clock | None = None,
        seed: int = 0,
    ) -> Fleet:
        """A large, quiet account: every job finished long ago, all succeeded."""
        fleet = cls(clock, seed=seed)
        now = fleet.now()
        for a in range(apps):
            app_id = fleet.add_app(f"app-{a:04d}")
            for b in range(branches):
                name = "main" if b == 0 else f"feature/topic-{b}"
                fleet.add_branch(app_id, name)
                for j in range(jobs_per_branch):
                    at = now - 3600.0 * (jobs_per_branch - j) - 60.0 * b
                    fleet.start_job(app_id, name, at=at)
        return fleet

    @classmethod
    def demo(cls, *, clock: Clock | None = None, seed: int = 7) -> Fleet:
        """A handful of apps with seeded traffic every few seconds; some jobs fail or cancel."""
        fleet = cls(clock, seed=seed, durations=Durations(3.0, 4.0, 15.0, 2.0))
        now = fleet.now()
        layout = {
            "storefront": ("main", "develop", "feature/checkout-v2"),
            "docs-site": ("main", "release/2024.06"),
            "admin-console": ("main", "develop"),
            "marketing": ("main",),
            "blog": ("main", "preview/redesign"),
        }
        for name, branch_names in layout.items():
            app_id = fleet.add_app(name)
            for bn in branch_names:
                fleet.add_branch(app_id, bn)
                for j in range(3):
                    # One branch starts out broken, so a fresh monitor has something to show.
                    broken = (name, bn, j) == ("admin-console", "develop", 2)
                    fleet.start_job(
                        app_id,
                        bn,
                        outcome=FAILED if broken else SUCCEED,
                        reason="npm ERR! code ELIFECYCLE" if broken else "",
                        at=now - 1800.0 * (3 - j),
                        job_type="WEB_HOOK",
                    )
        fleet._traffic = _Traffic(random.Random(seed), next_at=now + 2.0)
        return fleet

    # -- internals ------------------------------------------------------------------------

    def _new_app_id(self) -> str:
        alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
        while True:
            app_id = "d" + "".join(self._rng.choice(alphabet) for _ in range(13))
            if app_id not in self._apps:
                return app_id

    def _take_script(self, branch: Branch) -> Script:
        script, branch.next_script = branch.next_script or Script(), None
        return script

    def _refuse_if_busy(self, b: Branch, noun: str, doing: str, skip: Job | None = None) -> None:
        # Amplify looks at the branch's latest job; a deployment still waiting for its upload
        # (CREATED) has not started anything, so it does not block.
        now = self.now()
        for job in reversed(b.jobs):
            if job is skip or job.status(now) == CREATED:
                continue
            if is_unfinished(job.status(now)):
                raise BadRequest(
                    f"The last {noun} {job.job_id} was not finished, please wait until it finish"
                    f" or use StopJob operation to cancel it before {doing}."
                )
            return

    def _new_job(
        self,
        branch: Branch,
        script: Script,
        job_type: str,
        *,
        at: float | None = None,
        started: bool = True,
    ) -> Job:
        at = self.now() if at is None else at
        number = branch.latest.number + 1 if branch.latest else 1
        digest = hashlib.sha256(f"{branch.name}/{number}/{self._rng.random()}".encode())
        job = Job(
            job_id=str(number),
            job_type=job_type,
            created_at=at,
            commit_id=digest.hexdigest()[:40],
            commit_message=self._rng.choice(_COMMIT_MESSAGES),
            commit_time=at - self._rng.uniform(5.0, 300.0),
            script=script,
            durations=script.durations or self.durations,
            started_at=None,
        )
        if started:
            job.begin(at, script, job.durations)
        branch.jobs.append(job)
        return job


def _busy(branch: Branch, at: float) -> bool:
    latest = branch.latest
    return latest is not None and is_unfinished(latest.status(at))


def _random_script(rng: random.Random) -> Script:
    roll = rng.random()
    if roll < 0.65:
        return Script(SUCCEED)
    if roll < 0.9:
        step = rng.choices(STEPS, weights=(6, 3, 1))[0]
        return Script(FAILED, step, rng.choice(_FAIL_REASONS[step]))
    return Script(CANCELLED)
