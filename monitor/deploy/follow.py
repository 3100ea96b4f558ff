"""Following one job to its end: GetJob at a steady pace, every change reported once.

Owns the polling cadence (short while a job is young, gently longer for long jobs) and the rule
that an unanswered poll -- throttling, a dropped connection, a 5xx -- only delays the next one:
waiting never fails for those. What a verdict means for the exit code is decided elsewhere.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

import anyio

from monitor.amplify import Throttled, Transient
from monitor.deploy.events import Event, Finished, Retrying, Target, job_changes
from monitor.model import RUNNING, BranchKey, JobDetail, is_terminal

INTERVAL_ENV = "AMPLIFY_MONITOR_WAIT_INTERVAL"


@dataclass(frozen=True)
class PollPolicy:
    """How often to ask. Every duration scales with `interval`, so a test can shrink them all."""

    interval: float = 2.0
    # A job still running after this long is a long job: its steps take minutes, not seconds.
    slow_after: float = 120.0
    max_interval: float = 15.0
    max_retry_delay: float = 60.0

    @classmethod
    def scaled(cls, interval: float) -> PollPolicy:
        return cls(
            interval=interval,
            slow_after=60 * interval,
            max_interval=7.5 * interval,
            max_retry_delay=30 * interval,
        )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> PollPolicy:
        raw = (os.environ if env is None else env).get(INTERVAL_ENV, "").strip()
        if not raw:
            return cls()
        try:
            interval = float(raw)
        except ValueError:
            raise ValueError(f"{INTERVAL_ENV}={raw!r} is not a number of seconds") from None
        if not interval > 0:
            raise ValueError(f"{INTERVAL_ENV} must be > 0")
        return cls.scaled(interval)

    def next_interval(self, elapsed: float) -> float:
        """The pause before the next poll: `interval`, growing linearly once the job is long."""
        if elapsed <= self.slow_after:
            return self.interval
        return min(self.max_interval, self.interval * elapsed / self.slow_after)

    def retry_delay(self, failures: int, elapsed: float) -> float:
        """After `failures` unanswered polls in a row: double each time, within a ceiling."""
        return min(self.max_retry_delay, self.next_interval(elapsed) * 2.0 ** max(1, failures))


class JobReader(Protocol):
    async def get_job(self, key: BranchKey, job_id: str) -> JobDetail: ...


class Follower:
    """Polls one job until it is terminal. `last` is the latest answer, for a caller that
    stops early (timeout, signal) and must still say where the job was."""

    def __init__(
        self,
        client: JobReader,
        target: Target,
        job_id: str,
        *,
        policy: PollPolicy,
        emit: Callable[[Event], None],
        clock: Callable[[], float] = anyio.current_time,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    ) -> None:
        self._client = client
        self.target = target
        self.job_id = job_id
        self._policy = policy
        self._emit = emit
        self._clock = clock
        self._sleep = sleep
        self.last: JobDetail | None = None
        self.started_at = clock()

    @property
    def elapsed(self) -> float:
        return self._clock() - self.started_at

    @property
    def status(self) -> str:
        """The last status read, or "" before the first answer."""
        return self.last.summary.status if self.last else ""

    @property
    def current_step(self) -> str | None:
        """The step under way (or the last one seen), for the live line."""
        if self.last is None or not self.last.steps:
            return None
        running = [s.name for s in self.last.steps if s.status == RUNNING]
        return running[-1] if running else self.last.steps[-1].name

    async def run(self) -> Finished:
        failures = 0
        while True:
            elapsed = self.elapsed
            try:
                detail = await self._client.get_job(self.target.key, self.job_id)
            except (Throttled, Transient) as exc:
                failures += 1
                delay = self._policy.retry_delay(failures, elapsed)
                reason = "throttled" if isinstance(exc, Throttled) else f"failed ({exc.detail})"
                self._emit(Retrying("GetJob", reason, delay))
                await self._sleep(delay)
                continue
            failures = 0
            for change in job_changes(self.last, detail, elapsed):
                self._emit(change)
            self.last = detail
            if is_terminal(detail.summary.status):
                return Finished(self.target, detail, elapsed)
            await self._sleep(self._policy.next_interval(elapsed))
