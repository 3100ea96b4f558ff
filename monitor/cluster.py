"""Replicas sharing the fleet through Redis: who is alive, which apps each one polls, and one
API budget for all of them.

- Membership: each replica stamps itself in a sorted set with Redis' own clock, every third of
  a lease; a replica not seen for a lease is gone.
- The split: each app goes to the live replica that scores highest for it (rendezvous hashing),
  so a replica joining or leaving moves only its share. A replica polls an app only while it
  holds the app's lease (``SET NX PX``, valued with its fencing token, renewed at a third of
  the lease, released when the split gives the app to another). Leases always expire: a
  replica killed at any moment loses its apps to the others within two lease periods.
- The budget: one token bucket per account and region in Redis, taken from by every replica
  (one Lua script, on Redis' clock), so three replicas do not triple the call rate.

Without the Redis backend, `Solo` owns every app and the budget stays in the process.
"""

from __future__ import annotations

import hashlib
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from typing import Protocol

import anyio
import redis.asyncio
from redis.exceptions import RedisError

from monitor import log

_log = log.get(__name__)

# KEYS: members   ARGV: replica token, lease ms   -> live members (tokens)
_HEARTBEAT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[2]))
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]) * 4)
return redis.call('ZRANGE', KEYS[1], 0, -1)
"""

# ARGV: lease key prefix, lease ms, replica token, then pairs (app id, '1' wanted | '0')
# -> per app: 2 newly acquired, 1 held (renewed), 0 not held
_ROUND = """
local out = {}
for i = 4, #ARGV, 2 do
    local key = ARGV[1] .. ARGV[i]
    local wanted = ARGV[i + 1] == '1'
    local holder = redis.call('GET', key)
    if holder == ARGV[3] then
        if wanted then
            redis.call('PEXPIRE', key, ARGV[2])
            table.insert(out, 1)
        else
            redis.call('DEL', key)
            table.insert(out, 0)
        end
    elseif (not holder) and wanted then
        redis.call('SET', key, ARGV[3], 'PX', ARGV[2])
        table.insert(out, 2)
    else
        table.insert(out, 0)
    end
end
return out
"""

# ARGV: lease key prefix, replica token, then app ids: release those this replica holds
_RELEASE = """
for i = 3, #ARGV do
    local key = ARGV[1] .. ARGV[i]
    if redis.call('GET', key) == ARGV[2] then
        redis.call('DEL', key)
    end
end
return 1
"""

# KEYS: bucket   ARGV: rate per second, burst  -> seconds to wait ('0' = a token was taken)
_TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local tokens = tonumber(redis.call('HGET', KEYS[1], 'tokens') or burst)
local at = tonumber(redis.call('HGET', KEYS[1], 'at') or now)
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local wait = 0
if tokens >= 1 then
    tokens = tokens - 1
else
    wait = (1 - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], 600000)
return tostring(wait)
"""


def default_replica_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def rendezvous(app_id: str, members: Iterable[str]) -> str | None:
    """The member an app goes to: the highest score of hash(member, app)."""
    best: tuple[bytes, str] | None = None
    for member in members:
        score = hashlib.sha256(f"{member}\n{app_id}".encode()).digest()
        if best is None or score > best[0]:
            best = (score, member)
    return None if best is None else best[1]


class ClusterObserver(Protocol):
    def cluster(self, replicas: int, owned: int) -> None:
        """Live replicas and the apps this one holds, after each round."""

    def budget_share(self, share: float) -> None:
        """The part of the shared API budget this replica paces itself to (0..1)."""

    def takeover(self) -> None:
        """An app this replica took over from another (dead or leaving) one."""


class Membership(Protocol):
    """What the scheduler asks: may this replica poll the app now?"""

    def owns(self, app_id: str) -> bool: ...

    @property
    def settled(self) -> bool:
        """The first round is done: the replica holds what it should (readiness waits)."""
        ...


class Solo:
    """One process, the whole fleet."""

    settled = True

    def owns(self, app_id: str) -> bool:
        return True


