"""Pacing: an adaptive token bucket that serves its most urgent waiter first."""

from __future__ import annotations

import anyio
import anyio.lowlevel
import pytest

from monitor.model import Priority
from monitor.pacing import BudgetShort, Pacer


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
        assert await pacer.acquire() == 0.0
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


async def _queue_then_urgent(pacer: Pacer, low: int) -> list[str]:
    order: list[str] = []

    async def call(name: str, priority: Priority) -> None:
        await pacer.acquire(priority)
        order.append(name)

    async with anyio.create_task_group() as tg:
        for i in range(low):
            tg.start_soon(call, f"app{i}", Priority.APP)
        await anyio.wait_all_tasks_blocked()
        assert pacer.waiting == low
        tg.start_soon(call, "enrich", Priority.ENRICH)
        tg.start_soon(call, "active", Priority.ACTIVE)
    return order


async def test_an_empty_pacer_hands_its_next_tokens_to_the_most_urgent_waiters() -> None:
    pacer = Pacer(40.0, burst=1.0)
    await pacer.acquire()  # the bucket is empty now
    order = await _queue_then_urgent(pacer, low=8)
    # Eight ListBranches were waiting first; the alert's GetJob and the followed branch's
    # ListJobs still get the next two tokens, then the app polls in their arrival order.
    assert order[:2] == ["enrich", "active"]
    assert order[2:] == [f"app{i}" for i in range(8)]


async def test_a_cancelled_waiter_gives_its_turn_to_the_next() -> None:
    pacer = Pacer(20.0, burst=1.0)
    await pacer.acquire()
    served: list[str] = []

    async def call(name: str, priority: Priority) -> None:
        await pacer.acquire(priority)
        served.append(name)

    async with anyio.create_task_group() as outer, anyio.create_task_group() as doomed:
        doomed.start_soon(call, "doomed", Priority.ENRICH)
        outer.start_soon(call, "next", Priority.APP)
        await anyio.wait_all_tasks_blocked()
        assert pacer.waiting == 2
        doomed.cancel_scope.cancel()
    assert served == ["next"]
    assert pacer.waiting == 0


class _GatedBudget:
    """A shared budget whose answers the test releases one by one (only time is faked here;
    the real Redis budget is tested in tests/test_cluster.py)."""

    def __init__(self) -> None:
        self.gates: list[anyio.Event] = []

    async def take(self) -> float:
        gate = anyio.Event()
        self.gates.append(gate)
        await gate.wait()
        return 0.0


async def test_a_waiter_arriving_while_the_head_asks_the_shared_budget_is_not_stranded() -> None:
    budget = _GatedBudget()
    pacer = Pacer(1.0, burst=1.0, shared=budget)  # one local token: the newcomer must wait
    done: list[str] = []

    async def call(name: str, priority: int) -> None:
        await pacer.acquire(priority)
        done.append(name)

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(call, "idle", 5)
            while not budget.gates:
                await anyio.lowlevel.checkpoint()
            tg.start_soon(call, "urgent", 0)  # arrives while the head waits for the answer
            await anyio.sleep(0.01)
            while len(done) < 2:
                for gate in budget.gates:
                    gate.set()
                await anyio.sleep(0.01)
    assert sorted(done) == ["idle", "urgent"] and pacer.waiting == 0


async def test_a_low_priority_call_gives_up_when_urgent_work_keeps_the_budget() -> None:
    pacer = Pacer(20.0, burst=1.0)

    async def urgent() -> None:
        while True:
            await pacer.acquire(0)

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            for _ in range(3):
                tg.start_soon(urgent)
            await anyio.sleep(0.05)  # the urgent callers are queued first
            with pytest.raises(BudgetShort):
                await pacer.acquire(5, patience=0.3)
            tg.cancel_scope.cancel()
    assert pacer.waiting == 0  # the one that gave up left no trace in the queue
