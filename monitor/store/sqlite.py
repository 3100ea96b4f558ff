"""The default Store: one SQLite file holding branch state, the alert outbox and the schema version.

Owns the schema and its migrations, and the rule that a save (state + alerts) is one
transaction. stdlib sqlite3 is blocking, so every call runs in a worker thread on one connection
that a lock hands to one caller at a time.
"""

from __future__ import annotations

import dataclasses
import os
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import anyio
import anyio.to_thread

from monitor import log
from monitor.model import Alert, BranchKey, BranchState, MessageRef, OutboxEntry
from monitor.store.base import (
    DEFAULT_SENT_RETENTION,
    Claim,
    Failed,
    Pruning,
    Released,
    Sent,
    Settlement,
)
from monitor.store.codec import (
    CodecError,
    StoreError,
    decode_alert,
    decode_state,
    encode_alert,
    encode_state,
)

_log = log.get(__name__)

_T = TypeVar("_T")

SCHEMA_VERSION = 3

# Statements that take the schema from version N-1 to N, applied in order inside one transaction
# on open. Add a new entry (never edit an old one) to change the schema.
_MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        """
        CREATE TABLE branch_state (
            app_id     TEXT NOT NULL,
            branch     TEXT NOT NULL,
            body       TEXT NOT NULL,
            updated_at REAL NOT NULL,
            PRIMARY KEY (app_id, branch)
        ) WITHOUT ROWID
        """,
        # seq (the rowid) is the enqueue order that pending() follows; dedup_key UNIQUE is what
        # makes a replayed save harmless, so sent rows stay until pruned: they are the memory.
        """
        CREATE TABLE outbox (
            seq             INTEGER PRIMARY KEY,
            dedup_key       TEXT NOT NULL UNIQUE,
            alert           TEXT NOT NULL,
            attempts        INTEGER NOT NULL DEFAULT 0,
            created_at      REAL NOT NULL,
            next_attempt_at REAL NOT NULL,
            last_error      TEXT NOT NULL DEFAULT '',
            sent_at         REAL,
            receipt         TEXT
        )
        """,
        "CREATE INDEX outbox_unsent ON outbox (seq) WHERE sent_at IS NULL",
        "CREATE INDEX outbox_sent_at ON outbox (sent_at) WHERE sent_at IS NOT NULL",
    ),
    2: (
        "ALTER TABLE outbox ADD COLUMN first_attempt_at REAL",
        # One row per job with a Slack message: its receipt and what it shows now.
        """
        CREATE TABLE message (
            job_key  TEXT PRIMARY KEY,
            receipt  TEXT NOT NULL,
            payload  TEXT NOT NULL,
            saved_at REAL NOT NULL
        ) WITHOUT ROWID
        """,
        "CREATE INDEX message_saved_at ON message (saved_at)",
    ),
    3: (
        # A dispatcher's claim on an entry: who (a fencing token) and until when.
        "ALTER TABLE outbox ADD COLUMN claim_token TEXT",
        "ALTER TABLE outbox ADD COLUMN claimed_until REAL",
    ),
}


def _create_private(path: Path) -> None:
    """A new state file is the daemon's alone (it holds commit messages and Slack references of
        private repositories): the file 0600 and a directory made for it 0700 (a umask can only
    take bits away from those).
        SQLite gives the -wal and -shm files the database file's mode. An existing file keeps
        the mode its operator gave it."""
    if path.exists():
        return
    parent = path.parent
    if not parent.exists():
        parent.mkdir(parents=True)
        parent.chmod(0o700)
    try:
        fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it meanwhile
        return
    os.close(fd)


def _connect(path: str) -> sqlite3.Connection:
    # isolation_level=None: no implicit transactions; every write says BEGIN IMMEDIATE itself,
    # so the write lock is taken up front instead of failing halfway with SQLITE_BUSY.
    # check_same_thread=False: worker threads differ call to call; the store's lock serialises.
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        # Another process (a second `once` run, an operator's sqlite3 shell) may hold the lock.
        conn.execute("PRAGMA busy_timeout = 5000")
        conn.execute("PRAGMA journal_mode = WAL")
        # FULL, not NORMAL. Either survives a SIGKILL: a commit's WAL frames are in the OS page
        # cache before COMMIT returns. NORMAL can still lose the last commits to a power cut or
        # kernel crash (VM reset, node loss), and losing a mark_sent means a duplicate Slack
        # message. FULL fsyncs the WAL on each commit; at a few commits a second that is cheap.
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
    except BaseException:
        conn.close()
        raise
    return conn


@contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[None]:
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        # Some errors already rolled back by themselves; a second ROLLBACK would raise and hide
        # the error that matters. A failed COMMIT leaves the transaction open: close it too.
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _migrate(conn: sqlite3.Connection) -> tuple[int, int]:
    """Bring the schema to SCHEMA_VERSION; return (version found, version now)."""
    with _transaction(conn):
        conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        found = int(row[0]) if row else 0
        if found > SCHEMA_VERSION:
            raise StoreError(
                f"schema version {found} was written by a newer amplify-monitor "
                f"(this one knows up to {SCHEMA_VERSION}); refusing to touch it"
            )
        for version in range(found + 1, SCHEMA_VERSION + 1):
            for statement in _MIGRATIONS[version]:
                conn.execute(statement)
        conn.execute(
            "INSERT INTO meta (key, value) VALUES ('schema_version', ?)"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (str(SCHEMA_VERSION),),
        )
    return found, SCHEMA_VERSION


def _prune(conn: sqlite3.Connection, before: float) -> int:
    with _transaction(conn):
        cursor = conn.execute(
            "DELETE FROM outbox WHERE sent_at IS NOT NULL AND sent_at < ?", (before,)
        )
        conn.execute("DELETE FROM message WHERE saved_at < ?", (before,))
    return cursor.rowcount


def _release_all(conn: sqlite3.Connection) -> None:
    # A state file belongs to one daemon: a claim found on open was its predecessor's, which
    # is gone. Waiting for the claim to expire would only delay what it held.
    with _transaction(conn):
        conn.execute(
            "UPDATE outbox SET claim_token = NULL, claimed_until = NULL"
            " WHERE claim_token IS NOT NULL"
        )


# The columns `_entry` reads, in its order (literal in each statement: no SQL is built).
_PENDING = (
    "SELECT dedup_key, alert, attempts, created_at, next_attempt_at, last_error, first_attempt_at"
    " FROM outbox WHERE sent_at IS NULL AND next_attempt_at <= ? ORDER BY seq LIMIT ?"
)
_CLAIM = (
    "UPDATE outbox SET claim_token = ?, claimed_until = ? WHERE seq IN ("
    " SELECT seq FROM outbox WHERE sent_at IS NULL AND next_attempt_at <= ?"
    " AND (claimed_until IS NULL OR claimed_until <= ?) ORDER BY seq LIMIT ?) RETURNING seq,"
    " dedup_key, alert, attempts, created_at, next_attempt_at, last_error, first_attempt_at"
)


def _entry(row: tuple[Any, ...]) -> OutboxEntry:
    dedup, alert, attempts, created_at, next_attempt_at, last_error, begun = row
    try:
        decoded = decode_alert(alert)
    except CodecError as exc:
        raise CodecError(f"outbox entry {dedup}: {exc}") from exc
    return OutboxEntry(
        alert=decoded,
        attempts=attempts,
        created_at=created_at,
        next_attempt_at=next_attempt_at,
        last_error=last_error,
        first_attempt_at=begun,
    )


