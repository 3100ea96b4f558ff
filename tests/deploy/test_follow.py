"""Following a job: the polling cadence, and every change reported once, on a manual clock.

The Amplify side is the simulator on loopback through the real client; only time is faked (the
follower's sleep advances the simulator's clock), so a 30-minute job takes milliseconds.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from monitor.amplify import AmplifyClient
from monitor.config import AwsSettings
from monitor.deploy.events import Event, JobChange, StepChange, Target
from monitor.deploy.follow import Follower, PollPolicy
from monitor.model import BranchKey
from monitor.simulator import Fleet, ManualClock, Simulator

KEY = BranchKey("dshop", "main")


def test_polls_at_the_base_interval_while_a_job_is_young() -> None:
    policy = PollPolicy()
    assert policy.next_interval(0) == policy.next_interval(119) == 2.0


def test_long_jobs_are_polled_gently_less_often_within_a_ceiling() -> None:
    policy = PollPolicy()
    assert policy.next_interval(240) == 4.0
    assert policy.next_interval(600) == 10.0
    assert policy.next_interval(3600) == 15.0


def test_unanswered_polls_back_off_exponentially_to_a_ceiling() -> None:
    policy = PollPolicy()
    assert [policy.retry_delay(n, 0) for n in (1, 2, 3, 4, 5, 6)] == [4, 8, 16, 32, 60, 60]


def test_the_interval_env_var_scales_every_duration() -> None:
    policy = PollPolicy.from_env({"AMPLIFY_MONITOR_WAIT_INTERVAL": "0.1"})
    assert (policy.interval, policy.max_interval, policy.max_retry_delay) == (0.1, 0.75, 3.0)
    assert PollPolicy.from_env({}) == PollPolicy()
    with pytest.raises(ValueError, match="not a number"):
        PollPolicy.from_env({"AMPLIFY_MONITOR_WAIT_INTERVAL": "fast"})
    with pytest.raises(ValueError, match="> 0"):
        PollPolicy.from_env({"AMPLIFY_MONITOR_WAIT_INTERVAL": "0"})


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def fleet(clock: ManualClock) -> Fleet:
    fleet = Fleet(clock, durations={"PENDING": 5, "PROVISIONING": 10, "RUNNING": 60})
    fleet.add_app("shop", app_id=KEY.app_id)
    fleet.add_branch(KEY.app_id, KEY.branch)
    return fleet


@pytest.fixture
async def sim(fleet: Fleet) -> AsyncIterator[Simulator]:
    async with Simulator(fleet) as simulator:
        yield simulator


@pytest.fixture
async def client(sim: Simulator) -> AsyncIterator[AmplifyClient]:
    settings = AwsSettings(region="us-east-1", endpoint_url=sim.url)
    async with AmplifyClient.connect(settings, requests_per_second=1000) as amplify:
        yield amplify


def follower(
    client: AmplifyClient, clock: ManualClock, job_id: str, events: list[Event]
) -> Follower:
    async def sleep(seconds: float) -> None:
        clock.advance(seconds)

    return Follower(
        client,
        Target(KEY, "us-east-1"),
        job_id,
        policy=PollPolicy(),
        emit=events.append,
        clock=clock,
        sleep=sleep,
    )


async def test_every_status_and_step_change_is_reported_once_in_order(
    client: AmplifyClient, fleet: Fleet, clock: ManualClock
) -> None:
    job_id = fleet.start_job(KEY.app_id, KEY.branch, outcome="FAILED", fail_step="VERIFY")
    events: list[Event] = []

    finished = await follower(client, clock, job_id, events).run()

    assert finished.status == "FAILED" and finished.exit_code == 1
    assert finished.detail.failed_step is not None
    assert finished.detail.failed_step.name == "VERIFY"
    seen = [
        f"job:{e.to_status}" if isinstance(e, JobChange) else f"{e.step.name}:{e.to_status}"
        for e in events
        if isinstance(e, JobChange | StepChange)
    ]
    assert seen == [
        "job:PENDING",
        "job:PROVISIONING",
        "job:RUNNING",
        "BUILD:RUNNING",
        "BUILD:SUCCEED",
        "DEPLOY:RUNNING",
        "DEPLOY:SUCCEED",
        "VERIFY:RUNNING",
        "VERIFY:FAILED",
        "job:FAILED",
    ]


async def test_a_half_hour_job_costs_a_bounded_number_of_polls(
    client: AmplifyClient, sim: Simulator, fleet: Fleet, clock: ManualClock
) -> None:
    job_id = fleet.start_job(
        KEY.app_id, KEY.branch, durations={"PENDING": 5, "PROVISIONING": 10, "RUNNING": 1800}
    )

    finished = await follower(client, clock, job_id, []).run()
    polls = sim.counts["GetJob"]

    assert finished.status == "SUCCEED"
    # At a flat 2 s this would be ~900 polls. With the backoff: 60 in the first two minutes,
    # ~120 while the interval grows to 15 s, then one per 15 s -- about 240 in all.
    assert 200 < polls < 280, polls
