"""The scheduler's bookkeeping: one entry per task, most urgent due task first, never twice."""

from __future__ import annotations

from monitor.model import Priority
from monitor.taskqueue import TaskQueue


def test_one_entry_per_task_and_a_new_plan_replaces_the_old() -> None:
    queue: TaskQueue[str] = TaskQueue()
    queue.at("a", 10.0, Priority.APP)
    queue.at("a", 20.0, Priority.APP)
    assert len(queue) == 1
    assert queue.take(15.0) is None
    taken = queue.take(20.0)
    assert taken is not None and taken[0] == "a"
    assert "a" not in queue


def test_at_latest_keeps_the_sooner_time_and_the_more_urgent_priority() -> None:
    queue: TaskQueue[str] = TaskQueue()
    queue.at_latest("b", 10.0, Priority.SWEEP)
    queue.at_latest("b", 30.0, Priority.CHANGED)
    entry = queue.entry("b")
    assert entry is not None and (entry.due, entry.priority) == (10.0, Priority.CHANGED)
    queue.at_latest("b", 5.0, Priority.ACTIVE)
    assert queue.next_due() == 5.0


def test_of_the_due_tasks_the_most_urgent_comes_first_then_the_longest_due() -> None:
    queue: TaskQueue[str] = TaskQueue()
    queue.at("idle-app-1", 0.0, Priority.APP)
    queue.at("idle-app-2", 1.0, Priority.APP)
    queue.at("discovery", 0.0, Priority.DISCOVERY)
    queue.at("running-branch", 2.0, Priority.ACTIVE)
    queue.at("later", 50.0, Priority.ENRICH)
    order = []
    while (taken := queue.take(10.0)) is not None:
        order.append(taken[0])
    assert order == ["running-branch", "idle-app-1", "idle-app-2", "discovery"]
    assert queue.next_due() == 50.0


def test_a_running_task_is_not_handed_out_again_until_done() -> None:
    queue: TaskQueue[str] = TaskQueue()
    queue.at("a", 0.0, Priority.APP)
    assert queue.take(0.0) is not None
    queue.at("a", 0.0, Priority.CHANGED)  # asked for again while it runs
    assert queue.take(1.0) is None
    assert queue.next_due() is None  # nothing can be taken yet
    queue.done("a")
    taken = queue.take(1.0)
    assert taken is not None and taken[1].priority is Priority.CHANGED


def test_removed_tasks_are_never_taken() -> None:
    queue: TaskQueue[str] = TaskQueue()
    queue.at("a", 0.0, Priority.APP)
    queue.remove("a")
    assert queue.take(10.0) is None
    assert queue.next_due() is None
