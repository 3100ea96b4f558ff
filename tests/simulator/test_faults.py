"""Injected faults surface through botocore as the model's error codes; requests are counted."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest
from botocore.exceptions import ClientError

from monitor.simulator import Faults, Fleet, ManualClock, Simulator

if TYPE_CHECKING:
    from types_aiobotocore_amplify.client import AmplifyClient

    from tests.simulator.conftest import ClientFactory


def _error(exc: pytest.ExceptionInfo[ClientError]) -> tuple[str, int]:
    response = exc.value.response
    return str(response["Error"]["Code"]), int(response["ResponseMetadata"]["HTTPStatusCode"])


@pytest.mark.parametrize(
    ("inject", "code", "status"),
    [
        (lambda f: f.throttle(), "LimitExceededException", 429),
        (lambda f: f.error(status=500), "InternalFailureException", 500),
        (lambda f: f.error(status=503), "DependentServiceFailureException", 503),
        (lambda f: f.unauthorized(), "UnauthorizedException", 401),
    ],
)
async def test_each_fault_kind_answers_its_model_error(
    faults: Faults,
    client: AmplifyClient,
    inject: Callable[[Faults], None],
    code: str,
    status: int,
) -> None:
    inject(faults)
    with pytest.raises(ClientError) as exc:
        await client.list_apps()
    assert _error(exc) == (code, status)
    faults.clear()
    assert (await client.list_apps())["apps"] == []


async def test_throttle_for_n_calls_then_recovers(faults: Faults, client: AmplifyClient) -> None:
    faults.throttle(times=2)
    outcomes = []
    for _ in range(3):
        try:
            await client.list_apps()
            outcomes.append("ok")
        except ClientError as exc:
            outcomes.append(exc.response["Error"]["Code"])
    assert outcomes == ["LimitExceededException", "LimitExceededException", "ok"]


async def test_a_fault_for_one_operation_leaves_the_others_alone(
    fleet: Fleet, faults: Faults, client: AmplifyClient
) -> None:
    app_id = fleet.add_app("shop")
    fleet.add_branch(app_id, "main")
    faults.throttle("ListJobs")
    await client.list_branches(appId=app_id)
    with pytest.raises(ClientError) as exc:
        await client.list_jobs(appId=app_id, branchName="main")
    assert _error(exc) == ("LimitExceededException", 429)
    faults.clear("ListJobs")
    await client.list_jobs(appId=app_id, branchName="main")


async def test_probabilistic_throttling_hits_some_calls_and_not_others(
    faults: Faults, client: AmplifyClient
) -> None:
    faults.throttle(probability=0.5)
    throttled = 0
    for _ in range(40):
        try:
            await client.list_apps()
        except ClientError:
            throttled += 1
    assert 5 < throttled < 35


async def test_latency_delays_the_answer(faults: Faults, client: AmplifyClient) -> None:
    faults.latency(0.3, "ListApps", times=1)
    began = time.monotonic()
    await client.list_apps()
    assert time.monotonic() - began >= 0.3
    began = time.monotonic()
    await client.list_apps()
    assert time.monotonic() - began < 0.3


async def test_botocore_retries_throttling_and_every_attempt_is_counted(
    faults: Faults, sim: Simulator, make_client: ClientFactory
) -> None:
    faults.throttle("ListApps", times=1)
    async with make_client(retries=3) as client:
        answer = await client.list_apps()
    assert answer["ResponseMetadata"]["RetryAttempts"] == 1
    assert sim.counts["ListApps"] == 2


async def test_counts_are_per_botocore_operation_and_can_be_reset(
    fleet: Fleet, sim: Simulator, client: AmplifyClient
) -> None:
    app_id = fleet.add_app("shop")
    fleet.add_branch(app_id, "feature/x")
    await client.list_apps()
    await client.list_branches(appId=app_id)
    for _ in range(3):
        await client.list_jobs(appId=app_id, branchName="feature/x")
    assert sim.counts == {"ListApps": 1, "ListBranches": 1, "ListJobs": 3}
    sim.reset_counts()
    await client.get_app(appId=app_id)
    assert sim.counts == {"GetApp": 1}


def test_fault_rules_reject_nonsense() -> None:
    faults = Faults()
    with pytest.raises(ValueError, match="times"):
        faults.throttle(times=0)
    with pytest.raises(ValueError, match="probability"):
        faults.throttle(probability=0)
    with pytest.raises(ValueError, match="status"):
        faults.error(status=502)


async def _outcomes(client: AmplifyClient, calls: int) -> list[str]:
    outcomes = []
    for _ in range(calls):
        try:
            await client.list_apps()
            outcomes.append("ok")
        except ClientError as exc:
            outcomes.append(str(exc.response["Error"]["Code"]))
    return outcomes


async def test_quota_throttles_beyond_its_burst_and_refills_at_its_rate(
    sim: Simulator, clock: ManualClock, client: AmplifyClient
) -> None:
    sim.faults = Faults(clock=clock)
    sim.faults.quota(2, burst=3)
    throttled = "LimitExceededException"
    assert await _outcomes(client, 4) == ["ok", "ok", "ok", throttled]
    # Half a second at 2 a second is one token; the throttled call above took none.
    clock.advance(0.5)
    assert await _outcomes(client, 2) == ["ok", throttled]
    # A long pause fills the bucket up to its burst, no further.
    clock.advance(60)
    assert await _outcomes(client, 4) == ["ok", "ok", "ok", throttled]
    assert sim.faults.throttled == 3
    assert sim.faults.errors == {("ListApps", throttled): 3}
    assert sim.counts["ListApps"] == 10


async def test_quota_is_one_budget_for_every_operation_unless_scoped(
    fleet: Fleet, sim: Simulator, clock: ManualClock, client: AmplifyClient
) -> None:
    app_id = fleet.add_app("shop")
    fleet.add_branch(app_id, "main")
    sim.faults = Faults(clock=clock)
    sim.faults.quota(1)
    await client.list_apps()
    with pytest.raises(ClientError) as exc:
        await client.list_branches(appId=app_id)
    assert _error(exc) == ("LimitExceededException", 429)

    sim.faults.clear()
    sim.faults.quota(1, op="ListJobs")
    await client.list_jobs(appId=app_id, branchName="main")
    with pytest.raises(ClientError):
        await client.list_jobs(appId=app_id, branchName="main")
    for _ in range(3):
        await client.list_branches(appId=app_id)


async def test_latency_still_applies_to_calls_a_quota_refuses(
    sim: Simulator, clock: ManualClock, client: AmplifyClient
) -> None:
    sim.faults = Faults(clock=clock)
    sim.faults.quota(1)
    sim.faults.latency(0.2)
    await client.list_apps()
    began = time.monotonic()
    with pytest.raises(ClientError):
        await client.list_apps()
    assert time.monotonic() - began >= 0.2


async def test_every_injected_error_is_counted_by_operation_and_code(
    faults: Faults, client: AmplifyClient
) -> None:
    faults.throttle("ListApps", times=2)
    faults.error("GetApp", status=503, times=1)
    await _outcomes(client, 3)
    with pytest.raises(ClientError):
        await client.get_app(appId="d123")
    assert faults.errors == {
        ("ListApps", "LimitExceededException"): 2,
        ("GetApp", "DependentServiceFailureException"): 1,
    }
    assert faults.throttled == 2


def test_quota_rejects_nonsense() -> None:
    faults = Faults()
    with pytest.raises(ValueError, match="rate"):
        faults.quota(0)
    with pytest.raises(ValueError, match="burst"):
        faults.quota(5, burst=0.5)
