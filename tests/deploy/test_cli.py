"""`amplify-monitor deploy` and `wait` as subprocesses against the simulator, real aioboto3."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import zipfile
from pathlib import Path

import pytest

from monitor.model import CANCELLED, CREATED, FAILED, RUNNING, SUCCEED
from monitor.simulator import Fleet, Simulator
from tests.deploy.cli import APP, SLOW, Cli, cli_env, conn, run_cli


def row(lines: list[str], status: str, subject: str) -> str:
    """The first printed line `STATUS  SUBJECT  ...` (columns are padded with spaces)."""
    pattern = re.compile(rf"^{status}\s+{re.escape(subject)}\b")
    found = [line for line in lines if pattern.match(line)]
    assert found, f"no {status} {subject} line in:\n" + "\n".join(lines)
    return found[0]


async def test_deploy_dir_uploads_a_zip_prints_each_step_and_exits_0(
    sim: Simulator, fleet: Fleet, dist: Path, tmp_path: Path
) -> None:
    result = await run_cli(tmp_path, "deploy", *conn(sim), "--dir", str(dist), "--wait")

    assert result.code == 0, result
    lines = result.lines()
    assert lines[0].startswith(f"zipped {dist}: 2 files")
    assert "job 1 started on dshop/main" in lines
    console = (
        "https://us-east-1.console.aws.amazon.com/amplify/apps/dshop/branches/main/deployments/1"
    )
    assert f"console: {console}" in lines
    for step in ("BUILD", "DEPLOY", "VERIFY"):
        assert row(lines, RUNNING, step).endswith("started")
        assert "done in" in row(lines, SUCCEED, step)
    assert lines.index(row(lines, RUNNING, "BUILD")) < lines.index(row(lines, SUCCEED, "VERIFY"))
    assert re.match(r"^SUCCEED\s+job 1 after \d+s$", lines[-2]), result
    # What arrived is a zip of the directory, relative names only.
    job = fleet.job(APP, "main", "1")
    assert job.job_type == "MANUAL" and job.status(fleet.now()) == SUCCEED
    assert job.uploads[0].size is not None and job.uploads[0].size > 0
    assert sim.counts["StopJob"] == 0
    assert "test-secret-never-printed" not in result.out + result.err


async def test_scripted_failure_exits_1_with_failed_step_reason_and_log_url(
    sim: Simulator, fleet: Fleet, dist: Path, tmp_path: Path
) -> None:
    reason = "CloudFront invalidation failed"
    fleet.set_next_outcome(APP, "main", FAILED, fail_step="DEPLOY", reason=reason)

    result = await run_cli(tmp_path, "deploy", *conn(sim), "--dir", str(dist), "--wait")

    assert result.code == 1, result
    lines = result.lines()
    assert row(lines, FAILED, "DEPLOY").endswith(reason)
    log_url = f"{sim.url}/_logs/{APP}/main/1/DEPLOY"
    assert f"log: {log_url}" in [line.strip() for line in lines]
    verdict = row(lines, FAILED, "job 1")
    assert verdict.endswith(f": step DEPLOY: {reason}")
    assert "VERIFY" not in result.out


async def test_cancelled_job_exits_3(
    sim: Simulator, fleet: Fleet, dist: Path, tmp_path: Path
) -> None:
    fleet.set_next_outcome(APP, "main", CANCELLED)

    result = await run_cli(tmp_path, "deploy", *conn(sim), "--dir", str(dist), "--wait")

    assert result.code == 3, result
    assert row(result.lines(), CANCELLED, "job 1")


async def test_timeout_exits_4_and_the_job_keeps_running(
    sim: Simulator, fleet: Fleet, dist: Path, tmp_path: Path
) -> None:
    fleet.set_next_outcome(APP, "main", SUCCEED, durations=SLOW)

    result = await run_cli(
        tmp_path, "deploy", *conn(sim), "--dir", str(dist), "--wait", "--timeout", "1.5"
    )

    assert result.code == 4, result
    assert "job 1 is still RUNNING and keeps running (it was not stopped)" in result.out
    resume = (
        "resume: amplify-monitor wait --app dshop --branch main --job 1"
        f" --region us-east-1 --endpoint-url {sim.url}"
    )
    assert resume in result.lines()
    assert fleet.job_status(APP, "main", "1") == RUNNING
    assert sim.counts["StopJob"] == 0


async def test_deploy_while_the_last_job_is_unfinished_exits_2_with_the_stop_job_hint(
    sim: Simulator, fleet: Fleet, dist: Path, tmp_path: Path
) -> None:
    running = fleet.start_job(APP, "main", durations=SLOW)

    result = await run_cli(tmp_path, "deploy", *conn(sim), "--dir", str(dist), "--wait")

    assert result.code == 2, result
    assert result.out == ""
    [line] = result.err.splitlines()
    assert f"while job {running} is unfinished" in line
    assert f"aws amplify stop-job --app-id {APP} --branch-name main --job-id {running}" in line
    # Refused before anything was built or sent: no deployment created, nothing uploaded.
    assert sim.counts["CreateDeployment"] == 0 and sim.counts["Upload"] == 0


async def test_amplify_own_refusal_names_the_job_when_jobs_cannot_be_listed(
    sim: Simulator, fleet: Fleet, dist: Path, tmp_path: Path
) -> None:
    # A CI role without ListJobs skips the pre-check; StartDeployment's refusal still reads well.
    running = fleet.start_job(APP, "main", durations=SLOW)
    sim.faults.unauthorized("ListJobs")

    result = await run_cli(tmp_path, "deploy", *conn(sim), "--dir", str(dist))

    assert result.code == 2, result
    [line] = result.err.splitlines()
    assert "StartDeployment refused" in line
    assert f"--job-id {running}" in line
    assert fleet.job_status(APP, "main", running) == RUNNING
    assert fleet.job_status(APP, "main", "2") == CREATED


async def test_throttled_polls_back_off_and_the_exit_code_is_still_right(
    sim: Simulator, fleet: Fleet, dist: Path, tmp_path: Path
) -> None:
    fleet.set_next_outcome(APP, "main", FAILED, fail_step="BUILD", reason="npm ERR!")
    # As many throttles in a row as botocore tries inside one call (1 + 4 retries), so the call
    # fails and the wait's own backoff has to carry on. botocore's jittered backoff makes this
    # the slowest test here (~8 s).
    sim.faults.throttle("GetJob", times=5)

    result = await run_cli(tmp_path, "deploy", *conn(sim), "--dir", str(dist), "--wait")

    assert result.code == 1, result
    assert "(GetJob throttled; trying again in" in result.err
    assert row(result.lines(), FAILED, "BUILD").endswith("npm ERR!")


async def test_sigterm_stops_waiting_with_a_resume_hint_and_does_not_stop_the_job(
    sim: Simulator, fleet: Fleet, dist: Path, tmp_path: Path
) -> None:
    fleet.set_next_outcome(APP, "main", SUCCEED, durations=SLOW)
    cli = Cli(tmp_path, "deploy", *conn(sim), "--dir", str(dist), "--wait", env=cli_env())
    await cli.wait_for_output("BUILD")

    cli.send(signal.SIGTERM)
    result = await cli.result(timeout=20)

    assert result.code == 128 + signal.SIGTERM, result
    assert "stopped waiting on SIGTERM: job 1 keeps running (it was not stopped)" in result.lines()
    assert any(
        line.startswith("resume: amplify-monitor wait --app dshop --branch main --job 1")
        for line in result.lines()
    )
    assert fleet.job_status(APP, "main", "1") == RUNNING
    assert sim.counts["StopJob"] == 0


async def test_wait_follows_the_latest_job_a_push_started(
    sim: Simulator, fleet: Fleet, tmp_path: Path
) -> None:
    fleet.start_job(APP, "main", at=fleet.now() - 600)
    fleet.start_job(APP, "main", outcome=FAILED, fail_step="VERIFY", reason="smoke test 502")
    fleet.create_deployment(APP, "main", [])  # job 3: created, never started; not "latest"

    result = await run_cli(tmp_path, "wait", *conn(sim), "--latest")

    assert result.code == 1, result
    assert result.lines()[0] == "waiting for job 2 on dshop/main"
    assert row(result.lines(), FAILED, "VERIFY").endswith("smoke test 502")


async def test_wait_for_a_finished_job_answers_at_once(
    sim: Simulator, fleet: Fleet, tmp_path: Path
) -> None:
    job = fleet.start_job(APP, "main", at=fleet.now() - 600)

    result = await run_cli(tmp_path, "wait", *conn(sim), "--job", job)

    assert result.code == 0, result
    assert sim.counts["GetJob"] == 1


async def test_wait_for_an_unknown_job_exits_2(sim: Simulator, tmp_path: Path) -> None:
    result = await run_cli(tmp_path, "wait", *conn(sim), "--job", "42")

    assert result.code == 2, result
    assert "GetJob: job 42 on dshop/main not found" in result.err


async def test_json_mode_prints_one_object_per_line(
    sim: Simulator, dist: Path, tmp_path: Path
) -> None:
    result = await run_cli(tmp_path, "deploy", *conn(sim), "--dir", str(dist), "--wait", "--json")

    assert result.code == 0, result
    events = [json.loads(line) for line in result.lines()]
    kinds = [e["event"] for e in events]
    assert kinds[:3] == ["prepared", "uploaded", "started"]
    assert kinds[-1] == "result"
    assert events[-1]["status"] == SUCCEED and events[-1]["exit_code"] == 0
    steps = {(e["step"], e["status"]) for e in events if e["event"] == "status"}
    assert ("DEPLOY", SUCCEED) in steps


async def test_source_url_deploys_without_upload_and_prints_how_to_follow(
    sim: Simulator, fleet: Fleet, tmp_path: Path
) -> None:
    result = await run_cli(tmp_path, "deploy", *conn(sim), "--source-url", "s3://builds/shop/1234/")

    assert result.code == 0, result
    assert "job 1 started on dshop/main" in result.lines()
    assert any(line.startswith("follow it: amplify-monitor wait") for line in result.lines())
    job = fleet.job(APP, "main", "1")
    assert (job.source_url, job.source_url_type) == ("s3://builds/shop/1234/", "BUCKET_PREFIX")
    assert sim.counts["Upload"] == 0


async def test_timeout_without_wait_is_a_usage_error(sim: Simulator, tmp_path: Path) -> None:
    result = await run_cli(
        tmp_path, "deploy", *conn(sim), "--source-url", "https://x/b.zip", "--timeout", "5"
    )

    assert result.code == 2, result
    assert "--timeout applies to waiting: add --wait" in result.err
    assert sim.counts["StartDeployment"] == 0


async def test_no_region_anywhere_is_a_usage_error(tmp_path: Path, dist: Path) -> None:
    env = cli_env(HOME=str(tmp_path), AWS_CONFIG_FILE=str(tmp_path / "none"))
    cli = Cli(tmp_path, "deploy", "--app", APP, "--branch", "main", "--dir", str(dist), env=env)
    result = await cli.result()

    assert result.code == 2, result
    assert "no AWS region" in result.err


def _zip_of_random_bytes(path: Path, size: int) -> None:
    # Random bytes do not compress: the archive on disk really is `size` bytes.
    chunk = 1 << 20
    with (
        zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf,
        zf.open(zipfile.ZipInfo("big.bin"), "w", force_zip64=True) as dst,
    ):
        for _ in range(size // chunk):
            dst.write(os.urandom(chunk))


async def test_a_50mb_zip_is_streamed_with_bounded_memory(
    sim: Simulator, fleet: Fleet, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    small = tmp_path / "small.zip"
    with zipfile.ZipFile(small, "w") as zf:
        zf.writestr("index.html", "<h1>hi</h1>")
    big = tmp_path / "big.zip"
    _zip_of_random_bytes(big, 50 * 1024 * 1024)
    big_size = big.stat().st_size

    # Both wait for their job: the same code runs in both, only the archive's size differs (and
    # the next deploy is not refused because the first one's job is still running).
    baseline = await run_cli(tmp_path, "deploy", *conn(sim), "--zip", str(small), "--wait")
    assert baseline.code == 0, baseline
    result = await run_cli(tmp_path, "deploy", *conn(sim), "--zip", str(big), "--wait")
    assert result.code == 0, result

    upload = fleet.job(APP, "main", "2").uploads[0]
    assert upload.size == big_size
    growth_mib = (result.max_rss_kib - baseline.max_rss_kib) / 1024
    with capsys.disabled():
        print(
            f"\n[upload memory] archive {big_size / 2**20:.1f} MiB; peak RSS: small zip "
            f"{baseline.max_rss_kib / 1024:.1f} MiB, 50 MiB zip {result.max_rss_kib / 1024:.1f}"
            f" MiB (growth {growth_mib:+.1f} MiB)"
        )
    # Reading the archive whole would add >= 50 MiB; streaming adds a few chunk buffers.
    assert growth_mib < 16, result


def test_zip_of_random_bytes_helper_is_not_compressed(tmp_path: Path) -> None:
    # Guards the memory test's premise: its archive must be as big as it claims.
    path = tmp_path / "r.zip"
    _zip_of_random_bytes(path, 2 * 1024 * 1024)
    assert path.stat().st_size > 2 * 1024 * 1024
    with zipfile.ZipFile(io.BytesIO(path.read_bytes())) as zf:
        assert zf.namelist() == ["big.bin"]


@pytest.mark.slow
async def test_a_50mb_directory_is_zipped_and_streamed_with_bounded_memory(
    sim: Simulator, fleet: Fleet, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    small, big = tmp_path / "small", tmp_path / "big"
    small.mkdir()
    big.mkdir()
    (small / "index.html").write_text("<h1>hi</h1>")
    with (big / "video.bin").open("wb") as f:
        for _ in range(50):
            f.write(os.urandom(1 << 20))

    baseline = await run_cli(tmp_path, "deploy", *conn(sim), "--dir", str(small), "--wait")
    assert baseline.code == 0, baseline
    result = await run_cli(tmp_path, "deploy", *conn(sim), "--dir", str(big), "--wait")
    assert result.code == 0, result

    growth_mib = (result.max_rss_kib - baseline.max_rss_kib) / 1024
    with capsys.disabled():
        print(
            f"\n[zip+upload memory] 50 MiB directory; peak RSS: small dir "
            f"{baseline.max_rss_kib / 1024:.1f} MiB, 50 MiB dir {result.max_rss_kib / 1024:.1f}"
            f" MiB (growth {growth_mib:+.1f} MiB)"
        )
    assert growth_mib < 16, result


async def test_credentials_refused_mid_wait_exit_2_and_say_the_job_keeps_running(
    sim: Simulator, fleet: Fleet, dist: Path, tmp_path: Path
) -> None:
    fleet.set_next_outcome(APP, "main", SUCCEED, durations=SLOW)
    cli = Cli(tmp_path, "deploy", *conn(sim), "--dir", str(dist), "--wait", env=cli_env())
    await cli.wait_for_output("BUILD")

    sim.faults.unauthorized("GetJob")  # e.g. the CI's session credentials expired
    result = await cli.result(timeout=20)

    assert result.code == 2, result
    [line] = result.err.splitlines()
    assert line.startswith("amplify-monitor: GetJob: AWS refused the credentials")
    assert "job 1 keeps running, resume: amplify-monitor wait --app dshop" in line
    assert fleet.job_status(APP, "main", "1") == RUNNING
