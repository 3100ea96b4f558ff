"""The Store contract, run over every backend (SQLite and Redis) by the `backend` fixture."""

from __future__ import annotations

import dataclasses
from datetime import datetime

import anyio
import pytest

from monitor.model import CANCELLED, FAILED, SUCCEED, BranchKey, MessageRef
from monitor.store.base import Store
from monitor.store.codec import StoreError

from .conftest import AnyStore, Backend
from .factories import make_alert, make_job, make_state

DAY = 24 * 3600.0


def test_every_backend_satisfies_the_store_protocol(store: AnyStore) -> None:
    # Checked by mypy: an assignment that would not type-check if a signature drifted.
    typed: Store = store
    assert typed is store


# --- branch state ---------------------------------------------------------------------------


async def test_empty_store_has_no_state_and_nothing_pending(store: AnyStore) -> None:
    assert await store.load_all() == {}
    assert await store.pending(now=1e12) == []
    assert await store.pending_count() == 0


async def test_saved_state_reads_back_equal(store: AnyStore) -> None:
    state = make_state()
    await store.save(state)
    assert await store.load_all() == {state.key: state}


async def test_state_with_every_optional_field_empty_reads_back_equal(store: AnyStore) -> None:
    state = dataclasses.replace(
        make_state(),
        latest=None,
        unfinished={},
        last_success_time=None,
        failing_job_id=None,
        active_job_id=None,
        total_jobs=None,
    )
    await store.save(state)
    assert await store.load_all() == {state.key: state}


async def test_unicode_commit_message_survives_the_store(store: AnyStore) -> None:
    message = "修复构建 🚀 — «déploiement»\n\u05e9\u05d5\u05e8\u05d4\tzwei \ud83d lone surrogate"
    state = dataclasses.replace(make_state(), latest=make_job(message=message))
    alert = dataclasses.replace(make_alert(), job=make_job(message=message))
    await store.save(state, [alert])
    assert (await store.load_all())[state.key].latest == make_job(message=message)
    assert [entry.alert for entry in await store.pending(now=1e12)] == [alert]


async def test_load_all_returns_every_branch_keyed_by_branch(store: AnyStore) -> None:
    # Branch names may contain separators; keys must stay apart.
    states = [
        make_state("d1abc", "main"),
        make_state("d1abc", "feature/login"),
        make_state("d1abc", "feature:login"),
        make_state("d2xyz", "main"),
    ]
    for state in states:
        await store.save(state)
    assert await store.load_all() == {state.key: state for state in states}


async def test_save_replaces_the_previous_state_of_the_branch(store: AnyStore) -> None:
    await store.save(make_state(latest_id="7", total_jobs=7))
    newer = make_state(latest_id="8", total_jobs=8)
    await store.save(newer)
    assert await store.load_all() == {newer.key: newer}


async def test_delete_forgets_the_branch_state_but_keeps_its_alerts(store: AnyStore) -> None:
    kept = make_state("d1abc", "develop")
    await store.save(make_state(), [make_alert()])
    await store.save(kept)
    await store.delete(BranchKey("d1abc", "main"))
    assert await store.load_all() == {kept.key: kept}
    assert [e.alert for e in await store.pending(now=1e12)] == [make_alert()]


async def test_delete_of_an_unknown_branch_is_harmless(store: AnyStore) -> None:
    await store.delete(BranchKey("nope", "main"))
    assert await store.load_all() == {}


# --- outbox: enqueue ------------------------------------------------------------------------


async def test_alerts_are_enqueued_with_their_state(store: AnyStore, backend: Backend) -> None:
    state, alert = make_state(), make_alert()
    await store.save(state, [alert])
    # A second instance over the same data sees both: nothing was left in a client buffer.
    other = await backend.open()
    assert await other.load_all() == {state.key: state}
    [entry] = await other.pending(now=backend.clock.now)
    assert entry.alert == alert
    assert entry.attempts == 0
    assert entry.created_at == backend.clock.now
    assert entry.next_attempt_at == backend.clock.now
    assert entry.last_error == ""


async def test_a_save_the_codec_refuses_changes_nothing(store: AnyStore) -> None:
    before = make_state()
    await store.save(before)
    naive = dataclasses.replace(make_alert(), last_success_time=datetime(2024, 1, 1))
    with pytest.raises(StoreError):
        await store.save(make_state(latest_id="9"), [make_alert("8"), naive])
    assert await store.load_all() == {before.key: before}
    assert await store.pending_count() == 0


