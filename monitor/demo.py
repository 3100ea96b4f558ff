"""`amplify-monitor demo`: the daemon against the built-in Amplify simulator, on loopback.

Owns the demo's settings (short intervals, throwaway state, console alerts or Slack when
SLACK_WEBHOOK_URL is set) and the first lines that tell a newcomer where to look. With `--push`,
the simulator also plays EventBridge into an SQS stand-in (moto) and the daemon listens to it.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import tempfile
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import anyio

from monitor import config, log
from monitor.service import Service, expected_failure, until_signal
from monitor.simulator import Fleet, Simulator
from monitor.simulator.events import EventFeed, publish, sqs_stand_in

PUSH_NEEDS = "amplify-monitor demo --push: needs moto's SQS stand-in: pip install 'moto[server]'"


def demo_settings(
    endpoint_url: str, listen: str, state_dir: Path, queue: tuple[str, str] | None = None
) -> config.Settings:
    """Polling every 5 s; with `queue` (SQS endpoint, queue URL), push mode with polling every
    2 minutes as the safety net."""
    data: dict[str, Any] = {
        "aws": {"region": "us-east-1", "endpoint_url": endpoint_url},
        "poll": {
            "interval_seconds": 120 if queue else 5,
            "active_interval_seconds": 5 if queue else 2,
            "discovery_interval_seconds": 30,
        },
        "metrics": {"listen": listen},
        "state": {"path": str(state_dir / "demo.db")},
        "log": {"format": "console", "level": "info"},
    }
    if os.environ.get("SLACK_WEBHOOK_URL"):
        data["slack"] = {"webhook_url": "${SLACK_WEBHOOK_URL}"}
    if queue:
        data["events"] = {"endpoint_url": queue[0], "sqs_queue_url": queue[1]}
    return config.parse(data, "demo")


def _banner(
    endpoint_url: str, settings: config.Settings, port: int, app_id: str, site: Path
) -> str:
    metrics = f"http://{settings.metrics.host}:{port}"
    alerts = (
        "posted to SLACK_WEBHOOK_URL"
        if settings.slack
        else "printed below as they happen (set SLACK_WEBHOOK_URL to post them to Slack)"
    )
    push = []
    if settings.events:
        push = [
            f"  push mode          events through an SQS stand-in: {settings.events.sqs_queue_url}",
            f"                     polling every {settings.poll.interval_seconds:g} s only as the safety net",
        ]
    return "\n".join(
        [
            "amplify-monitor demo: watching a simulated Amplify account (5 apps, jobs every few",
            "seconds, some of them fail or get cancelled).",
            f"  Amplify simulator  {endpoint_url}",
            *push,
            f"  metrics            {metrics}/metrics   health {metrics}/healthz   ready {metrics}/readyz",
            f"  alerts             {alerts}",
            "  try a deploy       AWS_ACCESS_KEY_ID=demo AWS_SECRET_ACCESS_KEY=demo amplify-monitor deploy \\",
            f"                       --endpoint-url {endpoint_url} --region us-east-1 \\",
            f"                       --app {app_id} --branch develop --dir {site} --wait",
            "  stop               Ctrl-C",
            "",
        ]
    )


def run(duration: float | None, listen: str, push: bool = False) -> int:
    if push and importlib.util.find_spec("moto") is None:
        print(PUSH_NEEDS, file=sys.stderr)
        return 2
    # The simulator ignores signatures, but botocore refuses to sign without credentials.
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "demo")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "demo")
    log.setup("console", "info")

    async def main() -> None:
        fleet = Fleet.demo()
        first = fleet.apps()[0]
        # A newcomer should see an alert within seconds, not wait for the traffic's dice.
        fleet.start_job(
            first.app_id,
            "main",
            outcome="FAILED",
            fail_step="BUILD",
            reason="npm ERR! Missing script: build",
            commit_message="Bump webpack to 6 <!channel> (see #412)",
            durations={"PENDING": 2, "PROVISIONING": 2, "RUNNING": 4},
        )
        with tempfile.TemporaryDirectory(prefix="amplify-monitor-demo-") as state_dir:
            async with AsyncExitStack() as stack:
                simulator = await stack.enter_async_context(Simulator(fleet))
                queue = await stack.enter_async_context(sqs_stand_in()) if push else None
                url = simulator.url
                settings = demo_settings(url, listen, Path(state_dir), queue)
                site = Path(state_dir) / "site"  # a tiny build to try `deploy` with
                site.mkdir()
                (site / "index.html").write_text("<h1>Hello from amplify-monitor</h1>\n")
                async with anyio.create_task_group() as tg:
                    tg.start_soon(until_signal, tg.cancel_scope)
                    if duration is not None:
                        tg.cancel_scope.deadline = anyio.current_time() + duration
                    if queue is not None:
                        feed = EventFeed(fleet)
                        tg.start_soon(lambda: publish(feed, queue[1], endpoint_url=queue[0]))
                    running = await tg.start(Service(settings).run)
                    print(
                        _banner(url, settings, running.metrics_port, first.app_id, site), flush=True
                    )

    try:
        anyio.run(main)
    except Exception as exc:
        fatal = expected_failure(exc)
        if fatal is None:
            raise
        print(f"amplify-monitor demo: {fatal} (try --listen 127.0.0.1:0)", file=sys.stderr)
        return 1
    return 0
