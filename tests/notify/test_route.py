"""Routing: first matching [[slack.routes]] wins, else the default channel; per-route `on`."""

from __future__ import annotations

from monitor.model import CANCELLED, FAILED
from monitor.notify.route import Router

from .helpers import make_alert, make_recovery, slack_settings


def router(**alerts: object) -> Router:
    settings = slack_settings(
        {
            "token": "xoxb-x",
            "channel": "#builds",
            "routes": [
                {
                    "app_id": "d1shop*",
                    "branches": ["main", "release/*"],
                    "channel": "#shop-prod",
                    "mention": "<!subteam^S1>",
                },
                {"app_name": "shop", "channel": "#shop-dev", "on": ["FAILED"]},
                {"branches": ["hotfix/*"], "channel": "#hotfix", "on": ["CANCELLED"]},
            ],
        },
        **alerts,
    )
    assert settings.slack is not None
    return Router.build(settings.alerts, "#builds", settings.slack.routes)


def test_first_matching_route_wins() -> None:
    r = router()
    dest = r.route(make_alert(app_id="d1shop42", app_name="shop", branch="release/2.0"))
    assert (dest.channel, dest.mention) == ("#shop-prod", "<!subteam^S1>")


def test_later_route_matches_when_an_earlier_one_does_not() -> None:
    assert (
        router().route(make_alert(app_id="d1shop42", app_name="shop", branch="dev")).channel
        == "#shop-dev"
    )


def test_unmatched_alert_goes_to_the_default_channel() -> None:
    dest = router().route(make_alert(app_id="d9blog", app_name="blog", branch="main"))
    assert (dest.channel, dest.mention) == ("#builds", None)


def test_globs_are_case_sensitive_like_git_branches() -> None:
    assert (
        router().route(make_alert(app_id="d9blog", app_name="blog", branch="HOTFIX/x")).channel
        == "#builds"
    )


def test_route_on_overrides_alerts_on() -> None:
    r = router()
    cancelled_dev = make_alert(status=CANCELLED, app_id="d1shop42", app_name="shop", branch="dev")
    assert not r.wants(cancelled_dev, r.route(cancelled_dev))
    failed_hotfix = make_alert(status=FAILED, app_id="d9blog", app_name="blog", branch="hotfix/1")
    assert not r.wants(failed_hotfix, r.route(failed_hotfix))
    cancelled_default = make_alert(status=CANCELLED, app_id="d9blog", app_name="blog")
    assert r.wants(cancelled_default, r.route(cancelled_default))


def test_default_on_comes_from_alerts_section() -> None:
    r = router(on=["FAILED"])
    alert = make_alert(status=CANCELLED, app_id="d9blog", app_name="blog")
    assert not r.wants(alert, r.route(alert))


def test_recovery_is_wanted_where_failures_are_and_only_if_enabled() -> None:
    recovery = make_recovery(app_id="d9blog", app_name="blog", branch="hotfix/1")
    assert not router().wants(recovery, router().route(recovery))  # #hotfix only hears CANCELLED
    elsewhere = make_recovery(app_id="d9blog", app_name="blog")
    assert router().wants(elsewhere, router().route(elsewhere))
    off = router(recovery=False)
    assert not off.wants(elsewhere, off.route(elsewhere))


def test_a_channel_that_wants_every_success_hears_a_recovery_too() -> None:
    settings = slack_settings(
        {
            "token": "xoxb-x",
            "channel": "#builds",
            "routes": [{"branches": ["release/*"], "channel": "#releases", "on": ["SUCCEED"]}],
        }
    )
    assert settings.slack is not None
    r = Router.build(settings.alerts, "#builds", settings.slack.routes)
    recovery = make_recovery(branch="release/1")
    assert r.wants(recovery, r.route(recovery))


def living_router(*, living: bool = True) -> Router:
    settings = slack_settings(
        {
            "token": "xoxb-x",
            "channel": "#builds",
            "routes": [
                {
                    "branches": ["main"],
                    "channel": "#prod",
                    "notify_start": True,
                    "title": "{app}: {branch} #{job_id}",
                    "on": ["FAILED"],
                },
            ],
        }
    )
    assert settings.slack is not None
    return Router.build(settings.alerts, "#builds", settings.slack.routes, living=living)


def test_a_living_route_hears_every_step_and_others_hear_no_progress() -> None:
    r = living_router()
    main = r.route(make_alert(branch="main", kind="progress", status="RUNNING"))
    assert main.living and main.title == "{app}: {branch} #{job_id}"
    for alert in (
        make_alert(branch="main", kind="progress", status="RUNNING"),
        make_alert(branch="main", status=CANCELLED),  # not in its `on`: still ends the story
        make_recovery(branch="main"),
    ):
        assert r.wants(alert, main)
    other = make_alert(branch="feature/x", kind="progress", status="RUNNING")
    assert not r.wants(other, r.route(other))


def test_without_an_updatable_notifier_notify_start_is_ignored() -> None:
    r = living_router(living=False)
    destination = r.route(make_alert(branch="main"))
    assert not destination.living
    progress = make_alert(branch="main", kind="progress", status="RUNNING")
    assert not r.wants(progress, destination)
