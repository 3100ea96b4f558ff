"""One channel's delivery queue and the pure decisions on it: flood control when the lane can
act (send now or hold for the digest) and what the lane does next (send one, send the digest,
wait until a time, or idle). The dispatcher owns the tasks and the I/O; this owns the order.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import anyio

from monitor import log
from monitor.model import Alert, OutboxEntry
from monitor.notify.base import Destination
from monitor.notify.policy import Bucket, FloodWindow, admit
from monitor.store.base import Claim

_log = log.get(__name__)

WorkKind = Literal["single", "digest"]


@dataclass
class Item:
    """A claimed outbox entry on its way, with where routing sent it. `claim` is replaced when
    it is renewed; the store's claim, not this object, is what says the entry is ours."""

    claim: Claim
    entry: OutboxEntry
    destination: Destination
    seq: int  # the order the feeder took it in: the outbox's order

    @property
    def alert(self) -> Alert:
        return self.entry.alert

    @property
    def key(self) -> str:
        return self.entry.alert.dedup_key


@dataclass
class Lane:
    """The delivery state of one channel. Mutated only by its own task and by the feeder
    (which only appends to `inbox`), both on the event loop thread."""

    key: str
    inbox: deque[Item] = field(default_factory=deque)  # fed, not yet through flood control
    queue: deque[Item] = field(default_factory=deque)  # to send one by one, in order
    held: list[Item] = field(default_factory=list)  # overflow waiting for the digest
    digest_due: float | None = None
    window: FloodWindow | None = None
    bucket: Bucket | None = None
    blocked_until: float = 0.0
    failures: int = 0  # consecutive failed attempts, for the backoff
    announced: set[str] = field(default_factory=set)  # errors already logged loudly
    running: bool = False
    wake: anyio.Event = field(default_factory=anyio.Event)

    @property
    def busy(self) -> bool:
        return bool(self.inbox or self.queue or self.held)

    def items(self) -> list[Item]:
        return [*self.inbox, *self.queue, *self.held]

    def keep(self, wanted: Callable[[Item], bool]) -> list[Item]:
        """Drop the items `wanted` refuses; return them."""
        dropped = [i for i in self.items() if not wanted(i)]
        if dropped:
            self.inbox = deque(i for i in self.inbox if wanted(i))
            self.queue = deque(i for i in self.queue if wanted(i))
            self.held = [i for i in self.held if wanted(i)]
            if not self.held:
                self.digest_due = None
        return dropped

    def nudge(self) -> None:
        self.wake.set()


def _counts_for_flood(item: Item, threads: bool) -> bool:
    # A recovery replying in its failure's thread pings nobody; only top-level messages are
    # noise worth holding back. A living destination has one message per job, which is the
    # bound flood control would give; held back, it could not be updated in place.
    if item.destination.living:
        return False
    return item.alert.kind == "failure" or not threads


def admit_inbox(
    lane: Lane, now: float, *, flood_control: bool, threads: bool, threshold: int, window: float
) -> None:
    """Flood control, decided when the lane can act, not when the alert was fed: after an
    outage a backlog is one burst, not a trickle of windows."""
    while lane.inbox:
        item = lane.inbox.popleft()
        if not flood_control or not _counts_for_flood(item, threads):
            lane.queue.append(item)
            continue
        lane.window, verdict = admit(lane.window, now, threshold, window)
        if verdict == "send":
            lane.queue.append(item)
            continue
        if lane.digest_due is None:
            lane.digest_due = lane.window.end(window)
        lane.held.append(item)
        _log.info(
            "alert_held_for_digest", **alert_fields(item.alert), lane=lane.key, due=lane.digest_due
        )


def next_work(
    lane: Lane, now: float, *, flushing: bool, most: int
) -> tuple[WorkKind, list[Item]] | float | None:
    """What the lane does next: send something, wait until a time, or nothing (idle).

    :param flushing: a drain is under way: a held digest goes now, not at its window's end.
    :param most: the most alerts in one digest.
    """
    due = lane.digest_due
    digest_due = bool(lane.held) and due is not None and (flushing or now >= due)
    # Whichever is older goes first: the queue's head may be a first-of-window alert admitted
    # before the overflow, or one admitted after the window ended.
    if digest_due and (not lane.queue or lane.held[0].seq < lane.queue[0].seq):
        return "digest", lane.held[:most]
    if lane.queue:
        return "single", [lane.queue[0]]
    if lane.held and lane.digest_due is not None:
        return lane.digest_due
    return None


def merged_destination(items: Sequence[Item]) -> Destination:
    """A digest goes to one lane but may gather alerts of several routes: mention them all."""
    first = items[0].destination
    mentions = list(dict.fromkeys(i.destination.mention for i in items if i.destination.mention))
    return Destination(first.channel, " ".join(mentions) or None, first.statuses)


def alert_fields(alert: Alert) -> dict[str, str]:
    return {
        "app_id": alert.key.app_id,
        "branch": alert.key.branch,
        "job_id": alert.job.job_id,
        "status": alert.status,
        "kind": alert.kind,
    }
