"""The living message of a job: golden files for each step of its story (start, running,
succeeded, failed, cancelled) and for a failure message marked recovered; the route's title
template; the branch's site on every message."""

from __future__ import annotations

import dataclasses
import json

from monitor.model import CANCELLED, FAILED, PENDING, RUNNING, SUCCEED, Alert
from monitor.notify.render import render_failure
from monitor.notify.story import mark_recovered, render_reply, render_story

from .helpers import make_alert, make_recovery
from .test_render import check_golden

SITE = "https://main.d1abc2def.amplifyapp.com"


def story_alert(status: str, job_id: str = "42") -> Alert:
    alert = make_alert(job_id, status, kind="progress" if status != FAILED else "failure")
    if status in (PENDING, RUNNING):
        alert = dataclasses.replace(alert, job=dataclasses.replace(alert.job, end_time=None))
    return dataclasses.replace(alert, branch_url=SITE)


def test_golden_story_started() -> None:
    check_golden("story_started", render_story(story_alert(PENDING)))


def test_golden_story_running() -> None:
    check_golden("story_running", render_story(story_alert(RUNNING)))


def test_golden_story_succeeded() -> None:
    check_golden("story_succeeded", render_story(story_alert(SUCCEED)))


def test_golden_story_failed_names_the_step_reason_and_log() -> None:
    check_golden("story_failed", render_story(story_alert(FAILED)))


def test_golden_story_cancelled() -> None:
    check_golden("story_cancelled", render_story(story_alert(CANCELLED)))


def test_golden_failure_message_marked_recovered() -> None:
    failure = render_failure(dataclasses.replace(make_alert(), branch_url=SITE))
    check_golden("story_recovered", mark_recovered(failure, make_recovery()))


def test_each_final_text_says_in_words_what_happened() -> None:
    words = {SUCCEED: "succeeded", FAILED: "failed", CANCELLED: "cancelled"}
    for status, word in words.items():
        message = render_story(story_alert(status))
        assert word in message.text
        assert word in json.dumps(message.blocks)
    recovered = mark_recovered(render_failure(make_alert()), make_recovery())
    assert "recovered" in recovered.text and "Recovered" in json.dumps(recovered.blocks)


def test_an_unfinished_job_is_yellow_and_never_says_it_ended() -> None:
    for status in (PENDING, RUNNING):
        message = render_story(story_alert(status))
        assert message.text.startswith("🟡")
        assert not any(w in message.text for w in ("succeeded", "failed", "cancelled"))


def test_the_failure_reply_carries_the_mention_and_the_reason() -> None:
    reply = render_reply(make_alert(), "<!subteam^S0123ABC>")
    assert reply.text.startswith("<!subteam^S0123ABC> ")
    assert "npm ERR! code ELIFECYCLE" in json.dumps(reply.blocks)
    assert "BUILD" in json.dumps(reply.blocks)
    # The living message itself pings nobody: updates notify no one, so no mention there.
    assert "subteam" not in json.dumps(render_story(make_alert()).payload())


def test_a_route_title_is_the_first_line_with_its_values_escaped() -> None:
    alert = dataclasses.replace(make_alert(branch="feat/<!here>"), branch_url=SITE)
    message = render_story(alert, "{app} {branch} · #{job_id} {status} ({job_type})")
    header = message.blocks[0]["text"]["text"]
    assert header == "🔴 shop feat/&lt;!here&gt; · #42 FAILED (RELEASE)"
    assert message.text.startswith(header)
    assert "<!here>" not in json.dumps(message.payload())


def test_the_branch_site_is_on_every_message_and_a_strange_one_on_none() -> None:
    for status in (PENDING, SUCCEED, FAILED):
        message = render_story(story_alert(status))
        assert f"<{SITE}|main.d1abc2def.amplifyapp.com>" in json.dumps(message.blocks)
    odd = dataclasses.replace(make_alert(), branch_url="https://x.example|evil>")
    assert "evil" not in json.dumps(render_story(odd).blocks)


def test_marking_recovered_keeps_the_failure_and_stays_within_block_kit() -> None:
    failure = render_failure(make_alert())
    marked = mark_recovered(failure, make_recovery())
    assert marked.blocks[: len(failure.blocks) - 1] == failure.blocks[:-1]
    assert marked.blocks[-1] == failure.blocks[-1]  # the footer stays last
    full = dataclasses.replace(failure, blocks=[failure.blocks[1]] * 50)
    assert len(mark_recovered(full, make_recovery()).blocks) == 50
