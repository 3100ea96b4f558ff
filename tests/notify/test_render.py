"""Rendering: golden Block Kit payloads, escaping of untrusted text, and Block Kit limits held
for any input (hypothesis). Regenerate the golden files with UPDATE_GOLDEN=1 after a deliberate
change, and review the diff."""

from __future__ import annotations

import json
import os
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.humanize import duration
from monitor.model import CANCELLED, FAILED, Step
from monitor.notify.base import Destination, Digest, Single
from monitor.notify.render import console_line, render_digest, render_single
from monitor.notify.text import SlackMessage, escape, fit

from .helpers import T0, make_alert, make_recovery
from .slack_server import block_kit_problem

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"
HOSTILE = "<!channel> <@U123> <https://evil.example|docs> & co"


def check_golden(name: str, message: SlackMessage) -> None:
    path = GOLDEN / f"{name}.json"
    actual: dict[str, Any] = message.payload()
    if UPDATE or not path.exists():
        if not UPDATE:
            pytest.fail(f"{path} is missing; run with UPDATE_GOLDEN=1 to create it")
        path.write_text(json.dumps(actual, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    expected = json.loads(path.read_text(encoding="utf-8"))
    assert actual == expected, f"{name} differs from {path} (UPDATE_GOLDEN=1 to accept)"
    assert block_kit_problem(actual["blocks"]) is None


def dest(mention: str | None = None, channel: str = "#builds") -> Destination:
    return Destination(channel, mention, frozenset({FAILED, CANCELLED}))


# --- golden files ----------------------------------------------------------------------


def test_golden_failure_with_step_reason_log_and_mention() -> None:
    check_golden("failure", render_single(Single(make_alert(), dest("<!subteam^S0123ABC>"))))


def test_golden_failure_with_nothing_but_the_essentials() -> None:
    alert = make_alert(steps=(), region="", last_success=None, message="")
    bare = alert.job.__class__(job_id="7", status=FAILED)
    alert = alert.__class__(alert.key, "", "failure", bare)
    check_golden("failure_minimal", render_single(Single(alert, dest())))


def test_golden_cancelled() -> None:
    check_golden("cancelled", render_single(Single(make_alert("44", CANCELLED), dest())))


def test_golden_recovery_in_thread() -> None:
    check_golden("recovery_thread", render_single(Single(make_recovery(), dest(), "C1:1.000001")))


def test_golden_recovery_without_thread() -> None:
    check_golden("recovery_top_level", render_single(Single(make_recovery(), dest())))


def test_golden_digest_grouped_by_app() -> None:
    alerts = (
        make_alert("10", app_name="shop", branch="feature/a"),
        make_alert("11", app_name="blog", app_id="d2blog", branch="main"),
        make_alert("12", CANCELLED, app_name="shop", branch="feature/b"),
        make_recovery("13", "9", app_name="docs", app_id="d3docs"),
        make_alert("14", app_name="blog", app_id="d2blog", branch="preview"),
    )
    check_golden("digest", render_digest(Digest(alerts, dest("<@U0123>"), 30.0)))


def test_golden_hostile_commit_branch_and_app_name() -> None:
    alert = make_alert(message=HOSTILE, branch="feat/<!here>&co", app_name="R&D <tools>")
    check_golden("hostile", render_single(Single(alert, dest())))


# --- escaping ---------------------------------------------------------------------------


def test_escape_turns_slack_control_characters_into_entities() -> None:
    assert escape(HOSTILE) == (
        "&lt;!channel&gt; &lt;@U123&gt; &lt;https://evil.example|docs&gt; &amp; co"
    )


def test_escape_defuses_bare_broadcast_words() -> None:
    assert "@channel" not in escape("ping @channel and @Here")
    assert escape("mail me@example.com") == "mail me@example.com"


def test_fit_never_cuts_inside_an_entity() -> None:
    for limit in range(1, 30):
        out = fit("&&&&&&&&&&&&&&&&&&&&&&&&&&&&&&&&&&", limit)
        assert len(out) <= limit
        assert re.fullmatch(r"(&amp;)*…?", out), out


def test_commit_message_is_escaped_everywhere_in_the_failure_message() -> None:
    message = render_single(Single(make_alert(message=HOSTILE), dest()))
    payload = json.dumps(message.payload(), ensure_ascii=False)
    for raw in ("<!channel>", "<@U123>", "<https://evil.example|docs>"):
        assert raw not in payload
    assert "&lt;!channel&gt; &lt;@U123&gt; &lt;https://evil.example|docs&gt; &amp; co" in payload


def test_only_our_own_markup_opens_angle_brackets() -> None:
    message = render_single(Single(make_alert(message=HOSTILE, branch="<!here>"), dest()))
    text = json.dumps(message.payload(), ensure_ascii=False)
    for match in re.finditer("<", text):
        assert text[match.end() :].startswith(("https://", "!date^")), text[match.start() :][:40]


def test_console_line_strips_terminal_control_characters() -> None:
    line = console_line(make_alert(message="evil \x1b[2J\x1b[31mred"))
    assert "\x1b" not in line
    assert line.startswith(
        "FAILED shop/main job 42 (RELEASE) in step BUILD: npm ERR! code ELIFECYCLE"
    )


def test_duration_reads_at_a_glance() -> None:
    assert [duration(s) for s in (5, 252, 3780, 183600)] == ["5s", "4m 12s", "1h 3m", "2d 3h"]


def test_failure_names_everything_a_person_needs() -> None:
    message = render_single(Single(make_alert(), dest()))
    text = json.dumps(message.payload(), ensure_ascii=False)
    for needle in (
        "shop / main",  # app and branch
        "#42",  # job id
        "RELEASE",  # job type
        "`3f9a1c7`",  # short commit
        "Fix the checkout page",  # first line of the message
        "Longer body",  # ...and not the rest
        "4m 12s",  # duration
        "2d 3h before this build",  # since the last success
        "BUILD",  # the failed step
        "npm ERR! code ELIFECYCLE",  # its reason
        "https://eu-west-1.console.aws.amazon.com/amplify/apps/d1abc2def/branches/main/deployments/42",
        "X-Amz-Signature",  # the step log
    ):
        if needle == "Longer body":
            assert needle not in text
        else:
            assert needle in text, needle


def test_branch_with_a_slash_is_percent_encoded_in_console_links() -> None:
    message = render_single(Single(make_alert(branch="feature/x y"), dest()))
    assert "/branches/feature%2Fx%20y/deployments/42" in json.dumps(message.payload())


def test_a_log_url_too_long_for_a_button_is_left_out() -> None:
    step = Step("BUILD", FAILED, T0, T0 + timedelta(minutes=1), "https://x/" + "a" * 3000, "boom")
    blocks = render_single(Single(make_alert(steps=(step,)), dest())).blocks
    buttons = [e for b in blocks if b["type"] == "actions" for e in b["elements"]]
    assert [b["action_id"] for b in buttons] == ["open_job"]


# --- limits for any input ----------------------------------------------------------------

untrusted = st.text(st.characters(codec="utf-8"), max_size=400) | st.sampled_from(
    [HOSTILE * 200, "&" * 4000, "😀" * 3000, "`" * 500, "\n" * 100 + "x"]
)


@settings(max_examples=100, deadline=None)
@given(message=untrusted, branch=untrusted, app=untrusted, reason=untrusted, job_type=untrusted)
def test_any_alert_renders_within_block_kit_limits(
    message: str, branch: str, app: str, reason: str, job_type: str
) -> None:
    step = Step(reason[:50] or "BUILD", FAILED, T0, T0, "https://log.example/x", reason)
    alert = make_alert(message=message, branch=branch or "b", app_name=app, steps=(step,))
    alert = alert.__class__(
        alert.key,
        alert.app_name,
        "failure",
        alert.job.__class__(**{**alert.job.__dict__, "job_type": job_type}),
        steps=alert.steps,
        region=alert.region,
    )
    for msg in (
        render_single(Single(alert, dest("<!here>"))),
        render_single(Single(make_recovery(message=message, branch=branch or "b"), dest())),
        render_digest(Digest((alert,) * 50, dest(), 30.0)),
    ):
        assert block_kit_problem(msg.blocks) is None
        assert len(msg.text) <= 500
        text = json.dumps(msg.payload(), ensure_ascii=False)
        assert "<@U" not in text.replace("<!here>", "")
        assert "<!channel>" not in text


def test_a_digest_of_fifty_worst_case_alerts_names_every_job_once() -> None:
    long = "x" * 300
    alerts = tuple(
        make_alert(str(1000 + i), app_name=f"{long}{i % 7}", branch=f"{long}/{i}", message=long)
        for i in range(50)
    )
    message = render_digest(Digest(alerts, dest(), 30.0))
    assert block_kit_problem(message.blocks) is None
    text = "\n".join(b["text"]["text"] for b in message.blocks if b["type"] == "section")
    for i in range(50):
        assert text.count(f"|#{1000 + i}>") == 1
