"""systemd's notify protocol over a real unix datagram socket, with a real `amplify-monitor run`:
STATUS and READY=1, watchdog pings that stop while the scheduler is stalled and come back after,
STOPPING=1 on SIGTERM."""

from __future__ import annotations

import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import anyio
import pytest

from monitor.model import SUCCEED
from monitor.simulator import Faults, Fleet, Simulator
from tests.e2e.daemon import Daemon, daemon_config, free_port


class Listener:
    """The service manager's end: every datagram, with the time it arrived."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.setblocking(False)
        self.got: list[tuple[float, dict[str, str]]] = []

    def drain(self) -> None:
        while True:
            try:
                data = self.sock.recv(4096)
            except BlockingIOError:
                return
            fields = dict(line.split("=", 1) for line in data.decode().splitlines() if line)
            self.got.append((time.monotonic(), fields))

    async def keep_reading(self) -> None:
        while True:
            self.drain()
            await anyio.sleep(0.02)

    def times(self, key: str) -> list[float]:
        self.drain()
        return [at for at, fields in self.got if key in fields]

    def values(self, key: str) -> list[str]:
        self.drain()
        return [fields[key] for _, fields in self.got if key in fields]


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[Listener]:
    path = Path("/tmp") / f"amn-{tmp_path.name[-20:]}.sock"  # unix socket paths are short
    path.unlink(missing_ok=True)
    listening = Listener(path)
    try:
        yield listening
    finally:
        listening.sock.close()
        path.unlink(missing_ok=True)


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    fleet = Fleet(durations={"PENDING": 0.2, "PROVISIONING": 0.2, "RUNNING": 0.5})
    for name in ("shop", "blog"):
        app = fleet.add_app(name)
        fleet.add_branch(app, "main")
        fleet.start_job(app, "main", outcome=SUCCEED, at=time.time() - 600)
    async with Simulator(fleet, Faults()) as simulator:
        yield simulator


async def until(check: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        await anyio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


async def test_ready_status_watchdog_that_stalls_with_the_scheduler_and_stopping(
    sim: Simulator, listener: Listener, tmp_path: Path
) -> None:
    port = free_port()
    config = daemon_config(tmp_path / "c.toml", sim.url, port)
    config.write_text(config.read_text().replace("[poll]\n", "[poll]\nmax_concurrency = 1\n"))
    env = {
        "NOTIFY_SOCKET": listener.sock.getsockname(),
        "WATCHDOG_USEC": "1000000",  # a ping every 0.5 s
        "AWS_MAX_ATTEMPTS": "1",
    }
    daemon = Daemon(config, tmp_path, port, env=env)
    async with anyio.create_task_group() as tg:
        # Read all the time: a unix datagram queue holds few messages, and a full one would
        # drop pings and fake a quiet watchdog.
        tg.start_soon(listener.keep_reading)
        try:
            await _scenario(sim, listener, daemon)
        finally:
            daemon.kill()
            tg.cancel_scope.cancel()


async def _scenario(sim: Simulator, listener: Listener, daemon: Daemon) -> None:
    await until(lambda: listener.values("READY") == ["1"], "READY=1")
    assert any(v.startswith("watching 2 branches") for v in listener.values("STATUS"))
    await until(lambda: len(listener.times("WATCHDOG")) >= 3, "watchdog pings")

    stalled = time.monotonic()
    sim.faults.latency(6.0)  # the one worker is stuck in each call for 6 s
    await anyio.sleep(5.5)
    sim.faults.clear()
    quiet = [t for t in listener.times("WATCHDOG") if stalled + 2.5 < t < stalled + 5.5]
    assert quiet == [], "pings went on while the scheduler was stuck"
    await until(
        lambda: any(t > stalled + 6.0 for t in listener.times("WATCHDOG")),
        "pings again once the scheduler moves",
    )
    assert daemon.stop() == 0
    await anyio.sleep(0.2)
    assert listener.values("STOPPING") == ["1"]
