"""Due times for the work the daemon repeats: discovery, each app, each busy branch.

One entry per task (asking again only moves its due time, like a set-keyed queue), so a slow
cycle can never pile up duplicate polls. Pure bookkeeping: the caller owns the clock.
"""

from __future__ import annotations

from dataclasses import dataclass

from monitor.model import BranchKey


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


class Schedule:
    def __init__(self) -> None:
        self._due: dict[Task, float] = {}

    def __contains__(self, task: Task) -> bool:
        return task in self._due

    def __len__(self) -> int:
        return len(self._due)

    def at(self, task: Task, when: float) -> None:
        """Schedule `task` at `when`, replacing any earlier plan for it."""
        self._due[task] = when

    def at_latest(self, task: Task, when: float) -> None:
        """Schedule `task` at `when` unless it is already due sooner."""
        self._due[task] = min(when, self._due.get(task, when))

    def remove(self, task: Task) -> None:
        self._due.pop(task, None)

    def pop_due(self, now: float) -> list[Task]:
        due = [task for task, when in self._due.items() if when <= now]
        for task in due:
            del self._due[task]
        return due

    def next_due(self) -> float | None:
        return min(self._due.values(), default=None)
