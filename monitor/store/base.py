"""The store protocol: branch state plus the alert outbox, saved together.

Saving state and the alerts it produced in one transaction is what makes delivery exactly-once
across restarts: an alert exists in the outbox iff the state that raised it was saved.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from monitor.model import Alert, BranchKey, BranchState, MessageRef, OutboxEntry

# Sent records are the dedup memory; a month is far longer than any job stays interesting.
DEFAULT_SENT_RETENTION = 30 * 24 * 3600.0
# Pruning rides on mark_sent, at most this often, so no caller has to schedule it.
PRUNE_EVERY = 3600.0


class Pruning:
    """Both backends' rule for when sent records are pruned, and up to when."""

    def __init__(self, now: float, retention: float) -> None:
        self.retention = retention
        self._last = now

    def due(self, now: float) -> float | None:
        """The cut-off (records sent before it go) if a prune is due now, else None; a prune
        reported due counts as done, so a failing one is not retried before the next hour."""
        if now - self._last < PRUNE_EVERY:
            return None
        self._last = now
        return now - self.retention


@dataclass(frozen=True)
class Claim:
    """An outbox entry taken for delivery, by one dispatcher, until `until`.

    `token` fences it: only the holder of the current claim can settle or renew it, so a
    dispatcher whose claim ran out (it hung, or was partitioned) cannot record over the one
    that took the entry next. `entry` is None when the stored alert cannot be decoded; `error`
    then says why, and the dispatcher settles it as dead rather than let it block the others.
    """

    dedup_key: str
    token: str
    until: float
    entry: OutboxEntry | None
    error: str = ""


@dataclass(frozen=True)
class Sent:
    """Delivered: closes the entry for good (it stays as dedup memory)."""

    receipt: str | None = None


@dataclass(frozen=True)
class Failed:
    """An attempt failed: attempts + 1, and the entry is free again at `next_attempt_at`."""

    error: str
    next_attempt_at: float


@dataclass(frozen=True)
class Released:
    """Given back without an attempt (shutdown, a lane that waits): free at once, or from
    `not_before` when set."""

    not_before: float | None = None


@dataclass(frozen=True)
class Dead:
    """Can never be delivered (the stored alert cannot be decoded): closed, with the error."""

    error: str


Settlement = Sent | Failed | Released | Dead


class Store(Protocol):
    async def load_all(self) -> dict[BranchKey, BranchState]:
        """Every saved branch state, keyed by branch."""
        ...

    async def save(self, state: BranchState, alerts: Sequence[Alert] = ()) -> None:
        """Atomically save `state` and enqueue `alerts` in the outbox.

        :param state: replaces whatever was saved for ``state.key``.
        :param alerts: added to the outbox; an alert whose dedup_key was ever enqueued before
            (pending or sent) is ignored, so a replayed save never doubles a notification.
        """
        ...

    async def delete(self, key: BranchKey) -> None:
        """Forget a branch's state (it disappeared from Amplify). Its outbox entries stay."""
        ...

    async def pending(self, now: float, limit: int = 100) -> list[OutboxEntry]:
        """Unsent outbox entries whose next_attempt_at <= now, oldest first, claimed or not.
        For tools and tests; the dispatcher takes entries with `claim` and closes them with
        `settle`, as do `mark_sent` and `mark_failed` (unfenced) for the same callers."""
        ...

    async def pending_count(self) -> int:
        """How many outbox entries are not yet delivered (whatever their next attempt time)."""
        ...

    async def mark_sent(self, dedup_key: str, receipt: str | None = None) -> None:
        """Record delivery. `receipt` is the notifier's handle (Slack's message ts), for threading."""
        ...

    async def mark_failed(self, dedup_key: str, error: str, next_attempt_at: float) -> None:
        """Record a failed attempt: attempts += 1, keep the entry pending until next_attempt_at."""
        ...

    async def receipt(self, dedup_key: str) -> str | None:
        """The receipt saved by mark_sent for this dedup_key, or None."""
        ...

    async def mark_attempt(self, dedup_key: str, now: float) -> None:
        """Record that a send of this entry is about to begin (the first such time stands), so
        that after a crash the entry reads as "the receiver may already have it"."""
        ...

    async def save_message(self, job_key: str, ref: MessageRef) -> None:
        """Remember (or replace) the message that tells this job's story."""
        ...

    async def message(self, job_key: str) -> MessageRef | None:
        """The message saved for this job, or None. Pruned with the sent records."""
        ...

    async def claim(
        self, now: float, limit: int, lease: float, due_by: float | None = None
    ) -> list[Claim]:
        """Atomically take up to `limit` unsent entries due by `due_by` (default `now`) that no
        live claim holds, oldest first, each claimed until ``now + lease``. An expired claim is
        free again: whoever held it died or hung, and its entries go to the next caller."""
        ...

    async def settle(self, claim: Claim, outcome: Settlement) -> bool:
        """Record what became of a claimed entry and end the claim; False (and nothing
        written) when the claim is no longer this one (it expired and was taken again)."""
        ...

    async def renew(self, claims: Sequence[Claim], until: float) -> list[Claim]:
        """Extend these claims to `until`; returns the ones still held (renewed)."""
        ...

    async def close(self) -> None: ...
