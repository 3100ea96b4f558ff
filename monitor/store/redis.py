"""The Redis Store, for running the monitor where a local file will not do (containers, failover).

Owns the key layout under one prefix and the Lua scripts that make a save (state + alerts) and
every outbox change atomic on the server. The only module that imports redis, an optional extra.
"""

from __future__ import annotations

import dataclasses
import json
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import redis.asyncio
from redis.exceptions import RedisError

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

# Bumped when the key layout below changes; a store refuses data from a newer layout.
SCHEMA_VERSION = 3

_PRUNE_BATCH = 500

# Key layout, all under "<prefix>:":
#   meta                  hash   schema_version
#   state                 hash   field = JSON [app_id, branch] -> encoded BranchState
#   outbox:seq            string enqueue counter (the order pending() follows)
#   outbox:entry:<dedup>  hash   alert, seq, attempts, created_at, next_attempt_at, last_error,
#                                sent_at?, receipt?, first_attempt_at?, claim_token?,
#                                claimed_until?  -- kept after delivery: the dedup memory
#   outbox:due            zset   unsent dedup keys scored by next_attempt_at
#   outbox:order          zset   unsent dedup keys scored by seq
#   outbox:sent           zset   sent dedup keys scored by sent_at (for pruning)
#   message:<job key>     hash   receipt, payload: the Slack message telling a job's story
#   message:saved         zset   job keys scored by when their message was saved (for pruning)
#
# Floats travel as Python repr strings and are stored untouched: Lua's tostring would round them
# to 14 digits, and created_at must read back exactly as written.

# KEYS: state, due, order, seq, entry...   ARGV: field, body, now, (dedup, alert)...
# Outbox writes come before the state write on purpose. A script is atomic against other
# clients but does not roll back if a command fails midway; failing after the alerts but
# before the state only means the next poll raises the same alerts again, which dedup ignores,
# whereas the other order could save a state whose alerts were never enqueued.
_SAVE = """
local added = 0
for i = 5, #KEYS do
    local j = 4 + (i - 5) * 2
    local dedup = ARGV[j]
    if redis.call('EXISTS', KEYS[i]) == 0 then
        local seq = redis.call('INCR', KEYS[4])
        redis.call('HSET', KEYS[i], 'alert', ARGV[j + 1], 'seq', seq, 'attempts', 0,
            'created_at', ARGV[3], 'next_attempt_at', ARGV[3], 'last_error', '')
        redis.call('ZADD', KEYS[2], ARGV[3], dedup)
        redis.call('ZADD', KEYS[3], seq, dedup)
        added = added + 1
    end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return added
"""

# KEYS: entry, due, order, sent   ARGV: dedup, now, receipt, has_receipt
_MARK_SENT = """
if redis.call('EXISTS', KEYS[1]) == 0 then
    return 0
end
if redis.call('HEXISTS', KEYS[1], 'sent_at') == 0 then
    redis.call('HSET', KEYS[1], 'sent_at', ARGV[2])
    redis.call('ZADD', KEYS[4], ARGV[2], ARGV[1])
end
if ARGV[4] == '1' then
    redis.call('HSET', KEYS[1], 'receipt', ARGV[3])
end
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
return 1
"""

# KEYS: entry, due   ARGV: dedup, error, next_attempt_at
_MARK_FAILED = """
if redis.call('EXISTS', KEYS[1]) == 0 or redis.call('HEXISTS', KEYS[1], 'sent_at') == 1 then
    return 0
end
redis.call('HINCRBY', KEYS[1], 'attempts', 1)
redis.call('HSET', KEYS[1], 'last_error', ARGV[2], 'next_attempt_at', ARGV[3])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
return 1
"""


# KEYS: entry   ARGV: now
_MARK_ATTEMPT = """
if redis.call('EXISTS', KEYS[1]) == 0 or redis.call('HEXISTS', KEYS[1], 'sent_at') == 1 then
    return 0
end
return redis.call('HSETNX', KEYS[1], 'first_attempt_at', ARGV[1])
"""


