"""Routing: which channel an alert goes to, who is mentioned, and whether it is wanted there.

Pure: built once from the config, then a function from an alert to a `Destination`. The first
`[[slack.routes]]` entry whose app and branch globs match wins; otherwise the default channel.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase

from monitor.config import AlertSettings, SlackRoute
from monitor.model import FAILED, SUCCEED, Alert
from monitor.notify.base import Destination


def _matches(pattern: str | None, value: str) -> bool:
    # Case-sensitive on purpose: Amplify app ids and git branch names are case-sensitive.
    return pattern is None or fnmatchcase(value, pattern)


def route_matches(route: SlackRoute, alert: Alert) -> bool:
    return (
        _matches(route.app_id, alert.key.app_id)
        and _matches(route.app_name, alert.app_name)
        and any(fnmatchcase(alert.key.branch, glob) for glob in route.branches)
    )


@dataclass(frozen=True)
class Router:
    """Routes alerts to destinations.

    :param default: where an alert that no route matches goes.
    :param routes: tried in order; the first match wins.
    :param recovery: ``[alerts] recovery``; False suppresses recovery alerts everywhere.
    """

    default: Destination
    routes: tuple[tuple[SlackRoute, Destination], ...] = ()
    recovery: bool = True

    @classmethod
    def build(
        cls,
        alerts: AlertSettings,
        default_channel: str,
        routes: Sequence[SlackRoute] = (),
        *,
        living: bool = False,
    ) -> Router:
        """:param living: whether the notifier can update a message (bot mode): without it a
        route's ``notify_start`` is ignored and every alert is a message of its own."""
        base_on = frozenset(alerts.on)
        default = Destination(channel=default_channel, statuses=base_on)
        resolved = tuple(
            (
                route,
                Destination(
                    channel=route.channel,
                    mention=route.mention,
                    statuses=frozenset(route.on) if route.on is not None else base_on,
                    living=living and route.notify_start,
                    title=route.title,
                ),
            )
            for route in routes
        )
        return cls(default=default, routes=resolved, recovery=alerts.recovery)

    def route(self, alert: Alert) -> Destination:
        for route, destination in self.routes:
            if route_matches(route, alert):
                return destination
        return self.default

    def wants(self, alert: Alert, destination: Destination) -> bool:
        """Whether `destination` should hear about `alert` at all.

        A recovery answers a FAILED alert, so it is wanted where FAILED alerts are: a channel
        that never heard of the failure has nothing to hear "recovered" about. It is also the
        recovering job's only alert (the diff raises one per job and status), so a channel
        that asked for every SUCCEED gets it too.

        A living destination hears every step of a job's story: its one message must end in
        what happened even when that status alone would not be worth a message.
        """
        if destination.living:
            return True
        if alert.kind == "progress":
            return False
        if alert.kind == "recovery":
            return (self.recovery and FAILED in destination.statuses) or (
                SUCCEED in destination.statuses
            )
        return alert.status in destination.statuses
