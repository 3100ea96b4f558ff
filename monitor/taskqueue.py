"""The scheduler's bookkeeping: one entry per task, each with a due time and a priority.

Asking again for a task only moves its entry (like a set-keyed queue), so slow work can never
pile up duplicates, and a task being run is never handed out twice. Of the tasks that are due,
the most urgent comes first, then the one due longest. Pure: the caller owns the clock.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

from monitor.model import Priority

T = TypeVar("T", bound=Hashable)


@dataclass(frozen=True)
class Entry:
    due: float
    priority: Priority
    seq: int


class TaskQueue(Generic[T]):
    def __init__(self) -> None:
        self._entries: dict[T, Entry] = {}
        self._running: set[T] = set()
        # Heaps with lazy deletion: an item whose seq no longer matches its entry is stale.
        self._timers: list[tuple[float, int, T]] = []
        self._ready: list[tuple[Priority, float, int, T]] = []
        self._seq = itertools.count()

    def __contains__(self, task: T) -> bool:
        return task in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def entry(self, task: T) -> Entry | None:
        return self._entries.get(task)

    @property
    def running(self) -> int:
        return len(self._running)

    def at(self, task: T, when: float, priority: Priority) -> None:
        """Plan `task` at `when`, replacing any earlier plan for it."""
        entry = Entry(when, priority, next(self._seq))
        self._entries[task] = entry
        if task not in self._running:
            heapq.heappush(self._timers, (entry.due, entry.seq, task))

    def at_latest(self, task: T, when: float, priority: Priority) -> None:
        """Plan `task` at `when` unless it is due sooner; the more urgent priority wins."""
        old = self._entries.get(task)
        if old is not None:
            when, priority = min(when, old.due), min(priority, old.priority)
            if (when, priority) == (old.due, old.priority):
                return
        self.at(task, when, priority)

    def remove(self, task: T) -> None:
        self._entries.pop(task, None)

    def _valid(self, task: T, seq: int) -> bool:
        entry = self._entries.get(task)
        return entry is not None and entry.seq == seq and task not in self._running

    def _promote(self, now: float) -> None:
        while self._timers and self._timers[0][0] <= now:
            due, seq, task = heapq.heappop(self._timers)
            if self._valid(task, seq):
                heapq.heappush(self._ready, (self._entries[task].priority, due, seq, task))

    def take(self, now: float) -> tuple[T, Entry] | None:
        """The most urgent due task, now marked running (hand it back with `done`)."""
        self._promote(now)
        while self._ready:
            _priority, _due, seq, task = heapq.heappop(self._ready)
            if self._valid(task, seq):
                entry = self._entries.pop(task)
                self._running.add(task)
                return task, entry
        return None

    def done(self, task: T) -> None:
        """`task` finished; if it was planned again meanwhile, that plan is live now."""
        self._running.discard(task)
        entry = self._entries.get(task)
        if entry is not None:
            heapq.heappush(self._timers, (entry.due, entry.seq, task))

    def next_due(self) -> float | None:
        """When the next task that can be taken is due (in the past if one is waiting)."""
        while self._ready and not self._valid(self._ready[0][3], self._ready[0][2]):
            heapq.heappop(self._ready)
        if self._ready:
            return self._ready[0][1]
        while self._timers and not self._valid(self._timers[0][2], self._timers[0][1]):
            heapq.heappop(self._timers)
        return self._timers[0][0] if self._timers else None
