"""The pure half of push mode: what a message body is, and what its event needs first."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime

import pytest

from monitor.config import Target
from monitor.events import BACKOFF_MAX, AmplifyEvent, Plan, Rejected, backoff, parse, plan
from monitor.model import App, Branch, BranchKey
from monitor.watch import Watched
from tests.events.conftest import amplify_event


def test_an_eventbridge_event_as_delivered_to_sqs_is_read() -> None:
    body = amplify_event("d1", "release/1.0", "42", "FAILED", region="eu-west-1")
    body["time"] = "2026-12-01T13:33:55Z"
    event = parse(json.dumps(body))
    assert event == AmplifyEvent(
        key=BranchKey("d1", "release/1.0"),
        job_id="42",
        job_status="FAILED",
        time=datetime(2026, 12, 1, 13, 33, 55, tzinfo=UTC),
        region="eu-west-1",
    )


def test_an_event_wrapped_by_sns_is_unwrapped_once() -> None:
    inner = json.dumps(amplify_event("d1", "main", "3", "SUCCEED"))
    event = parse(json.dumps({"Type": "Notification", "Message": inner}))
    assert isinstance(event, AmplifyEvent) and event.job_status == "SUCCEED"
    twice = json.dumps(
        {"Type": "Notification", "Message": json.dumps({"Type": "Notification", "Message": inner})}
    )
    assert parse(twice) == Rejected("ignored", "not an Amplify deployment status change")


@pytest.mark.parametrize(
    ("body", "outcome"),
    [
        ("not json", "malformed"),
        ("[1, 2]", "malformed"),
        (json.dumps({"source": "aws.codebuild", "detail-type": "x"}), "ignored"),
        (json.dumps({"source": "aws.amplify", "detail-type": "Amplify Domain Status"}), "ignored"),
        (
            json.dumps(
                {"source": "aws.amplify", "detail-type": "Amplify Deployment Status Change"}
            ),
            "malformed",
        ),
        (
            json.dumps(
                {
                    "source": "aws.amplify",
                    "detail-type": "Amplify Deployment Status Change",
                    "detail": {"appId": "d1", "branchName": "", "jobId": "1", "jobStatus": "X"},
                }
            ),
            "malformed",
        ),
    ],
)
def test_other_messages_are_rejected_with_their_outcome(body: str, outcome: str) -> None:
    rejected = parse(body)
    assert isinstance(rejected, Rejected) and rejected.outcome == outcome


def test_an_unreadable_time_leaves_the_event_without_one() -> None:
    body = amplify_event("d1", "main", "3", "FAILED")
    body["time"] = "yesterday"
    event = parse(json.dumps(body))
    assert isinstance(event, AmplifyEvent) and event.time is None


def _watched(targets: tuple[Target, ...] = (Target(),)) -> Watched:
    watched = Watched(targets, {})
    watched.apps = {"d1": App("d1", "shop")}
    key = BranchKey("d1", "main")
    watched.set_branches("d1", {key: Branch(key, "shop")})
    return watched


def _event(app_id: str, branch: str, region: str = "us-east-1") -> AmplifyEvent:
    return AmplifyEvent(BranchKey(app_id, branch), "1", "FAILED", None, region)


@pytest.mark.parametrize(
    ("event", "targets", "expected"),
    [
        (_event("d1", "main"), (Target(),), Plan("none")),
        (_event("d1", "feature/x"), (Target(),), Plan("app")),
        (_event("d9", "main"), (Target(),), Plan("discover")),
        (_event("d9", "main"), (Target(app_id="d1"),), Rejected("ignored", "branch not targeted")),
        (
            _event("d1", "feature/x"),
            (Target(branches=("main",)),),
            Rejected("ignored", "branch not targeted"),
        ),
        (
            _event("d1", "main", "eu-west-1"),
            (Target(),),
            Rejected("ignored", "event of region eu-west-1"),
        ),
        (_event("d1", "main", ""), (Target(),), Plan("none")),
    ],
)
def test_an_event_is_planned_against_the_watched_set(
    event: AmplifyEvent, targets: tuple[Target, ...], expected: Plan | Rejected
) -> None:
    assert plan(event, _watched(targets), "us-east-1") == expected


def test_backoff_doubles_with_jitter_up_to_a_ceiling() -> None:
    rng = random.Random(1)
    waits = [backoff(n, rng) for n in range(1, 12)]
    assert 0.5 <= waits[0] <= 1.0
    assert 4.0 <= waits[3] <= 8.0
    assert all(BACKOFF_MAX / 2 <= w <= BACKOFF_MAX for w in waits[7:])
