"""Alert latency, measured: from the poller's save of an alert to the moment the local Slack
receives the request that carries it, through the real store, dispatcher and slack_sdk.

Used by benchmarks/alert_latency.py (figures for people) and by a slow test (figures checked).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from monitor.model import Alert
from monitor.notify import build_dispatcher
from monitor.observe import NullObserver
from monitor.store.sqlite import SqliteStore

from .harness import bot_settings, running, save
from .helpers import make_alert
from .slack_server import FakeSlack, Reply


@dataclass(frozen=True)
class Figures:
    lone: list[float]  # seconds, one per lone failure
    storm_single: list[float]  # the alerts sent on their own during the storm
    storm_digested: list[float]  # the alerts that left in a digest
    storm_messages: int
    storm_seconds: float  # from the first save to the last message

    def lines(self) -> list[str]:
        def ms(values: list[float]) -> str:
            if not values:
                return "n/a"
            q = (
                statistics.quantiles(values, n=20, method="inclusive")
                if len(values) > 1
                else [values[0]] * 19
            )
            return (
                f"min {min(values) * 1000:.1f} ms, p50 {statistics.median(values) * 1000:.1f} ms, "
                f"p95 {q[18] * 1000:.1f} ms, max {max(values) * 1000:.1f} ms"
            )

        return [
            f"lone failure ({len(self.lone)} samples): {ms(self.lone)}",
            f"storm of {len(self.storm_single) + len(self.storm_digested)}: "
            f"{self.storm_messages} Slack messages in {self.storm_seconds:.2f} s",
            f"  sent on their own ({len(self.storm_single)}): {ms(self.storm_single)}",
            f"  in the digest ({len(self.storm_digested)}): {ms(self.storm_digested)}",
        ]


def _job(alert: Alert) -> str:
    return f"|#{alert.job.job_id}>"


async def measure(
    *,
    lone_samples: int = 20,
    storm: int = 50,
    threshold: int = 5,
    window: float = 30.0,
    slack_delay: float = 0.0,
) -> Figures:
    """Run both scenarios on a fresh SQLite file and local Slack; return the latencies.

    :param slack_delay: seconds the local Slack takes to answer each call (real Slack: ~0.1-0.3).
    """
    async with FakeSlack() as slack:
        if slack_delay:
            slack.outage = Reply(json={"ok": True}, delay=slack_delay)
        with tempfile.TemporaryDirectory() as tmp:
            store = await SqliteStore.open(Path(tmp) / "latency.db")
            try:
                settings = bot_settings(
                    slack, digest_threshold=threshold, digest_window_seconds=window
                )
                lone: list[float] = []
                for i in range(lone_samples):
                    # A fresh dispatcher each time: a lone failure, not the nth of a window.
                    dispatcher = build_dispatcher(settings, store, NullObserver())
                    async with running(dispatcher):
                        alert = make_alert(str(1000 + i), branch=f"lone-{i}")
                        before = len(slack.delivered)
                        started = time.monotonic()
                        await save(store, alert)
                        dispatcher.poke()
                        [*_, message] = await slack.wait_for(before + 1)
                        lone.append(message.at - started)

                dispatcher = build_dispatcher(settings, store, NullObserver())
                alerts = [make_alert(str(5000 + i), branch=f"storm-{i}") for i in range(storm)]
                overflow = max(0, storm - threshold)
                expected = min(storm, threshold) + (-(-overflow // 50))
                async with running(dispatcher):
                    before = len(slack.delivered)
                    saved_at: dict[str, float] = {}
                    first = time.monotonic()
                    for alert in alerts:  # the poller saves and pokes branch by branch
                        saved_at[_job(alert)] = time.monotonic()
                        await save(store, alert)
                        dispatcher.poke()
                    messages = (await slack.wait_for(before + expected, timeout=window + 30.0))[
                        before:
                    ]
                single: list[float] = []
                digested: list[float] = []
                for message in messages:
                    body = message.everything()
                    carried = [job for job in saved_at if job in body]
                    target = digested if len(carried) > 1 else single
                    target.extend(message.at - saved_at[job] for job in carried)
                return Figures(
                    lone=lone,
                    storm_single=single,
                    storm_digested=digested,
                    storm_messages=len(messages),
                    storm_seconds=messages[-1].at - first,
                )
            finally:
                await store.close()
