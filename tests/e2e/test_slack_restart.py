"""Slack end to end with the real daemon: `amplify-monitor run` killed with SIGKILL while an
alert waits in its outbox, then restarted, delivers it exactly once; killed while Slack holds
the answer to a post it has taken, then restarted, it finds the message in the channel's history
and posts nothing more; `amplify-monitor demo` with SLACK_WEBHOOK_URL set posts there. Real
subprocesses, polling the simulator and posting through slack_sdk to the local Slack stand-in."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from monitor.model import FAILED
from monitor.simulator import Fleet, Simulator
from tests.e2e.daemon import Daemon, daemon_config, free_port, run_cli
from tests.notify.slack_server import TOKEN, FakeSlack, Reply, Request

FAST = {"PENDING": 0.2, "PROVISIONING": 0.2, "RUNNING": 0.5}


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    fleet = Fleet(durations=FAST)
    app = fleet.add_app("shop", app_id="dshop")
    fleet.add_branch(app, "main")
    fleet.start_job(app, "main", at=fleet.now() - 600)
    async with Simulator(fleet) as simulator:
        yield simulator


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as server:
        yield server


def config(
    tmp_path: Path, sim: Simulator, slack: FakeSlack, port: int, channel: str = "#builds"
) -> Path:
    slack_section = (
        f'[slack]\ntoken = "{TOKEN}"\nchannel = "{channel}"\nbase_url = "{slack.base_url}"\n'
    )
    return daemon_config(tmp_path / "config.toml", sim.url, port, slack_section)


def start(
    tmp_path: Path, sim: Simulator, slack: FakeSlack, name: str, channel: str = "#builds"
) -> Daemon:
    workdir = tmp_path / name
    workdir.mkdir()
    port = free_port()
    return Daemon(config(tmp_path, sim, slack, port, channel), workdir, port)


def posts(slack: FakeSlack) -> list[Request]:
    return [r for r in slack.requests if r.method == "chat.postMessage"]


async def test_sigkill_while_slack_holds_the_answer_then_restart_posts_exactly_once(
    sim: Simulator, slack: FakeSlack, tmp_path: Path
) -> None:
    # By id, as the README advises: conversations.history takes a channel id only.
    channel = "C0BUILDS01"
    slack.script(Reply(hold=True))
    first = start(tmp_path, sim, slack, "first", channel)
    try:
        await first.wait_for(lambda: first.get("/readyz")[0] == 200)
        job = sim.fleet.start_job("dshop", "main", outcome=FAILED, reason="npm ERR! missing")
        # Slack has the message; its answer never leaves: the daemon cannot know it landed.
        await first.wait_for(lambda: len(posts(slack)) == 1)
        assert len(slack.top_level(channel)) == 1
    finally:
        first.kill()
        slack.release()

    second = start(tmp_path, sim, slack, "second", channel)
    try:
        await second.wait_for(lambda: second.get("/readyz")[0] == 200)
        await second.wait_for(
            lambda: any(r.method == "conversations.history" and r.ok for r in slack.requests)
        )
        await second.wait_for(lambda: "slack_resend_skipped" in second.stderr())
        await anyio.sleep(2.0)  # several poll intervals and outbox reads: nothing more may come
    finally:
        second.kill()
    [posted] = posts(slack)
    assert f"|#{job}>" in posted.everything()
    [message] = slack.top_level(channel)
    assert message["metadata"]["event_payload"]["dedup_key"] == posted.dedup_token

    # The delivery is now recorded: a third life neither reads history nor posts.
    reads = sum(r.method == "conversations.history" for r in slack.requests)
    third = start(tmp_path, sim, slack, "third", channel)
    try:
        await third.wait_for(lambda: third.get("/readyz")[0] == 200)
        await anyio.sleep(2.0)
    finally:
        third.kill()
    assert len(posts(slack)) == 1
    assert sum(r.method == "conversations.history" for r in slack.requests) == reads


async def test_without_the_history_scope_the_restart_posts_again_and_says_the_fix(
    sim: Simulator, slack: FakeSlack, tmp_path: Path
) -> None:
    # The documented fallback: at least once. A lost alert is worse than a doubled one.
    channel = "C0BUILDS01"
    slack.scopes.discard("channels:history")
    slack.script(Reply(hold=True))
    first = start(tmp_path, sim, slack, "first", channel)
    try:
        await first.wait_for(lambda: first.get("/readyz")[0] == 200)
        sim.fleet.start_job("dshop", "main", outcome=FAILED)
        await first.wait_for(lambda: len(posts(slack)) == 1)
    finally:
        first.kill()
        slack.release()
    second = start(tmp_path, sim, slack, "second", channel)
    try:
        await second.wait_for(lambda: len(posts(slack)) == 2)
        await second.wait_for(lambda: "slack_history_unavailable" in second.stderr())
    finally:
        second.kill()
    assert "channels:history" in second.stderr() and TOKEN not in second.stderr()


async def test_sigkill_between_write_and_send_then_restart_delivers_exactly_once(
    sim: Simulator, slack: FakeSlack, tmp_path: Path
) -> None:
    slack.outage = Reply.server_error(503)
    first = start(tmp_path, sim, slack, "first")
    try:
        await first.wait_for(lambda: first.get("/readyz")[0] == 200)
        job = sim.fleet.start_job("dshop", "main", outcome=FAILED, reason="npm ERR! missing")
        # Slack has been asked (and refused): the alert is in the outbox, not delivered.
        await first.wait_for(lambda: len(slack.requests) >= 1)
    finally:
        first.kill()  # SIGKILL: no shutdown path runs
    assert slack.delivered == []

    slack.outage = None
    second = start(tmp_path, sim, slack, "second")
    try:
        await second.wait_for(lambda: second.get("/readyz")[0] == 200)
        await second.wait_for(lambda: len(slack.delivered) >= 1)
        await anyio.sleep(2.0)  # several poll intervals: nothing more may come
    finally:
        second.kill()
    [message] = slack.delivered
    assert f"|#{job}>" in message.everything() and "npm ERR! missing" in message.everything()

    # Killed again after the delivery was recorded: a third life sends nothing.
    third = start(tmp_path, sim, slack, "third")
    try:
        await third.wait_for(lambda: third.get("/readyz")[0] == 200)
        await anyio.sleep(2.0)
    finally:
        third.kill()
    assert len(slack.delivered) == 1


async def test_demo_posts_to_the_webhook_when_slack_webhook_url_is_set(slack: FakeSlack) -> None:
    # In a thread: the local Slack answers from this event loop while the demo runs.
    result = await anyio.to_thread.run_sync(
        lambda: run_cli(
            "demo",
            "--duration",
            "10",
            "--listen",
            "127.0.0.1:0",
            timeout=60,
            SLACK_WEBHOOK_URL=slack.webhook_url,
        )
    )
    assert result.returncode == 0, result.stderr
    assert "posted to SLACK_WEBHOOK_URL" in result.stdout + result.stderr
    assert slack.delivered, result.stderr[-3000:]
    assert all(m.kind == "webhook" and m.blocks for m in slack.delivered)
    # The demo's scripted failure carries "<!channel>" in its commit message: inert on arrival.
    payloads = " ".join(m.everything() for m in slack.delivered)
    assert "npm ERR! Missing script: build" in payloads
    assert "<!channel>" not in payloads and "&lt;!channel&gt;" in payloads


async def test_a_living_message_survives_a_restart_in_the_middle_of_its_job(
    sim: Simulator, slack: FakeSlack, tmp_path: Path
) -> None:
    channel = "C0BUILDS01"
    route = (
        f'\n[[slack.routes]]\nbranches = ["main"]\nchannel = "{channel}"\n'
        'notify_start = true\nmention = "<!subteam^S0123ABC>"\n'
    )

    def living(name: str) -> Daemon:
        workdir = tmp_path / name
        workdir.mkdir()
        port = free_port()
        path = config(tmp_path, sim, slack, port, channel)
        path.write_text(path.read_text() + route)
        return Daemon(path, workdir, port)

    first = living("first")
    try:
        await first.wait_for(lambda: first.get("/readyz")[0] == 200)
        sim.fleet.start_job(
            "dshop",
            "main",
            outcome=FAILED,
            reason="npm ERR! missing",
            durations={"PENDING": 0.5, "PROVISIONING": 0.5, "RUNNING": 6.0},
        )
        await first.wait_for(lambda: len(posts(slack)) == 1)  # the start, posted
    finally:
        first.kill()
    second = living("second")
    try:
        await second.wait_for(lambda: second.get("/readyz")[0] == 200)
        await second.wait_for(lambda: len(posts(slack)) == 2, timeout=30)  # the reply
        await anyio.sleep(1.5)
    finally:
        second.kill()
    [message] = [m for m in slack.top_level(channel) if "thread_ts" not in m]
    assert message["text"].startswith("🔴") and "npm ERR! missing" in message["text"]
    assert slack.updates, "the failure was an update of the start message"
    # The deployed branch's site, from ListApps' defaultDomain and ListBranches' displayName.
    assert "<https://main.dshop.amplifyapp.com|main.dshop.amplifyapp.com>" in json.dumps(
        message["blocks"]
    )
    [reply] = slack.replies(channel, message["ts"])
    assert reply["subtype"] == "thread_broadcast" and reply["text"].startswith(
        "<!subteam^S0123ABC>"
    )
