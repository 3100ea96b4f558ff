"""The last stage of a send: settle each claimed entry with what became of it. Delivered:
save the job's message, then close the entry. Failed: count the attempt, block the lane for the
backoff, and give back everything the lane holds, so the entries come again (here or on
another replica) in their order when the wait is over.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import anyio

from monitor import log
from monitor.notify.base import Delivered, Rejected, Retry, SendResult
from monitor.notify.lane import Item, Lane, WorkKind, alert_fields
from monitor.notify.policy import REJECTED_BACKOFF, retry_after
from monitor.observe import Observer
from monitor.store.base import Failed, Released, Sent, Settlement, Store

_log = log.get(__name__)

# A settle that fails (store briefly away) is tried again this many times, this far apart.
# Given up, the claim expires and the entry is sent again: after a history read (bot mode), so
# Slack is not asked twice; a webhook may then post it twice, which beats losing it.
_SETTLE_TRIES = (0.1, 0.5, 2.0)


class Recorder:
    def __init__(
        self,
        store: Store,
        observer: Observer,
        notifier: str,
        clock: Callable[[], float],
        rand: Callable[[], float],
    ) -> None:
        self._store = store
        self._observer = observer
        self._notifier = notifier
        self._clock = clock
        self._rand = rand

    async def settle(self, item: Item, outcome: Settlement) -> bool:
        """Settle one claim, trying again briefly if the store fails; False if not recorded
        (the claim was lost to another dispatcher, or the store stayed away)."""
        for pause in (*_SETTLE_TRIES, None):
            try:
                settled = await self._store.settle(item.claim, outcome)
            except Exception as exc:
                _log.error("outbox_record_failed", error=str(exc), **alert_fields(item.alert))
                if pause is None:
                    return False
                await anyio.sleep(pause)
                continue
            if not settled:
                # Its claim ran out and another dispatcher took it: what it records stands.
                _log.warning("outbox_claim_lost", **alert_fields(item.alert))
            return settled
        return False

    async def record(
        self, lane: Lane, kind: WorkKind, items: Sequence[Item], result: SendResult
    ) -> None:
        if kind == "single" and result.message is not None:
            # Before the entry is closed: a crash between the two leaves an entry that is sent
            # again, finds its message in Slack's history and records it; the other order could
            # forget the message.
            try:
                await self._store.save_message(items[0].alert.job_key, result.message)
            except Exception as exc:
                _log.error("message_record_failed", error=str(exc), **alert_fields(items[0].alert))
        if isinstance(result, Delivered):
            await self._delivered(lane, kind, items, result)
        else:
            await self._failed(lane, items, result)

    async def _delivered(
        self, lane: Lane, kind: WorkKind, items: Sequence[Item], result: Delivered
    ) -> None:
        sent = {id(item) for item in items}
        lane.keep(lambda i: id(i) not in sent)
        if lane.announced:
            _log.info("slack_delivery_recovered", notifier=self._notifier, lane=lane.key)
            lane.announced.clear()
        lane.failures = 0
        outcome = "sent" if kind == "single" else "digested"
        for item in items:
            await self.settle(item, Sent(result.receipt))
            self._observer.alert(item.alert.status, outcome)
            _log.info(
                "alert_sent" if kind == "single" else "alert_digested",
                **alert_fields(item.alert),
                lane=lane.key,
                receipt=result.receipt,
                attempts=item.entry.attempts + 1,
            )

    async def _failed(self, lane: Lane, items: Sequence[Item], result: Retry | Rejected) -> None:
        lane.failures += 1
        if isinstance(result, Retry):
            delay = retry_after(result.after, lane.failures, self._rand)
            outcome = "retried"
        else:
            delay = REJECTED_BACKOFF.delay(lane.failures, self._rand)
            outcome = "failed"
        next_at = self._clock() + delay
        lane.blocked_until = next_at
        waiting = lane.items()
        if isinstance(result, Rejected) and result.error not in lane.announced:
            lane.announced.add(result.error)
            # Loud once: this needs a person, and the log line says what to do.
            _log.error(
                "slack_delivery_rejected",
                notifier=self._notifier,
                lane=lane.key,
                error=result.error,
                fix=result.hint,
                retry_in=round(delay, 1),
                waiting=len(waiting),
            )
        else:
            _log.warning(
                "alert_delivery_failed",
                notifier=self._notifier,
                lane=lane.key,
                error=result.error,
                retry_in=round(delay, 1),
                attempt=lane.failures,
                alerts=len(items),
            )
        tried = {id(item) for item in items}
        lane.keep(lambda i: False)
        for item in waiting:
            if id(item) in tried:
                await self.settle(item, Failed(result.error, next_at))
                self._observer.alert(item.alert.status, outcome)
            else:
                await self.settle(item, Released(not_before=next_at))
