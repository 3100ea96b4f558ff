"""The outbox claims, over every backend: an entry is taken by one dispatcher at a time, for a
lease; the claim's token fences what it may record; an expired claim is free again; an entry
that cannot be decoded is handed out as such, never blocking the others."""

from __future__ import annotations

import anyio
import anyio.lowlevel

from monitor.store.base import Dead, Failed, Released, Sent

from .conftest import AnyStore, Backend, corrupt_alert
from .factories import make_alert, make_state

LEASE = 60.0


async def saved(store: AnyStore, *job_ids: str) -> list[str]:
    alerts = [make_alert(job_id) for job_id in job_ids]
    await store.save(make_state(), alerts)
    return [a.dedup_key for a in alerts]


async def test_a_claim_takes_due_entries_oldest_first_and_holds_them(
    store: AnyStore, backend: Backend
) -> None:
    keys = await saved(store, "1", "2", "3")
    now = backend.clock.now
    first = await store.claim(now, limit=2, lease=LEASE)
    assert [c.dedup_key for c in first] == keys[:2]
    assert all(c.until == now + LEASE and c.entry is not None for c in first)
    assert first[0].entry is not None and first[0].entry.alert == make_alert("1")
    # Held: a second dispatcher gets only what is left, then nothing.
    assert [c.dedup_key for c in await store.claim(now, limit=10, lease=LEASE)] == keys[2:]
    assert await store.claim(now, limit=10, lease=LEASE) == []
    assert await store.pending_count() == 3  # claimed is not delivered


async def test_an_expired_claim_is_free_again_and_its_old_token_records_nothing(
    store: AnyStore, backend: Backend
) -> None:
    [key] = await saved(store, "1")
    now = backend.clock.now
    [stale] = await store.claim(now, limit=1, lease=LEASE)
    [fresh] = await store.claim(now + LEASE, limit=1, lease=LEASE)  # the holder died
    assert fresh.dedup_key == key and fresh.token != stale.token
    assert await store.settle(stale, Sent("C1:1.1")) is False
    assert await store.renew([stale], now + 2 * LEASE) == []
    assert await store.pending_count() == 1
    assert await store.settle(fresh, Sent("C1:2.2")) is True
    assert await store.receipt(key) == "C1:2.2"
    assert await store.pending_count() == 0


async def test_a_sent_entry_is_closed_and_never_claimed_again(
    store: AnyStore, backend: Backend
) -> None:
    [key] = await saved(store, "1")
    [claim] = await store.claim(backend.clock.now, limit=1, lease=LEASE)
    assert await store.settle(claim, Sent("C1:1.1"))
    assert await store.settle(claim, Sent("C1:9.9")) is False  # settled once
    assert await store.claim(backend.clock.now + 10 * LEASE, limit=5, lease=LEASE) == []
    await store.save(make_state(), [make_alert("1")])  # still the dedup memory
    assert await store.pending_count() == 0 and await store.receipt(key) == "C1:1.1"


async def test_a_failed_attempt_counts_and_frees_the_entry_at_its_next_attempt_time(
    store: AnyStore, backend: Backend
) -> None:
    await saved(store, "1")
    now = backend.clock.now
    [claim] = await store.claim(now, limit=1, lease=LEASE)
    assert await store.settle(claim, Failed("http_503", now + 30))
    assert await store.claim(now + 29, limit=1, lease=LEASE) == []
    [again] = await store.claim(now + 30, limit=1, lease=LEASE)
    assert again.entry is not None
    assert (again.entry.attempts, again.entry.last_error) == (1, "http_503")


async def test_a_released_entry_is_free_at_once_or_from_its_not_before(
    store: AnyStore, backend: Backend
) -> None:
    await saved(store, "1", "2")
    now = backend.clock.now
    one, two = await store.claim(now, limit=2, lease=LEASE)
    assert await store.settle(one, Released())
    assert await store.settle(two, Released(not_before=now + 20))
    assert [c.dedup_key for c in await store.claim(now, limit=5, lease=LEASE)] == [one.dedup_key]
    [later] = await store.claim(now + 20, limit=5, lease=LEASE)
    assert later.dedup_key == two.dedup_key
    assert later.entry is not None and later.entry.attempts == 0  # no attempt was made


async def test_due_by_takes_entries_that_wait_for_a_retry(
    store: AnyStore, backend: Backend
) -> None:
    await saved(store, "1")
    now = backend.clock.now
    [claim] = await store.claim(now, limit=1, lease=LEASE)
    await store.settle(claim, Failed("invalid_auth", now + 900))
    # A restart is often the fix: the first read after start takes every unsent entry.
    [taken] = await store.claim(now, limit=1, lease=LEASE, due_by=float("inf"))
    assert taken.dedup_key == claim.dedup_key


async def test_renewing_extends_only_the_claims_still_held(
    store: AnyStore, backend: Backend
) -> None:
    await saved(store, "1", "2")
    now = backend.clock.now
    kept, sent = await store.claim(now, limit=2, lease=LEASE)
    await store.settle(sent, Sent())
    [renewed] = await store.renew([kept, sent], now + 5 * LEASE)
    assert renewed.dedup_key == kept.dedup_key and renewed.until == now + 5 * LEASE
    assert await store.claim(now + 4 * LEASE, limit=5, lease=LEASE) == []


async def test_an_undecodable_entry_is_handed_out_as_such_and_settled_dead(
    store: AnyStore, backend: Backend
) -> None:
    torn, fine = await saved(store, "1", "2")
    await corrupt_alert(backend, torn)
    claims = await store.claim(backend.clock.now, limit=5, lease=LEASE)
    assert [(c.dedup_key, c.entry is None) for c in claims] == [(torn, True), (fine, False)]
    assert claims[0].error and torn in claims[0].error
    assert await store.settle(claims[0], Dead(claims[0].error))
    assert await store.pending_count() == 1
    assert await store.claim(backend.clock.now + 10 * LEASE, limit=5, lease=LEASE) != []


async def test_two_dispatchers_claiming_at_once_never_take_the_same_entry(
    backend: Backend,
) -> None:
    first, second = await backend.open(), await backend.open()
    await first.save(make_state(), [make_alert(str(n)) for n in range(60)])
    taken: dict[str, list[str]] = {"first": [], "second": []}

    async def drain(name: str, store: AnyStore) -> None:
        while claims := await store.claim(backend.clock.now, limit=3, lease=LEASE):
            taken[name] += [c.dedup_key for c in claims]
            await anyio.lowlevel.checkpoint()

    async with anyio.create_task_group() as tg:
        tg.start_soon(drain, "first", first)
        tg.start_soon(drain, "second", second)
    assert not set(taken["first"]) & set(taken["second"])
    assert len(taken["first"]) + len(taken["second"]) == 60


async def test_reopening_a_sqlite_file_frees_its_dead_predecessors_claims(
    backend: Backend,
) -> None:
    if backend.name != "sqlite":
        # Redis is shared by live replicas: a claim stays until it expires.
        store = await backend.open()
        await saved(store, "1")
        await store.claim(backend.clock.now, limit=1, lease=LEASE)
        assert await (await backend.open()).claim(backend.clock.now, 1, LEASE) == []
        return
    store = await backend.open()
    await saved(store, "1")
    await store.claim(backend.clock.now, limit=1, lease=LEASE)
    await store.close()
    # A state file belongs to one daemon: the claim was a killed predecessor's.
    [claim] = await (await backend.open()).claim(backend.clock.now, 1, LEASE)
    assert claim.entry is not None