async def test_alert_still_pending_is_not_enqueued_again(store: AnyStore, backend: Backend) -> None:
    alert = make_alert()
    await store.save(make_state(), [alert])
    await store.mark_failed(alert.dedup_key, "slack down", next_attempt_at=backend.clock.now)
    backend.clock.advance(60)
    await store.save(make_state(), [alert])
    [entry] = await store.pending(now=backend.clock.now)
    # The original entry, untouched: its attempts and creation time were not reset.
    assert entry.attempts == 1
    assert entry.created_at == backend.clock.now - 60
    assert await store.pending_count() == 1


async def test_alert_already_sent_is_not_enqueued_again(store: AnyStore) -> None:
    alert = make_alert()
    await store.save(make_state(), [alert])
    await store.mark_sent(alert.dedup_key, "1714564800.000100")
    await store.save(make_state(), [alert])
    assert await store.pending(now=1e12) == []
    assert await store.pending_count() == 0
    assert await store.receipt(alert.dedup_key) == "1714564800.000100"


async def test_the_same_alert_twice_in_one_save_is_enqueued_once(store: AnyStore) -> None:
    await store.save(make_state(), [make_alert(), make_alert()])
    assert await store.pending_count() == 1


async def test_concurrent_saves_of_one_alert_enqueue_it_once(backend: Backend) -> None:
    stores = [await backend.open() for _ in range(3)]
    async with anyio.create_task_group() as tg:
        for i in range(30):
            tg.start_soon(stores[i % 3].save, make_state(), [make_alert()])
    assert await stores[0].pending_count() == 1


async def test_alerts_differing_only_in_status_are_both_enqueued(store: AnyStore) -> None:
    await store.save(make_state(), [make_alert("7", FAILED), make_alert("7", CANCELLED)])
    assert await store.pending_count() == 2


# --- outbox: pending ------------------------------------------------------------------------


async def test_pending_is_oldest_first(store: AnyStore, backend: Backend) -> None:
    await store.save(make_state(), [make_alert("3"), make_alert("1")])
    backend.clock.advance(10)
    await store.save(make_state("d2xyz"), [make_alert("2", app_id="d2xyz")])
    backend.clock.advance(10)
    await store.save(make_state(), [make_alert("4", SUCCEED, kind="recovery")])
    pending = await store.pending(now=backend.clock.now)
    assert [e.alert.job.job_id for e in pending] == ["3", "1", "2", "4"]
    assert [e.created_at for e in pending] == sorted(e.created_at for e in pending)


async def test_pending_returns_only_entries_due_now(store: AnyStore, backend: Backend) -> None:
    now = backend.clock.now
    waiting, due = make_alert("1"), make_alert("2")
    await store.save(make_state(), [waiting, due])
    await store.mark_failed(waiting.dedup_key, "rate limited", next_attempt_at=now + 30)
    assert [e.alert for e in await store.pending(now=now)] == [due]
    assert [e.alert for e in await store.pending(now=now + 29.999)] == [due]
    # Due exactly at next_attempt_at, not a moment later.
    assert [e.alert for e in await store.pending(now=now + 30)] == [waiting, due]


async def test_entries_saved_later_are_not_due_earlier(store: AnyStore, backend: Backend) -> None:
    saved_at = backend.clock.now
    await store.save(make_state(), [make_alert()])
    assert await store.pending(now=saved_at - 1) == []


async def test_pending_stops_at_the_limit_keeping_the_oldest(store: AnyStore) -> None:
    await store.save(make_state(), [make_alert(str(n)) for n in range(5)])
    pending = await store.pending(now=1e12, limit=2)
    assert [e.alert.job.job_id for e in pending] == ["0", "1"]
    assert await store.pending(now=1e12, limit=0) == []


async def test_pending_count_counts_unsent_entries_whatever_their_due_time(
    store: AnyStore, backend: Backend
) -> None:
    alerts = [make_alert(str(n)) for n in range(3)]
    await store.save(make_state(), alerts)
    await store.mark_failed(alerts[0].dedup_key, "later", next_attempt_at=backend.clock.now + DAY)
    await store.mark_sent(alerts[1].dedup_key)
    assert await store.pending_count() == 2


async def test_times_read_back_exactly(store: AnyStore, backend: Backend) -> None:
    backend.clock.now = 1_714_564_800.123_456_7
    alert = make_alert()
    await store.save(make_state(), [alert])
    retry_at = 1_714_564_861.987_654_3
    await store.mark_failed(alert.dedup_key, "x", next_attempt_at=retry_at)
    [entry] = await store.pending(now=retry_at)
    assert entry.created_at == 1_714_564_800.123_456_7
    assert entry.next_attempt_at == retry_at


