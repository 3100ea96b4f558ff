"""Dispatchers that share one outbox (replicas), through the store's claims and nothing held
in memory: a burst is delivered exactly once between two of them; a dispatcher that died
holding claims leaves its entries to the living once the claims expire, not before; an entry
that cannot be decoded is closed as dead and counted, and the others go on."""

from __future__ import annotations

import sqlite3
import time
from collections import Counter
from pathlib import Path

from monitor.notify.outbox import DEFAULT_LEASE
from monitor.store.base import Sent
from monitor.store.sqlite import SqliteStore

from .conftest import OpenStore
from .harness import bot_settings, dispatcher_for, eventually, running, save, settle
from .helpers import FakeClock, RecordingObserver, make_alert
from .slack_server import FakeSlack

CHANNELS = 4


async def test_two_dispatchers_on_one_outbox_deliver_a_burst_exactly_once(
    slack: FakeSlack, open_store: OpenStore, observer: RecordingObserver
) -> None:
    first_store, second_store = await open_store(), await open_store()
    routes = [{"branches": [f"b{n}"], "channel": f"#c{n}"} for n in range(CHANNELS)]
    settings = bot_settings(slack, routes=routes, digest_threshold=1000)
    first = dispatcher_for(settings, first_store, observer, time.time)
    second = dispatcher_for(settings, second_store, RecordingObserver(), time.time)
    alerts = [make_alert(str(n), branch=f"b{n % CHANNELS}") for n in range(24)]
    async with running(first), running(second):
        for alert in alerts:
            await save(first_store, alert)
            first.poke()
            second.poke()
        await eventually(lambda: len(slack.delivered) >= len(alerts), timeout=20)
        await settle(0.5)
    counts = Counter(r.dedup_token for r in slack.delivered)
    assert len(counts) == len(alerts) and set(counts.values()) == {1}
    assert await first_store.pending_count() == 0


async def test_the_entries_of_a_dead_dispatcher_wait_for_its_lease_then_go(
    slack: FakeSlack, open_store: OpenStore, observer: RecordingObserver, clock: FakeClock
) -> None:
    store = await open_store()
    await save(store, make_alert("42"))
    # A replica took the entry and died before sending it: its claim is all that is left.
    [claim] = await store.claim(clock(), limit=10, lease=DEFAULT_LEASE)
    live = dispatcher_for(bot_settings(slack), store, observer, clock)
    async with running(live):
        live.poke()
        await settle(0.3)
        assert slack.delivered == []  # the claim still stands
        clock.advance(DEFAULT_LEASE)
        live.poke()
        await slack.wait_for(1)
    # The dead one's token records nothing now, were it to come back.
    assert await store.settle(claim, Sent()) is False
    assert await store.pending_count() == 0


async def test_an_undecodable_entry_is_closed_as_dead_and_the_others_are_delivered(
    slack: FakeSlack, tmp_path: Path, observer: RecordingObserver, clock: FakeClock
) -> None:
    path = tmp_path / "state.db"
    store = await SqliteStore.open(path, clock=clock)
    try:
        torn, fine = make_alert("41"), make_alert("42")
        await save(store, torn, fine)
        with sqlite3.connect(path) as conn:
            conn.execute("UPDATE outbox SET alert = '{x' WHERE dedup_key = ?", (torn.dedup_key,))
        dispatcher = dispatcher_for(bot_settings(slack), store, observer, clock)
        async with running(dispatcher):
            dispatcher.poke()
            await slack.wait_for(1)
            await eventually(lambda: observer.alerts[("unknown", "undecodable")] == 1)
        assert "#42" in slack.delivered[0].everything()
        assert await store.pending_count() == 0
    finally:
        await store.close()