# KEYS: due, order   ARGV: due_by, now, until, token, limit, entry key prefix
# Entry keys are derived here, not declared: which entries are free is only known inside the
# script. Fine on a standalone or replicated Redis; not for Redis Cluster.
_CLAIM = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
local candidates = {}
for _, dedup in ipairs(due) do
    local seq = redis.call('ZSCORE', KEYS[2], dedup)
    if seq then
        table.insert(candidates, {tonumber(seq), dedup})
    end
end
table.sort(candidates, function(a, b) return a[1] < b[1] end)
local now, limit = tonumber(ARGV[2]), tonumber(ARGV[5])
local taken = {}
for _, candidate in ipairs(candidates) do
    if #taken >= limit then
        break
    end
    local key = ARGV[6] .. candidate[2]
    local held = redis.call('HGET', key, 'claimed_until')
    if redis.call('EXISTS', key) == 1 and redis.call('HEXISTS', key, 'sent_at') == 0
        and ((not held) or tonumber(held) <= now) then
        redis.call('HSET', key, 'claim_token', ARGV[4], 'claimed_until', ARGV[3])
        table.insert(taken, candidate[2])
    end
end
return taken
"""

# KEYS: entry, due, order, sent   ARGV: dedup, token, kind, now, a, b
#   sent: a = receipt, b = has_receipt; failed: a = error, b = next_attempt_at;
#   released: a = not_before or ''; dead: a = error
_SETTLE = """
if redis.call('HGET', KEYS[1], 'claim_token') ~= ARGV[2]
    or redis.call('HEXISTS', KEYS[1], 'sent_at') == 1 then
    return 0
end
redis.call('HDEL', KEYS[1], 'claim_token', 'claimed_until')
local kind = ARGV[3]
if kind == 'sent' or kind == 'dead' then
    redis.call('HSET', KEYS[1], 'sent_at', ARGV[4])
    redis.call('ZADD', KEYS[4], ARGV[4], ARGV[1])
    redis.call('ZREM', KEYS[2], ARGV[1])
    redis.call('ZREM', KEYS[3], ARGV[1])
    if kind == 'sent' and ARGV[6] == '1' then
        redis.call('HSET', KEYS[1], 'receipt', ARGV[5])
    elseif kind == 'dead' then
        redis.call('HSET', KEYS[1], 'last_error', ARGV[5])
    end
elseif kind == 'failed' then
    redis.call('HINCRBY', KEYS[1], 'attempts', 1)
    redis.call('HSET', KEYS[1], 'last_error', ARGV[5], 'next_attempt_at', ARGV[6])
    redis.call('ZADD', KEYS[2], ARGV[6], ARGV[1])
elseif ARGV[5] ~= '' then
    local current = tonumber(redis.call('HGET', KEYS[1], 'next_attempt_at'))
    if tonumber(ARGV[5]) > current then
        redis.call('HSET', KEYS[1], 'next_attempt_at', ARGV[5])
        redis.call('ZADD', KEYS[2], ARGV[5], ARGV[1])
    end
end
return 1
"""

# KEYS: entries   ARGV: until, then one token per entry
_RENEW = """
local held = {}
for i, key in ipairs(KEYS) do
    if redis.call('HGET', key, 'claim_token') == ARGV[i + 1]
        and redis.call('HEXISTS', key, 'sent_at') == 0 then
        redis.call('HSET', key, 'claimed_until', ARGV[1])
        table.insert(held, i)
    end
