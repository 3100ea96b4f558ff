"""`amplify-monitor run` as a subprocess against the simulator: the way users run it."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from monitor.model import CANCELLED, FAILED
from monitor.simulator import Fleet, Simulator
from tests.e2e.daemon import Daemon, daemon_config, free_port, run_cli, write_config

FAST = {"PENDING": 0.3, "PROVISIONING": 0.3, "RUNNING": 1.0}


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    fleet = Fleet(durations=FAST)
    app = fleet.add_app("shop", app_id="dshop")
    for name in ("main", "feature/login"):
        fleet.add_branch(app, name)
        fleet.start_job(app, name, at=fleet.now() - 600)
    async with Simulator(fleet) as simulator:
        yield simulator


def alert_lines(out: str, status: str, branch: str, job_id: str) -> list[str]:
    """The console notifier's lines for one job's alert (`FAILED shop/main job 3 ...`)."""
    pattern = re.compile(rf"^{status} shop/{re.escape(branch)} job {job_id}\b")
    return [line for line in out.splitlines() if pattern.match(line)]


def config_for(tmp_path: Path, sim: Simulator, port: int) -> Path:
    return daemon_config(tmp_path / "config.toml", sim.url, port)


async def test_run_detects_a_scripted_failure_alerts_once_and_exports_it(
    sim: Simulator, tmp_path: Path
) -> None:
    port = free_port()
    daemon = Daemon(config_for(tmp_path, sim, port), tmp_path, port)
    try:
        await daemon.wait_for(lambda: daemon.get("/readyz")[0] == 200)
        job = sim.fleet.start_job(
            "dshop", "feature/login", outcome=FAILED, fail_step="BUILD", reason="npm ERR! missing"
        )
        cancelled = sim.fleet.start_job("dshop", "main", outcome=CANCELLED)
        await daemon.wait_for(
            lambda: (
                alert_lines(daemon.stdout(), FAILED, "feature/login", job)
                and alert_lines(daemon.stdout(), CANCELLED, "main", cancelled)
            )
        )
        metrics = await daemon.wait_for(
            lambda: (text := daemon.get("/metrics")[1]) and 'status="FAILED"} 1.0' in text and text
        )
        await anyio.sleep(1.5)  # a few more polls: nothing may be alerted twice
        out = daemon.stdout()
        assert daemon.get("/healthz")[0] == 200
    finally:
        code = daemon.stop()
    assert code == 0
    assert len(alert_lines(out, FAILED, "feature/login", job)) == 1, out
    assert len(alert_lines(out, CANCELLED, "main", cancelled)) == 1, out
    assert (
        'amplify_job_status{app_id="dshop",app_name="shop",branch="feature/login",status="FAILED"} 1.0'
        in metrics
    )
    assert (
        'amplify_jobs_finished_total{app_id="dshop",branch="feature/login",status="FAILED"} 1.0'
        in metrics
    )
    assert 'amplify_monitor_build_info{version="' in metrics


async def test_sigterm_stops_the_daemon_cleanly_within_five_seconds(
    sim: Simulator, tmp_path: Path
) -> None:
    port = free_port()
    daemon = Daemon(config_for(tmp_path, sim, port), tmp_path, port)
    try:
        await daemon.wait_for(lambda: daemon.get("/readyz")[0] == 200)
    except BaseException:
        daemon.kill()
        raise
    started = time.monotonic()
    code = await anyio.to_thread.run_sync(daemon.stop)
    assert code == 0
    assert time.monotonic() - started < 5.0


def test_bad_config_exits_2_with_one_line_naming_the_key(tmp_path: Path) -> None:
    config = write_config(tmp_path / "bad.toml", "[poll]\ninterval_seconds = -1\n")
    result = run_cli("run", "--config", str(config))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "bad.toml" in lines[0]
    assert "poll.interval_seconds" in lines[0]
    assert "Traceback" not in result.stderr


def test_unknown_key_is_an_error_not_ignored(tmp_path: Path) -> None:
    config = write_config(tmp_path / "typo.toml", "[poll]\nintervall_seconds = 5\n")
    result = run_cli("check-config", str(config))
    assert result.returncode == 2
    assert "poll.intervall_seconds: unknown key" in result.stderr


def test_check_config_masks_secrets(tmp_path: Path) -> None:
    config = write_config(
        tmp_path / "c.toml",
        '[slack]\ntoken = "${SLACK_TOKEN}"\nchannel = "#deploys"\n',
    )
    result = run_cli("check-config", str(config), SLACK_TOKEN="xoxb-very-secret-token")
    assert result.returncode == 0, result.stderr
    assert "xoxb-very-secret-token" not in result.stdout + result.stderr
    assert "#deploys" in result.stdout


async def test_once_prints_every_branch_and_exits_1_when_a_latest_job_failed(
    sim: Simulator, tmp_path: Path
) -> None:
    config = config_for(tmp_path, sim, free_port())
    result = await anyio.to_thread.run_sync(lambda: run_cli("once", "--config", str(config)))
    assert result.returncode == 0, result.stderr
    assert "feature/login" in result.stdout and "SUCCEED" in result.stdout

    job = sim.fleet.start_job(
        "dshop",
        "main",
        outcome=FAILED,
        durations={"PENDING": 0.1, "PROVISIONING": 0.1, "RUNNING": 0.1},
    )
    await anyio.sleep(1.0)
    result = await anyio.to_thread.run_sync(lambda: run_cli("once", "--config", str(config)))
    assert result.returncode == 1, result.stdout + result.stderr
    row = next(line for line in result.stdout.splitlines() if " main " in f" {line} ")
    assert job in row and FAILED in row


def test_demo_shows_an_alert_and_says_where_to_look() -> None:
    result = run_cli("demo", "--duration", "15", "--listen", "127.0.0.1:0", timeout=60)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert "Amplify simulator  http://127.0.0.1:" in result.stdout
    assert any(line.strip().startswith("metrics            http://127.0.0.1:") for line in lines)
    assert "amplify-monitor deploy" in result.stdout
    assert any(
        re.match(r"^FAILED storefront/main job \d+ \(RELEASE\) in step BUILD", line)
        for line in lines
    ), result.stdout


def test_demo_with_push_listens_to_its_sqs_stand_in_and_shows_the_failure() -> None:
    result = run_cli("demo", "--push", "--duration", "15", "--listen", "127.0.0.1:0", timeout=60)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "push mode          events through an SQS stand-in" in result.stdout
    assert "polling every 120 s only as the safety net" in result.stdout
    assert re.search(r"^FAILED storefront/main job \d+", result.stdout, re.MULTILINE), result.stdout
    assert "events_listening" in result.stdout + result.stderr
    assert "HTTP/1.1" not in result.stdout + result.stderr  # no moto access log


def test_unknown_aws_profile_is_a_runtime_failure_with_a_clear_message(tmp_path: Path) -> None:
    config = write_config(
        tmp_path / "c.toml",
        f'[aws]\nprofile = "no-such-profile"\n[metrics]\nlisten = "127.0.0.1:0"\n'
        f'[state]\npath = "{tmp_path / "s.db"}"\n',
    )
    result = run_cli("run", "--config", str(config), AWS_CONFIG_FILE=str(tmp_path / "none"))
    assert result.returncode == 1
    assert "no-such-profile" in result.stderr
    assert "Traceback" not in result.stderr
