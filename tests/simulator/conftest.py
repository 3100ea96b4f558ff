"""Fixtures: a manual clock, a small fleet, the simulator on loopback and a real aioboto3 client."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING

import aioboto3
import pytest
from aiobotocore.config import AioConfig

from monitor.simulator import Faults, Fleet, ManualClock, Simulator

if TYPE_CHECKING:
    from types_aiobotocore_amplify.client import AmplifyClient

ClientFactory = Callable[..., AbstractAsyncContextManager["AmplifyClient"]]

# One session for the whole run: it caches botocore's parsed models between clients.
_SESSION = aioboto3.Session()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def fleet(clock: ManualClock) -> Fleet:
    return Fleet(clock)


@pytest.fixture
def faults() -> Faults:
    return Faults(seed=1)


@pytest.fixture
async def sim(fleet: Fleet, faults: Faults) -> AsyncIterator[Simulator]:
    async with Simulator(fleet, faults) as simulator:
        yield simulator


@pytest.fixture
def make_client(sim: Simulator) -> ClientFactory:
    """A real aioboto3 client on the simulator; retries off unless asked, so each call is one
    request and a fault surfaces at once."""

    def make(retries: int = 1) -> AbstractAsyncContextManager[AmplifyClient]:
        return _SESSION.client(
            "amplify",
            endpoint_url=sim.url,
            region_name="us-east-1",
            aws_access_key_id="x",
            aws_secret_access_key="x",
            config=AioConfig(retries={"total_max_attempts": retries, "mode": "standard"}),
        )

    return make


@pytest.fixture
async def client(make_client: ClientFactory) -> AsyncIterator[AmplifyClient]:
    async with make_client() as amplify:
        yield amplify
