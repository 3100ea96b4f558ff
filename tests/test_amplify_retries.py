"""botocore's own retries spend the API budget too: every HTTP attempt waits for a token at its
call's priority, and every throttled attempt slows the pacer, against the real simulator."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from monitor.amplify import AmplifyClient, Throttled
from monitor.config import AwsSettings
from monitor.model import App, Priority
from monitor.pacing import Pacer
from monitor.simulator import Faults, Fleet, ManualClock, Simulator


class RecordingPacer(Pacer):
    """The real pacer, noting the priority of every token it is asked for."""

    def __init__(self, rate: float) -> None:
        super().__init__(rate)
        self.asked: list[int] = []

    async def acquire(self, priority: int = 0, patience: float | None = None) -> float:
        self.asked.append(priority)
        return await super().acquire(priority, patience)


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    fleet = Fleet(ManualClock())
    app_id = fleet.add_app("shop")
    fleet.add_branch(app_id, "main")
    async with Simulator(fleet, Faults()) as simulator:
        yield simulator


async def _app(client: AmplifyClient) -> App:
    [app] = await client.list_apps()
    return app


async def test_each_retry_of_a_throttled_call_waits_for_a_token_at_the_calls_priority(
    sim: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "3")
    async with AmplifyClient.connect(AwsSettings(endpoint_url=sim.url)) as client:
        app = await _app(client)
        client.pacer = pacer = RecordingPacer(400.0)
        sim.faults.throttle("ListBranches", times=2)
        branches = await client.list_branches(app, Priority.APP)
    assert [b.key.branch for b in branches] == ["main"]
    assert sim.counts["ListBranches"] == 3
    assert pacer.asked == [Priority.APP] * 3
    # Halved by each throttled attempt, then one success crept it back up by max_rate / 50.
    assert pacer.rate == pytest.approx(400 / 4 + 400 / 50)


async def test_a_call_throttled_on_every_attempt_is_reported_as_throttled_once(
    sim: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
    async with AmplifyClient.connect(AwsSettings(endpoint_url=sim.url)) as client:
        app = await _app(client)
        client.pacer = pacer = RecordingPacer(400.0)
        sim.faults.throttle("ListBranches")
        with pytest.raises(Throttled):
            await client.list_branches(app, Priority.SWEEP)
    assert pacer.asked == [Priority.SWEEP] * 2
    assert pacer.rate == pytest.approx(100.0)  # two attempts, two halvings, no third
