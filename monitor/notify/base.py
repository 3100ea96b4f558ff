"""The values and the one protocol that notification stages pass between them.

A route resolves an alert to a `Destination`; the dispatcher turns alerts into `Single` or
`Digest` notifications; a `Notifier` sends one and answers with a `SendResult` that says, as a
type, whether to record it, retry it soon, or shout for a person and retry slowly.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Protocol

from monitor.model import Alert, MessageRef


@dataclass(frozen=True)
class Destination:
    """Where an alert goes and what that place wants to hear, as routing resolved it.

    :param channel: Slack channel id or name (bot mode); informative only for a webhook, whose
        channel is fixed when the webhook is created.
    :param mention: trusted markup from the config (``<!subteam^S123>``, ``<@U123>``) put in
        front of the message so the right people are notified.
    :param statuses: the effective ``on`` for this destination: job statuses worth a message.
    :param living: the route's ``notify_start`` (bot mode only): one message per job, posted
        when it starts and updated in place as it moves.
    :param title: the route's ``title`` template for a message's first line, or None.
    """

    channel: str
    mention: str | None = None
    statuses: frozenset[str] = frozenset({"FAILED", "CANCELLED"})
    living: bool = False
    title: str | None = None


@dataclass(frozen=True)
class Single:
    """One alert, told in one message (or, for a living destination, one update of it).

    :param thread: receipt of the message to answer in its thread (a recovery's failure).
    :param message: the message already telling this alert's job's story (living mode).
    :param failed: the failure message a recovery marks as recovered, when it is known.
    :param in_doubt_since: when an earlier attempt began that may have reached the receiver
        (begun, never settled): look before posting again.
    """

    alert: Alert
    destination: Destination
    thread: str | None = None
    message: MessageRef | None = None
    failed: MessageRef | None = None
    in_doubt_since: float | None = None


@dataclass(frozen=True)
class Digest:
    """The overflow of a flood-controlled window: several alerts in one message.

    :param window_seconds: the length of the window the alerts overflowed, for the wording.
    """

    alerts: tuple[Alert, ...]
    destination: Destination
    window_seconds: float
    in_doubt_since: float | None = None

    @property
    def dedup_key(self) -> str:
        """One key for this set of alerts: a resend of the same digest is recognised."""
        digest = hashlib.sha256("\n".join(sorted(a.dedup_key for a in self.alerts)).encode())
        return f"digest/{digest.hexdigest()[:24]}"


Notification = Single | Digest


@dataclass(frozen=True)
class Delivered:
    """The receiver took it. `receipt` is its handle for threading (Slack: channel and ts).

    `message`, when set, is the message that now tells the alert's job's story: the store
    keeps it so later updates and replies find it after a restart.
    """

    receipt: str | None = None
    message: MessageRef | None = None


@dataclass(frozen=True)
class Retry:
    """A fault that passes by itself (429, 5xx, connection, timeout): try again soon.

    :param after: seconds the receiver asked us to wait (Retry-After); None means "use backoff".
    """

    error: str
    after: float | None = None
    # What was done before the fault (the living message posted): kept for the retry.
    message: MessageRef | None = None


@dataclass(frozen=True)
class Rejected:
    """The receiver refused for a reason only a person can fix (bad token, bot not in channel).

    The alert stays in the outbox and is retried slowly, so fixing the cause is enough to get
    it delivered. `hint` is the fix, phrased for the operator reading the log.
    """

    error: str
    hint: str = ""
    message: MessageRef | None = None


SendResult = Delivered | Retry | Rejected


@dataclass(frozen=True)
class Pacing:
    """A token bucket per lane: `rate` messages a second on average, bursts of `burst`."""

    rate: float = 1.0
    burst: float = 3.0


class Notifier(Protocol):
    """One receiver of notifications (Slack bot, Slack webhook, console).

    Implementations never raise for a delivery problem: they classify it into a SendResult.
    """

    @property
    def name(self) -> str:
        """Short name for logs: 'slack', 'slack-webhook', 'console'."""
        ...

    @property
    def threads(self) -> bool:
        """Whether a recovery can be a reply in the failure's thread (a quiet message)."""
        ...

    @property
    def pacing(self) -> Pacing | None:
        """How fast one lane may send; None means as fast as it likes."""
        ...

    @property
    def flood_control(self) -> bool:
        """Whether a burst of alerts should overflow into a digest (pointless on a console)."""
        ...

    def lane(self, destination: Destination) -> str:
        """The key of the queue this destination's messages share: rate limits and flood
        windows apply per lane (a Slack channel, or the one channel behind a webhook)."""
        ...

    async def send(self, notification: Notification) -> SendResult:
        """Deliver one notification and classify the outcome."""
        ...
