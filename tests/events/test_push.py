"""Push mode end to end: a real daemon, the Amplify simulator, and moto's SQS server on loopback.

Polling is set to a 600 s interval, so anything seen within seconds was seen because of an
event; the test plays EventBridge and sends the events into the queue itself.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest

from monitor.model import CANCELLED, FAILED, SUCCEED, BranchKey
from monitor.service import Running, Service
from monitor.simulator import Faults, Fleet, Simulator
from tests.conftest import make_settings
from tests.events.conftest import Queue, amplify_event

FAST = {"PENDING": 0.2, "PROVISIONING": 0.2, "RUNNING": 1.0}
ACTIVE = 1.5


@pytest.fixture
def fleet() -> Fleet:
    fleet = Fleet(durations=FAST)  # the wall clock: jobs move on by themselves
    app = fleet.add_app("shop", app_id="dshop")
    for name in ("main", "develop"):
        fleet.add_branch(app, name)
        fleet.start_job(app, name, at=time.time() - 600)
    return fleet


@pytest.fixture
async def sim(fleet: Fleet) -> AsyncIterator[Simulator]:
    async with Simulator(fleet, Faults()) as simulator:
        yield simulator


def settings_for(sim: Simulator, queue: Queue, tmp_path: Path, **extra: Any) -> Any:
    return make_settings(
        sim.url,
        tmp_path / "state.db",
        poll={"interval_seconds": 600, "active_interval_seconds": ACTIVE},
        events={"sqs_queue_url": queue.url, "endpoint_url": queue.url.rsplit("/", 2)[0]},
        **extra,
    )


@asynccontextmanager
async def daemon(settings: Any) -> AsyncIterator[Running]:
    async with anyio.create_task_group() as tg:
        running: Running = await tg.start(Service(settings).run)
        await until(lambda: running.edges.readiness.check(time.time())[0], "ready")
        try:
            yield running
        finally:
            tg.cancel_scope.cancel()


async def until(
    check: Callable[[], bool | Awaitable[bool]], what: str, timeout: float = 10
) -> None:
    with anyio.fail_after(timeout):
        while True:
            result = check()
            if not isinstance(result, bool):
                result = await result
            if result:
                return
            await anyio.sleep(0.05)
    raise AssertionError(what)  # pragma: no cover - fail_after raises first


def sample(running: Running, name: str, **labels: str) -> float:
    return running.edges.metrics.registry.get_sample_value(name, labels) or 0.0


def sent(running: Running, status: str) -> float:
    return sample(running, "amplify_monitor_alerts_total", status=status, outcome="sent")


def events(running: Running, outcome: str) -> float:
    return sample(running, "amplify_monitor_events_total", outcome=outcome)


async def drained(queue: Queue) -> bool:
    return await queue.counts() == (0, 0)


async def test_a_failure_event_is_alerted_within_seconds_although_polling_is_ten_minutes_away(
    sim: Simulator, fleet: Fleet, queue: Queue, tmp_path: Path
) -> None:
    async with daemon(settings_for(sim, queue, tmp_path)) as running:
        job = fleet.start_job("dshop", "main", outcome=FAILED, reason="npm ERR!")
        await anyio.sleep(sum(FAST.values()) + 0.1)  # the job has failed now
        ended = time.monotonic()
        await queue.send(amplify_event("dshop", "main", job, FAILED))
        await until(lambda: sent(running, FAILED) == 1, "the failure alerted")
        assert time.monotonic() - ended < 5
        await until(lambda: drained(queue), "the message deleted")
        assert events(running, "refreshed") == 1
        assert sample(running, "amplify_monitor_event_lag_seconds_count") == 1
        # The same event delivered again (at-least-once delivery) alerts nothing more.
        await queue.send(amplify_event("dshop", "main", job, FAILED))
        await until(lambda: events(running, "refreshed") == 2, "the repeat refreshed")
        assert sent(running, FAILED) == 1


async def test_a_started_event_has_the_branch_followed_so_an_unannounced_cancel_is_found(
    sim: Simulator, fleet: Fleet, queue: Queue, tmp_path: Path
) -> None:
    durations = {"PENDING": 0.1, "PROVISIONING": 0.1, "RUNNING": 60.0}
    async with daemon(settings_for(sim, queue, tmp_path)) as running:
        job = fleet.start_job("dshop", "develop", durations=durations)
        await queue.send(amplify_event("dshop", "develop", job, "STARTED"))
        key = BranchKey("dshop", "develop")
        await until(lambda: key in running.edges.scheduler.followed, "followed")
        await until(lambda: drained(queue), "the STARTED settled by the first active poll")
        assert running.edges.poller.states[key].in_flight
        fleet.stop_job("dshop", "develop", job)  # Amplify sends no event for a cancel
        await until(lambda: sent(running, CANCELLED) == 1, "the cancel found", ACTIVE * 3 + 2)
        assert events(running, "refreshed") == 1


async def test_foreign_and_malformed_messages_are_counted_and_deleted_not_redelivered(
    sim: Simulator, queue: Queue, tmp_path: Path
) -> None:
    settings = settings_for(sim, queue, tmp_path, targets=[{"branches": ["main"]}])
    async with daemon(settings) as running:
        before = dict(sim.counts)
        await queue.send({"source": "aws.codebuild", "detail-type": "CodeBuild Build State"})
        await queue.send(amplify_event("dshop", "develop", "9", FAILED))  # not targeted
        await queue.send(amplify_event("dshop", "main", "9", FAILED, region="eu-west-1"))
        await queue.send("this is not JSON")
        await queue.send(
            {"source": "aws.amplify", "detail-type": "Amplify Deployment Status Change"}
        )
        await until(lambda: events(running, "ignored") == 3, "three ignored")
        await until(lambda: events(running, "malformed") == 2, "two malformed")
        await until(lambda: drained(queue), "all deleted")
        assert dict(sim.counts) == before  # none of them cost an Amplify call


async def test_an_event_for_a_new_branch_lists_its_app_then_refreshes_the_branch(
    sim: Simulator, fleet: Fleet, queue: Queue, tmp_path: Path
) -> None:
    async with daemon(settings_for(sim, queue, tmp_path)) as running:
        fleet.add_branch("dshop", "feature/new")
        job = fleet.start_job("dshop", "feature/new", outcome=SUCCEED)
        await anyio.sleep(sum(FAST.values()) + 0.1)
        listed = sim.counts["ListBranches"]
        await queue.send(amplify_event("dshop", "feature/new", job, SUCCEED))
        await until(lambda: events(running, "unknown_branch") == 1, "unknown branch")
        assert sim.counts["ListBranches"] == listed + 1
        state = running.edges.poller.states[BranchKey("dshop", "feature/new")]
        assert state.latest is not None and state.latest.job_id == job
        await until(lambda: drained(queue), "deleted")


async def test_a_refresh_that_fails_leaves_its_message_in_the_queue(
    sim: Simulator, fleet: Fleet, queue: Queue, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    async with daemon(settings_for(sim, queue, tmp_path)) as running:
        sim.faults.error("ListJobs")
        await queue.send(amplify_event("dshop", "main", "2", FAILED))
        await until(
            lambda: sim.faults.errors[("ListJobs", "InternalFailureException")] >= 1, "tried"
        )
        await anyio.sleep(0.3)
        assert await queue.counts() == (0, 1)  # received, not deleted: it will come back
        assert events(running, "refreshed") == 0


async def test_a_missing_queue_is_logged_counted_and_retried_while_polling_goes_on(
    sim: Simulator, fleet: Fleet, queue: Queue, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = Queue(queue.url.rsplit("/", 1)[0] + "/no-such-queue", queue.client)
    async with daemon(settings_for(sim, missing, tmp_path)) as running:
        await until(
            lambda: (
                sample(
                    running,
                    "amplify_monitor_sqs_requests_total",
                    operation="GetQueueAttributes",
                    outcome="not_found",
                )
                >= 1
            ),
            "the failure counted",
        )
        assert running.edges.readiness.check(time.time())[0]  # /readyz ignores the queue
    err = capsys.readouterr()
    assert "events_queue_failed" in err.out + err.err
    assert "check events.sqs_queue_url" in err.out + err.err
