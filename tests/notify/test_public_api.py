"""The names the service relies on, and nothing more, are what monitor.notify exports."""

from __future__ import annotations

import inspect

import monitor.notify
from monitor.notify import Dispatcher, build_dispatcher


def test_exported_names() -> None:
    assert sorted(monitor.notify.__all__) == ["Dispatcher", "build_dispatcher"]


def test_dispatcher_surface_matches_what_the_service_calls() -> None:
    public = {name for name in vars(Dispatcher) if not name.startswith("_")}
    assert {"poke", "run", "drain"} <= public
    assert inspect.iscoroutinefunction(Dispatcher.run)
    assert inspect.iscoroutinefunction(Dispatcher.drain)
    assert not inspect.iscoroutinefunction(Dispatcher.poke)
    assert list(inspect.signature(build_dispatcher).parameters) == [
        "settings",
        "store",
        "observer",
        "clock",
    ]