end
return held
"""


def _num(value: float) -> str:
    return repr(float(value))


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _entry(dedup: str, row: dict[Any, Any]) -> OutboxEntry:
    try:
        return OutboxEntry(
            alert=decode_alert(row["alert"]),
            attempts=int(row["attempts"]),
            created_at=float(row["created_at"]),
            next_attempt_at=float(row["next_attempt_at"]),
            last_error=_text(row.get("last_error", "")),
            first_attempt_at=(
                float(row["first_attempt_at"]) if "first_attempt_at" in row else None
            ),
        )
    except CodecError as exc:
        raise CodecError(f"outbox entry {dedup}: {exc}") from exc
    except (KeyError, ValueError) as exc:
        raise CodecError(f"outbox entry {dedup}: {exc!r}") from exc


class RedisStore:
    """Store over a Redis server. Create it with ``await RedisStore.open(url, prefix)``."""

    def __init__(
        self,
        client: redis.asyncio.Redis,
        prefix: str,
        clock: Callable[[], float],
        sent_retention: float,
    ) -> None:
        self._client = client
        self._prefix = prefix
        self._clock = clock
        self._pruning = Pruning(clock(), sent_retention)
        self._closed = False
        self._k_meta = f"{prefix}:meta"
        self._k_state = f"{prefix}:state"
        self._k_seq = f"{prefix}:outbox:seq"
        self._k_due = f"{prefix}:outbox:due"
        self._k_order = f"{prefix}:outbox:order"
        self._k_sent = f"{prefix}:outbox:sent"
        self._k_messages = f"{prefix}:message:saved"
        self._save_script = client.register_script(_SAVE)
        self._mark_sent_script = client.register_script(_MARK_SENT)
        self._mark_failed_script = client.register_script(_MARK_FAILED)
        self._mark_attempt_script = client.register_script(_MARK_ATTEMPT)
        self._claim_script = client.register_script(_CLAIM)
        self._settle_script = client.register_script(_SETTLE)
        self._renew_script = client.register_script(_RENEW)

    @classmethod
    async def open(
        cls,
        url: str,
        prefix: str = "amplify-monitor",
        *,
        clock: Callable[[], float] = time.time,
        sent_retention: float = DEFAULT_SENT_RETENTION,
    ) -> RedisStore:
        """Connect to `url` and check (or stamp) the schema version under `prefix`.

        :param url: redis://, rediss:// or unix:// URL; may carry a password, so it is never
            logged or put in an error message.
        :param prefix: every key lives under "<prefix>:"; two monitors sharing a prefix share
            (and fight over) one state.
        :param clock: seconds since the epoch; stamps created_at and sent_at (tests fake it).
        :param sent_retention: seconds a sent record is kept as dedup memory before pruning.
        """
        if not prefix:
            raise StoreError("redis prefix must not be empty")
        try:
            # Timeouts so a hung server fails a poll instead of stalling it forever; options in
            # the URL's query string still win over these.
            client = redis.asyncio.Redis.from_url(
                url, decode_responses=True, socket_connect_timeout=5.0, socket_timeout=10.0
            )
        except ValueError as exc:
            raise StoreError(f"redis: invalid URL: {exc}") from None
        store = cls(client, prefix, clock, sent_retention)
        try:
            with store._errors():
                await client.hsetnx(store._k_meta, "schema_version", str(SCHEMA_VERSION))
                found = int(await client.hget(store._k_meta, "schema_version") or 0)
                if found > SCHEMA_VERSION:
                    raise StoreError(
                        f"redis {prefix}: schema version {found} was written by a newer "
                        f"amplify-monitor (this one knows up to {SCHEMA_VERSION})"
                    )
            pruned = await store.prune_sent(clock() - sent_retention)
        except BaseException:
            await client.aclose()
            raise
        _log.info(
            "store_opened",
            backend="redis",
            prefix=prefix,
            schema_version=found,
            pruned_sent=pruned,
        )
        return store

    @contextmanager
    def _errors(self) -> Iterator[None]:
        # Callers catch StoreError whatever the backend; redis' own errors (connection refused,
        # timeouts, WRONGTYPE) do not leak past this module.
        if self._closed:
            raise StoreError(f"redis {self._prefix}: store is closed")
        try:
            yield
        except RedisError as exc:
            raise StoreError(f"redis {self._prefix}: {type(exc).__name__}: {exc}") from exc

    def _entry_key(self, dedup_key: str) -> str:
        return f"{self._prefix}:outbox:entry:{dedup_key}"

    @staticmethod
    def _state_field(key: BranchKey) -> str:
        # Branch names may contain "/" and ":"; a JSON pair cannot be ambiguous.
        return json.dumps([key.app_id, key.branch])

    async def load_all(self) -> dict[BranchKey, BranchState]:
        with self._errors():
            raw = await self._client.hgetall(self._k_state)
        states: dict[BranchKey, BranchState] = {}
        for field, body in raw.items():
            try:
                state = decode_state(body)
            except CodecError as exc:
                raise CodecError(f"branch state {_text(field)}: {exc}") from exc
            states[state.key] = state
        return states

    async def save(self, state: BranchState, alerts: Sequence[Alert] = ()) -> None:
        body = encode_state(state)
        encoded = [(alert.dedup_key, encode_alert(alert)) for alert in alerts]
        keys = [self._k_state, self._k_due, self._k_order, self._k_seq]
        keys += [self._entry_key(dedup) for dedup, _ in encoded]
        args: list[str] = [self._state_field(state.key), body, _num(self._clock())]
        for dedup, alert in encoded:
            args += [dedup, alert]
        # One script is one atomic step on the server: no other client sees the state without
        # its alerts, and the EXISTS check cannot race with another save of the same alert.
        with self._errors():
            await self._save_script(keys=keys, args=args)

    async def delete(self, key: BranchKey) -> None:
        with self._errors():
            await self._client.hdel(self._k_state, self._state_field(key))

    async def pending(self, now: float, limit: int = 100) -> list[OutboxEntry]:
        if limit <= 0:
            return []
        with self._errors():
            due = [
                _text(m) for m in await self._client.zrangebyscore(self._k_due, "-inf", _num(now))
            ]
            if not due:
                return []
            # The due set is ordered by retry time; pending() promises enqueue order, which the
            # order set holds. A member gone from it was delivered meanwhile: skip it.
            seqs = await self._client.zmscore(self._k_order, due)
            chosen = sorted(
                (seq, dedup) for dedup, seq in zip(due, seqs, strict=True) if seq is not None
            )[:limit]
            async with self._client.pipeline(transaction=False) as pipe:
                for _, dedup in chosen:
                    pipe.hgetall(self._entry_key(dedup))
                rows: list[dict[Any, Any]] = await pipe.execute()
        return [
            _entry(dedup, row)
            for (_, dedup), row in zip(chosen, rows, strict=True)
            if row and "sent_at" not in row
        ]

    async def claim(
        self, now: float, limit: int, lease: float, due_by: float | None = None
    ) -> list[Claim]:
        if limit <= 0:
            return []
        token = uuid.uuid4().hex
        until = now + lease
        args = [
            _num(now if due_by is None else due_by),
            _num(now),
            _num(until),
            token,
            str(limit),
            self._entry_key(""),
        ]
        with self._errors():
            taken = [
                _text(d)
                for d in await self._claim_script(keys=[self._k_due, self._k_order], args=args)
            ]
            async with self._client.pipeline(transaction=False) as pipe:
                for dedup in taken:
                    pipe.hgetall(self._entry_key(dedup))
                rows: list[dict[Any, Any]] = await pipe.execute()
        claims = []
        for dedup, row in zip(taken, rows, strict=True):
            try:
                claims.append(Claim(dedup, token, until, _entry(dedup, row)))
            except CodecError as exc:
                claims.append(Claim(dedup, token, until, None, str(exc)))
        return claims

    async def settle(self, claim: Claim, outcome: Settlement) -> bool:
        now = self._clock()
        a, b = "", ""
        if isinstance(outcome, Sent):
            kind = "sent"
            a, b = outcome.receipt or "", "0" if outcome.receipt is None else "1"
        elif isinstance(outcome, Failed):
            kind, a, b = "failed", outcome.error, _num(outcome.next_attempt_at)
        elif isinstance(outcome, Released):
            kind = "released"
            a = "" if outcome.not_before is None else _num(outcome.not_before)
        else:
            kind, a = "dead", outcome.error
        keys = [self._entry_key(claim.dedup_key), self._k_due, self._k_order, self._k_sent]
        args = [claim.dedup_key, claim.token, kind, _num(now), a, b]
        with self._errors():
            changed = bool(await self._settle_script(keys=keys, args=args))
        if changed and kind == "sent":
            await self._prune_if_due(now)
        return changed

    async def renew(self, claims: Sequence[Claim], until: float) -> list[Claim]:
        if not claims:
            return []
        keys = [self._entry_key(c.dedup_key) for c in claims]
        args = [_num(until), *(c.token for c in claims)]
        with self._errors():
            held = {int(i) for i in await self._renew_script(keys=keys, args=args)}
        return [
            dataclasses.replace(c, until=until) for i, c in enumerate(claims, start=1) if i in held
        ]

    async def pending_count(self) -> int:
        with self._errors():
            return int(await self._client.zcard(self._k_order))

    async def mark_sent(self, dedup_key: str, receipt: str | None = None) -> None:
        now = self._clock()
        keys = [self._entry_key(dedup_key), self._k_due, self._k_order, self._k_sent]
        args = [dedup_key, _num(now), receipt or "", "0" if receipt is None else "1"]
        with self._errors():
            await self._mark_sent_script(keys=keys, args=args)
        await self._prune_if_due(now)

    async def _prune_if_due(self, now: float) -> None:
        prune_before = self._pruning.due(now)
        if prune_before is not None:
            # The delivery is recorded; a failed clean-up must not make it look failed, or the
            # caller would retry and post the message twice. The next prune catches up.
            try:
                await self.prune_sent(prune_before)
            except StoreError as exc:
                _log.warning("store_prune_failed", backend="redis", error=str(exc))

    async def mark_failed(self, dedup_key: str, error: str, next_attempt_at: float) -> None:
        keys = [self._entry_key(dedup_key), self._k_due]
        args = [dedup_key, error, _num(next_attempt_at)]
        with self._errors():
            await self._mark_failed_script(keys=keys, args=args)

    async def receipt(self, dedup_key: str) -> str | None:
        with self._errors():
            value = await self._client.hget(self._entry_key(dedup_key), "receipt")
        return None if value is None else _text(value)

    async def mark_attempt(self, dedup_key: str, now: float) -> None:
        with self._errors():
            await self._mark_attempt_script(keys=[self._entry_key(dedup_key)], args=[_num(now)])

    def _message_key(self, job_key: str) -> str:
        return f"{self._prefix}:message:{job_key}"

    async def save_message(self, job_key: str, ref: MessageRef) -> None:
        with self._errors():
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.hset(
                    self._message_key(job_key),
                    mapping={"receipt": ref.receipt, "payload": ref.payload},
                )
                pipe.zadd(self._k_messages, {job_key: self._clock()})
                await pipe.execute()

    async def message(self, job_key: str) -> MessageRef | None:
        with self._errors():
            row = await self._client.hgetall(self._message_key(job_key))
        if not row or "receipt" not in row:
            return None
        return MessageRef(_text(row["receipt"]), _text(row.get("payload", "")))

    async def _prune_messages(self, before: float) -> None:
        while True:
            batch = [
                _text(m)
                for m in await self._client.zrangebyscore(
                    self._k_messages, "-inf", f"({_num(before)}", start=0, num=_PRUNE_BATCH
                )
            ]
            if not batch:
                return
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.delete(*(self._message_key(job) for job in batch))
                pipe.zrem(self._k_messages, *batch)
                await pipe.execute()

    async def prune_sent(self, before: float) -> int:
        """Forget sent records delivered before `before` (epoch seconds); pending ones stay.

        Runs by itself from mark_sent about hourly; exposed for tools and tests. Works in
        batches so one call never blocks the server on a large backlog.
        """
        pruned = 0
        with self._errors():
            await self._prune_messages(before)
            while True:
                batch = [
                    _text(m)
                    for m in await self._client.zrangebyscore(
                        self._k_sent, "-inf", f"({_num(before)}", start=0, num=_PRUNE_BATCH
                    )
                ]
                if not batch:
                    return pruned
                async with self._client.pipeline(transaction=True) as pipe:
                    pipe.delete(*(self._entry_key(dedup) for dedup in batch))
                    pipe.zrem(self._k_sent, *batch)
                    await pipe.execute()
                pruned += len(batch)

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            await self._client.aclose()
