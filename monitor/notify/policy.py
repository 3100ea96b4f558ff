"""The timing decisions of delivery as pure functions of an injected `now`: flood control (send
now or hold for the digest), pacing (a token bucket per lane) and retry backoff.

No clock, no I/O: the dispatcher passes the time in and keeps the returned values.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from monitor.notify.base import Pacing

Verdict = Literal["send", "hold"]


@dataclass(frozen=True)
class FloodWindow:
    """A tumbling window of one lane: opened by the first alert after a quiet spell.

    :param start: when the window opened.
    :param count: alerts admitted in it so far, sent or held.
    """

    start: float
    count: int

    def end(self, window_seconds: float) -> float:
        return self.start + window_seconds


def admit(
    window: FloodWindow | None, now: float, threshold: int, window_seconds: float
) -> tuple[FloodWindow, Verdict]:
    """Decide one alert's fate: "send" it on its own now, or "hold" it for the digest.

    The first `threshold` alerts of a window are sent at once, so a lone failure is never held
    back; only the overflow waits for the window's end and leaves as one digest.
    """
    if window is None or now >= window.end(window_seconds):
        return FloodWindow(start=now, count=1), "send"
    count = window.count + 1
    return FloodWindow(window.start, count), "send" if count <= threshold else "hold"


@dataclass(frozen=True)
class Bucket:
    """Token bucket state: `tokens` available at time `at`."""

    tokens: float
    at: float


def full_bucket(pacing: Pacing, now: float) -> Bucket:
    return Bucket(tokens=pacing.burst, at=now)


def _refill(bucket: Bucket, now: float, pacing: Pacing) -> float:
    # max(): a clock stepping backwards must not drain the bucket.
    return min(pacing.burst, bucket.tokens + max(0.0, now - bucket.at) * pacing.rate)


def ready_at(bucket: Bucket, now: float, pacing: Pacing) -> float:
    """The earliest time a message may go, given the tokens left."""
    tokens = _refill(bucket, now, pacing)
    if tokens >= 1.0:
        return now
    return now + (1.0 - tokens) / pacing.rate


def consume(bucket: Bucket, now: float, pacing: Pacing) -> Bucket:
    """Spend one token at `now` (call when ready_at(...) <= now)."""
    return Bucket(tokens=max(0.0, _refill(bucket, now, pacing) - 1.0), at=now)


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with jitter: base * 2**(attempt-1), capped, times a random factor
    in [1 - jitter, 1] so that many alerts that failed together do not retry together."""

    base: float
    cap: float
    jitter: float = 0.5

    def delay(self, attempt: int, rand: Callable[[], float]) -> float:
        exponent = min(max(attempt, 1) - 1, 32)  # bounded: 2**32 * base is past any cap
        ceiling = min(self.cap, self.base * 2.0**exponent)
        return ceiling * (1.0 - self.jitter * rand())


# Transient faults (5xx, connection, timeout): quick first retry, at most five minutes apart.
TRANSIENT_BACKOFF = Backoff(base=1.0, cap=300.0)
# Faults a person must fix (invalid_auth, not_in_channel): retried slowly so the fix is picked
# up without a restart, without hammering Slack with a request it will refuse.
REJECTED_BACKOFF = Backoff(base=60.0, cap=900.0, jitter=0.2)
# A Retry-After from Slack is honoured as given, but bounded: a broken proxy answering
# "Retry-After: 86400" must not silence alerts for a day.
MAX_RETRY_AFTER = 900.0


def retry_after(asked: float | None, attempt: int, rand: Callable[[], float]) -> float:
    """Seconds to wait before retrying a transient fault."""
    if asked is not None and asked >= 0:
        return min(asked, MAX_RETRY_AFTER)
    return TRANSIENT_BACKOFF.delay(attempt, rand)
