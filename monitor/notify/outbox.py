"""The dispatcher: claims entries of the store's outbox and delivers each alert exactly once,
in stages.

claim (the store hands out due entries no one holds, for a lease) -> route (suppress, or hand
to the channel's lane) -> admit (flood control: send now or hold for the digest; `lane`) ->
pace (token bucket per lane) -> begin (record the attempt, gather the messages it continues;
`references`) -> send (notifier) -> settle (`record`: closed, or failed and given back with its
next attempt time). One lane per Slack channel, each its own task: a channel that is rate
limited or misconfigured waits alone while the others go on, and polling never waits for any of
it. What is delivered only once is guarded by the store's claims, not by anything held here, so
several dispatchers (replicas) can share one outbox, and one that dies leaves its entries to
the others when its claims expire.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence

import anyio
import anyio.abc

from monitor import log
from monitor.notify.base import Digest, Notification, Notifier, Rejected, Retry, SendResult
from monitor.notify.lane import (
    Item,
    Lane,
    WorkKind,
    admit_inbox,
    alert_fields,
    merged_destination,
    next_work,
)
from monitor.notify.policy import consume, full_bucket, ready_at
from monitor.notify.record import Recorder
from monitor.notify.references import begin, single
from monitor.notify.route import Router
from monitor.observe import Observer
from monitor.store.base import Claim, Dead, Released, Sent, Store

_log = log.get(__name__)

# How long a claim lasts without renewal: past one send (send_timeout) with room to spare.
# Renewed at a third of it while held; a dispatcher that dies frees its entries this late.
DEFAULT_LEASE = 60.0


class Dispatcher:
    """Delivers the outbox through one notifier.

    :param store: the outbox; entries are claimed with `claim` and closed with `settle`.
    :param notifier: Slack (bot or webhook) or the console.
    :param router: alert -> destination, and whether the destination wants it at all.
    :param clock: seconds since the epoch; every decision reads time from here (tests fake it).
    :param digest_threshold: alerts a lane sends one by one per window before holding the rest.
    :param digest_window: seconds of that window; the held overflow leaves when it ends.
    :param send_timeout: ceiling on one notifier call, retries and fallbacks included.
    :param poll_interval: how often the outbox is read without a poke (a safety net only).
    :param digest_max: most alerts in one digest message; more make several digests.
    :param lease: how long a claim lasts without renewal.
    """

    def __init__(
        self,
        store: Store,
        notifier: Notifier,
        router: Router,
        observer: Observer,
        *,
        clock: Callable[[], float] = time.time,
        digest_threshold: int = 5,
        digest_window: float = 30.0,
        send_timeout: float = 30.0,
        poll_interval: float = 10.0,
        batch: int = 100,
        digest_max: int = 50,
        lease: float = DEFAULT_LEASE,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self._store = store
        self._notifier = notifier
        self._router = router
        self._observer = observer
        self._clock = clock
        self._threshold = digest_threshold
        self._window = digest_window
        self._send_timeout = send_timeout
        self._poll_interval = poll_interval
        self._batch = batch
        self._digest_max = digest_max
        self._lease = lease
        self._recorder = Recorder(store, observer, notifier.name, clock, rand)
        self._lanes: dict[str, Lane] = {}
        self._tg: anyio.abc.TaskGroup | None = None
        self._wake = anyio.Event()
        self._progress = anyio.Event()
        self._flushing = 0
        self._seq = 0
        # The first read after start takes every unsent entry, whatever its next attempt time:
        # a restart is often the fix (a new token, the bot invited), so it deserves a try.
        self._started = False

    # --- the public surface -------------------------------------------------------------

    def poke(self) -> None:
        """New alerts were saved: read the outbox now rather than at the next poll."""
        self._wake.set()
        for lane in self._lanes.values():
            lane.nudge()

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Deliver until cancelled. Signals `task_status.started()` once it owns its tasks.
        Cancelled, it gives back what it holds, so a restart need not wait for a lease."""
        if self._tg is not None:
            raise RuntimeError("Dispatcher.run() or drain() is already running")
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                try:
                    self._resume_lanes()
                    tg.start_soon(self._renew_forever, name="outbox claim renewal")
                    task_status.started()
                    _log.info("dispatcher_started", notifier=self._notifier.name)
                    await self._feed_forever()
                finally:
                    self._tg = None
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(5.0):
                await self._give_back()

    # The timeout is part of the interface the service calls (it bounds shutdown), hence noqa.
    async def drain(self, timeout: float) -> int:  # noqa: ASYNC109
        """Deliver everything due now, digests included without waiting for their window, and
        return how many alerts are still pending when done or when `timeout` runs out.

        Works beside a running `run()` (claims keep the two apart) or on its own (`once`, or
        after `run()` was cancelled at shutdown).
        """
        self._flushing += 1
        deadline = self._clock() + timeout
        try:
            with anyio.move_on_after(timeout):
                if self._tg is not None:
                    self.poke()
                    await self._flush(deadline)
                else:
                    async with anyio.create_task_group() as tg:
                        self._tg = tg
                        try:
                            self._resume_lanes()
                            await self._flush(deadline)
                        finally:
                            self._tg = None
                            tg.cancel_scope.cancel()
        finally:
            self._flushing -= 1
            if self._tg is None:
                with anyio.CancelScope(shield=True), anyio.move_on_after(5.0):
                    await self._give_back()
        return await self._report_pending()

    # --- feeding: claim -> route -> lanes -------------------------------------------------

    async def _feed_forever(self) -> None:
        while True:
            # A fresh event before reading: a poke during the read makes the wait below
            # return at once instead of being lost.
            self._wake = anyio.Event()
            await self._feed()
            with anyio.move_on_after(self._next_feed_in()):
                await self._wake.wait()

    def _next_feed_in(self) -> float:
        # Entries a blocked lane gave back are free again when its wait ends: look then.
        now = self._clock()
        waits = [
            lane.blocked_until - now for lane in self._lanes.values() if lane.blocked_until > now
        ]
        return max(0.01, min([self._poll_interval, *waits]))

    async def _feed(self) -> int:
        """Claim what is due and hand it to the lanes; return how many entries were taken."""
        taken = 0
        try:
            await self._renew(self._clock())  # what we hold is not claimable by our own read
            while True:
                now = self._clock()
                due_by = None if self._started else float("inf")
                claims = await self._store.claim(now, self._batch, self._lease, due_by)
                for claim in claims:
                    await self._take(claim, now)
                taken += len(claims)
                if len(claims) < self._batch:
                    break
            self._started = True
            await self._report_pending()
        except Exception as exc:
            # The store may be briefly unavailable (locked file, Redis failover): the next poll
            # or poke tries again; the alerts are safe where they are.
            _log.error("outbox_read_failed", error=str(exc), error_type=type(exc).__name__)
        finally:
            self._signal_progress()
        return taken

    async def _take(self, claim: Claim, now: float) -> None:
        entry = claim.entry
        if entry is None:
            # Unreadable (a torn write, a hand edit): closed as dead and counted, so it never
            # holds up the alerts behind it.
            await self._store.settle(claim, Dead(claim.error))
            self._observer.alert("unknown", "undecodable")
            _log.error("outbox_entry_undecodable", dedup_key=claim.dedup_key, error=claim.error)
            return
        alert = entry.alert
        destination = self._router.route(alert)
        if not self._router.wants(alert, destination):
            await self._store.settle(claim, Sent(None))
            self._observer.alert(alert.status, "suppressed")
            _log.info("alert_suppressed", **alert_fields(alert), channel=destination.channel)
            return
        lane = self._lane(self._notifier.lane(destination))
        if lane.blocked_until > now:
            # The channel waits out a fault: the entry goes back until then, in its order.
            await self._store.settle(claim, Released(not_before=lane.blocked_until))
            return
        self._seq += 1
        lane.inbox.append(Item(claim, entry, destination, self._seq))
        lane.nudge()

    def _lane(self, key: str) -> Lane:
        lane = self._lanes.get(key)
        if lane is None:
            lane = self._lanes[key] = Lane(key)
        self._start(lane)
        return lane

    def _start(self, lane: Lane) -> None:
        if not lane.running and self._tg is not None:
            lane.running = True
            self._tg.start_soon(self._lane_loop, lane, name=f"notify lane {lane.key}")

    def _resume_lanes(self) -> None:
        for lane in self._lanes.values():
            if lane.busy:
                self._start(lane)

    # --- the claims held ------------------------------------------------------------------

    def _held(self) -> list[Item]:
        return [item for lane in self._lanes.values() for item in lane.items()]

    async def _renew_forever(self) -> None:
        while True:
            await anyio.sleep(self._lease / 3)
            try:
                await self._renew(self._clock())
            except Exception as exc:
                _log.warning("outbox_renew_failed", error=str(exc))

    async def _renew(self, now: float, items: Sequence[Item] | None = None) -> None:
        """Extend the claims of `items` (default: all held); drop the items whose claim is
        gone: it expired and another dispatcher has the entry now."""
        items = self._held() if items is None else items
        if not items:
            return
        renewed = {
            (c.dedup_key, c.token): c
            for c in await self._store.renew([i.claim for i in items], now + self._lease)
        }
        lost: set[int] = set()
        for item in items:
            claim = renewed.get((item.claim.dedup_key, item.claim.token))
            if claim is None:
                lost.add(id(item))
                _log.warning("outbox_claim_lost", **alert_fields(item.alert))
            else:
                item.claim = claim
        if lost:
            for lane in self._lanes.values():
                lane.keep(lambda i: id(i) not in lost)

    async def _give_back(self) -> None:
        """Release every claim held (shutdown): the entries are free for the next dispatcher
        at once, instead of when the claims expire."""
        for lane in self._lanes.values():
            for item in lane.keep(lambda i: False):
                try:
                    await self._store.settle(item.claim, Released())
                except Exception as exc:
                    _log.warning(
                        "outbox_release_failed", error=str(exc), **alert_fields(item.alert)
                    )

    # --- one lane: admit -> pace -> begin -> send -> settle -----------------------------

    async def _lane_loop(self, lane: Lane) -> None:
        try:
            while True:
                lane.wake = anyio.Event()
                try:
                    await self._lane_step(lane)
                except Exception:
                    # A bug here must cost this channel a minute, not stop every channel and
                    # the daemon with them; the alerts stay claimed and queued.
                    _log.exception("notify_lane_crashed", lane=lane.key)
                    lane.blocked_until = self._clock() + 60.0
        finally:
            lane.running = False

    async def _lane_step(self, lane: Lane) -> None:
        now = self._clock()
        if lane.blocked_until > now:
            await self._sleep_until(lane, lane.blocked_until)
            return
        admit_inbox(
            lane,
            now,
            flood_control=self._notifier.flood_control,
            threads=self._notifier.threads,
            threshold=self._threshold,
            window=self._window,
        )
        work = next_work(lane, now, flushing=self._flushing > 0, most=self._digest_max)
        if work is None:
            await lane.wake.wait()
            return
        if isinstance(work, float):
            await self._sleep_until(lane, work)
            return
        pacing = self._notifier.pacing
        if pacing is not None:
            bucket = lane.bucket or full_bucket(pacing, now)
            ready = ready_at(bucket, now, pacing)
            if ready > now:
                await self._sleep_until(lane, ready)
                return
            lane.bucket = consume(bucket, now, pacing)
        kind, items = work
        # Shielded: once a message is on its way, cancellation (shutdown) waits for the answer
        # and its record; abandoning it there would send it again after a restart.
        with anyio.CancelScope(shield=True):
            if any(i.claim.until - now < self._send_timeout * 1.5 for i in items):
                await self._renew(now, items)  # never send on a claim that may run out
                still = {id(i) for i in lane.items()}
                if any(id(i) not in still for i in items):
                    return  # lost to another dispatcher: it sends them
            result = await self._send(lane, kind, items)
            await self._recorder.record(lane, kind, items, result)
        if lane.blocked_until > now:
            self._wake.set()  # the feeder looks again when this lane's wait ends
        await self._report_pending()
        self._signal_progress()

    async def _sleep_until(self, lane: Lane, when: float) -> None:
        # Woken early by a nudge (poke) to look at the clock again: with a fake clock, time
        # moves when the test says so, not when the sleep ends.
        with anyio.move_on_after(max(0.0, when - self._clock())):
            await lane.wake.wait()

    async def _send(self, lane: Lane, kind: WorkKind, items: Sequence[Item]) -> SendResult:
        since = await begin(self._store, items, self._clock())
        notification: Notification
        if kind == "single":
            notification = await single(
                self._store, items[0], since, threads=self._notifier.threads
            )
        else:
            notification = Digest(
                tuple(i.alert for i in items), merged_destination(items), self._window, since
            )
        try:
            with anyio.fail_after(self._send_timeout):
                return await self._notifier.send(notification)
        except TimeoutError:
            return Retry("timeout")
        except Exception as exc:
            # A notifier bug (a rendering crash) must not kill delivery for every channel.
            _log.exception("notifier_crashed", notifier=self._notifier.name, lane=lane.key)
            return Rejected("internal_error", f"{type(exc).__name__}: {exc} (a bug; report it)")

    # --- progress -------------------------------------------------------------------------

    async def _report_pending(self) -> int:
        try:
            count = await self._store.pending_count()
        except Exception as exc:
            _log.warning("outbox_count_failed", error=str(exc))
            return len(self._held())
        self._observer.outbox_pending(count)
        return count

    def _signal_progress(self) -> None:
        self._progress.set()
        self._progress = anyio.Event()

    def _quiet(self, deadline: float) -> bool:
        """No lane can do more before `deadline`: each is empty, or waits past it."""
        return all(not lane.busy or lane.blocked_until > deadline for lane in self._lanes.values())

    async def _flush(self, deadline: float) -> None:
        """Claim and deliver until a read finds nothing new and the lanes are quiet."""
        while True:
            taken = await self._feed()
            while not self._quiet(deadline):
                progress = self._progress
                # Also woken at the lanes' own deadlines, so a retry time that passes without
                # any other progress is noticed.
                now = self._clock()
                wake = min(
                    (
                        lane.blocked_until
                        for lane in self._lanes.values()
                        if lane.busy and lane.blocked_until > now
                    ),
                    default=deadline,
                )
                with anyio.move_on_after(max(0.01, wake - now)):
                    await progress.wait()
            if taken == 0:
                return
