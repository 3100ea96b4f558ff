"""Measure alert latency: a lone failure, and a storm of 50 failures on one channel.

Run: /tmp/venv/bin/python benchmarks/alert_latency.py [--window 30] [--slack-delay 0.15]
Latency is from the poller's save (state + alert, one SQLite transaction) to the moment the
local Slack stand-in receives the request carrying the alert, through the real dispatcher and
slack_sdk on loopback. --slack-delay makes every Slack answer take that long (real Slack
answers chat.postMessage in roughly 0.1-0.3 s), to see pacing and sequencing under load.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from monitor import log
from tests.notify.latency import measure


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lone", type=int, default=20, help="lone-failure samples")
    parser.add_argument("--storm", type=int, default=50, help="alerts in the storm")
    parser.add_argument("--threshold", type=int, default=5, help="[alerts] digest_threshold")
    parser.add_argument("--window", type=float, default=30.0, help="[alerts] digest_window_seconds")
    parser.add_argument("--slack-delay", type=float, default=0.0, help="seconds per Slack answer")
    args = parser.parse_args()
    log.setup("console", "warning")
    figures = anyio.run(
        lambda: measure(
            lone_samples=args.lone,
            storm=args.storm,
            threshold=args.threshold,
            window=args.window,
            slack_delay=args.slack_delay,
        )
    )
    print(
        f"threshold {args.threshold}, window {args.window:g} s, "
        f"Slack answers in {args.slack_delay * 1000:.0f} ms"
    )
    for line in figures.lines():
        print(line)


if __name__ == "__main__":
    main()
