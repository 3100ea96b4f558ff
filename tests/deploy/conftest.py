"""Fixtures for deploy/wait: a fast-moving fleet with one app, its simulator, a build dir."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from monitor.simulator import Fleet, Simulator
from tests.deploy.cli import APP, FAST


@pytest.fixture
def fleet() -> Fleet:
    fleet = Fleet(durations=FAST)
    fleet.add_app("shop", app_id=APP)
    fleet.add_branch(APP, "main")
    return fleet


@pytest.fixture
async def sim(fleet: Fleet) -> AsyncIterator[Simulator]:
    async with Simulator(fleet) as simulator:
        yield simulator


@pytest.fixture
def dist(tmp_path: Path) -> Path:
    root = tmp_path / "dist"
    (root / "assets").mkdir(parents=True)
    (root / "index.html").write_text("<h1>shop</h1>")
    (root / "assets" / "app.js").write_text("console.log('hi')")
    return root
