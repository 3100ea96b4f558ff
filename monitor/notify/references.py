"""What a send needs from the store besides the alert: the record that it begins (so a crash
mid-send reads as "Slack may have it"), and the references of the messages it continues (the
job's living message, the failure a recovery answers).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from monitor import log
from monitor.model import FAILED, dedup_key, job_key
from monitor.notify.base import Single
from monitor.notify.lane import Item, alert_fields
from monitor.store.base import Store

_log = log.get(__name__)


async def begin(store: Store, items: Sequence[Item], now: float) -> float | None:
    """Record that these entries' send begins, before it does; return when an earlier attempt
    began (it may have reached the receiver: this process's or a dead one's), or None."""
    earlier = [i.entry.first_attempt_at for i in items if i.entry.first_attempt_at is not None]
    for item in items:
        if item.entry.first_attempt_at is None:
            item.entry = dataclasses.replace(item.entry, first_attempt_at=now)
        try:
            await store.mark_attempt(item.key, now)
        except Exception as exc:
            # Sent anyway: a late alert is worse than the small chance of a double post that
            # this record would have closed.
            _log.warning("outbox_attempt_unrecorded", error=str(exc), **alert_fields(item.alert))
    return min(earlier) if earlier else None


async def single(store: Store, item: Item, since: float | None, *, threads: bool) -> Single:
    """The notification for one alert, with the messages it continues.

    :param threads: the notifier can reply in threads (bot mode), so a recovery's failure
        message is worth looking up.
    """
    alert, destination = item.alert, item.destination
    message = failed = None
    thread: str | None = None
    try:
        if destination.living:
            message = await store.message(alert.job_key)
        if alert.kind == "recovery" and alert.failed_job_id and threads:
            failed = await store.message(job_key(alert.key, alert.failed_job_id))
            # Failures sent before messages were kept have only their receipt: thread on it.
            thread = (
                failed.receipt
                if failed is not None
                else await store.receipt(dedup_key(alert.key, alert.failed_job_id, FAILED))
            )
    except Exception as exc:
        # Without its references the alert is still worth saying, as a message of its own.
        _log.warning("receipt_read_failed", error=str(exc), **alert_fields(alert))
    return Single(alert, destination, thread, message, failed, since)
