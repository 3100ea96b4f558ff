"""The dispatcher: reads the store's outbox and delivers each alert exactly once, in stages.

feed (outbox -> route -> suppress or hand to a lane) -> admit (flood control: send now or hold
for the digest; `lane`) -> pace (token bucket per lane) -> begin (record the attempt, gather the
messages it continues; `references`) -> send (notifier) -> record (save the job's message, mark
sent, or mark failed with the next attempt time). One lane per Slack channel, each its own task: a
channel that is rate limited or misconfigured waits alone while the others go on, and polling
never waits for any of it.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence

import anyio
import anyio.abc

from monitor import log
from monitor.model import OutboxEntry
from monitor.notify.base import (
    Delivered,
    Digest,
    Notification,
    Notifier,
    Rejected,
    Retry,
    SendResult,
)
from monitor.notify.lane import (
    Item,
    Lane,
    WorkKind,
    admit_inbox,
    alert_fields,
    merged_destination,
    next_work,
)
from monitor.notify.policy import (
    REJECTED_BACKOFF,
    consume,
    full_bucket,
    ready_at,
    retry_after,
)
from monitor.notify.references import begin, single
from monitor.notify.route import Router
from monitor.observe import Observer
from monitor.store.base import Store

_log = log.get(__name__)

# The first read after start takes every unsent entry, whatever its next attempt time: a
# restart is often the fix (a new token, the bot invited), so it deserves an immediate try.
_EVERYTHING = 10 * 365 * 24 * 3600.0


class Dispatcher:
    """Delivers the outbox through one notifier.

    :param store: the outbox; entries are read with `pending` and closed with `mark_sent`.
    :param notifier: Slack (bot or webhook) or the console.
    :param router: alert -> destination, and whether the destination wants it at all.
    :param clock: seconds since the epoch; every decision reads time from here (tests fake it).
    :param digest_threshold: alerts a lane sends one by one per window before holding the rest.
    :param digest_window: seconds of that window; the held overflow leaves when it ends.
    :param send_timeout: ceiling on one notifier call, retries and fallbacks included.
    :param poll_interval: how often the outbox is read without a poke (a safety net only).
    :param digest_max: most alerts in one digest message; more make several digests.
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
        self._rand = rand

        self._lanes: dict[str, Lane] = {}
        # Dedup keys a lane holds (or that were sent but whose mark_sent failed): the feeder
        # skips them, so an entry is never in two places at once.
        self._owned: set[str] = set()
        self._unrecorded: dict[str, str | None] = {}
        # When each entry's first send began in this process (the store has it too): a retry
        # of a send that may have reached the receiver must look before it posts again.
        self._begun: dict[str, float] = {}
        # Keys delivered while a feed may have been reading: that read can predate mark_sent
        # and still list them as pending. Each stays owned until a feed that started after its
        # delivery has finished, so a stale read never sends an alert twice.
        self._releasing: list[tuple[int, str]] = []
        self._tg: anyio.abc.TaskGroup | None = None
        self._wake = anyio.Event()
        self._progress = anyio.Event()
        self._feeds_started = 0
        self._feeds_done = 0
        self._flushing = 0
        self._seq = 0

    # --- the public surface -------------------------------------------------------------

    def poke(self) -> None:
        """New alerts were saved: read the outbox now rather than at the next poll."""
        self._wake.set()
        for lane in self._lanes.values():
            lane.nudge()

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Deliver until cancelled. Signals `task_status.started()` once it owns its tasks."""
        if self._tg is not None:
            raise RuntimeError("Dispatcher.run() or drain() is already running")
        async with anyio.create_task_group() as tg:
            self._tg = tg
            try:
                self._resume_lanes()
                task_status.started()
                _log.info("dispatcher_started", notifier=self._notifier.name)
                await self._feed_forever()
            finally:
                self._tg = None

    # The timeout is part of the interface the service calls (it bounds shutdown), hence noqa.
    async def drain(self, timeout: float) -> int:  # noqa: ASYNC109
        """Deliver everything due now, digests included without waiting for their window, and
        return how many alerts are still pending when done or when `timeout` runs out.

        Works beside a running `run()` (it pokes it and waits) or on its own (`once`, or after
        `run()` was cancelled at shutdown).
        """
        self._flushing += 1
        deadline = self._clock() + timeout
        try:
            with anyio.move_on_after(timeout):
                # Counted before the feeder is woken or started: only a feed that begins
                # after this point has seen everything saved before drain() was called.
                target = self._feeds_started + 1
                if self._tg is not None:
                    self.poke()
                    await self._quiesce(target, deadline)
                else:
                    async with anyio.create_task_group() as tg:
                        self._tg = tg
                        try:
                            self._resume_lanes()
                            tg.start_soon(self._feed_forever, name="outbox feeder")
                            await self._quiesce(target, deadline)
                        finally:
                            self._tg = None
                            tg.cancel_scope.cancel()
        finally:
            self._flushing -= 1
        return await self._report_pending()

    # --- feeding: outbox -> route -> lanes ----------------------------------------------

    async def _feed_forever(self) -> None:
        everything = True
        while True:
            # A fresh event before reading: a poke during the read makes the wait below
            # return at once instead of being lost.
            self._wake = anyio.Event()
            await self._feed(everything)
            everything = False
            with anyio.move_on_after(self._poll_interval):
                await self._wake.wait()

    async def _feed(self, everything: bool) -> None:
        self._feeds_started += 1
        this_feed = self._feeds_started
        try:
            await self._record_unrecorded()
            while True:
                now = self._clock()
                limit = len(self._owned) + self._batch
                entries = await self._store.pending(now + _EVERYTHING if everything else now, limit)
                for entry in entries:
                    await self._take(entry)
                # Owned entries come back too (they are still unsent); asking for that many
                # more than we own guarantees progress, and a full page means there may be more.
                if len(entries) < limit:
                    break
            await self._report_pending()
        except Exception as exc:
            # The store may be briefly unavailable (locked file, Redis failover): the next poll
            # or poke tries again; the alerts are safe where they are.
            _log.error("outbox_read_failed", error=str(exc), error_type=type(exc).__name__)
        finally:
            self._release(before=this_feed)
            self._feeds_done += 1
            self._signal_progress()

    def _release(self, before: int) -> None:
        """Stop owning keys delivered before feed number `before` began."""
        keep: list[tuple[int, str]] = []
        for feed, key in self._releasing:
            if feed < before:
                self._owned.discard(key)
            else:
                keep.append((feed, key))
        self._releasing = keep

    async def _take(self, entry: OutboxEntry) -> None:
        alert = entry.alert
        key = alert.dedup_key
        if key in self._owned:
            return
        destination = self._router.route(alert)
        if not self._router.wants(alert, destination):
            await self._store.mark_sent(key, None)
            self._observer.alert(alert.status, "suppressed")
            _log.info("alert_suppressed", **alert_fields(alert), channel=destination.channel)
            return
        self._owned.add(key)
        lane = self._lane(self._notifier.lane(destination))
        self._seq += 1
        lane.inbox.append(Item(entry, destination, self._seq))
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
        # Lanes outlive the task group that ran them (run() cancelled, then drain()): their
        # queued alerts are still owned here and must be picked up again.
        for lane in self._lanes.values():
            if lane.busy:
                self._start(lane)

    # --- one lane: admit -> pace -> send -> record --------------------------------------

    async def _lane_loop(self, lane: Lane) -> None:
        try:
            while True:
                lane.wake = anyio.Event()
                try:
                    await self._lane_step(lane)
                except Exception:
                    # A bug here must cost this channel a minute, not stop every channel and
                    # the daemon with them; the alerts stay owned and queued.
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
            result = await self._send(lane, kind, items)
            await self._record(lane, kind, items, result)
        self._signal_progress()

    async def _sleep_until(self, lane: Lane, when: float) -> None:
        # Woken early by a nudge (poke) to look at the clock again: with a fake clock, time
        # moves when the test says so, not when the sleep ends.
        with anyio.move_on_after(max(0.0, when - self._clock())):
            await lane.wake.wait()

    async def _send(self, lane: Lane, kind: WorkKind, items: Sequence[Item]) -> SendResult:
        since = await begin(self._store, self._begun, items, self._clock())
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

    async def _record(
        self, lane: Lane, kind: WorkKind, items: Sequence[Item], result: SendResult
    ) -> None:
        if kind == "single" and result.message is not None:
            # Before mark_sent: a crash between the two leaves an entry that is resent, finds
            # its message in Slack's history, and records it; the other order could forget it.
            try:
                await self._store.save_message(items[0].alert.job_key, result.message)
            except Exception as exc:
                _log.error("message_record_failed", error=str(exc), **alert_fields(items[0].alert))
        if isinstance(result, Delivered):
            await self._record_delivered(lane, kind, items, result)
        else:
            await self._record_failed(lane, items, result)
        await self._report_pending()

    async def _record_delivered(
        self, lane: Lane, kind: WorkKind, items: Sequence[Item], result: Delivered
    ) -> None:
        keys = {item.key for item in items}
        if kind == "single":
            lane.queue.popleft()
        else:
            lane.held = [i for i in lane.held if i.key not in keys]
            if not lane.held:
                lane.digest_due = None
        if lane.announced:
            _log.info("slack_delivery_recovered", notifier=self._notifier.name, lane=lane.key)
            lane.announced.clear()
        lane.failures = 0
        outcome = "sent" if kind == "single" else "digested"
        for item in items:
            self._begun.pop(item.key, None)
            try:
                await self._store.mark_sent(item.key, result.receipt)
                self._releasing.append((self._feeds_started, item.key))
            except Exception as exc:
                # Delivered but not recorded: keep it owned so this process never resends it,
                # and retry the record on the next feed.
                self._unrecorded[item.key] = result.receipt
                _log.error("outbox_record_failed", error=str(exc), **alert_fields(item.alert))
            self._observer.alert(item.alert.status, outcome)
            _log.info(
                "alert_sent" if kind == "single" else "alert_digested",
                **alert_fields(item.alert),
                lane=lane.key,
                receipt=result.receipt,
                attempts=item.entry.attempts + 1,
            )

    async def _record_failed(
        self, lane: Lane, items: Sequence[Item], result: Retry | Rejected
    ) -> None:
        lane.failures += 1
        if isinstance(result, Retry):
            delay = retry_after(result.after, lane.failures, self._rand)
            outcome = "retried"
        else:
            delay = REJECTED_BACKOFF.delay(lane.failures, self._rand)
            outcome = "failed"
        next_at = self._clock() + delay
        lane.blocked_until = next_at
        if isinstance(result, Rejected) and result.error not in lane.announced:
            lane.announced.add(result.error)
            # Loud once: this needs a person, and the log line says what to do.
            _log.error(
                "slack_delivery_rejected",
                notifier=self._notifier.name,
                lane=lane.key,
                error=result.error,
                fix=result.hint,
                retry_in=round(delay, 1),
                waiting=len(lane.queue) + len(lane.held),
            )
        else:
            _log.warning(
                "alert_delivery_failed",
                notifier=self._notifier.name,
                lane=lane.key,
                error=result.error,
                retry_in=round(delay, 1),
                attempt=lane.failures,
                alerts=len(items),
            )
        for item in items:
            try:
                await self._store.mark_failed(item.key, result.error, next_at)
            except Exception as exc:
                _log.error("outbox_record_failed", error=str(exc), **alert_fields(item.alert))
            self._observer.alert(item.alert.status, outcome)

    async def _record_unrecorded(self) -> None:
        for key, receipt in list(self._unrecorded.items()):
            await self._store.mark_sent(key, receipt)
            del self._unrecorded[key]
            self._owned.discard(key)

    # --- bookkeeping -----------------------------------------------------------------------

    async def _report_pending(self) -> int:
        try:
            count = await self._store.pending_count()
        except Exception as exc:
            _log.warning("outbox_count_failed", error=str(exc))
            return len(self._owned)
        self._observer.outbox_pending(count)
        return count

    def _signal_progress(self) -> None:
        self._progress.set()
        self._progress = anyio.Event()

    async def _quiesce(self, target: int, deadline: float) -> None:
        """Wait until `target` feeds are done, then until no lane can do more before
        `deadline`: each is empty, or waits for a retry that comes later than that."""
        while True:
            progress = self._progress
            if (
                self._feeds_done >= target
                and not self._unrecorded
                and all(
                    not lane.busy or lane.blocked_until > deadline for lane in self._lanes.values()
                )
            ):
                return
            # Also woken at the deadline of the lanes' waits, so a retry time that passes
            # without any other progress is noticed.
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
