"""Delivery end to end: real store (SQLite, and Redis when present) -> dispatcher -> real
slack_sdk clients -> the local Slack on loopback. Fakes only for time."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, cast

import anyio
import pytest
import structlog.testing

from monitor.config import Settings
from monitor.model import CANCELLED, FAILED, OutboxEntry, dedup_key
from monitor.notify.base import Destination, Retry, Single
from monitor.notify.slack import SlackBotNotifier
from monitor.notify.slack_answers import Receipt
from monitor.store.base import Store

from .conftest import OpenStore
from .harness import (
    bot_settings,
    dispatcher_for,
    eventually,
    running,
    save,
    settle,
    webhook_settings,
)
from .helpers import FakeClock, RecordingObserver, make_alert, make_recovery, slack_settings
from .slack_server import TOKEN, FakeSlack, Reply

HOSTILE = "<!channel> <@U123> <https://evil.example|docs> & co"


# --- one alert, one message ----------------------------------------------------------------


async def test_one_message_per_failure_even_when_the_save_is_replayed(
    slack: FakeSlack, open_store: OpenStore, observer: RecordingObserver
) -> None:
    store = await open_store()
    dispatcher = dispatcher_for(bot_settings(slack), store, observer, time.time)
    alert = make_alert()
    async with running(dispatcher):
        await save(store, alert)
        dispatcher.poke()
        [message] = await slack.wait_for(1)
        await save(store, alert)  # the poller replays a save after a crash
        dispatcher.poke()
        await settle()
    assert len(slack.delivered) == 1
    assert message.headers["Authorization"] == f"Bearer {TOKEN}"
    assert message.channel == slack.channel_id("#builds")
    assert "Build failed: shop / main" in message.text
    assert [b["type"] for b in message.blocks][:2] == ["header", "section"]
    assert await store.pending_count() == 0
    assert (
        await store.receipt(alert.dedup_key) == Receipt(message.channel, message.ts or "").encode()
    )
    assert observer.alerts[(FAILED, "sent")] == 1
    assert observer.pending[-1] == 0
    assert observer.slack_seconds


async def test_a_lone_failure_is_not_held_back_by_flood_control(
    slack: FakeSlack, open_store: OpenStore, observer: RecordingObserver
) -> None:
    store = await open_store()
    settings = bot_settings(slack, digest_window_seconds=3600.0)
    dispatcher = dispatcher_for(settings, store, observer, time.time)
    async with running(dispatcher):
        started = time.monotonic()
        await save(store, make_alert())
        dispatcher.poke()
        [message] = await slack.wait_for(1, timeout=2.0)
    assert message.at - started < 1.0


async def test_a_commit_message_arrives_escaped(
    slack: FakeSlack, open_store: OpenStore, observer: RecordingObserver
) -> None:
    store = await open_store()
    dispatcher = dispatcher_for(bot_settings(slack), store, observer, time.time)
    async with running(dispatcher):
        await save(store, make_alert(message=HOSTILE, branch="feat/<!here>"))
        dispatcher.poke()
        [message] = await slack.wait_for(1)
    payload = message.everything()
    for raw in ("<!channel>", "<@U123>", "<https://evil.example|docs>", "<!here>"):
        assert raw not in payload
    assert "&lt;!channel&gt; &lt;@U123&gt; &lt;https://evil.example|docs&gt; &amp; co" in payload


# --- Slack faults ----------------------------------------------------------------------------


async def test_429_waits_for_retry_after_then_delivers_once(
    slack: FakeSlack, open_store: OpenStore, observer: RecordingObserver, clock: FakeClock
) -> None:
    store = await open_store()
    slack.script(Reply.rate_limited(retry_after=7))
    dispatcher = dispatcher_for(bot_settings(slack), store, observer, clock)
    async with running(dispatcher):
        await save(store, make_alert())
        dispatcher.poke()
        await eventually(lambda: observer.outcomes("retried") == 1)
        clock.advance(6.5)
        dispatcher.poke()
        await settle()
        assert len(slack.requests) == 1, "retried before Retry-After"
        clock.advance(0.5)
        dispatcher.poke()
        await slack.wait_for(1)
        await settle()
    assert [r.status for r in slack.requests] == [429, 200]
    assert len(slack.delivered) == 1
    assert observer.alerts[(FAILED, "retried")] == 1
    assert observer.alerts[(FAILED, "sent")] == 1
    assert await store.pending_count() == 0


async def test_server_errors_back_off_then_deliver_once(
    slack: FakeSlack, open_store: OpenStore, observer: RecordingObserver, clock: FakeClock
) -> None:
    store = await open_store()
    slack.script(Reply.server_error(500), Reply.server_error(502), Reply.server_error(503))
    dispatcher = dispatcher_for(bot_settings(slack), store, observer, clock)
    async with running(dispatcher):
        await save(store, make_alert())
        dispatcher.poke()
        for seen in (1, 2, 3):
            await eventually(lambda: observer.outcomes("retried") == seen)  # noqa: B023
            await settle(0.05)
            assert len(slack.requests) == seen, "retried without waiting"
            clock.advance(301)  # past the longest transient backoff
            dispatcher.poke()
        await slack.wait_for(1)
        await settle()
    assert [r.status for r in slack.requests] == [500, 502, 503, 200]
    assert len(slack.delivered) == 1
    assert observer.alerts[(FAILED, "retried")] == 3
    assert await store.pending_count() == 0


async def test_a_connection_error_is_a_retry(observer: RecordingObserver) -> None:
    notifier = SlackBotNotifier(lambda: TOKEN, "http://127.0.0.1:9/api/", observer, timeout=2)
    result = await notifier.send(Single(make_alert(), Destination("#builds")))
    assert isinstance(result, Retry)
    assert result.error.startswith("connection: ")


async def test_a_bad_token_is_logged_once_with_the_fix_and_the_alert_waits_for_it(
    slack: FakeSlack,
    open_store: OpenStore,
    observer: RecordingObserver,
    clock: FakeClock,
    tmp_path: Path,
) -> None:
    store = await open_store()
    token_file = tmp_path / "token"
    token_file.write_text("xoxb-revoked\n")
    dispatcher = dispatcher_for(bot_settings(slack, token_file=token_file), store, observer, clock)
    with structlog.testing.capture_logs() as logs:
        async with running(dispatcher):
            await save(store, make_alert("42"), make_alert("43", branch="dev"))
            dispatcher.poke()
            await eventually(lambda: observer.outcomes("failed") == 1)
            for seen in (2, 3):
                clock.advance(1000)  # past the slow retry for faults a person must fix
                dispatcher.poke()
                await eventually(lambda: observer.outcomes("failed") == seen)  # noqa: B023
            await settle(0.05)
            assert await store.pending_count() == 2
            token_file.write_text(TOKEN + "\n")  # the operator rotates the secret
            clock.advance(1000)
            dispatcher.poke()
            await slack.wait_for(2)
    loud = [e for e in logs if e["event"] == "slack_delivery_rejected"]
    assert len(loud) == 1
    assert loud[0]["error"] == "invalid_auth" and "token" in loud[0]["fix"]
    assert [r.answer["error"] for r in slack.requests[:3] if isinstance(r.answer, dict)] == [
        "invalid_auth"
    ] * 3
    assert observer.alerts[(FAILED, "failed")] == 3
    assert observer.alerts[(FAILED, "sent")] == 2
    assert any(e["event"] == "slack_delivery_recovered" for e in logs)
    logged = json.dumps(logs, default=str)
    assert "xoxb-revoked" not in logged and TOKEN not in logged
    assert await store.pending_count() == 0


async def test_a_missing_channel_does_not_hold_up_other_channels(
    slack: FakeSlack, open_store: OpenStore, observer: RecordingObserver
) -> None:
    store = await open_store()
    slack.missing_channels.add("#gone")
    settings = bot_settings(slack, routes=[{"app_name": "blog", "channel": "#gone"}])
    dispatcher = dispatcher_for(settings, store, observer, time.time)
    with structlog.testing.capture_logs() as logs:
        async with running(dispatcher):
            await save(store, make_alert(app_name="blog", app_id="d2blog"), make_alert())
            dispatcher.poke()
            [delivered] = await slack.wait_for(1)
            await settle()
    assert delivered.channel == slack.channel_id("#builds")
    assert await store.pending_count() == 1
    [loud] = [e for e in logs if e["event"] == "slack_delivery_rejected"]
    assert loud["error"] == "channel_not_found" and loud["lane"] == "#gone"
    assert "invite" in loud["fix"]


async def test_refused_blocks_fall_back_to_the_text_alone(
    slack: FakeSlack, open_store: OpenStore, observer: RecordingObserver
) -> None:
    store = await open_store()
    slack.script(Reply.error("invalid_blocks"))
    dispatcher = dispatcher_for(bot_settings(slack), store, observer, time.time)
    async with running(dispatcher):
        await save(store, make_alert())
        dispatcher.poke()
        [message] = await slack.wait_for(1)
    assert not message.blocks and "Build failed" in message.text
    assert len(slack.requests) == 2


# --- flood control -------------------------------------------------------------------------


async def test_a_storm_sends_the_first_ones_at_once_and_the_overflow_in_one_digest(
    slack: FakeSlack, open_store: OpenStore, observer: RecordingObserver
) -> None:
    store = await open_store()
    settings = bot_settings(slack, digest_threshold=5, digest_window_seconds=0.5)
    dispatcher = dispatcher_for(settings, store, observer, time.time)
    alerts = [make_alert(str(100 + i), branch=f"feature/{i}") for i in range(12)]
    async with running(dispatcher):
        started = time.monotonic()
        await save(store, *alerts)
        dispatcher.poke()
        messages = await slack.wait_for(6, timeout=5.0)
        await settle(0.7)
    singles, digest = messages[:5], messages[5]
    assert len(slack.delivered) == 6
    assert all(m.at - started < 0.5 for m in singles)
    assert digest.at - started >= 0.5
    assert "7 more build alerts" in digest.blocks[0]["text"]["text"]
    digest_text = digest.everything()
    for alert in alerts[5:]:
        assert digest_text.count(f"|#{alert.job.job_id}>") == 1
    for alert in alerts[:5]:
        assert f"|#{alert.job.job_id}>" not in digest_text
    assert observer.alerts[(FAILED, "sent")] == 5
    assert observer.alerts[(FAILED, "digested")] == 7
    # Every digested alert is recorded with the digest's receipt: a recovery can answer there.
    assert (
        await store.receipt(alerts[-1].dedup_key)
        == Receipt(digest.channel, digest.ts or "").encode()
    )
    assert await store.pending_count() == 0


async def test_flood_control_counts_per_channel(
    slack: FakeSlack, open_store: OpenStore, observer: RecordingObserver
) -> None:
    store = await open_store()
    settings = bot_settings(
        slack,
        digest_threshold=2,
        digest_window_seconds=30.0,
        routes=[{"app_name": "blog", "channel": "#blog"}],
    )
    dispatcher = dispatcher_for(settings, store, observer, time.time)
    shop = [make_alert(str(i), branch=f"s{i}") for i in range(2)]
    blog = [make_alert(str(i), app_name="blog", app_id="d2blog", branch=f"b{i}") for i in range(2)]
    async with running(dispatcher):
        await save(store, *shop, *blog)
        dispatcher.poke()
        await slack.wait_for(4, timeout=2.0)
    assert len(slack.delivered_to("#builds")) == 2
    assert len(slack.delivered_to("#blog")) == 2


# --- recovery --------------------------------------------------------------------------------


async def test_recovery_replies_in_the_failure_thread(
    slack: FakeSlack, open_store: OpenStore, observer: RecordingObserver
) -> None:
    store = await open_store()
    settings = bot_settings(
        slack, routes=[{"app_name": "shop", "channel": "#shop", "mention": "<!subteam^S1>"}]
    )
    dispatcher = dispatcher_for(settings, store, observer, time.time)
    async with running(dispatcher):
        await save(store, make_alert("42"))
        dispatcher.poke()
        [failure] = await slack.wait_for(1)
        await save(store, make_recovery("43", "42"))
        dispatcher.poke()
        [_, recovery] = await slack.wait_for(2)
    assert failure.text.startswith("<!subteam^S1> ")
    assert recovery.thread_ts == failure.ts
    assert recovery.channel == failure.channel == slack.channel_id("#shop")
    assert "Recovered" in recovery.text and "<!subteam" not in recovery.everything()
    assert observer.alerts[("SUCCEED", "sent")] == 1


async def test_recovery_answers_where_the_failure_was_posted_even_after_a_route_change(
    slack: FakeSlack, open_store: OpenStore, observer: RecordingObserver
) -> None:
    store = await open_store()
    before = dispatcher_for(bot_settings(slack), store, observer, time.time)
    async with running(before):
        await save(store, make_alert("42"))
        before.poke()
        [failure] = await slack.wait_for(1)
    moved = bot_settings(slack, routes=[{"app_name": "shop", "channel": "#elsewhere"}])
    after = dispatcher_for(moved, store, observer, time.time)
    async with running(after):
        await save(store, make_recovery("43", "42"))
        after.poke()
        [_, recovery] = await slack.wait_for(2)
    assert (recovery.channel, recovery.thread_ts) == (failure.channel, failure.ts)


async def test_recovery_whose_thread_is_gone_is_posted_at_the_top_level(
    slack: FakeSlack, open_store: OpenStore, observer: RecordingObserver
) -> None:
    store = await open_store()
    failed = make_alert("42")
    await save(store, failed)
    await store.mark_sent(failed.dedup_key, "CDELETED:1700000000.000001")
    dispatcher = dispatcher_for(bot_settings(slack), store, observer, time.time)
    async with running(dispatcher):
        await save(store, make_recovery("43", "42"))
        dispatcher.poke()
        [recovery] = await slack.wait_for(1)
    assert recovery.thread_ts is None
    assert recovery.channel == slack.channel_id("#builds")
    assert [r.answer.get("error") for r in slack.requests if isinstance(r.answer, dict)] == [
        "thread_not_found",
        None,
    ]


async def test_recovery_is_not_sent_when_recovery_is_off(
    slack: FakeSlack, open_store: OpenStore, observer: RecordingObserver
) -> None:
    store = await open_store()
    dispatcher = dispatcher_for(bot_settings(slack, recovery=False), store, observer, time.time)
    async with running(dispatcher):
        await save(store, make_recovery("43", "42"))
        dispatcher.poke()
        await settle()
    assert slack.requests == []
    assert observer.alerts[("SUCCEED", "suppressed")] == 1
    assert await store.pending_count() == 0


# --- routing ---------------------------------------------------------------------------------


async def test_routes_pick_channel_mention_and_statuses(
    slack: FakeSlack, open_store: OpenStore, observer: RecordingObserver
) -> None:
    store = await open_store()
    settings = bot_settings(
        slack,
        routes=[
            {
                "app_id": "d1shop*",
                "branches": ["main"],
                "channel": "#shop-prod",
                "mention": "<@U0PROD>",
            },
            {"app_name": "shop", "channel": "#shop-dev", "on": ["FAILED"]},
        ],
    )
    dispatcher = dispatcher_for(settings, store, observer, time.time)
    prod = make_alert("1", app_id="d1shop1", branch="main")
    dev_failed = make_alert("2", app_id="d1shop1", branch="dev")
    dev_cancelled = make_alert("3", CANCELLED, app_id="d1shop1", branch="dev")
    other = make_alert("4", app_id="d9blog", app_name="blog")
    async with running(dispatcher):
        await save(store, prod, dev_failed, dev_cancelled, other)
        dispatcher.poke()
        await slack.wait_for(3)
        await settle()
    assert [m.text.split(" job ")[-1] for m in slack.delivered_to("#shop-prod")] == [
        "#1 in step BUILD: npm ERR! code ELIFECYCLE"
    ]
    assert slack.delivered_to("#shop-prod")[0].text.startswith("<@U0PROD> ")
    assert len(slack.delivered_to("#shop-dev")) == 1
    assert len(slack.delivered_to("#builds")) == 1
    assert len(slack.delivered) == 3
    assert observer.alerts[(CANCELLED, "suppressed")] == 1
    assert await store.pending_count() == 0


# --- webhook mode ----------------------------------------------------------------------------


async def test_webhook_delivers_blocks_and_a_short_recovery(
    slack: FakeSlack, open_store: OpenStore, observer: RecordingObserver
) -> None:
    store = await open_store()
    settings = webhook_settings(
        slack, routes=[{"app_name": "shop", "channel": "#x", "mention": "<@U1>"}]
    )
    dispatcher = dispatcher_for(settings, store, observer, time.time)
    async with running(dispatcher):
        await save(store, make_alert("42"))
        dispatcher.poke()
        await slack.wait_for(1)
        await save(store, make_recovery("43", "42"))
        dispatcher.poke()
        failure, recovery = await slack.wait_for(2)
    assert failure.kind == recovery.kind == "webhook"
    assert failure.text.startswith("<@U1> ") and failure.blocks
    assert "Recovered: shop / main" in recovery.everything()
    assert recovery.thread_ts is None
    assert await store.pending_count() == 0


async def test_webhook_rate_limit_and_server_error_are_retried(
    slack: FakeSlack, open_store: OpenStore, observer: RecordingObserver, clock: FakeClock
) -> None:
    store = await open_store()
    slack.script(
        Reply.rate_limited(retry_after=2, kind="webhook"),
        Reply(500, text="rollup_error"),
        kind="webhook",
    )
    dispatcher = dispatcher_for(webhook_settings(slack), store, observer, clock)
    async with running(dispatcher):
        await save(store, make_alert())
        dispatcher.poke()
        await eventually(lambda: observer.outcomes("retried") == 1)
        clock.advance(2)
        dispatcher.poke()
        await eventually(lambda: observer.outcomes("retried") == 2)
        clock.advance(301)
        dispatcher.poke()
        await slack.wait_for(1)
    assert [r.status for r in slack.requests] == [429, 500, 200]
    assert observer.alerts[(FAILED, "retried")] == 2


async def test_a_revoked_webhook_is_rejected_with_the_fix_and_kept(
    slack: FakeSlack, open_store: OpenStore, observer: RecordingObserver
) -> None:
    store = await open_store()
    slack.script(Reply(404, text="no_service"), kind="webhook")
    dispatcher = dispatcher_for(webhook_settings(slack), store, observer, time.time)
    with structlog.testing.capture_logs() as logs:
        async with running(dispatcher):
            await save(store, make_alert())
            dispatcher.poke()
            await slack.wait_requests(1)
            await settle()
    [loud] = [e for e in logs if e["event"] == "slack_delivery_rejected"]
    assert loud["error"] == "no_service" and "webhook" in loud["fix"]
    assert slack.webhook_url not in json.dumps(logs, default=str)
    assert await store.pending_count() == 1


# --- the outbox across restarts and shutdown ------------------------------------------------


async def test_a_restart_resends_what_was_not_sent_and_nothing_that_was(
    slack: FakeSlack, open_store: OpenStore, observer: RecordingObserver
) -> None:
    store = await open_store()
    first = dispatcher_for(bot_settings(slack), store, observer, time.time)
    async with running(first):
        await save(store, make_alert("1"))
        first.poke()
        await slack.wait_for(1)
        slack.script(Reply.server_error(500))
        await save(store, make_alert("2"))
        first.poke()
        await slack.wait_requests(2)
    # Saved but never handed to any dispatcher: the process died between write and send.
    await save(store, make_alert("3"))
    await store.close()

    reopened = await open_store()
    second = dispatcher_for(bot_settings(slack), reopened, observer, time.time)
    async with running(second):
        await slack.wait_for(3)
        await settle()
    jobs = [m.everything().split("|#")[1].split(">")[0] for m in slack.delivered]
    assert sorted(jobs) == ["1", "2", "3"]
    assert await reopened.pending_count() == 0


class SlowReads:
    """The real store, with outbox reads that answer late: what a busy SQLite file or a slow
    Redis does. Everything else goes straight through."""

    def __init__(self, store: Store, delay: float) -> None:
        self._store = store
        self._delay = delay

    async def pending(self, now: float, limit: int = 100) -> list[OutboxEntry]:
        entries = await self._store.pending(now, limit)
        await anyio.sleep(self._delay)
        return entries

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


async def test_a_stale_outbox_read_never_sends_twice(
    slack: FakeSlack, open_store: OpenStore, observer: RecordingObserver
) -> None:
    store = await open_store()
    slow = cast(Store, SlowReads(store, delay=0.3))
    slack.script(Reply(json={"ok": True}, delay=0.3))
    dispatcher = dispatcher_for(bot_settings(slack), slow, observer, time.time)
    await save(store, make_alert())
    async with running(dispatcher):  # first read at 0.0, answered at 0.3; sent 0.3 .. 0.6
        await anyio.sleep(0.45)
        dispatcher.poke()  # read at 0.45 sees it unsent, answers at 0.75, after delivery
        await anyio.sleep(0.6)
        dispatcher.poke()
        await settle(0.5)
    assert len(slack.delivered) == 1


async def test_shutdown_waits_for_the_message_in_flight_and_records_it(
    slack: FakeSlack, open_store: OpenStore, observer: RecordingObserver
) -> None:
    store = await open_store()
    slack.script(Reply(json={"ok": True}, delay=0.4))
    dispatcher = dispatcher_for(bot_settings(slack), store, observer, time.time)
    async with running(dispatcher):
        await save(store, make_alert())
        dispatcher.poke()
        await anyio.sleep(0.1)  # the request is in flight when shutdown comes
    assert len(slack.delivered) == 1
    assert await store.pending_count() == 0


async def test_drain_delivers_everything_due_including_the_digest_without_waiting(
    slack: FakeSlack, open_store: OpenStore, observer: RecordingObserver
) -> None:
    store = await open_store()
    settings = bot_settings(slack, digest_threshold=5, digest_window_seconds=3600.0)
    dispatcher = dispatcher_for(settings, store, observer, time.time)
    await save(store, *[make_alert(str(i), branch=f"b{i}") for i in range(8)])
    started = time.monotonic()
    left = await dispatcher.drain(5.0)
    assert left == 0
    assert time.monotonic() - started < 2.0
    assert len(slack.delivered) == 6
    assert "3 more build alerts" in slack.delivered[-1].blocks[0]["text"]["text"]


async def test_drain_returns_how_many_are_left_when_slack_is_down(
    slack: FakeSlack, open_store: OpenStore, observer: RecordingObserver
) -> None:
    store = await open_store()
    slack.script(*[Reply.server_error(503)] * 20)
    dispatcher = dispatcher_for(bot_settings(slack), store, observer, time.time)
    await save(store, make_alert("1"), make_alert("2", branch="dev"))
    started = time.monotonic()
    assert await dispatcher.drain(0.5) == 2
    assert time.monotonic() - started < 1.5


async def test_drain_does_not_wait_for_a_retry_later_than_its_timeout(
    slack: FakeSlack, open_store: OpenStore, observer: RecordingObserver
) -> None:
    store = await open_store()
    slack.missing_channels.add("#builds")
    dispatcher = dispatcher_for(bot_settings(slack), store, observer, time.time)
    await save(store, make_alert())
    started = time.monotonic()
    assert await dispatcher.drain(10.0) == 1  # the slow retry of a rejection is minutes away
    assert time.monotonic() - started < 2.0
    assert len(slack.requests) == 1


async def test_drain_beside_a_running_dispatcher(
    slack: FakeSlack, open_store: OpenStore, observer: RecordingObserver
) -> None:
    store = await open_store()
    dispatcher = dispatcher_for(bot_settings(slack), store, observer, time.time)
    async with running(dispatcher):
        await save(store, make_alert())
        assert await dispatcher.drain(2.0) == 0
        assert len(slack.delivered) == 1


# --- without [slack] ------------------------------------------------------------------------


async def test_without_slack_each_alert_is_a_console_line(
    open_store: OpenStore, observer: RecordingObserver, capsys: pytest.CaptureFixture[str]
) -> None:
    store = await open_store()
    settings: Settings = slack_settings(None)
    dispatcher = dispatcher_for(settings, store, observer, time.time)
    await save(store, make_alert("42", message=HOSTILE), make_recovery("43", "42"))
    assert await dispatcher.drain(2.0) == 0
    lines = [
        line
        for line in capsys.readouterr().out.splitlines()
        if line.startswith(("FAILED", "RECOVERED"))
    ]
    assert lines[0].startswith("FAILED shop/main job 42 (RELEASE) in step BUILD")
    assert lines[1].startswith("RECOVERED shop/main job 43 succeeded (after job 42 failed)")
    assert observer.alerts[(FAILED, "sent")] == 1


def test_receipts_round_trip() -> None:
    assert Receipt.decode(Receipt("C1", "1.2").encode()) == Receipt("C1", "1.2")
    assert Receipt.decode("1700000000.000100") == Receipt(None, "1700000000.000100")
    assert dedup_key(make_alert().key, "42", FAILED) == make_alert().dedup_key
