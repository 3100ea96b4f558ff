"""The scheduler's vocabulary: the tasks it plans, what the polling units tell it back, the
interface it runs them through, readiness, and each app's phase within the interval.

Values and pure functions only; the timing policy that uses them is monitor.scheduler.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Protocol

from monitor.model import BranchKey, Priority
from monitor.watch import Watched


@dataclass(frozen=True)
class Discover:
    pass


@dataclass(frozen=True)
class PollApp:
    app_id: str


@dataclass(frozen=True)
class PollBranch:
    key: BranchKey


Task = Discover | PollApp | PollBranch
DISCOVER = Discover()


@dataclass(frozen=True)
class Discovery:
    ok: bool
    added: frozenset[str] = frozenset()
    removed: frozenset[str] = frozenset()


@dataclass(frozen=True)
class AppPoll:
    """What one ListBranches found: branches to list now, to sweep, and those that left."""

    ok: bool
    changed: tuple[BranchKey, ...] = ()
    swept: tuple[BranchKey, ...] = ()
    dropped: tuple[BranchKey, ...] = ()


@dataclass(frozen=True)
class BranchPoll:
    ok: bool
    in_flight: bool = False


class Work(Protocol):
    """The polling units the scheduler runs (monitor.poller.Poller)."""

    watched: Watched
    calls_per_app: float  # ListBranches plus the sweep's share, per app and interval

    async def discover(self) -> Discovery: ...

    async def poll_app(self, app_id: str) -> AppPoll: ...

    async def poll_branch(self, key: BranchKey, priority: Priority) -> BranchPoll: ...


class ScheduleObserver(Protocol):
    def schedule_lag(self, priority: str, seconds: float) -> None: ...

    def poll_done(self, seconds: float, succeeded: bool, now: float) -> None: ...


@dataclass
class Readiness:
    """Ready once every app of the first discovery was polled, and while polls keep succeeding."""

    stale_after: float
    discovered: bool = False
    never_polled: set[str] = field(default_factory=set)
    last_success: float | None = None

    def check(self, now: float) -> tuple[bool, str]:
        if not self.discovered:
            return False, "discovery has not succeeded yet"
        if self.never_polled:
            return False, f"{len(self.never_polled)} apps not polled yet"
        if self.last_success is None or now - self.last_success > self.stale_after:
            return False, "no successful poll recently"
        return True, "ready"


def phase(app_id: str, interval: float) -> float:
    """Where in each interval an app is polled: stable, and even over a fleet."""
    return zlib.crc32(app_id.encode()) / 2**32 * interval


def next_slot(app_id: str, interval: float, after: float) -> float:
    """The app's first slot after `after`. A poll that ran late skips the slots it missed
    instead of catching up in a burst: that is how idle apps stretch under a tight budget."""
    offset = phase(app_id, interval)
    return offset + ((after - offset) // interval + 1) * interval