# --- outbox: delivery -----------------------------------------------------------------------


async def test_mark_failed_counts_attempts_and_keeps_the_last_error(
    store: AnyStore, backend: Backend
) -> None:
    alert = make_alert()
    await store.save(make_state(), [alert])
    now = backend.clock.now
    await store.mark_failed(alert.dedup_key, "timeout", next_attempt_at=now + 1)
    await store.mark_failed(alert.dedup_key, "HTTP 503 — retry", next_attempt_at=now + 5)
    [entry] = await store.pending(now=now + 5)
    assert entry.attempts == 2
    assert entry.last_error == "HTTP 503 — retry"
    assert entry.next_attempt_at == now + 5


async def test_retried_entry_keeps_its_place_in_the_order(
    store: AnyStore, backend: Backend
) -> None:
    first, second = make_alert("1"), make_alert("2")
    await store.save(make_state(), [first, second])
    await store.mark_failed(first.dedup_key, "timeout", next_attempt_at=backend.clock.now + 10)
    backend.clock.advance(10)
    assert [e.alert for e in await store.pending(now=backend.clock.now)] == [first, second]


async def test_sent_entry_leaves_pending(store: AnyStore) -> None:
    sent, other = make_alert("1"), make_alert("2")
    await store.save(make_state(), [sent, other])
    await store.mark_sent(sent.dedup_key, "ts-1")
    assert [e.alert for e in await store.pending(now=1e12)] == [other]
    assert await store.pending_count() == 1


async def test_receipt_is_kept_for_threading(store: AnyStore) -> None:
    failure = make_alert("7")
    await store.save(make_state(), [failure])
    assert await store.receipt(failure.dedup_key) is None  # not sent yet
    await store.mark_sent(failure.dedup_key, "1714564800.000100")
    assert await store.receipt(failure.dedup_key) == "1714564800.000100"
    assert await store.receipt("d1abc/main/999/FAILED") is None


async def test_sent_without_a_receipt_has_none(store: AnyStore) -> None:
    alert = make_alert()
    await store.save(make_state(), [alert])
    await store.mark_sent(alert.dedup_key)
    assert await store.receipt(alert.dedup_key) is None
    assert await store.pending_count() == 0


async def test_marking_sent_again_without_a_receipt_keeps_the_first(store: AnyStore) -> None:
    alert = make_alert()
    await store.save(make_state(), [alert])
    await store.mark_sent(alert.dedup_key, "ts-1")
    await store.mark_sent(alert.dedup_key)
    assert await store.receipt(alert.dedup_key) == "ts-1"


async def test_a_failure_reported_after_delivery_does_not_revive_the_entry(
    store: AnyStore, backend: Backend
) -> None:
    alert = make_alert()
    await store.save(make_state(), [alert])
    await store.mark_sent(alert.dedup_key, "ts-1")
    await store.mark_failed(alert.dedup_key, "late timeout", next_attempt_at=backend.clock.now)
    assert await store.pending(now=1e12) == []
    assert await store.pending_count() == 0


async def test_marking_an_unknown_alert_creates_nothing(store: AnyStore) -> None:
    await store.mark_failed("d1abc/main/1/FAILED", "x", next_attempt_at=0.0)
    await store.mark_sent("d1abc/main/1/FAILED", "ts-1")
    assert await store.pending_count() == 0
    assert await store.receipt("d1abc/main/1/FAILED") is None
    # And the key is not remembered as sent: a real alert with it is still enqueued.
    await store.save(make_state(), [make_alert("1")])
    assert await store.pending_count() == 1


# --- attempts and job messages ----------------------------------------------------------------


async def test_an_entry_reads_as_never_attempted_until_a_send_begins(store: AnyStore) -> None:
    alert = make_alert("1")
    await store.save(make_state(), [alert])
    [fresh] = await store.pending(now=1e12)
    assert fresh.first_attempt_at is None
    await store.mark_attempt(alert.dedup_key, 1000.5)
    await store.mark_attempt(alert.dedup_key, 2000.0)  # the first begin stands
    [begun] = await store.pending(now=1e12)
    assert begun.first_attempt_at == 1000.5


async def test_a_delivered_or_unknown_entry_ignores_an_attempt(store: AnyStore) -> None:
    alert = make_alert("1")
    await store.save(make_state(), [alert])
    await store.mark_sent(alert.dedup_key, "C1:1.1")
    await store.mark_attempt(alert.dedup_key, 5.0)
    await store.mark_attempt("nobody/main/9/FAILED", 5.0)
    assert await store.pending_count() == 0
    await store.save(make_state(), [make_alert("2")])
    [other] = await store.pending(now=1e12)
    assert other.first_attempt_at is None


