"""The store protocol: branch state plus the alert outbox, saved together.

Saving state and the alerts it produced in one transaction is what makes delivery exactly-once
across restarts: an alert exists in the outbox iff the state that raised it was saved.
"""

from __future__ import annotations

from collections.abc import Sequence
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
        """Unsent outbox entries whose next_attempt_at <= now, oldest first."""
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

    async def close(self) -> None: ...
