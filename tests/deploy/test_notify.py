"""`--notify`: the daemon's Slack message for the deploy's verdict, on the local Slack stand-in
(`tests/notify/slack_server.py`: real slack_sdk clients, Block Kit limits checked)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from monitor.deploy.notify import deliver
from monitor.model import CANCELLED, FAILED, Alert, BranchKey, JobSummary
from monitor.notify.base import (
    Delivered,
    Destination,
    Notification,
    Pacing,
    Rejected,
    Retry,
    SendResult,
    Single,
)
from monitor.simulator import Fleet, Simulator
from tests.deploy.cli import APP, conn, run_cli
from tests.notify.slack_server import TOKEN, FakeSlack, Reply


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as server:
        yield server


def bot_config(tmp_path: Path, slack: FakeSlack, alerts: str = "") -> Path:
    path = tmp_path / "deploy.toml"
    path.write_text(
        f'{alerts}\n[slack]\ntoken = "{TOKEN}"\nchannel = "#deploys"\nbase_url = "{slack.base_url}"\n'
    )
    return path


def webhook_config(tmp_path: Path, slack: FakeSlack) -> Path:
    path = tmp_path / "deploy.toml"
    path.write_text(f'[slack]\nwebhook_url = "{slack.webhook_url}"\n')
    return path


async def deploy(sim: Simulator, tmp_path: Path, config: Path) -> tuple[int, str, str]:
    result = await run_cli(
        tmp_path,
        "deploy",
        *conn(sim),
        "--source-url",
        "s3://builds/shop/",
        "--wait",
        "--notify",
        "--config",
        str(config),
    )
    return result.code, result.out, result.err


async def test_a_failed_deploy_posts_the_daemons_failure_message(
    sim: Simulator, fleet: Fleet, slack: FakeSlack, tmp_path: Path
) -> None:
    fleet.set_next_outcome(APP, "main", FAILED, fail_step="DEPLOY", reason="AccessDenied on S3")

    code, out, err = await deploy(sim, tmp_path, bot_config(tmp_path, slack))

    assert code == 1, out + err
    [message] = slack.delivered_to("#deploys")
    assert message.text.startswith("🔴 Build failed: shop / main")
    assert "AccessDenied on S3" in message.everything()
    assert "sent the result of job 1 to Slack" in err
    assert TOKEN not in out + err


async def test_a_successful_deploy_posts_a_success_message_through_a_webhook(
    sim: Simulator, slack: FakeSlack, tmp_path: Path
) -> None:
    code, out, err = await deploy(sim, tmp_path, webhook_config(tmp_path, slack))

    assert code == 0, out + err
    [message] = slack.delivered
    assert message.text.startswith("✅ Build succeeded: shop / main")
    assert slack.webhook_url not in out + err  # a webhook URL is a secret


async def test_a_status_the_daemon_would_not_alert_on_is_not_sent(
    sim: Simulator, fleet: Fleet, slack: FakeSlack, tmp_path: Path
) -> None:
    fleet.set_next_outcome(APP, "main", CANCELLED)
    config = bot_config(tmp_path, slack, alerts='[alerts]\non = ["FAILED"]\n')

    code, _, err = await deploy(sim, tmp_path, config)

    assert code == 3
    assert slack.requests == []
    assert "not sent: [alerts] on leaves out CANCELLED" in err


async def test_slack_trouble_never_changes_the_exit_code(
    sim: Simulator, fleet: Fleet, slack: FakeSlack, tmp_path: Path
) -> None:
    fleet.set_next_outcome(APP, "main", FAILED)
    slack.script(Reply.error("invalid_auth"))

    code, _, err = await deploy(sim, tmp_path, bot_config(tmp_path, slack))

    assert code == 1
    assert "--notify: Slack refused the message: the bot token is not accepted" in err


async def test_notify_without_a_slack_section_or_without_wait_is_a_usage_error(
    sim: Simulator, slack: FakeSlack, tmp_path: Path
) -> None:
    result = await run_cli(tmp_path, "wait", *conn(sim), "--notify")
    assert result.code == 2, result
    assert "--notify needs a [slack] section" in result.err

    config = str(bot_config(tmp_path, slack))
    source = ["--source-url", "s3://b/p/"]
    result = await run_cli(tmp_path, "deploy", *conn(sim), *source, "--notify", "--config", config)
    assert result.code == 2, result
    assert "--notify sends the job's result: add --wait" in result.err
    assert sim.counts["StartDeployment"] == 0


class Scripted:
    """A notifier answering from a list: the Notifier protocol's seam, no network."""

    name = "scripted"
    threads = False
    pacing: Pacing | None = None
    flood_control = False

    def __init__(self, *answers: SendResult) -> None:
        self.answers = list(answers)
        self.sent = 0

    def lane(self, destination: Destination) -> str:
        return "one"

    async def send(self, notification: Notification) -> SendResult:
        self.sent += 1
        return self.answers.pop(0)


SINGLE = Single(
    Alert(BranchKey(APP, "main"), "shop", "failure", JobSummary("4", FAILED)),
    Destination("#deploys"),
)


async def test_delivery_retries_what_passes_and_stops_at_a_refusal() -> None:
    delays: list[float] = []

    async def sleep(seconds: float) -> None:
        delays.append(seconds)

    flaky = Scripted(Retry("http_500"), Retry("rate_limited", after=7), Delivered())
    note = await deliver(flaky, SINGLE, sleep=sleep)
    assert note.message == "sent the result of job 4 to Slack"
    assert delays == [2.0, 7]

    refused = Scripted(Rejected("invalid_auth", "set a valid bot token"))
    note = await deliver(refused, SINGLE, sleep=sleep)
    assert note.message == "--notify: Slack refused the message: set a valid bot token"
    assert refused.sent == 1

    down = Scripted(Retry("http_503"), Retry("http_503"), Retry("http_503"))
    note = await deliver(down, SINGLE, sleep=sleep)
    assert note.message.endswith("after 3 attempts: http_503")
