"""Client-side pacing of Amplify API calls: a token bucket whose rate adapts to throttling.

botocore's retries handle one throttled call; this keeps the whole fleet's call rate under the
account's limit, halving on a throttle and creeping back up while calls succeed (AIMD).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import anyio


class Pacer:
    def __init__(
        self,
        rate: float,
        burst: float | None = None,
        *,
        min_rate: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    ) -> None:
        self.max_rate = rate
        self.rate = rate
        self.min_rate = min(min_rate, rate)
        self.burst = burst if burst is not None else max(1.0, rate)
        self._tokens = self.burst
        self._clock = clock
        self._sleep = sleep
        self._updated = clock()
        self._lock = anyio.Lock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate)
        self._updated = now

    async def acquire(self) -> None:
        """Wait for a token. The lock makes waiters queue fairly instead of racing on refill."""
        async with self._lock:
            self._refill()
            # The epsilon stops float dust (0.9999999 tokens) from asking for sleeps too short to
            # move a clock forward.
            while self._tokens < 1.0 - 1e-9:
                await self._sleep((1.0 - self._tokens) / self.rate)
                self._refill()
            self._tokens = max(0.0, self._tokens - 1.0)

    def throttled(self) -> None:
        self._refill()
        self.rate = max(self.min_rate, self.rate / 2)
        self._tokens = min(self._tokens, 0.0)

    def succeeded(self) -> None:
        if self.rate < self.max_rate:
            self._refill()
            self.rate = min(self.max_rate, self.rate + self.max_rate / 50)
