"""Turns Settings into a ready Dispatcher: which notifier (`[slack]` bot token, webhook, or the
console when there is no `[slack]`), which routes, which flood-control numbers."""

from __future__ import annotations

import time
from collections.abc import Callable

from monitor import log
from monitor.config import Settings
from monitor.notify.base import Notifier
from monitor.notify.console import ConsoleNotifier
from monitor.notify.outbox import Dispatcher
from monitor.notify.route import Router
from monitor.notify.slack import SlackBotNotifier
from monitor.notify.webhook import SlackWebhookNotifier
from monitor.observe import Observer
from monitor.store.base import Store

_log = log.get(__name__)


def build_router_and_notifier(settings: Settings, observer: Observer) -> tuple[Router, Notifier]:
    slack = settings.slack
    notifier: Notifier
    if slack is None:
        return Router.build(settings.alerts, "console"), ConsoleNotifier()
    if slack.webhook_url is not None:
        if slack.routes:
            # A webhook posts where it was created; routes still choose mention and statuses.
            _log.info("slack_webhook_routes", note="route channels are ignored with webhook_url")
        if any(route.notify_start for route in slack.routes):
            _log.warning(
                "slack_webhook_cannot_update",
                note="notify_start needs a bot token (a webhook cannot update a message); "
                "with webhook_url every alert is a message of its own",
            )
        notifier = SlackWebhookNotifier(slack.webhook_url.get_secret_value(), observer)
        return Router.build(settings.alerts, "webhook", slack.routes), notifier
    if slack.channel is None:  # config validation already requires it with a token
        raise ValueError("[slack] channel is required with token")
    notifier = SlackBotNotifier(slack.bot_token, slack.base_url, observer)
    return Router.build(settings.alerts, slack.channel, slack.routes, living=True), notifier


def build_dispatcher(
    settings: Settings,
    store: Store,
    observer: Observer,
    clock: Callable[[], float] = time.time,
) -> Dispatcher:
    """The dispatcher the service runs: start it with ``await tg.start(dispatcher.run)``, call
    ``poke()`` after each save that enqueued alerts, ``drain(timeout)`` at shutdown."""
    router, notifier = build_router_and_notifier(settings, observer)
    return Dispatcher(
        store,
        notifier,
        router,
        observer,
        clock=clock,
        digest_threshold=settings.alerts.digest_threshold,
        digest_window=settings.alerts.digest_window_seconds,
    )