class SqliteStore:
    """Store over one SQLite database. Create it with ``await SqliteStore.open(path)``."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        path: str,
        clock: Callable[[], float],
        sent_retention: float,
    ) -> None:
        self._conn: sqlite3.Connection | None = conn
        self._path = path
        self._clock = clock
        self._pruning = Pruning(clock(), sent_retention)
        self._lock = anyio.Lock()

    @classmethod
    async def open(
        cls,
        path: str | Path,
        *,
        clock: Callable[[], float] = time.time,
        sent_retention: float = DEFAULT_SENT_RETENTION,
    ) -> SqliteStore:
        """Open (creating if needed) the database at `path` and bring its schema up to date.

        :param path: a file path, or ":memory:" for a store that lives as long as the object.
        :param clock: seconds since the epoch; stamps created_at and sent_at (tests fake it).
        :param sent_retention: seconds a sent record is kept as dedup memory before pruning.
        """
        where = str(path)

        def setup() -> tuple[sqlite3.Connection, int, int, int]:
            if where != ":memory:":
                _create_private(Path(where))
            conn = _connect(where)
            try:
                found, now = _migrate(conn)
                pruned = _prune(conn, clock() - sent_retention)
                _release_all(conn)
            except BaseException:
                conn.close()
                raise
            return conn, found, now, pruned

        try:
            conn, found, version, pruned = await anyio.to_thread.run_sync(setup)
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"sqlite {where}: cannot open: {exc}") from exc
        _log.info(
            "store_opened",
            backend="sqlite",
            path=where,
            schema_version=version,
            migrated_from=found if found != version else None,
            pruned_sent=pruned,
        )
        return cls(conn, where, clock, sent_retention)

    async def _run(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        # The lock, not sqlite3, keeps the connection single-user. run_sync is not abandoned on
        # cancellation, so the lock is held until the thread has really finished with it.
        async with self._lock:
            conn = self._conn
            if conn is None:
                raise StoreError(f"sqlite {self._path}: store is closed")
            try:
                return await anyio.to_thread.run_sync(work, conn)
            except sqlite3.Error as exc:
                raise StoreError(f"sqlite {self._path}: {exc}") from exc

    async def load_all(self) -> dict[BranchKey, BranchState]:
        def work(conn: sqlite3.Connection) -> dict[BranchKey, BranchState]:
            states: dict[BranchKey, BranchState] = {}
            for app_id, branch, body in conn.execute(
                "SELECT app_id, branch, body FROM branch_state"
            ):
                try:
                    state = decode_state(body)
                except CodecError as exc:
                    raise CodecError(f"branch state {app_id}/{branch}: {exc}") from exc
                states[state.key] = state
            return states

        return await self._run(work)

    async def save(self, state: BranchState, alerts: Sequence[Alert] = ()) -> None:
        # Encode before touching the database: a value the codec refuses aborts the whole save
        # without a transaction ever starting.
        body = encode_state(state)
        rows = [(alert.dedup_key, encode_alert(alert)) for alert in alerts]
        now = self._clock()

        def work(conn: sqlite3.Connection) -> None:
            with _transaction(conn):
                conn.execute(
                    "INSERT INTO branch_state (app_id, branch, body, updated_at)"
                    " VALUES (?, ?, ?, ?)"
                    " ON CONFLICT (app_id, branch)"
                    " DO UPDATE SET body = excluded.body, updated_at = excluded.updated_at",
                    (state.key.app_id, state.key.branch, body, now),
                )
                # OR IGNORE against the UNIQUE dedup_key: an alert seen before, pending or
                # already delivered, is not enqueued again.
                conn.executemany(
                    "INSERT OR IGNORE INTO outbox (dedup_key, alert, created_at, next_attempt_at)"
                    " VALUES (?, ?, ?, ?)",
                    [(dedup, alert, now, now) for dedup, alert in rows],
                )

        await self._run(work)

    async def delete(self, key: BranchKey) -> None:
        def work(conn: sqlite3.Connection) -> None:
            with _transaction(conn):
                conn.execute(
                    "DELETE FROM branch_state WHERE app_id = ? AND branch = ?",
                    (key.app_id, key.branch),
                )

        await self._run(work)

    async def pending(self, now: float, limit: int = 100) -> list[OutboxEntry]:
        if limit <= 0:
            return []

        def work(conn: sqlite3.Connection) -> list[OutboxEntry]:
            cursor = conn.execute(_PENDING, (now, limit))
            return [_entry(row) for row in cursor]

        return await self._run(work)

    async def claim(
        self, now: float, limit: int, lease: float, due_by: float | None = None
    ) -> list[Claim]:
        if limit <= 0:
            return []
        token = uuid.uuid4().hex
        until = now + lease

        def work(conn: sqlite3.Connection) -> list[tuple[Any, ...]]:
            with _transaction(conn):
                due = now if due_by is None else due_by
                rows = conn.execute(_CLAIM, (token, until, due, now, limit)).fetchall()
            return sorted(rows)

        claims = []
        for seq_and_row in await self._run(work):
            row = seq_and_row[1:]
            try:
                claims.append(Claim(row[0], token, until, _entry(row)))
            except CodecError as exc:
                claims.append(Claim(row[0], token, until, None, str(exc)))
        return claims

    async def settle(self, claim: Claim, outcome: Settlement) -> bool:
        now = self._clock()
        fence = " WHERE dedup_key = ? AND claim_token = ? AND sent_at IS NULL"
        keys = (claim.dedup_key, claim.token)
        statement: str
        args: tuple[Any, ...]
        if isinstance(outcome, Sent):
            statement = "UPDATE outbox SET sent_at = ?, receipt = coalesce(?, receipt),"
            args = (now, outcome.receipt)
        elif isinstance(outcome, Failed):
            statement = "UPDATE outbox SET attempts = attempts + 1, last_error = ?,"
            statement += " next_attempt_at = ?,"
            args = (outcome.error, outcome.next_attempt_at)
        elif isinstance(outcome, Released):
            statement = "UPDATE outbox SET next_attempt_at = max(next_attempt_at, ?),"
            args = (outcome.not_before or 0.0,)
        else:
            statement = "UPDATE outbox SET sent_at = ?, last_error = ?,"
            args = (now, outcome.error)
        statement += " claim_token = NULL, claimed_until = NULL" + fence
        prune_before = self._pruning.due(now) if isinstance(outcome, Sent) else None

        def work(conn: sqlite3.Connection) -> bool:
            with _transaction(conn):
                changed = conn.execute(statement, (*args, *keys)).rowcount == 1
            if prune_before is not None:
                try:
                    _prune(conn, prune_before)
                except sqlite3.Error as exc:
                    _log.warning("store_prune_failed", backend="sqlite", error=str(exc))
            return changed

        return await self._run(work)

    async def renew(self, claims: Sequence[Claim], until: float) -> list[Claim]:
        if not claims:
            return []

        def work(conn: sqlite3.Connection) -> set[tuple[str, str]]:
            held: set[tuple[str, str]] = set()
            with _transaction(conn):
                for claim in claims:
                    cursor = conn.execute(
                        "UPDATE outbox SET claimed_until = ?"
                        " WHERE dedup_key = ? AND claim_token = ? AND sent_at IS NULL",
                        (until, claim.dedup_key, claim.token),
                    )
                    if cursor.rowcount == 1:
                        held.add((claim.dedup_key, claim.token))
            return held

        held = await self._run(work)
        return [
            dataclasses.replace(c, until=until) for c in claims if (c.dedup_key, c.token) in held
        ]

    async def pending_count(self) -> int:
        def work(conn: sqlite3.Connection) -> int:
            row = conn.execute("SELECT count(*) FROM outbox WHERE sent_at IS NULL").fetchone()
            return int(row[0])

        return await self._run(work)

    async def mark_sent(self, dedup_key: str, receipt: str | None = None) -> None:
        now = self._clock()
        prune_before = self._pruning.due(now)

        def work(conn: sqlite3.Connection) -> None:
            with _transaction(conn):
                # The first delivery time stands (retention counts from it); a later receipt
                # replaces an earlier one, a missing one does not erase it.
                conn.execute(
                    "UPDATE outbox SET sent_at = coalesce(sent_at, ?),"
                    " receipt = coalesce(?, receipt) WHERE dedup_key = ?",
                    (now, receipt, dedup_key),
                )
            if prune_before is not None:
                # The delivery is recorded; a failed clean-up must not make it look failed, or
                # the caller would retry and post the message twice. The next prune catches up.
                try:
                    _prune(conn, prune_before)
                except sqlite3.Error as exc:
                    _log.warning("store_prune_failed", backend="sqlite", error=str(exc))

        await self._run(work)

    async def mark_failed(self, dedup_key: str, error: str, next_attempt_at: float) -> None:
        def work(conn: sqlite3.Connection) -> None:
            with _transaction(conn):
                # A delivered entry stays delivered: a late failure report must not revive it.
                conn.execute(
                    "UPDATE outbox SET attempts = attempts + 1, last_error = ?,"
                    " next_attempt_at = ? WHERE dedup_key = ? AND sent_at IS NULL",
                    (error, next_attempt_at, dedup_key),
                )

        await self._run(work)

    async def receipt(self, dedup_key: str) -> str | None:
        def work(conn: sqlite3.Connection) -> str | None:
            row = conn.execute(
                "SELECT receipt FROM outbox WHERE dedup_key = ?", (dedup_key,)
            ).fetchone()
            return None if row is None else row[0]

        return await self._run(work)

    async def mark_attempt(self, dedup_key: str, now: float) -> None:
        def work(conn: sqlite3.Connection) -> None:
            with _transaction(conn):
                conn.execute(
                    "UPDATE outbox SET first_attempt_at = coalesce(first_attempt_at, ?)"
                    " WHERE dedup_key = ? AND sent_at IS NULL",
                    (now, dedup_key),
                )

        await self._run(work)

    async def save_message(self, job_key: str, ref: MessageRef) -> None:
        now = self._clock()

        def work(conn: sqlite3.Connection) -> None:
            with _transaction(conn):
                conn.execute(
                    "INSERT INTO message (job_key, receipt, payload, saved_at) VALUES (?, ?, ?, ?)"
                    " ON CONFLICT (job_key) DO UPDATE SET receipt = excluded.receipt,"
                    " payload = excluded.payload, saved_at = excluded.saved_at",
                    (job_key, ref.receipt, ref.payload, now),
                )

        await self._run(work)

    async def message(self, job_key: str) -> MessageRef | None:
        def work(conn: sqlite3.Connection) -> MessageRef | None:
            row = conn.execute(
                "SELECT receipt, payload FROM message WHERE job_key = ?", (job_key,)
            ).fetchone()
            return None if row is None else MessageRef(row[0], row[1])

        return await self._run(work)

    async def prune_sent(self, before: float) -> int:
        """Forget sent records delivered before `before` (epoch seconds); pending ones stay.

        Runs by itself from mark_sent about hourly; exposed for tools and tests.
        """
        return await self._run(lambda conn: _prune(conn, before))

    async def close(self) -> None:
        async with self._lock:
            conn, self._conn = self._conn, None
            if conn is not None:
                await anyio.to_thread.run_sync(conn.close)
