"""The JSON codec: exact round trips of states and alerts, and clear refusals of bad data."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from monitor.model import Alert, BranchKey, BranchState, JobSummary, Step
from monitor.store.codec import (
    CodecError,
    decode_alert,
    decode_state,
    encode_alert,
    encode_state,
)

from .factories import IST, make_alert, make_state

# --- strategies -----------------------------------------------------------------------------

_zones = st.sampled_from(
    [UTC, IST, timezone(timedelta(hours=-8)), timezone(timedelta(hours=13, minutes=45))]
)
# Bounded so a far-off offset cannot push a value outside datetime's range when made UTC.
times = st.datetimes(
    # A zoned strategy takes naive bounds.
    min_value=datetime(1970, 1, 2),
    max_value=datetime(2200, 1, 1),
    timezones=_zones,
)
optional_times = st.none() | times
# Any text, lone surrogates included: the API's JSON can carry them in a commit message.
texts = st.text(st.characters(exclude_categories=()))
ids = st.text(min_size=1, max_size=12)

jobs = st.builds(
    JobSummary,
    job_id=ids,
    status=st.sampled_from(["FAILED", "SUCCEED", "RUNNING", "BRAND_NEW_STATUS"]),
    job_type=texts,
    commit_id=texts,
    commit_message=texts,
    commit_time=optional_times,
    start_time=optional_times,
    end_time=optional_times,
)
keys = st.builds(BranchKey, app_id=ids, branch=texts)
states = st.builds(
    BranchState,
    key=keys,
    app_name=texts,
    latest=st.none() | jobs,
    unfinished=st.dictionaries(ids, texts, max_size=4),
    last_success_time=optional_times,
    failing_job_id=st.none() | ids,
    active_job_id=st.none() | ids,
    total_jobs=st.none() | st.integers(min_value=0, max_value=2**53),
)
steps = st.builds(
    Step,
    name=texts,
    status=texts,
    start_time=optional_times,
    end_time=optional_times,
    log_url=texts,
    status_reason=texts,
)
alerts = st.builds(
    Alert,
    key=keys,
    app_name=texts,
    kind=st.sampled_from(["failure", "recovery"]),
    job=jobs,
    last_success_time=optional_times,
    failed_job_id=st.none() | ids,
    steps=st.lists(steps, max_size=4).map(tuple),
    region=texts,
)


# --- round trips ----------------------------------------------------------------------------


@given(states)
def test_any_state_round_trips_exactly(state: BranchState) -> None:
    assert decode_state(encode_state(state)) == state


@given(alerts)
def test_any_alert_round_trips_exactly(alert: Alert) -> None:
    decoded = decode_alert(encode_alert(alert))
    assert decoded == alert
    assert decoded.dedup_key == alert.dedup_key


@pytest.mark.parametrize(
    "message",
    [
        "修复构建",
        "🚀 deploy\n\nCo-authored-by: Zoë <zoe@example.com>",
        "\u05e2\u05d1\u05e8\u05d9\u05ea RTL",
        'tab\tquote"backslash\\',
        "lone surrogate \udc80 here",
        "",
    ],
)
def test_unicode_commit_message_round_trips(message: str) -> None:
    job = dataclasses.replace(make_alert().job, commit_message=message)
    alert = dataclasses.replace(make_alert(), job=job)
    state = dataclasses.replace(make_state(), latest=job)
    assert decode_alert(encode_alert(alert)) == alert
    assert decode_state(encode_state(state)) == state


def test_state_with_none_fields_round_trips() -> None:
    state = BranchState(key=BranchKey("d1abc", "main"), app_name="shop")
    assert decode_state(encode_state(state)) == state


def test_alert_with_none_fields_round_trips() -> None:
    alert = Alert(BranchKey("d1abc", "main"), "shop", "failure", JobSummary("1", "FAILED"))
    assert decode_alert(encode_alert(alert)) == alert


def test_datetimes_are_written_as_iso8601_utc() -> None:
    when = datetime(2024, 5, 1, 17, 30, 0, 250000, tzinfo=IST)
    state = dataclasses.replace(make_state(), last_success_time=when)
    data = json.loads(encode_state(state))
    assert data["last_success_time"] == "2024-05-01T12:00:00.250000+00:00"
    decoded = decode_state(encode_state(state)).last_success_time
    assert decoded == when
    assert decoded is not None
    assert decoded.utcoffset() == timedelta(0)


def test_encoded_documents_are_plain_json_with_a_format_version() -> None:
    data = json.loads(encode_alert(make_alert()))
    assert data["v"] == 1
    assert data["job"]["job_id"] == "7"
    assert data["steps"][1]["status_reason"] == "exit status 1"


# --- refusals -------------------------------------------------------------------------------


def test_naive_datetime_is_refused_when_encoding() -> None:
    naive = datetime(2024, 5, 1, 12, 0)
    state = dataclasses.replace(make_state(), last_success_time=naive)
    with pytest.raises(CodecError, match="last_success_time"):
        encode_state(state)


def _state_data() -> dict[str, object]:
    data: dict[str, object] = json.loads(encode_state(make_state()))
    return data


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "expected an object"),
        (json.dumps({**_state_data(), "key": None}), "key"),
        (json.dumps({**_state_data(), "total_jobs": "7"}), "total_jobs"),
        (json.dumps({**_state_data(), "total_jobs": True}), "total_jobs"),
        (json.dumps({**_state_data(), "unfinished": {"8": 3}}), "unfinished"),
        (json.dumps({**_state_data(), "last_success_time": "yesterday"}), "ISO-8601"),
        (json.dumps({**_state_data(), "last_success_time": "2024-05-01T12:00:00"}), "offset"),
        (json.dumps({**_state_data(), "v": 2}), "newer"),
        (b"\xff\xfe", "not valid JSON"),
    ],
)
def test_bad_state_data_is_a_codec_error_saying_what_is_wrong(
    text: str | bytes, complaint: str
) -> None:
    with pytest.raises(CodecError, match=complaint):
        decode_state(text)


def test_alert_of_unknown_kind_is_refused() -> None:
    data = json.loads(encode_alert(make_alert()))
    data["kind"] = "celebration"
    with pytest.raises(CodecError, match="kind"):
        decode_alert(json.dumps(data))


def test_document_missing_optional_fields_decodes_with_defaults() -> None:
    # What an older writer, before these fields existed, would have left behind.
    text = json.dumps(
        {
            "key": {"app_id": "d1abc", "branch": "main"},
            "kind": "failure",
            "job": {"job_id": "7", "status": "FAILED"},
        }
    )
    assert decode_alert(text) == Alert(
        BranchKey("d1abc", "main"), "", "failure", JobSummary("7", "FAILED")
    )
