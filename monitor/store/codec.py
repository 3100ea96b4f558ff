"""JSON encoding of what the stores persist: BranchState and Alert (with JobSummary and Step).

Pure functions, no I/O. JSON rather than pickle so a state file is readable, diffable and safe
to load; datetimes travel as ISO-8601 in UTC. Also home of the store errors every backend raises.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, cast

from monitor.model import Alert, AlertKind, BranchKey, BranchState, JobSummary, Step

# Written into every document. A decoder that meets a newer format refuses it rather than
# guessing, so a rollback of the monitor cannot silently misread state a newer one wrote.
FORMAT_VERSION = 1

_ALERT_KINDS: frozenset[str] = frozenset({"failure", "recovery", "progress"})


class StoreError(Exception):
    """A store could not do what was asked (driver error, closed store, unreadable data).

    Lives here, beside the codec every backend shares, so callers catch one type whatever the
    backend and never import sqlite3 or redis to handle a failure.
    """


class CodecError(StoreError, ValueError):
    """A value cannot be encoded, or stored data is not a document this code understands."""


# --- datetimes ---------------------------------------------------------------------------


def _encode_time(value: datetime | None, name: str) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None or value.utcoffset() is None:
        # A naive datetime has no instant; storing it as UTC would shift it silently on any
        # host whose clock is not UTC, and decoding it aware would break round-trip equality.
        raise CodecError(f"{name}: naive datetime {value.isoformat()} (give it a timezone)")
    return value.astimezone(UTC).isoformat()


def _decode_time(value: object, name: str) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise CodecError(f"{name}: expected an ISO-8601 string, got {type(value).__name__}")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise CodecError(f"{name}: {value!r} is not ISO-8601") from None
    if parsed.tzinfo is None:
        raise CodecError(f"{name}: {value!r} has no UTC offset")
    return parsed


# --- field readers: turn a wrong shape into a CodecError naming the field ------------------


def _str(data: Mapping[str, Any], name: str, default: str | None = None) -> str:
    value = data.get(name, default)
    if not isinstance(value, str):
        raise CodecError(f"{name}: expected a string, got {type(value).__name__}")
    return value


def _opt_str(data: Mapping[str, Any], name: str) -> str | None:
    value = data.get(name)
    if value is not None and not isinstance(value, str):
        raise CodecError(f"{name}: expected a string or null, got {type(value).__name__}")
    return value


def _opt_int(data: Mapping[str, Any], name: str) -> int | None:
    value = data.get(name)
    # bool is an int subclass; a true/false here is corruption, not a count.
    if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
        raise CodecError(f"{name}: expected an integer or null, got {type(value).__name__}")
    return value


def _mapping(value: object, name: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise CodecError(f"{name}: expected an object, got {type(value).__name__}")
    return cast(Mapping[str, Any], value)


# --- values ------------------------------------------------------------------------------


def key_to_data(key: BranchKey) -> dict[str, Any]:
    return {"app_id": key.app_id, "branch": key.branch}


def key_from_data(data: Mapping[str, Any]) -> BranchKey:
    return BranchKey(app_id=_str(data, "app_id"), branch=_str(data, "branch"))


def job_to_data(job: JobSummary) -> dict[str, Any]:
    return {
        "job_id": job.job_id,
        "status": job.status,
        "job_type": job.job_type,
        "commit_id": job.commit_id,
        "commit_message": job.commit_message,
        "commit_time": _encode_time(job.commit_time, "job.commit_time"),
        "start_time": _encode_time(job.start_time, "job.start_time"),
        "end_time": _encode_time(job.end_time, "job.end_time"),
    }


def job_from_data(data: Mapping[str, Any]) -> JobSummary:
    # Optional fields fall back to the dataclass defaults so a document written before a field
    # existed still decodes.
    return JobSummary(
        job_id=_str(data, "job_id"),
        status=_str(data, "status"),
        job_type=_str(data, "job_type", ""),
        commit_id=_str(data, "commit_id", ""),
        commit_message=_str(data, "commit_message", ""),
        commit_time=_decode_time(data.get("commit_time"), "job.commit_time"),
        start_time=_decode_time(data.get("start_time"), "job.start_time"),
        end_time=_decode_time(data.get("end_time"), "job.end_time"),
    )


def step_to_data(step: Step) -> dict[str, Any]:
    return {
        "name": step.name,
        "status": step.status,
        "start_time": _encode_time(step.start_time, "step.start_time"),
        "end_time": _encode_time(step.end_time, "step.end_time"),
        "log_url": step.log_url,
        "status_reason": step.status_reason,
    }


def step_from_data(data: Mapping[str, Any]) -> Step:
    return Step(
        name=_str(data, "name"),
        status=_str(data, "status"),
        start_time=_decode_time(data.get("start_time"), "step.start_time"),
        end_time=_decode_time(data.get("end_time"), "step.end_time"),
        log_url=_str(data, "log_url", ""),
        status_reason=_str(data, "status_reason", ""),
    )


def state_to_data(state: BranchState) -> dict[str, Any]:
    return {
        "v": FORMAT_VERSION,
        "key": key_to_data(state.key),
        "app_name": state.app_name,
        "latest": None if state.latest is None else job_to_data(state.latest),
        "unfinished": dict(state.unfinished),
        "last_success_time": _encode_time(state.last_success_time, "last_success_time"),
        "failing_job_id": state.failing_job_id,
        "active_job_id": state.active_job_id,
        "total_jobs": state.total_jobs,
    }


def state_from_data(data: Mapping[str, Any]) -> BranchState:
    _check_version(data)
    latest = data.get("latest")
    unfinished = _mapping(data.get("unfinished", {}), "unfinished")
    for job_id, status in unfinished.items():
        if not isinstance(status, str):
            raise CodecError(f"unfinished[{job_id!r}]: expected a status string")
    return BranchState(
        key=key_from_data(_mapping(data.get("key"), "key")),
        app_name=_str(data, "app_name", ""),
        latest=None if latest is None else job_from_data(_mapping(latest, "latest")),
        unfinished=dict(unfinished),
        last_success_time=_decode_time(data.get("last_success_time"), "last_success_time"),
        failing_job_id=_opt_str(data, "failing_job_id"),
        active_job_id=_opt_str(data, "active_job_id"),
        total_jobs=_opt_int(data, "total_jobs"),
    )


def alert_to_data(alert: Alert) -> dict[str, Any]:
    return {
        "v": FORMAT_VERSION,
        "key": key_to_data(alert.key),
        "app_name": alert.app_name,
        "kind": alert.kind,
        "job": job_to_data(alert.job),
        "last_success_time": _encode_time(alert.last_success_time, "last_success_time"),
        "failed_job_id": alert.failed_job_id,
        "steps": [step_to_data(step) for step in alert.steps],
        "region": alert.region,
        "branch_url": alert.branch_url,
    }


def alert_from_data(data: Mapping[str, Any]) -> Alert:
    _check_version(data)
    kind = _str(data, "kind")
    if kind not in _ALERT_KINDS:
        raise CodecError(f"kind: {kind!r} is not one of {sorted(_ALERT_KINDS)}")
    steps = data.get("steps", [])
    if not isinstance(steps, list):
        raise CodecError(f"steps: expected a list, got {type(steps).__name__}")
    return Alert(
        key=key_from_data(_mapping(data.get("key"), "key")),
        app_name=_str(data, "app_name", ""),
        kind=cast(AlertKind, kind),
        job=job_from_data(_mapping(data.get("job"), "job")),
        last_success_time=_decode_time(data.get("last_success_time"), "last_success_time"),
        failed_job_id=_opt_str(data, "failed_job_id"),
        steps=tuple(step_from_data(_mapping(step, "steps[]")) for step in steps),
        region=_str(data, "region", ""),
        branch_url=_str(data, "branch_url", ""),
    )


def _check_version(data: Mapping[str, Any]) -> None:
    version = data.get("v", FORMAT_VERSION)
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CodecError(f"format version {version!r} is newer than this code ({FORMAT_VERSION})")


# --- documents ---------------------------------------------------------------------------


def _dumps(data: dict[str, Any]) -> str:
    # ensure_ascii (the default) on purpose: a commit message may hold a lone surrogate (the API
    # sends JSON, whose \u escapes allow one), which no UTF-8 driver can write; escaped, it
    # round-trips. Compact separators because a document is written on every changed poll.
    return json.dumps(data, separators=(",", ":"), sort_keys=True)


def _loads(text: str | bytes, what: str) -> Mapping[str, Any]:
    try:
        data = json.loads(text)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError alike
        raise CodecError(f"{what}: not valid JSON: {exc}") from None
    return _mapping(data, what)


def encode_state(state: BranchState) -> str:
    """BranchState -> JSON text."""
    return _dumps(state_to_data(state))


def decode_state(text: str | bytes) -> BranchState:
    """JSON text -> BranchState; raise CodecError for anything that is not a valid state."""
    return state_from_data(_loads(text, "branch state"))


def encode_alert(alert: Alert) -> str:
    """Alert -> JSON text."""
    return _dumps(alert_to_data(alert))


def decode_alert(text: str | bytes) -> Alert:
    """JSON text -> Alert; raise CodecError for anything that is not a valid alert."""
    return alert_from_data(_loads(text, "alert"))
