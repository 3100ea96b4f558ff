"""Running a real dispatcher against a real store and the local Slack, the way the service does:
save (state + alerts) -> poke -> the dispatcher's own task delivers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio

from monitor import config
from monitor.model import Alert, BranchState
from monitor.notify import Dispatcher, build_dispatcher
from monitor.observe import Observer
from monitor.store.base import Store

from .helpers import slack_settings
from .slack_server import TOKEN, FakeSlack


def bot_settings(slack: FakeSlack, *, token: str = TOKEN, **extra: Any) -> config.Settings:
    """Bot-token mode against `slack`; `routes=`/`token_file=` go to [slack], the rest to
    [alerts]."""
    section: dict[str, Any] = {"channel": "#builds", "base_url": slack.base_url}
    if "token_file" in extra:
        section["token_file"] = str(extra.pop("token_file"))
    else:
        section["token"] = token
    if "routes" in extra:
        section["routes"] = extra.pop("routes")
    return slack_settings(section, **extra)


def webhook_settings(slack: FakeSlack, **extra: Any) -> config.Settings:
    section: dict[str, Any] = {"webhook_url": slack.webhook_url}
    if "routes" in extra:
        section["routes"] = extra.pop("routes")
    return slack_settings(section, **extra)


async def save(store: Store, *alerts: Alert) -> None:
    """What the poller does after a diff: the branch state and its alerts, in one save."""
    for alert in alerts:
        await store.save(BranchState(alert.key, alert.app_name), [alert])


@asynccontextmanager
async def running(dispatcher: Dispatcher) -> AsyncIterator[Dispatcher]:
    """The dispatcher's run() in a task group, cancelled on exit (service shutdown)."""
    async with anyio.create_task_group() as tg:
        await tg.start(dispatcher.run)
        yield dispatcher
        tg.cancel_scope.cancel()


def dispatcher_for(
    settings: config.Settings,
    store: Store,
    observer: Observer,
    clock: Callable[[], float],
) -> Dispatcher:
    return build_dispatcher(settings, store, observer, clock)


async def settle(seconds: float = 0.15) -> None:
    """Let the dispatcher act on what it was told, to check that nothing more happens."""
    await anyio.sleep(seconds)


async def eventually(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait until `predicate()` holds: the dispatcher has recorded what the test waits on."""
    # Polling, not an event: the predicate reads values the code under test has no reason to
    # signal about (observer counters), and a few milliseconds of latency do not matter here.
    with anyio.fail_after(timeout):
        while not predicate():  # noqa: ASYNC110
            await anyio.sleep(0.005)
