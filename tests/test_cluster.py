"""Replicas sharing the fleet through a real Redis: the split, leases that expire, takeover
within two lease periods, release on leave, stale holders fenced off, and one API budget."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import AsyncIterator

import anyio
import pytest
import redis.asyncio

from monitor.cluster import RedisCluster, SharedBucket, rendezvous
from monitor.pacing import Pacer

REDIS_URL = os.environ.get("AMPLIFY_MONITOR_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
APPS = [f"d{n:04d}app" for n in range(60)]
LEASE = 1.5


class Seen:
    def __init__(self) -> None:
        self.replicas = 0
        self.owned = 0
        self.takeovers = 0

    def cluster(self, replicas: int, owned: int) -> None:
        self.replicas, self.owned = replicas, owned

    def takeover(self) -> None:
        self.takeovers += 1

    def budget_share(self, share: float) -> None:
        self.share = share


@pytest.fixture
async def client() -> AsyncIterator[redis.asyncio.Redis]:
    c = redis.asyncio.Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        await c.ping()
    except Exception:
        pytest.skip("no Redis on " + REDIS_URL)
    yield c
    await c.aclose()


@pytest.fixture
async def prefix(client: redis.asyncio.Redis) -> AsyncIterator[str]:
    name = f"amplify-monitor-test-cluster-{uuid.uuid4().hex}"
    yield name
    keys = [k async for k in client.scan_iter(f"{name}:*")]
    if keys:
        await client.delete(*keys)


def replica(
    client: redis.asyncio.Redis, prefix: str, name: str, log: list[tuple[str, str, list[str]]]
) -> tuple[RedisCluster, Seen]:
    seen = Seen()

    async def acquired(apps: list[str]) -> None:
        log.append((name, "acquired", apps))

    def released(apps: list[str]) -> None:
        log.append((name, "released", apps))

    cluster = RedisCluster(client, prefix, LEASE, name, lambda: APPS, acquired, released, seen)
    return cluster, seen


async def test_three_replicas_split_the_apps_with_no_app_held_twice(
    client: redis.asyncio.Redis, prefix: str
) -> None:
    log: list[tuple[str, str, list[str]]] = []
    replicas = [replica(client, prefix, f"r{n}", log) for n in range(3)]
    for _ in range(2):  # a round to see each other, one to settle the split
        for cluster, _seen in replicas:
            await cluster.round()
    held = [cluster.held for cluster, _ in replicas]
    assert set().union(*held) == set(APPS)
    assert sum(len(h) for h in held) == len(APPS)  # disjoint
    assert all(len(h) >= 5 for h in held)  # everyone has a share
    assert all(seen.replicas == 3 for _, seen in replicas)
    members = replicas[0][0].members
    for cluster, _ in replicas:
        assert all(rendezvous(app, members) == cluster.token for app in cluster.held)


async def test_a_dead_replicas_apps_are_taken_over_within_two_leases(
    client: redis.asyncio.Redis, prefix: str
) -> None:
    log: list[tuple[str, str, list[str]]] = []
    (a, a_seen), (b, _b_seen) = replica(client, prefix, "a", log), replica(client, prefix, "b", log)
    for _ in range(2):
        await a.round()
        await b.round()
    orphaned = set(b.held)
    assert orphaned
    # b is killed: no more rounds, nothing released. a keeps its rounds at a third of a lease.
    started = time.monotonic()
    while not orphaned <= a.held:
        assert time.monotonic() - started < 2 * LEASE, "not taken over within two leases"
        await anyio.sleep(LEASE / 3)
        await a.round()
    assert a.held == set(APPS)
    assert a_seen.takeovers == len(orphaned)
    assert ("a", "acquired", sorted(orphaned)) in log


async def test_leaving_gives_the_apps_back_at_once(
    client: redis.asyncio.Redis, prefix: str
) -> None:
    log: list[tuple[str, str, list[str]]] = []
    (a, _), (b, _) = replica(client, prefix, "a", log), replica(client, prefix, "b", log)
    for _ in range(2):
        await a.round()
        await b.round()
    await b.leave()
    await a.round()  # the very next round, not a lease later
    assert a.held == set(APPS)


async def test_a_replica_that_lost_its_lease_stops_polling_and_cannot_renew_it(
    client: redis.asyncio.Redis, prefix: str
) -> None:
    log: list[tuple[str, str, list[str]]] = []
    (a, _), (b, _) = replica(client, prefix, "a", log), replica(client, prefix, "b", log)
    await a.round()  # alone: everything
    assert a.held == set(APPS)
    await anyio.sleep(LEASE + 0.2)  # a hangs past its lease; b arrives and takes what is free
    await b.round()
    await b.round()
    taken_by_b = set(b.held)
    assert taken_by_b == set(APPS)
    await a.round()  # a wakes up: its tokens no longer match; it releases what it lost
    assert not a.held & taken_by_b
    assert ("a", "released", sorted(taken_by_b - a.held)) in log


async def test_replicas_share_one_budget(client: redis.asyncio.Redis, prefix: str) -> None:
    rate = 20.0
    pacers = [
        Pacer(
            rate,
            burst=1.0,
            shared=SharedBucket(client, f"{prefix}:budget:test", rate=rate, burst=1.0),
        )
        for _ in range(3)
    ]
    calls = 0

    async def spend(pacer: Pacer) -> None:
        nonlocal calls
        while True:
            await pacer.acquire()
            calls += 1

    with anyio.move_on_after(1.5):
        async with anyio.create_task_group() as tg:
            for pacer in pacers:
                tg.start_soon(spend, pacer)
    # One budget of 20/s for all three, not 60/s: 1.5 s is about 31 calls.
    assert 20 <= calls <= 36, calls


async def test_a_shared_budget_never_strands_a_waiter_that_arrives_during_its_answer(
    client: redis.asyncio.Redis, prefix: str
) -> None:
    # Calls of every priority arriving while the head waits for Redis' answer: each must get
    # its token (a stranded waiter would hang its call for ever).
    pacer = Pacer(50.0, shared=SharedBucket(client, f"{prefix}:budget:x", rate=50.0, burst=5.0))
    done = 0

    async def call(priority: int) -> None:
        nonlocal done
        await pacer.acquire(priority)
        done += 1

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            for n in range(60):
                tg.start_soon(call, 5 - n % 6)
                await anyio.sleep(0.002)
    assert done == 60 and pacer.waiting == 0
