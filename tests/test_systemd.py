"""The notify messages `supervise` sends through a real unix datagram socket, on a fake
scheduler clock: first-poll STATUS lines that extend the start timeout only while the first poll
moves, READY=1 once, and no message at all without NOTIFY_SOCKET."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from monitor import systemd
from monitor.systemd import Notifier, supervise, watchdog_interval
from tests.stepper import FakeClock
from tests.test_scheduler import FakeWork, rules_scheduler


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    path = f"/tmp/amn-unit-{tmp_path.name[-16:]}.sock"
    Path(path).unlink(missing_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.setblocking(False)
    try:
        yield sock, path
    finally:
        sock.close()
        Path(path).unlink(missing_ok=True)


def _messages(sock: socket.socket) -> list[dict[str, str]]:
    out: list[dict[str, str]] = []
    while True:
        try:
            data = sock.recv(4096).decode()
        except BlockingIOError:
            return out
        out.append(dict(line.split("=", 1) for line in data.splitlines()))


async def test_first_poll_status_extends_the_start_timeout_while_it_moves_then_ready_once(
    receiver: tuple[socket.socket, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    sock, path = receiver
    monkeypatch.setattr(systemd, "STATUS_EVERY", 0.0)
    work = FakeWork(["a1", "a2"])
    clock = FakeClock()
    scheduler = rules_scheduler(work, clock)  # nothing polled yet: not ready
    notifier = Notifier(path)
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: supervise(notifier, scheduler, interval=None))
        await anyio.sleep(0.05)
        moving = _messages(sock)
        clock.now += 600.0  # discovery overdue and nothing finishing: the first poll is stuck
        await anyio.sleep(1.1)
        stuck = _messages(sock)
        await scheduler.run_due()  # the whole first poll
        await anyio.sleep(1.1)
        done = _messages(sock)
        await anyio.sleep(1.1)
        after = _messages(sock)
        tg.cancel_scope.cancel()
    assert moving and all("EXTEND_TIMEOUT_USEC" in m for m in moving)
    assert moving[0]["STATUS"].startswith("first poll: ")
    assert stuck and all("EXTEND_TIMEOUT_USEC" not in m for m in stuck)
    assert [m for m in done if "READY" in m] == [
        {"READY": "1", "STATUS": "watching 0 branches of 2 apps"}
    ]
    assert after == []  # READY once; no watchdog asked for


def test_without_notify_socket_nothing_is_sent_and_the_watchdog_is_off() -> None:
    notifier = Notifier(None)
    assert not notifier.enabled
    notifier.send(READY="1")  # no socket, no error
    assert watchdog_interval({}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "60000000"}) == 30.0
    assert watchdog_interval({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": "1"}) is None
