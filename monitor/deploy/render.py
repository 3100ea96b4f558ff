"""Events -> what a person or a machine reads: plain lines for CI logs, JSON objects, live line.

Pure: each function takes an event (or the current state) and returns text. Which stream the
text goes to and when the live line is redrawn is `console.py`'s business.
"""

from __future__ import annotations

import json
from typing import Any

from monitor import humanize
from monitor.deploy.events import (
    Event,
    Finished,
    Interrupted,
    JobChange,
    Note,
    Prepared,
    Refused,
    Retrying,
    Started,
    StepChange,
    TimedOut,
    Uploaded,
    Watching,
)
from monitor.model import CANCELLED, FAILED, RUNNING, SUCCEED, is_terminal

STATUS_WIDTH = 13  # len("PROVISIONING") + 1: statuses line up in a CI log
SUBJECT_WIDTH = 8
INDENT = " " * (STATUS_WIDTH + SUBJECT_WIDTH)


def duration(seconds: float) -> str:
    return humanize.duration(seconds, compact=True)


def size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


def _row(status: str, subject: str, detail: str = "") -> str:
    return f"{status:<{STATUS_WIDTH}}{subject:<{SUBJECT_WIDTH}}{detail}".rstrip()


def _step_detail(change: StepChange) -> str:
    step = change.step
    if step.status == RUNNING:
        return "started"
    if step.status == SUCCEED:
        took = _step_seconds(change)
        return f"done in {duration(took)}" if took is not None else "done"
    if step.status in (FAILED, CANCELLED):
        return step.status_reason or "(Amplify gave no reason)"
    return step.status_reason


def _step_seconds(change: StepChange) -> float | None:
    step = change.step
    if step.start_time and step.end_time:
        return max(0.0, (step.end_time - step.start_time).total_seconds())
    return None


def text(event: Event) -> list[str]:
    """Plain lines for one event; [] when the event says nothing a log reader needs."""
    match event:
        case Prepared():
            if event.built:
                return [
                    f"zipped {event.source}: {event.files} files, {size(event.content_bytes)}"
                    f" -> {size(event.archive_bytes)}"
                ]
            return [f"using {event.source}: {event.files} files, {size(event.archive_bytes)}"]
        case Uploaded():
            retried = f" ({event.attempts} attempts)" if event.attempts > 1 else ""
            return [f"uploaded {size(event.archive_bytes)} in {duration(event.seconds)}{retried}"]
        case Started():
            target = event.target
            lines = [
                f"job {event.job_id} started on {target.key}",
                f"console: {target.console_url(event.job_id)}",
            ]
            if not event.waiting:
                lines.append(f"follow it: {target.resume_command(event.job_id)}")
            return lines
        case Watching():
            return [
                f"waiting for job {event.job_id} on {event.target.key}",
                f"console: {event.target.console_url(event.job_id)}",
            ]
        case JobChange():
            if is_terminal(event.to_status):
                return []  # the Finished event that follows gives the verdict with context
            return [_row(event.to_status, "job", event.job_id)]
        case StepChange():
            lines = [_row(event.to_status, event.step.name, _step_detail(event))]
            if event.to_status in (FAILED, CANCELLED) and event.step.log_url:
                lines.append(f"{INDENT}log: {event.step.log_url}")
            return lines
        case Retrying():
            return [f"({event.operation} {event.reason}; trying again in {duration(event.delay)})"]
        case Finished():
            return _finished(event)
        case TimedOut():
            still = f"is still {event.status} and " if event.status else ""
            return [
                f"timed out after {duration(event.elapsed)}: job {event.job_id} {still}"
                "keeps running (it was not stopped)",
                f"resume: {event.target.resume_command(event.job_id)}",
            ]
        case Interrupted():
            if event.job_id is None:
                return [f"stopped on {event.signal_name} before a job started; nothing deployed"]
            return [
                f"stopped waiting on {event.signal_name}: job {event.job_id} keeps running "
                "(it was not stopped)",
                f"resume: {event.target.resume_command(event.job_id)}",
            ]
        case Refused():
            return [f"amplify-monitor: {event.message}"]
        case Note():
            return [f"amplify-monitor: {event.message}"]
    raise AssertionError(f"unhandled event {event!r}")