async def test_a_job_message_is_saved_replaced_and_read_back(store: AnyStore) -> None:
    assert await store.message("dabc/main/7") is None
    await store.save_message("dabc/main/7", MessageRef("C1:1.000001", '{"text": "building"}'))
    await store.save_message("dabc/feature/x/7", MessageRef("C1:1.000002", ""))
    await store.save_message("dabc/main/7", MessageRef("C1:1.000001", '{"text": "failed"}'))
    assert await store.message("dabc/main/7") == MessageRef("C1:1.000001", '{"text": "failed"}')
    assert await store.message("dabc/feature/x/7") == MessageRef("C1:1.000002", "")


async def test_job_messages_survive_a_reopen_and_are_pruned_with_sent_records(
    backend: Backend,
) -> None:
    store = await backend.open(sent_retention=365 * DAY)
    await store.save_message("dabc/main/1", MessageRef("C1:1.1", "old"))
    backend.clock.advance(40 * DAY)
    await store.save_message("dabc/main/2", MessageRef("C1:2.2", "new"))
    await store.close()
    reopened = await backend.open(sent_retention=365 * DAY)
    assert await reopened.message("dabc/main/1") == MessageRef("C1:1.1", "old")
    await reopened.prune_sent(before=backend.clock.now - 30 * DAY)
    assert await reopened.message("dabc/main/1") is None
    assert await reopened.message("dabc/main/2") == MessageRef("C1:2.2", "new")


# --- retention ------------------------------------------------------------------------------


async def test_sent_records_past_retention_are_pruned_pending_ones_never(
    backend: Backend,
) -> None:
    # A long retention keeps the automatic pruning out of the way; prune_sent is driven here.
    store = await backend.open(sent_retention=365 * DAY)
    old_sent, old_pending, new_sent = make_alert("1"), make_alert("2"), make_alert("3")
    await store.save(make_state(), [old_sent, old_pending])
    await store.mark_sent(old_sent.dedup_key, "ts-1")
    backend.clock.advance(40 * DAY)
    await store.save(make_state(), [new_sent])
    await store.mark_sent(new_sent.dedup_key, "ts-3")

    assert await store.prune_sent(before=backend.clock.now - 30 * DAY) == 1

    assert await store.receipt(old_sent.dedup_key) is None
    assert await store.receipt(new_sent.dedup_key) == "ts-3"
    assert [e.alert for e in await store.pending(now=backend.clock.now)] == [old_pending]
    # Forgotten means forgotten: the pruned key may be enqueued again, the kept one may not.
    await store.save(make_state(), [old_sent, new_sent])
    assert await store.pending_count() == 2


async def test_pruning_runs_by_itself_as_alerts_are_delivered(backend: Backend) -> None:
    store = await backend.open(sent_retention=DAY)
    old, new = make_alert("1"), make_alert("2")
    await store.save(make_state(), [old, new])
    await store.mark_sent(old.dedup_key, "ts-1")
    backend.clock.advance(2 * DAY)
    await store.mark_sent(new.dedup_key, "ts-2")
    assert await store.receipt(old.dedup_key) is None
    assert await store.receipt(new.dedup_key) == "ts-2"


# --- lifecycle ------------------------------------------------------------------------------


async def test_everything_survives_close_and_reopen(backend: Backend) -> None:
    store = await backend.open()
    state = make_state()
    pending, retried, sent = make_alert("1"), make_alert("2"), make_alert("3")
    await store.save(state, [pending, retried, sent])
    await store.mark_failed(retried.dedup_key, "timeout", next_attempt_at=backend.clock.now + 5)
    await store.mark_sent(sent.dedup_key, "ts-3")
    await store.close()

    reopened = await backend.open()
    assert await reopened.load_all() == {state.key: state}
    entries = await reopened.pending(now=backend.clock.now + 5)
    assert [(e.alert, e.attempts, e.last_error) for e in entries] == [
        (pending, 0, ""),
        (retried, 1, "timeout"),
    ]
    assert await reopened.receipt(sent.dedup_key) == "ts-3"
    await reopened.save(state, [sent])  # still remembered as delivered
    assert await reopened.pending_count() == 2


async def test_a_closed_store_refuses_work(store: AnyStore) -> None:
    await store.close()
    await store.close()  # closing twice is harmless
    with pytest.raises(StoreError, match="closed"):
        await store.load_all()
    with pytest.raises(StoreError, match="closed"):
        await store.save(make_state())
