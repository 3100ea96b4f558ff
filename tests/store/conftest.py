"""One fixture, every backend: the contract suite runs against real SQLite files and a real
Redis (127.0.0.1:6379, or AMPLIFY_MONITOR_TEST_REDIS_URL), each test under its own Redis prefix."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio

from monitor.store.redis import RedisStore
from monitor.store.sqlite import SqliteStore

from .factories import FakeClock

REDIS_URL = os.environ.get("AMPLIFY_MONITOR_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")

AnyStore = SqliteStore | RedisStore


class Backend:
    """Opens stores over one backing database; every store it opened is closed at teardown.

    Opening twice gives two independent instances over the same data: that is how the suite
    checks what survives a close, or what a second process would see.
    """

    def __init__(self, name: str, tmp_path: Path) -> None:
        self.name = name
        self.clock = FakeClock()
        self.path = tmp_path / "state.db"
        self.prefix = f"amplify-monitor-test-{uuid.uuid4().hex}"
        self.opened: list[AnyStore] = []

    async def open(self, *, sent_retention: float = 30 * 24 * 3600.0) -> AnyStore:
        store: AnyStore
        if self.name == "sqlite":
            store = await SqliteStore.open(
                self.path, clock=self.clock, sent_retention=sent_retention
            )
        else:
            store = await RedisStore.open(
                REDIS_URL, self.prefix, clock=self.clock, sent_retention=sent_retention
            )
        self.opened.append(store)
        return store

    async def cleanup(self) -> None:
        for store in self.opened:
            await store.close()
        if self.name == "redis":
            await delete_prefix(self.prefix)


async def delete_prefix(prefix: str) -> None:
    client = redis.asyncio.Redis.from_url(REDIS_URL)
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}:*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


@pytest.fixture(params=["sqlite", "redis"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    name: str = request.param
    if name == "redis":
        await require_redis()
    backend = Backend(name, tmp_path)
    try:
        yield backend
    finally:
        await backend.cleanup()


@pytest.fixture
async def store(backend: Backend) -> AnyStore:
    return await backend.open()


@pytest.fixture
async def redis_prefix() -> AsyncIterator[str]:
    """A fresh prefix for tests that drive Redis directly; its keys are deleted afterwards."""
    await require_redis()
    prefix = f"amplify-monitor-test-{uuid.uuid4().hex}"
    try:
        yield prefix
    finally:
        await delete_prefix(prefix)


async def require_redis() -> None:
    # A missing server is a broken test environment, not a reason to pass quietly: fail.
    client = redis.asyncio.Redis.from_url(REDIS_URL)
    try:
        await client.ping()
    except redis.RedisError as exc:
        pytest.fail(f"Redis is required at {REDIS_URL} (AMPLIFY_MONITOR_TEST_REDIS_URL): {exc}")
    finally:
        await client.aclose()


async def corrupt_alert(backend: Backend, dedup_key: str) -> None:
    """Overwrite one outbox entry's stored alert with text no codec can read, as a disk fault
    or a hand edit would."""
    if backend.name == "sqlite":
        import sqlite3

        with sqlite3.connect(backend.path) as conn:
            conn.execute("UPDATE outbox SET alert = '{torn' WHERE dedup_key = ?", (dedup_key,))
        return
    client = redis.asyncio.Redis.from_url(REDIS_URL)
    try:
        await client.hset(f"{backend.prefix}:outbox:entry:{dedup_key}", "alert", "{torn")
    finally:
        await client.aclose()
