"""Fixtures for delivery tests: the local Slack, a fake clock, and real stores (SQLite always,
Redis when one answers on 127.0.0.1:6379 or AMPLIFY_MONITOR_TEST_REDIS_URL)."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from monitor.store.base import Store
from monitor.store.sqlite import SqliteStore

from .helpers import FakeClock, RecordingObserver
from .slack_server import FakeSlack

REDIS_URL = os.environ.get("AMPLIFY_MONITOR_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")

OpenStore = Callable[[], Awaitable[Store]]


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as server:
        yield server


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def observer() -> RecordingObserver:
    return RecordingObserver()


async def _redis_available() -> bool:
    try:
        import redis.asyncio
    except ImportError:
        return False
    client = redis.asyncio.Redis.from_url(REDIS_URL, socket_connect_timeout=0.5)
    try:
        return bool(await client.ping())
    except Exception:
        return False
    finally:
        await client.aclose()


@pytest.fixture(params=["sqlite", "redis"])
async def open_store(
    request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock
) -> AsyncIterator[OpenStore]:
    """Opens stores over one backing database (twice = what a restarted process sees)."""
    opened: list[Store] = []
    prefix = f"amplify-monitor-test-notify-{uuid.uuid4().hex}"
    if request.param == "redis" and not await _redis_available():
        pytest.skip("no Redis on " + REDIS_URL)

    async def open_one() -> Store:
        store: Store
        if request.param == "sqlite":
            store = await SqliteStore.open(tmp_path / "state.db", clock=clock)
        else:
            from monitor.store.redis import RedisStore

            store = await RedisStore.open(REDIS_URL, prefix, clock=clock)
        opened.append(store)
        return store

    yield open_one
    for store in opened:
        await store.close()
    if request.param == "redis":
        import redis.asyncio

        client = redis.asyncio.Redis.from_url(REDIS_URL)
        try:
            keys = [k async for k in client.scan_iter(f"{prefix}*")]
            if keys:
                await client.delete(*keys)
        finally:
            await client.aclose()


@pytest.fixture
async def store(open_store: OpenStore) -> Store:
    return await open_store()
