"""One living message per job, end to end through the dispatcher, a real store (SQLite and
Redis) and the local Slack: a route with `notify_start` gets one channel message per job that is
updated in place as the job moves, a failure adds one broadcast reply in its thread, a restart
in the middle changes nothing, and a recovery marks the failure message recovered."""

from __future__ import annotations

import dataclasses
import json
import time
from typing import Any

from monitor.model import CANCELLED, FAILED, PENDING, RUNNING, SUCCEED, Alert, AlertKind

from .conftest import OpenStore
from .harness import bot_settings, dispatcher_for, eventually, running, save, settle
from .helpers import RecordingObserver, make_alert, make_recovery
from .slack_server import FakeSlack, Reply

MENTION = "<!subteam^S0123ABC>"


def living_settings(slack: FakeSlack, **route: Any) -> Any:
    return bot_settings(
        slack,
        routes=[
            {
                "branches": ["main", "release/*"],
                "channel": "#builds",
                "notify_start": True,
                "mention": MENTION,
                **route,
            }
        ],
    )


def step(status: str, job_id: str = "42", branch: str = "main") -> Alert:
    """The alert the diff raises for one step of a job's story on a living route."""
    kind: AlertKind = "failure" if status in (FAILED, CANCELLED) else "progress"
    alert = make_alert(job_id, status, kind=kind, branch=branch)
    if status in (PENDING, RUNNING):
        alert = dataclasses.replace(alert, job=dataclasses.replace(alert.job, end_time=None))
    return alert


def blocks_text(message: dict[str, Any]) -> str:
    return json.dumps(message.get("blocks", []), ensure_ascii=False)


async def test_a_job_that_starts_runs_and_fails_is_one_message_and_one_broadcast_reply(
    slack: FakeSlack, open_store: OpenStore, observer: RecordingObserver
) -> None:
    store = await open_store()
    dispatcher = dispatcher_for(living_settings(slack), store, observer, time.time)
    async with running(dispatcher):
        for done, status in enumerate((PENDING, RUNNING, FAILED), start=1):
            await save(store, step(status))
            dispatcher.poke()
            await eventually(lambda done=done: observer.outcomes("sent") == done)  # type: ignore[misc]
        await settle()
    [message] = slack.top_level("#builds")[:1]
    channel_messages = [m for m in slack.top_level("#builds") if "thread_ts" not in m]
    assert channel_messages == [message]
    # It ends red, with the failed step, its reason and the log link.
    assert message["text"].startswith("🔴") and "failed" in message["text"]
    assert "BUILD" in blocks_text(message) and "npm ERR! code ELIFECYCLE" in blocks_text(message)
    assert "open_step_log" in blocks_text(message)
    assert len(slack.updates) == 2  # RUNNING, then FAILED
    [reply] = slack.replies("#builds", message["ts"])
    assert reply["subtype"] == "thread_broadcast"
    assert reply["text"].startswith(MENTION)
    assert await store.pending_count() == 0


async def test_a_restart_in_the_middle_of_a_story_changes_nothing(
    slack: FakeSlack, open_store: OpenStore, observer: RecordingObserver
) -> None:
    store = await open_store()
    first = dispatcher_for(living_settings(slack), store, observer, time.time)
    async with running(first):
        await save(store, step(PENDING))
        first.poke()
        await eventually(lambda: observer.outcomes("sent") == 1)
    # A new process over the same store (the message's reference is all it has).
    await store.close()
    store = await open_store()
    second = dispatcher_for(living_settings(slack), store, observer, time.time)
    async with running(second):
        await save(store, step(RUNNING), step(SUCCEED))
        second.poke()
        await eventually(lambda: observer.outcomes("sent") == 3)
        await settle()
    [message] = slack.top_level("#builds")
    assert "succeeded" in message["text"] and message["text"].startswith("✅")
    assert len(slack.delivered) == 1 and len(slack.updates) == 2
    assert slack.replies("#builds", message["ts"]) == []  # success pings nobody


