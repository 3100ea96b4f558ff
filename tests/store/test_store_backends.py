"""What only one backend has to get right (SQLite's file and schema, Redis' keys), and the
factory that picks between them."""

from __future__ import annotations

import os
import signal
import sqlite3
import stat
import sys
import textwrap
import uuid
from pathlib import Path

import anyio
import pytest
import redis.asyncio

from monitor.config import StateSettings
from monitor.model import MessageRef
from monitor.store import sqlite as sqlite_module
from monitor.store.codec import CodecError, StoreError
from monitor.store.factory import open_store
from monitor.store.redis import RedisStore
from monitor.store.sqlite import SqliteStore

from .conftest import REDIS_URL, delete_prefix
from .factories import make_alert, make_state

# --- SQLite ---------------------------------------------------------------------------------


async def test_sqlite_in_memory_store_works() -> None:
    store = await SqliteStore.open(":memory:")
    try:
        await store.save(make_state(), [make_alert()])
        assert list(await store.load_all()) == [make_state().key]
        assert await store.pending_count() == 1
    finally:
        await store.close()


async def test_a_new_sqlite_file_and_its_wal_and_directory_are_private_whatever_the_umask(
    tmp_path: Path,
) -> None:
    path = tmp_path / "new-dir" / "state.db"
    old = os.umask(0o022)  # the usual umask: files 0644, directories 0755
    try:
        store = await SqliteStore.open(path)
        try:
            await store.save(make_state(), [make_alert()])  # the -wal and -shm exist now
            modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in path.parent.iterdir()}
        finally:
            await store.close()
    finally:
        os.umask(old)
    assert modes == {"state.db": 0o600, "state.db-wal": 0o600, "state.db-shm": 0o600}
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


