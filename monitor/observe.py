"""The narrow interface through which I/O edges report what they did (for metrics).

Edges depend on this protocol, not on prometheus_client; `metrics.Metrics` implements it, and
`NullObserver` serves the CLI commands that export nothing.
"""

from __future__ import annotations

from typing import Protocol

from monitor.model import Priority


class Observer(Protocol):
    def api_request(self, operation: str, outcome: str, seconds: float) -> None:
        """One Amplify API call: operation e.g. 'ListJobs'; outcome ok|throttled|not_found|
        unauthorized|bad_request|error."""

    def budget_wait(self, priority: Priority, seconds: float) -> None:
        """How long one Amplify call waited for the API budget (the pacer), by priority."""

    def anomaly(self, reason: str) -> None:
        """An oddity in an API answer that was worked around (e.g. paging that never ends)."""

    def alert(self, status: str, outcome: str) -> None:
        """One alert's fate: outcome sent|failed|retried|suppressed|digested."""

    def outbox_pending(self, count: int) -> None:
        """How many alerts wait in the outbox right now."""

    def slack_request(self, seconds: float) -> None:
        """Duration of one HTTP call to Slack, whatever its result."""

    def resend_check(self, outcome: str) -> None:
        """A resend that looked in Slack's history first: outcome found (not posted again)|
        absent (posted)|unavailable (no scope or no channel id: posted)|failed (retried)."""


class NullObserver:
    def api_request(self, operation: str, outcome: str, seconds: float) -> None:
        pass

    def budget_wait(self, priority: Priority, seconds: float) -> None:
        pass

    def anomaly(self, reason: str) -> None:
        pass

    def alert(self, status: str, outcome: str) -> None:
        pass

    def outbox_pending(self, count: int) -> None:
        pass

    def slack_request(self, seconds: float) -> None:
        pass

    def resend_check(self, outcome: str) -> None:
        pass
