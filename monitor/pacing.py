"""Client-side pacing of Amplify API calls: a token bucket whose rate adapts to throttling, and
which hands its tokens to the most urgent waiter first.

botocore's retries handle one throttled call; this keeps the whole fleet's call rate under the
account's limit, halving on a throttle and creeping back up while calls succeed (AIMD). When the
bucket is empty, waiters are served by priority (lower first), then in arrival order, so the
GetJob of a failure never queues behind a thousand idle ListBranches.
"""

from __future__ import annotations

import heapq
import itertools
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

import anyio

# Float dust (0.9999999 tokens) must not ask for sleeps too short to move a clock forward.
_EPSILON = 1e-9


class BudgetShort(TimeoutError):
    """No token within the patience a call was given: the budget goes to more urgent work."""


@dataclass(order=True)
class _Waiter:
    priority: int
    seq: int
    wake: anyio.Event = field(default_factory=anyio.Event, compare=False)


class SharedBudget(Protocol):
    async def take(self) -> float:
        """0.0 when a token was taken from the shared budget, else the seconds to wait."""
        ...


class Pacer:
    def __init__(
        self,
        rate: float,
        burst: float | None = None,
        *,
        min_rate: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
        shared: SharedBudget | None = None,
    ) -> None:
        """:param shared: a budget other processes take from too (replicas, `cluster`): a
        call waits for this pacer's token, then for one of the shared budget's, in the order
        of urgency either way."""
        self.max_rate = rate
        self.rate = rate
        self.min_rate = min(min_rate, rate)
        self.burst = burst if burst is not None else max(1.0, rate)
        self._tokens = self.burst
        self._clock = clock
        self._sleep = sleep
        self._updated = clock()
        self._waiters: list[_Waiter] = []
        self._seq = itertools.count()
        self.shared = shared

    @property
    def waiting(self) -> int:
        """Calls waiting for a token right now (a saturated budget has many)."""
        return len(self._waiters)

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate)
        self._updated = now

    def _take(self) -> bool:
        self._refill()
        if self._tokens < 1.0 - _EPSILON:
            return False
        self._tokens = max(0.0, self._tokens - 1.0)
        return True

    async def acquire(self, priority: int = 0, patience: float | None = None) -> float:
        """Wait for a token; returns the seconds waited. Only the most urgent waiter (the head
        of the heap) sleeps towards the next token; the others wait to become the head.

        :param patience: give up after this many seconds (raise `BudgetShort`). For work that
            may as well not happen when the budget is short: waiting at a low priority under
            a saturated budget can last for ever, and the task it belongs to with it.
        """
        if not self._waiters and self.shared is None and self._take():
            return 0.0
        if patience is None:
            return await self._queue(priority)
        with anyio.move_on_after(patience):
            return await self._queue(priority)
        raise BudgetShort(f"no API budget within {patience:g}s at priority {priority}")

    async def _queue(self, priority: int) -> float:
        started = self._clock()
        me = _Waiter(priority, next(self._seq))
        heapq.heappush(self._waiters, me)
        try:
            while True:
                if self._waiters[0] is not me:
                    me.wake = anyio.Event()
                    await me.wake.wait()
                    continue
                if self._take():
                    wait = await self.shared.take() if self.shared is not None else 0.0
                    if wait > 0:
                        # Another replica spent the shared budget: this token was not used.
                        self._tokens = min(self.burst, self._tokens + 1.0)
                        await self._sleep(max(_EPSILON, wait))
                        continue
                    # Not heappop: while the shared budget answered, a more urgent waiter may
                    # have become the head; popping it would strand it and leave this one
                    # behind as a head no one serves.
                    self._waiters.remove(me)
                    heapq.heapify(self._waiters)
                    self._wake_head()
                    return self._clock() - started
                # A more urgent waiter arriving meanwhile becomes the head and sleeps for
                # itself; this one finds it is no longer the head when it wakes.
                await self._sleep(max(_EPSILON, (1.0 - self._tokens) / self.rate))
        except BaseException:
            if me in self._waiters:
                self._waiters.remove(me)
                heapq.heapify(self._waiters)
                self._wake_head()
            raise

    def _wake_head(self) -> None:
        if self._waiters:
            self._waiters[0].wake.set()

    def share(self, rate: float) -> None:
        """This process's part of a budget shared with others: the ceiling it paces to."""
        self._refill()
        self.max_rate = max(self.min_rate, rate)
        self.rate = min(self.rate, self.max_rate)

    def throttled(self) -> None:
        self._refill()
        self.rate = max(self.min_rate, self.rate / 2)
        self._tokens = min(self._tokens, 0.0)

    def succeeded(self) -> None:
        if self.rate < self.max_rate:
            self._refill()
            self.rate = min(self.max_rate, self.rate + self.max_rate / 50)
