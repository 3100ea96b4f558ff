"""The console notifier: one readable line per alert on stdout, and a structlog event.

What runs without `[slack]` (`amplify-monitor demo`, a first try): the same outbox, routing and
records as Slack, delivered to a terminal, so the path under test is the path in production.
"""

from __future__ import annotations

import sys
from typing import TextIO

from monitor import log
from monitor.notify.base import Delivered, Destination, Notification, Pacing, SendResult, Single
from monitor.notify.render import console_line

_log = log.get(__name__)


class ConsoleNotifier:
    name = "console"
    threads = False
    pacing: Pacing | None = None
    flood_control = False

    def __init__(self, stream: TextIO | None = None) -> None:
        # Resolved at send time by default, so a test's captured stdout is honoured.
        self._stream = stream

    def lane(self, destination: Destination) -> str:
        return "console"

    async def send(self, notification: Notification) -> SendResult:
        alerts = (notification.alert,) if isinstance(notification, Single) else notification.alerts
        stream = self._stream or sys.stdout
        for alert in alerts:
            line = console_line(alert)
            print(line, file=stream, flush=True)
            _log.info(
                "alert_printed",
                app_id=alert.key.app_id,
                branch=alert.key.branch,
                job_id=alert.job.job_id,
                status=alert.status,
                kind=alert.kind,
            )
        return Delivered(receipt=None)