async def test_an_existing_sqlite_file_keeps_the_mode_its_operator_gave_it(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    path.touch()
    path.chmod(0o640)  # e.g. readable by a backup group
    store = await SqliteStore.open(path)
    await store.close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


async def test_sqlite_file_is_in_wal_mode_with_a_versioned_schema(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = await SqliteStore.open(path)
    await store.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        version = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    conn.close()
    assert version == (str(sqlite_module.SCHEMA_VERSION),)


async def test_sqlite_refuses_a_schema_from_a_newer_version(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    await (await SqliteStore.open(path)).close()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    conn.close()
    with pytest.raises(StoreError, match="newer"):
        await SqliteStore.open(path)


async def test_sqlite_reports_an_unopenable_path_as_store_error(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("not a directory")
    with pytest.raises(StoreError, match="cannot open"):
        await SqliteStore.open(tmp_path / "a-file" / "state.db")


async def test_sqlite_failure_midway_through_a_save_rolls_back_state_and_alerts(
    tmp_path: Path,
) -> None:
    path = tmp_path / "state.db"
    store = await SqliteStore.open(path)
    try:
        before = make_state(latest_id="7")
        await store.save(before)
        # A trigger makes the second outbox insert fail after the state row and the first alert
        # were already written inside the transaction.
        with sqlite3.connect(path) as conn:
            conn.execute(
                "CREATE TRIGGER boom BEFORE INSERT ON outbox WHEN NEW.dedup_key LIKE '%/9/%'"
                " BEGIN SELECT RAISE(ABORT, 'boom'); END"
            )
        conn.close()
        with pytest.raises(StoreError, match="boom"):
            await store.save(make_state(latest_id="9"), [make_alert("8"), make_alert("9")])
        assert await store.load_all() == {before.key: before}
        assert await store.pending_count() == 0
        # And the connection is usable afterwards: no transaction was left open.
        await store.save(make_state(latest_id="8"), [make_alert("8")])
        assert await store.pending_count() == 1
    finally:
        await store.close()


async def test_sqlite_unreadable_state_names_its_branch(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = await SqliteStore.open(path)
    try:
        await store.save(make_state("d1abc", "main"))
        with sqlite3.connect(path) as conn:
            conn.execute("UPDATE branch_state SET body = '{not json'")
        conn.close()
        with pytest.raises(CodecError, match="d1abc/main"):
            await store.load_all()
    finally:
        await store.close()


_SAVE_THEN_SIGKILL = textwrap.dedent(
    """
    import os, signal, sys
    import anyio
    from monitor.model import Alert, BranchKey, BranchState, JobSummary
    from monitor.store.sqlite import SqliteStore

    async def main() -> None:
        store = await SqliteStore.open(sys.argv[1])
        key = BranchKey("d1abc", "main")
        job = JobSummary("7", "FAILED", commit_message="breaks prod")
        await store.save(BranchState(key, "shop", latest=job), [Alert(key, "shop", "failure", job)])
        os.kill(os.getpid(), signal.SIGKILL)

    anyio.run(main)
    """
)


async def test_sqlite_saved_alert_survives_a_sigkill(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    with anyio.fail_after(60):
        done = await anyio.run_process(
            [sys.executable, "-c", _SAVE_THEN_SIGKILL, str(path)], check=False
        )
    assert done.returncode == -signal.SIGKILL, done.stderr.decode()
    store = await SqliteStore.open(path)
    try:
        [entry] = await store.pending(now=1e12)
        assert entry.alert.job.commit_message == "breaks prod"
        assert len(await store.load_all()) == 1
    finally:
        await store.close()


# --- Redis ----------------------------------------------------------------------------------


async def test_redis_key_layout_is_the_documented_one(redis_prefix: str) -> None:
    # The layout is part of the schema version: a change here needs SCHEMA_VERSION bumped.
    store = await RedisStore.open(REDIS_URL, redis_prefix)
    try:
        failed, sent = make_alert("1"), make_alert("2")
        await store.save(make_state(), [failed, sent])
        await store.mark_failed(failed.dedup_key, "x", next_attempt_at=0.0)
        await store.mark_sent(sent.dedup_key, "ts")
        await store.save_message(sent.job_key, MessageRef("C1:1.1", "{}"))
    finally:
        await store.close()
    client = redis.asyncio.Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        keys = {key async for key in client.scan_iter(match=f"{redis_prefix}:*")}
        types = {key: await client.type(key) for key in keys}
    finally:
        await client.aclose()
    p = redis_prefix
    assert types == {
        f"{p}:meta": "hash",
        f"{p}:state": "hash",
        f"{p}:outbox:seq": "string",
        f"{p}:outbox:due": "zset",
        f"{p}:outbox:order": "zset",
        f"{p}:outbox:sent": "zset",
        f"{p}:outbox:entry:{failed.dedup_key}": "hash",
        f"{p}:outbox:entry:{sent.dedup_key}": "hash",
        f"{p}:message:{sent.job_key}": "hash",
        f"{p}:message:saved": "zset",
    }


async def test_redis_stores_with_different_prefixes_do_not_see_each_other(
    redis_prefix: str,
) -> None:
    other_prefix = f"{redis_prefix}-other"
    first = await RedisStore.open(REDIS_URL, redis_prefix)
    second = await RedisStore.open(REDIS_URL, other_prefix)
    try:
        await first.save(make_state(), [make_alert()])
        assert await second.load_all() == {}
        assert await second.pending_count() == 0
        # Not even the dedup memory is shared.
        await second.save(make_state(), [make_alert()])
        assert await second.pending_count() == 1
    finally:
        await first.close()
        await second.close()
        await delete_prefix(other_prefix)


async def test_redis_refuses_data_from_a_newer_version(redis_prefix: str) -> None:
    client = redis.asyncio.Redis.from_url(REDIS_URL)
    try:
        await client.hset(f"{redis_prefix}:meta", "schema_version", "99")
    finally:
        await client.aclose()
    with pytest.raises(StoreError, match="newer"):
        await RedisStore.open(REDIS_URL, redis_prefix)


async def test_redis_unreachable_server_is_a_store_error_without_the_password() -> None:
    with pytest.raises(StoreError) as caught:
        await RedisStore.open("redis://:hunter2@127.0.0.1:1/0", f"t-{uuid.uuid4().hex}")
    assert "hunter2" not in str(caught.value)


async def test_redis_refuses_an_empty_prefix() -> None:
    with pytest.raises(StoreError, match="prefix"):
        await RedisStore.open(REDIS_URL, "")


async def test_redis_save_failing_on_the_state_still_keeps_its_alerts(redis_prefix: str) -> None:
    # The script writes alerts before state: if it breaks in between, the alert is not lost
    # (the next poll's replay of it is ignored as a duplicate).
    store = await RedisStore.open(REDIS_URL, redis_prefix)
    client = redis.asyncio.Redis.from_url(REDIS_URL)
    try:
        await client.set(f"{redis_prefix}:state", "not a hash")
        with pytest.raises(StoreError, match="WRONGTYPE"):
            await store.save(make_state(), [make_alert()])
        assert await store.pending_count() == 1
    finally:
        await client.aclose()
        await store.close()


# --- factory --------------------------------------------------------------------------------


async def test_factory_opens_sqlite_by_default(tmp_path: Path) -> None:
    store = await open_store(StateSettings(path=tmp_path / "state.db"))
    try:
        assert isinstance(store, SqliteStore)
        await store.save(make_state())
    finally:
        await store.close()
    assert (tmp_path / "state.db").exists()


async def test_factory_opens_redis_when_asked(redis_prefix: str) -> None:
    settings = StateSettings.model_validate(
        {"backend": "redis", "redis_url": REDIS_URL, "redis_prefix": redis_prefix}
    )
    store = await open_store(settings)
    try:
        assert isinstance(store, RedisStore)
        await store.save(make_state())
        assert len(await store.load_all()) == 1
    finally:
        await store.close()


async def test_factory_explains_a_missing_redis_package(monkeypatch: pytest.MonkeyPatch) -> None:
    # None in sys.modules makes `import redis` fail as if the package were not installed.
    for name in [n for n in sys.modules if n == "redis" or n.startswith("redis.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "redis", None)
    monkeypatch.delitem(sys.modules, "monitor.store.redis", raising=False)
    settings = StateSettings.model_validate({"backend": "redis", "redis_url": "redis://x"})
    with pytest.raises(StoreError, match=r"pip install 'amplify-monitor\[redis\]'"):
        await open_store(settings)
