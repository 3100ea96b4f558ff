"""Drive a daemon's real edges step by step on a fake monotonic clock.

The scheduler reads its clock once per `run_due`, so each step runs exactly what is due at the
fake time (and what that makes due at once), deterministically, through the real client.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from monitor.config import Settings
from monitor.poller import Poller
from monitor.service import Edges, Service


class FakeClock:
    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Stepper:
    def __init__(self, service: Service, edges: Edges, clock: FakeClock) -> None:
        self.service = service
        self.edges = edges
        self.clock = clock

    @property
    def poller(self) -> Poller:
        return self.edges.poller

    @property
    def now(self) -> float:
        return self.clock.now

    async def step(self, seconds: float = 0.0) -> bool:
        """Move the clock, run what is due; True if any unit succeeded."""
        self.clock.now += seconds
        return await self.edges.scheduler.run_due()

    async def first(self) -> bool:
        return await self.step()

    async def interval(self) -> bool:
        return await self.step(self.service.settings.poll.interval_seconds)


@asynccontextmanager
async def stepped(settings: Settings) -> AsyncIterator[Stepper]:
    clock = FakeClock()
    service = Service(settings, clock=clock)
    async with service.edges() as edges:
        yield Stepper(service, edges, clock)
