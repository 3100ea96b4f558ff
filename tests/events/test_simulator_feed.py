"""The simulator's EventBridge: which events it sends as jobs move, and that they reach SQS in
the shape the daemon reads."""

from __future__ import annotations

import anyio

from monitor.events import AmplifyEvent, parse
from monitor.model import CANCELLED, FAILED, SUCCEED
from monitor.simulator import Fleet, ManualClock
from monitor.simulator.events import EventFeed, publish
from tests.events.conftest import Queue

FAST = {"PENDING": 1, "PROVISIONING": 1, "RUNNING": 3}


def _fleet() -> tuple[Fleet, ManualClock]:
    clock = ManualClock()
    fleet = Fleet(clock, durations=FAST)
    app = fleet.add_app("shop", app_id="dshop")
    fleet.add_branch(app, "main")
    fleet.add_branch(app, "develop")
    fleet.start_job(app, "main", at=clock() - 600)  # history: never announced
    return fleet, clock


def _told(feed: EventFeed) -> list[tuple[str, str, str]]:
    return [
        (e["detail"]["branchName"], e["detail"]["jobId"], e["detail"]["jobStatus"])
        for e in feed.due()
    ]


def test_a_job_is_announced_when_it_starts_and_when_it_ends_once_each() -> None:
    fleet, clock = _fleet()
    feed = EventFeed(fleet)
    assert _told(feed) == []
    failed = fleet.start_job("dshop", "main", outcome=FAILED)
    assert _told(feed) == [("main", failed, "STARTED")]
    clock.advance(2)
    assert _told(feed) == []
    clock.advance(10)
    assert _told(feed) == [("main", failed, FAILED)]
    assert _told(feed) == []


def test_a_cancel_is_not_announced_as_amplify_announces_none() -> None:
    fleet, clock = _fleet()
    feed = EventFeed(fleet)
    job = fleet.start_job("dshop", "develop", outcome=CANCELLED)
    clock.advance(60)
    assert _told(feed) == [("develop", job, "STARTED")]
    assert feed.sent == {"STARTED": 1}


def test_a_share_of_events_is_dropped_and_counted() -> None:
    fleet, clock = _fleet()
    feed = EventFeed(fleet, drop_share=0.5, seed=3)
    for _ in range(40):
        fleet.start_job("dshop", "main", outcome=SUCCEED)
        clock.advance(10)
        feed.due()
    assert feed.sent["STARTED"] + feed.dropped["STARTED"] == 40
    assert feed.sent[SUCCEED] + feed.dropped[SUCCEED] == 40
    assert 10 < sum(feed.dropped.values()) < 70


async def test_published_events_arrive_in_the_queue_as_the_daemon_reads_them(
    moto_url: str, queue: Queue
) -> None:
    fleet = Fleet(durations={"PENDING": 0.05, "PROVISIONING": 0.05, "RUNNING": 0.2})
    app = fleet.add_app("shop", app_id="dshop")
    fleet.add_branch(app, "main")
    feed = EventFeed(fleet)
    job = fleet.start_job(app, "main", outcome=FAILED)
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: publish(feed, queue.url, endpoint_url=moto_url, every=0.05))
        for _ in range(200):  # until both are in the queue, not merely handed to the client
            await anyio.sleep(0.05)
            if (await queue.counts())[0] == 2:
                break
        tg.cancel_scope.cancel()
    answer = await queue.client.receive_message(
        QueueUrl=queue.url, MaxNumberOfMessages=10, WaitTimeSeconds=1
    )
    events = [parse(m["Body"]) for m in answer["Messages"]]
    assert [(e.job_id, e.job_status) for e in events if isinstance(e, AmplifyEvent)] == [
        (job, "STARTED"),
        (job, FAILED),
    ]
