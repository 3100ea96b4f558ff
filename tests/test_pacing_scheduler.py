"""Pacing (adaptive token bucket) and the scheduler's due-time bookkeeping, with a fake clock."""

from __future__ import annotations

from monitor.model import BranchKey
from monitor.pacing import Pacer
from monitor.scheduler import DISCOVER, PollApp, PollBranch, Schedule


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


async def test_pacer_spends_its_burst_then_holds_the_rate() -> None:
    t = FakeTime()
    pacer = Pacer(10.0, burst=5.0, clock=t.clock, sleep=t.sleep)
    for _ in range(5):
        await pacer.acquire()
    assert t.now == 0.0  # the burst is free
    for _ in range(10):
        await pacer.acquire()
    assert abs(t.now - 1.0) < 1e-9  # then 10 per second


async def test_pacer_halves_on_throttle_and_recovers_while_calls_succeed() -> None:
    t = FakeTime()
    pacer = Pacer(8.0, clock=t.clock, sleep=t.sleep)
    pacer.throttled()
    assert pacer.rate == 4.0
    pacer.throttled()
    assert pacer.rate == 2.0
    for _ in range(1000):
        pacer.succeeded()
    assert pacer.rate == 8.0


async def test_pacer_never_goes_below_its_floor() -> None:
    pacer = Pacer(1.0, min_rate=0.5)
    for _ in range(10):
        pacer.throttled()
    assert pacer.rate == 0.5


def test_schedule_keeps_one_entry_per_task() -> None:
    schedule = Schedule()
    schedule.at(PollApp("a"), 10.0)
    schedule.at(PollApp("a"), 20.0)
    assert len(schedule) == 1
    assert schedule.pop_due(15.0) == []
    assert schedule.pop_due(20.0) == [PollApp("a")]
    assert PollApp("a") not in schedule


def test_schedule_at_latest_only_moves_a_task_sooner() -> None:
    schedule = Schedule()
    key = PollBranch(BranchKey("a", "main"))
    schedule.at_latest(key, 10.0)
    schedule.at_latest(key, 30.0)
    assert schedule.next_due() == 10.0
    schedule.at_latest(key, 5.0)
    assert schedule.next_due() == 5.0


def test_schedule_pops_every_due_task_and_reports_the_next() -> None:
    schedule = Schedule()
    schedule.at(DISCOVER, 0.0)
    schedule.at(PollApp("a"), 1.0)
    schedule.at(PollApp("b"), 5.0)
    assert set(schedule.pop_due(1.0)) == {DISCOVER, PollApp("a")}
    assert schedule.next_due() == 5.0
    schedule.remove(PollApp("b"))
    assert schedule.next_due() is None
