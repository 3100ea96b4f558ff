"""Three `amplify-monitor run` replicas on a real Redis, polling one simulator and posting to
one Slack stand-in: every failure is told exactly once while one replica is SIGKILLed mid-run
and later restarted, its apps are taken over within two leases, and all three together stay
within one API budget."""

from __future__ import annotations

import os
import re
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest
import redis.asyncio

from monitor.model import FAILED
from monitor.simulator import Fleet, Simulator
from tests.e2e.daemon import Daemon, free_port, write_config
from tests.notify.slack_server import TOKEN, FakeSlack

REDIS_URL = os.environ.get("AMPLIFY_MONITOR_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
FAST = {"PENDING": 0.2, "PROVISIONING": 0.2, "RUNNING": 0.4}
APPS = [f"dapp{n}" for n in range(6)]
LEASE = 2.0
BUDGET = 15.0  # calls a second, for all replicas together


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    client = redis.asyncio.Redis.from_url(REDIS_URL)
    try:
        await client.ping()
    except Exception:
        pytest.skip("no Redis on " + REDIS_URL)
    name = f"amplify-monitor-test-replicas-{uuid.uuid4().hex}"
    yield name
    keys = [k async for k in client.scan_iter(f"{name}*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    fleet = Fleet(durations=FAST)
    for app_id in APPS:
        app = fleet.add_app(app_id.removeprefix("d"), app_id=app_id)
        fleet.add_branch(app, "main")
        fleet.start_job(app, "main", at=fleet.now() - 600)
    async with Simulator(fleet) as simulator:
        yield simulator


def replica(tmp_path: Path, sim: Simulator, slack: FakeSlack, prefix: str, name: str) -> Daemon:
    workdir = tmp_path / name
    workdir.mkdir(exist_ok=True)
    port = free_port()
    config = write_config(
        workdir / "config.toml",
        f"""
[aws]
region = "us-east-1"
endpoint_url = "{sim.url}"

[poll]
interval_seconds = 0.3
active_interval_seconds = 0.2
discovery_interval_seconds = 2
max_requests_per_second = {BUDGET}

[metrics]
listen = "127.0.0.1:{port}"

[state]
backend = "redis"
redis_url = "{REDIS_URL}"
redis_prefix = "{prefix}"

[cluster]
lease_seconds = {LEASE}
replica_id = "{name}"

[alerts]
digest_threshold = 1000

[slack]
token = "{TOKEN}"
channel = "C0BUILDS01"
base_url = "{slack.base_url}"

[log]
format = "json"
level = "info"
""",
    )
    return Daemon(config, workdir, port)


def metric(daemon: Daemon, name: str) -> float:
    status, body = daemon.get("/metrics")
    found = re.search(rf"^{name} ([0-9.e+]+)$", body, re.MULTILINE) if status == 200 else None
    return float(found.group(1)) if found else -1.0


async def test_three_replicas_tell_every_failure_once_through_a_sigkill_and_a_restart(
    sim: Simulator, tmp_path: Path, prefix: str
) -> None:
    async with FakeSlack() as slack:
        names = ["r0", "r1", "r2"]
        daemons = {n: replica(tmp_path, sim, slack, prefix, n) for n in names}
        failures: list[str] = []

        async def fail_everywhere(expected: int) -> None:
            for app_id in APPS:
                failures.append(sim.fleet.start_job(app_id, "main", outcome=FAILED))
            live = next(d for d in daemons.values() if d.proc.poll() is None)
            try:
                await live.wait_for(lambda: len(slack.delivered) >= expected, timeout=40)
            except AssertionError:
                told = sorted(
                    re.findall(r"apps/(dapp\d)/branches/main/deployments/(\d+)\|", r.everything())[
                        0
                    ]
                    for r in slack.delivered
                )
                raise AssertionError(f"told {len(told)} of {expected}: {told}") from None

        try:
            for daemon in daemons.values():
                await daemon.wait_for(lambda d=daemon: d.get("/readyz")[0] == 200)
            await daemons["r0"].wait_for(
                lambda: metric(daemons["r0"], "amplify_monitor_cluster_replicas") == 3
            )

            def split() -> dict[str, float] | None:
                owned = {n: metric(d, "amplify_monitor_owned_apps") for n, d in daemons.items()}
                return owned if sum(owned.values()) == len(APPS) else None

            # Each app held by exactly one replica, once the three have seen each other.
            owned = await daemons["r0"].wait_for(split, timeout=15)

            # Their polls want 20 ListBranches a second and more; the three together get one budget.
            before, started = sum(sim.counts.values()), anyio.current_time()
            await anyio.sleep(3.0)
            rate = (sum(sim.counts.values()) - before) / (anyio.current_time() - started)
            assert rate <= BUDGET * 1.25, rate

            await fail_everywhere(len(APPS))

            daemons["r0"].kill()  # SIGKILL: its leases and claims are simply left to expire
            await fail_everywhere(2 * len(APPS))
            takeovers = sum(
                metric(daemons[n], "amplify_monitor_lease_takeovers_total") for n in ("r1", "r2")
            )
            assert takeovers >= owned["r0"], (takeovers, owned)

            daemons["r0"] = replica(tmp_path, sim, slack, prefix, "r0")  # back, same name
            await daemons["r0"].wait_for(lambda: daemons["r0"].get("/readyz")[0] == 200)
            await fail_everywhere(3 * len(APPS))
            await anyio.sleep(2.0)  # nothing more may come
        finally:
            for daemon in daemons.values():
                daemon.kill()
        assert len(failures) == 3 * len(APPS)
        # Exactly once each: as many messages as failures, no dedup key twice.
        assert len(slack.delivered) == len(failures)
        assert set(Counter(r.dedup_token for r in slack.delivered).values()) == {1}