class RedisCluster:
    """This replica's view of the cluster; `run` keeps it true until cancelled.

    :param apps: the apps discovery found (all of them, owned or not).
    :param acquired: called with the apps this replica just took, before it polls them (the
        previous owner's saved states must be read first).
    :param released: called with the apps this replica no longer holds (another has them).
    """

    def __init__(
        self,
        client: redis.asyncio.Redis,
        prefix: str,
        lease_seconds: float,
        replica_id: str,
        apps: Callable[[], Iterable[str]],
        acquired: Callable[[list[str]], Awaitable[None]],
        released: Callable[[list[str]], None],
        observer: ClusterObserver,
    ) -> None:
        self._client = client
        self._members_key = f"{prefix}:cluster:members"
        self._lease_prefix = f"{prefix}:cluster:lease:"
        self._lease_ms = max(1, int(lease_seconds * 1000))
        self.lease_seconds = lease_seconds
        # The fencing token: this replica's life, unique even when a pod name comes back.
        self.token = f"{replica_id}:{uuid.uuid4().hex[:12]}"
        self._apps = apps
        self._acquired = acquired
        self._released = released
        self._observer = observer
        self._last_ok = time.monotonic()
        self._heartbeat = client.register_script(_HEARTBEAT)
        self._round = client.register_script(_ROUND)
        self._release = client.register_script(_RELEASE)
        self.members: list[str] = []
        self.held: set[str] = set()
        self.settled = False
        self._rounds = 0

    def owns(self, app_id: str) -> bool:
        return app_id in self.held

    async def run(self) -> None:
        try:
            while True:
                try:
                    await self.round()
                except Exception as exc:
                    # Unrenewed leases expire by themselves: past a lease without Redis, this
                    # replica must stop polling what others may have taken meanwhile.
                    _log.warning("cluster_round_failed", error=f"{type(exc).__name__}: {exc}")
                    if self.held and time.monotonic() - self._last_ok > self.lease_seconds * 0.9:
                        lost, self.held = sorted(self.held), set()
                        self._released(lost)
                await anyio.sleep(self.lease_seconds / 3)
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(2.0):
                await self.leave()

    async def round(self) -> None:
        """One heartbeat and one pass over every app's lease."""
        self.members = [
            m.decode() if isinstance(m, bytes) else str(m)
            for m in await self._heartbeat(
                keys=[self._members_key], args=[self.token, self._lease_ms]
            )
        ]
        apps = sorted(set(self._apps()))
        args: list[str | int] = [self._lease_prefix, self._lease_ms, self.token]
        for app in apps:
            args += [app, "1" if rendezvous(app, self.members) == self.token else "0"]
        answers = [int(a) for a in await self._round(keys=[], args=args)] if apps else []
        held = {app for app, answer in zip(apps, answers, strict=True) if answer}
        self._last_ok = time.monotonic()
        lost = sorted(self.held - held)
        self.held &= held
        if lost:
            self._released(lost)
            _log.info("cluster_apps_given", apps=lost, replicas=len(self.members))
        new = sorted(held - self.held)
        if new:
            # Read the previous owner's states before the first poll; if that fails, the
            # leases are kept and the next round tries again.
            await self._acquired(new)
            self.held |= set(new)
            if self._rounds:
                for _ in new:
                    self._observer.takeover()
            _log.info("cluster_apps_taken", apps=new, replicas=len(self.members))
        self._rounds += 1
        self.settled = True
        self._observer.cluster(len(self.members), len(self.held))
        # Each replica paces itself to its share, by the apps it holds (plus one, so a replica
        # between two splits still has a little): the shares add up to the whole budget, and
        # the shared bucket only catches what a split in flux lets through. A bucket alone is
        # first come, first served across replicas: a busy idle app elsewhere could starve a
        # failure's GetJob here.
        total = len(apps) + max(1, len(self.members))
        self._observer.budget_share((len(self.held) + 1) / total)

    async def leave(self) -> None:
        """Shutdown: give the leases back and leave the member set, so the others take over
        at their next round instead of after a lease."""
        held, self.held = sorted(self.held), set()
        try:
            if held:
                await self._release(keys=[], args=[self._lease_prefix, self.token, *held])
            await self._client.zrem(self._members_key, self.token)
        except RedisError as exc:
            _log.warning("cluster_leave_failed", error=str(exc))


class SharedBucket:
    """The API budget of one account and region, shared by every replica (see module doc)."""

    def __init__(self, client: redis.asyncio.Redis, key: str, rate: float, burst: float) -> None:
        self._client = client
        self._key = key
        self._rate = rate
        self._burst = burst
        self._take = client.register_script(_TAKE)

    async def take(self) -> float:
        """Take a token of the budget: 0.0 when granted, else the seconds to wait. The bucket
        refills at the configured budget, whatever any one replica's own pace is."""
        try:
            args = [repr(self._rate), repr(self._burst)]
            return float(await self._take(keys=[self._key], args=args))
        except RedisError as exc:
            # Without Redis the budget cannot be shared; the caller's own pacing still holds.
            _log.warning("shared_budget_unavailable", error=f"{type(exc).__name__}: {exc}")
            return 0.0
