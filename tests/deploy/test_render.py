"""Pure parts of deploy/wait: change detection, exit codes, hints, lines, JSON, live line."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta

import pytest

from monitor.deploy import render
from monitor.deploy.console import Console
from monitor.deploy.events import (
    EXIT_CANCELLED,
    EXIT_FAILED,
    EXIT_SUCCEED,
    Finished,
    Interrupted,
    JobChange,
    Note,
    Refused,
    Retrying,
    Started,
    StepChange,
    Target,
    TimedOut,
    exit_code,
    job_changes,
    signal_exit_code,
)
from monitor.model import BranchKey, JobDetail, JobSummary, Step

T0 = datetime(2026, 1, 1, tzinfo=UTC)
TARGET = Target(BranchKey("d1abc", "feature/login"), "eu-west-1")


def detail(status: str, *steps: tuple[str, str], reason: str = "") -> JobDetail:
    return JobDetail(
        JobSummary("7", status, start_time=T0, end_time=T0 + timedelta(seconds=75)),
        tuple(
            Step(
                name,
                st,
                start_time=T0,
                end_time=T0 + timedelta(seconds=12),
                log_url=f"https://logs/{name}",
                status_reason=reason if st == "FAILED" else "",
            )
            for name, st in steps
        ),
    )


def describe(changes: list[JobChange | StepChange]) -> list[str]:
    return [
        f"job:{c.to_status}" if isinstance(c, JobChange) else f"{c.step.name}:{c.to_status}"
        for c in changes
    ]


def test_first_sighting_reports_the_job_then_every_step_so_far() -> None:
    now = detail("RUNNING", ("BUILD", "SUCCEED"), ("DEPLOY", "RUNNING"))
    assert describe(job_changes(None, now, 0)) == ["job:RUNNING", "BUILD:SUCCEED", "DEPLOY:RUNNING"]


def test_only_what_moved_is_reported() -> None:
    before = detail("RUNNING", ("BUILD", "RUNNING"))
    after = detail("RUNNING", ("BUILD", "SUCCEED"), ("DEPLOY", "RUNNING"))
    assert describe(job_changes(before, after, 5)) == ["BUILD:SUCCEED", "DEPLOY:RUNNING"]
    assert job_changes(after, after, 6) == []


def test_an_ending_job_reports_its_steps_before_the_verdict() -> None:
    before = detail("RUNNING", ("BUILD", "RUNNING"))
    after = detail("FAILED", ("BUILD", "FAILED"), reason="npm ERR!")
    assert describe(job_changes(before, after, 9)) == ["BUILD:FAILED", "job:FAILED"]


@pytest.mark.parametrize(
    ("status", "code"),
    [("SUCCEED", EXIT_SUCCEED), ("FAILED", EXIT_FAILED), ("CANCELLED", EXIT_CANCELLED)],
)
def test_terminal_statuses_map_to_the_public_exit_codes(status: str, code: int) -> None:
    assert exit_code(status) == code


def test_exit_codes_are_the_documented_numbers() -> None:
    assert (EXIT_SUCCEED, EXIT_FAILED, EXIT_CANCELLED) == (0, 1, 3)
    assert TimedOut(TARGET, "7", "RUNNING", 1.0).exit_code == 4
    assert Refused("no").exit_code == 2
    assert signal_exit_code(15) == 143


def test_hints_quote_odd_branch_names_and_never_lose_the_connection_flags() -> None:
    target = Target(BranchKey("d1", "it's/odd"), "eu-west-1", "http://127.0.0.1:9", "c.toml")
    assert target.resume_command("7") == (
        "amplify-monitor wait --app d1 --branch 'it'\"'\"'s/odd' --job 7 --region eu-west-1 "
        "--endpoint-url http://127.0.0.1:9 --config c.toml"
    )
    assert target.stop_command("7") == (
        "aws amplify stop-job --app-id d1 --branch-name 'it'\"'\"'s/odd' --job-id 7 "
        "--region eu-west-1"
    )
    assert target.console_url("7") == (
        "https://eu-west-1.console.aws.amazon.com/amplify/apps/d1/branches/it%27s%2Fodd"
        "/deployments/7"
    )


def test_step_lines_line_up_and_say_what_happened() -> None:
    running = detail("RUNNING", ("BUILD", "RUNNING")).steps[0]
    done = detail("RUNNING", ("BUILD", "SUCCEED")).steps[0]
    failed = detail("FAILED", ("DEPLOY", "FAILED"), reason="AccessDenied").steps[0]

    assert render.text(StepChange("7", running, None, 0)) == ["RUNNING      BUILD   started"]
    assert render.text(StepChange("7", done, "RUNNING", 0)) == ["SUCCEED      BUILD   done in 12s"]
    assert render.text(StepChange("7", failed, "RUNNING", 0)) == [
        "FAILED       DEPLOY  AccessDenied",
        "                     log: https://logs/DEPLOY",
    ]
    assert render.text(JobChange("7", None, "PROVISIONING", 0)) == ["PROVISIONING job     7"]
    # The verdict comes from Finished, with context; the bare status change prints nothing.
    assert render.text(JobChange("7", "RUNNING", "FAILED", 3)) == []


def test_a_failure_verdict_names_the_step_reason_log_and_console() -> None:
    failed = detail("FAILED", ("BUILD", "SUCCEED"), ("DEPLOY", "FAILED"), reason="AccessDenied")
    lines = render.text(Finished(TARGET, failed, 80))
    assert lines[0] == "FAILED       job 7 after 1m15s: step DEPLOY: AccessDenied"
    assert lines[1].strip() == "log: https://logs/DEPLOY"
    assert lines[2].strip() == (
        "console: https://eu-west-1.console.aws.amazon.com/amplify/apps/d1abc"
        "/branches/feature%2Flogin/deployments/7"
    )
    ok = render.text(Finished(TARGET, detail("SUCCEED", ("BUILD", "SUCCEED")), 80))
    assert ok[0] == "SUCCEED      job 7 after 1m15s"


def test_timeout_and_interrupt_say_the_job_keeps_running_and_how_to_resume() -> None:
    timed_out = render.text(TimedOut(TARGET, "7", "RUNNING", 600))
    assert timed_out[0] == (
        "timed out after 10m00s: job 7 is still RUNNING and keeps running (it was not stopped)"
    )
    assert timed_out[1].startswith("resume: amplify-monitor wait --app d1abc")
    never_read = render.text(TimedOut(TARGET, "7", "", 30))[0]
    assert never_read == "timed out after 30s: job 7 keeps running (it was not stopped)"
    interrupted = render.text(Interrupted(TARGET, "7", "SIGINT", 130))
    assert "job 7 keeps running (it was not stopped)" in interrupted[0]
    assert render.text(Interrupted(TARGET, None, "SIGTERM", 143)) == [
        "stopped on SIGTERM before a job started; nothing deployed"
    ]


def test_json_lines_carry_stable_keys() -> None:
    failed = detail("FAILED", ("DEPLOY", "FAILED"), reason="AccessDenied")
    result = json.loads(render.json_line(Finished(TARGET, failed, 80)))
    assert result == {
        "event": "result",
        "job_id": "7",
        "status": "FAILED",
        "exit_code": 1,
        "seconds": 75.0,
        "failed_step": "DEPLOY",
        "reason": "AccessDenied",
        "log_url": "https://logs/DEPLOY",
        "console_url": TARGET.console_url("7"),
    }
    refused = json.loads(render.json_line(Refused("busy", TARGET, unfinished_job_id="6")))
    assert refused["stop_command"].endswith("--job-id 6 --region eu-west-1")
    started = json.loads(render.json_line(Started(TARGET, "7", waiting=True)))
    assert (started["event"], started["branch"], started["job_id"]) == (
        "started",
        "feature/login",
        "7",
    )


@pytest.mark.parametrize(
    ("seconds", "text"), [(0.4, "0s"), (59.6, "1m00s"), (61, "1m01s"), (3725, "1h02m")]
)
def test_durations_read_like_a_person_writes_them(seconds: float, text: str) -> None:
    assert render.duration(seconds) == text


class FakeTty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_gets_a_live_line_that_is_erased_before_each_regular_line() -> None:
    out, err = FakeTty(), io.StringIO()
    console = Console(out=out, err=err)
    assert console.live
    console.show_live(render.live_line("7", "RUNNING", "BUILD", 42, 0))
    console.emit(JobChange("7", "PENDING", "RUNNING", 1))
    console.close()
    assert out.getvalue() == (
        "\r\x1b[2K| job 7 RUNNING BUILD 42s" + "\r\x1b[2K" + "RUNNING      job     7\n"
    )


def test_ci_logs_get_plain_lines_and_complaints_go_to_stderr() -> None:
    out, err = io.StringIO(), io.StringIO()
    console = Console(out=out, err=err)
    assert not console.live
    console.show_live("ignored")
    console.emit(Retrying("GetJob", "throttled", 4))
    console.emit(Note("hello"))
    console.emit(JobChange("7", None, "RUNNING", 0))
    assert out.getvalue() == "RUNNING      job     7\n"
    assert err.getvalue() == ("(GetJob throttled; trying again in 4s)\namplify-monitor: hello\n")


def test_json_mode_keeps_stdout_pure_json_and_echoes_refusals_to_stderr() -> None:
    out, err = FakeTty(), io.StringIO()
    console = Console(json_mode=True, out=out, err=err)
    assert not console.live
    console.emit(Refused("nope"))
    assert json.loads(out.getvalue())["message"] == "nope"
    assert err.getvalue() == "amplify-monitor: nope\n"
