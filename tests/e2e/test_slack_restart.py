"""Slack end to end with the real daemon: `amplify-monitor run` killed with SIGKILL while an
alert waits in its outbox, then restarted, delivers it exactly once; `amplify-monitor demo` with
SLACK_WEBHOOK_URL set posts there. Real subprocesses, polling the simulator and posting through
slack_sdk to the local Slack stand-in."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from monitor.model import FAILED
from monitor.simulator import Fleet, Simulator
from tests.e2e.daemon import Daemon, daemon_config, free_port, run_cli
from tests.notify.slack_server import TOKEN, FakeSlack, Reply

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


def config(tmp_path: Path, sim: Simulator, slack: FakeSlack, port: int) -> Path:
    slack_section = (
        f'[slack]\ntoken = "{TOKEN}"\nchannel = "#builds"\nbase_url = "{slack.base_url}"\n'
    )
    return daemon_config(tmp_path / "config.toml", sim.url, port, slack_section)


def start(tmp_path: Path, sim: Simulator, slack: FakeSlack, name: str) -> Daemon:
    workdir = tmp_path / name
    workdir.mkdir()
    port = free_port()
    return Daemon(config(tmp_path, sim, slack, port), workdir, port)


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