async def test_without_notify_start_a_recovery_marks_the_failure_message_and_replies_in_thread(
    slack: FakeSlack, open_store: OpenStore, observer: RecordingObserver
) -> None:
    store = await open_store()
    dispatcher = dispatcher_for(bot_settings(slack), store, observer, time.time)
    async with running(dispatcher):
        await save(store, make_alert("42"))
        dispatcher.poke()
        await eventually(lambda: observer.outcomes("sent") == 1)
        await save(store, make_recovery("43", "42"))
        dispatcher.poke()
        await eventually(lambda: observer.outcomes("sent") == 2)
    [failure] = slack.top_level("#builds")
    assert "recovered by job #43" in failure["text"]
    assert "Recovered" in blocks_text(failure) and "npm ERR!" in blocks_text(failure)
    [reply] = slack.replies("#builds", failure["ts"])
    assert "Recovered" in reply["text"] and "subtype" not in reply  # quiet: not broadcast


async def test_progress_alerts_go_nowhere_without_notify_start(
    slack: FakeSlack, open_store: OpenStore, observer: RecordingObserver
) -> None:
    store = await open_store()
    dispatcher = dispatcher_for(living_settings(slack), store, observer, time.time)
    async with running(dispatcher):
        # A branch no living route matches: its steps are not worth a message.
        await save(store, step(PENDING, branch="feature/x"), step(RUNNING, branch="feature/x"))
        dispatcher.poke()
        await eventually(lambda: observer.outcomes("suppressed") == 2)
    assert slack.requests == []
    assert await store.pending_count() == 0


async def test_a_deleted_living_message_is_posted_anew(
    slack: FakeSlack, open_store: OpenStore, observer: RecordingObserver
) -> None:
    store = await open_store()
    dispatcher = dispatcher_for(living_settings(slack), store, observer, time.time)
    async with running(dispatcher):
        await save(store, step(PENDING))
        dispatcher.poke()
        await eventually(lambda: observer.outcomes("sent") == 1)
        for messages in slack.channels.values():
            messages.clear()  # someone deleted it
        await save(store, step(RUNNING))
        dispatcher.poke()
        await eventually(lambda: observer.outcomes("sent") == 2)
        await save(store, step(SUCCEED))
        dispatcher.poke()
        await eventually(lambda: observer.outcomes("sent") == 3)
    [message] = slack.top_level("#builds")
    assert "succeeded" in message["text"]
    assert len(slack.delivered) == 2  # the start, then the new message; then an update


async def test_a_message_that_can_no_longer_be_edited_gets_the_news_in_its_thread(
    slack: FakeSlack, open_store: OpenStore, observer: RecordingObserver
) -> None:
    store = await open_store()
    dispatcher = dispatcher_for(living_settings(slack), store, observer, time.time)
    async with running(dispatcher):
        await save(store, step(PENDING))
        dispatcher.poke()
        await eventually(lambda: observer.outcomes("sent") == 1)
        [started] = slack.top_level("#builds")
        slack.frozen.add(started["ts"])
        await save(store, step(SUCCEED))
        dispatcher.poke()
        await eventually(lambda: observer.outcomes("sent") == 2)
    [started] = slack.top_level("#builds")
    assert started["text"].startswith("🟡")
    [reply] = slack.replies("#builds", started["ts"])
    assert "succeeded" in reply["text"]


async def test_an_update_waits_out_a_rate_limit_and_then_lands(
    slack: FakeSlack, open_store: OpenStore, observer: RecordingObserver
) -> None:
    store = await open_store()
    dispatcher = dispatcher_for(living_settings(slack), store, observer, time.time)
    async with running(dispatcher):
        await save(store, step(PENDING))
        dispatcher.poke()
        await eventually(lambda: observer.outcomes("sent") == 1)
        slack.script(Reply.rate_limited(retry_after=1))
        await save(store, step(RUNNING))
        dispatcher.poke()
        await eventually(lambda: observer.outcomes("sent") == 2, timeout=8)
    limited = [r for r in slack.requests if r.status == 429]
    assert [r.method for r in limited] == ["chat.update"]
    assert slack.updates[-1].at - limited[0].at >= 0.9  # Retry-After honoured
    assert len(slack.delivered) == 1