def _finished(event: Finished) -> list[str]:
    summary = event.detail.summary
    took = summary.duration_seconds
    after = f" after {duration(took if took is not None else event.elapsed)}"
    head = f"job {summary.job_id}{after}"
    failed = event.detail.failed_step
    lines: list[str]
    if summary.status == SUCCEED or failed is None:
        lines = [_row(summary.status, head)]
    else:
        reason = failed.status_reason or "(Amplify gave no reason)"
        lines = [_row(summary.status, head, f": step {failed.name}: {reason}")]
        if failed.log_url:
            lines.append(f"{INDENT}log: {failed.log_url}")
    lines.append(f"{INDENT}console: {event.target.console_url(summary.job_id)}")
    return lines


def to_json(event: Event) -> dict[str, Any]:
    """One JSON object per event; keys are stable (scripts parse them)."""
    match event:
        case Prepared():
            return {
                "event": "prepared",
                "source": event.source,
                "built": event.built,
                "files": event.files,
                "content_bytes": event.content_bytes,
                "archive_bytes": event.archive_bytes,
            }
        case Uploaded():
            return {
                "event": "uploaded",
                "archive_bytes": event.archive_bytes,
                "seconds": round(event.seconds, 3),
                "attempts": event.attempts,
            }
        case Started():
            return {
                "event": "started",
                "app_id": event.target.key.app_id,
                "branch": event.target.key.branch,
                "job_id": event.job_id,
                "console_url": event.target.console_url(event.job_id),
            }
        case Watching():
            return {
                "event": "watching",
                "app_id": event.target.key.app_id,
                "branch": event.target.key.branch,
                "job_id": event.job_id,
                "console_url": event.target.console_url(event.job_id),
            }
        case JobChange():
            return {
                "event": "status",
                "job_id": event.job_id,
                "step": None,
                "status": event.to_status,
                "previous": event.from_status,
                "elapsed": round(event.elapsed, 3),
            }
        case StepChange():
            return {
                "event": "status",
                "job_id": event.job_id,
                "step": event.step.name,
                "status": event.to_status,
                "previous": event.from_status,
                "reason": event.step.status_reason or None,
                "log_url": event.step.log_url or None,
                "elapsed": round(event.elapsed, 3),
            }
        case Retrying():
            return {
                "event": "retrying",
                "operation": event.operation,
                "reason": event.reason,
                "delay": round(event.delay, 3),
            }
        case Finished():
            failed = event.detail.failed_step
            summary = event.detail.summary
            return {
                "event": "result",
                "job_id": summary.job_id,
                "status": summary.status,
                "exit_code": event.exit_code,
                "seconds": summary.duration_seconds,
                "failed_step": failed.name if failed else None,
                "reason": (failed.status_reason or None) if failed else None,
                "log_url": (failed.log_url or None) if failed else None,
                "console_url": event.target.console_url(summary.job_id),
            }
        case TimedOut():
            return {
                "event": "timeout",
                "job_id": event.job_id,
                "status": event.status or None,
                "exit_code": event.exit_code,
                "elapsed": round(event.elapsed, 3),
                "resume": event.target.resume_command(event.job_id),
            }
        case Interrupted():
            return {
                "event": "interrupted",
                "job_id": event.job_id,
                "signal": event.signal_name,
                "exit_code": event.exit_code,
                "resume": event.target.resume_command(event.job_id) if event.job_id else None,
            }
        case Refused():
            return {
                "event": "error",
                "message": event.message,
                "exit_code": event.exit_code,
                "unfinished_job_id": event.unfinished_job_id,
                "stop_command": (
                    event.target.stop_command(event.unfinished_job_id)
                    if event.target and event.unfinished_job_id
                    else None
                ),
            }
        case Note():
            return {"event": "note", "message": event.message}
    raise AssertionError(f"unhandled event {event!r}")


def json_line(event: Event) -> str:
    return json.dumps(to_json(event), separators=(",", ":"), ensure_ascii=False)


def live_line(job_id: str, status: str, step: str | None, elapsed: float, frame: int) -> str:
    """The one line redrawn in place on a terminal while the job runs."""
    spinner = "|/-\\"[frame % 4]
    where = f" {step}" if step else ""
    return f"{spinner} job {job_id} {status or 'starting'}{where} {duration(elapsed)}"
