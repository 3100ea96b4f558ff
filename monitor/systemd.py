"""systemd's notify protocol: READY=1 once ready, STATUS= lines, WATCHDOG=1 pings, STOPPING=1.

A few lines over the datagram socket named by NOTIFY_SOCKET (sd_notify(3)); without it, nothing
is sent and nothing changes. The watchdog is pinged only while the scheduler makes progress, so
a hung loop stops the pings and systemd restarts the service (WatchdogSec= in the unit).
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable

import anyio

from monitor import log
from monitor.scheduler import Scheduler

_log = log.get(__name__)

STATUS_EVERY = 5.0  # seconds between STATUS= lines while the first poll runs
EXTEND_SECONDS = 60  # each STATUS line moves systemd's start timeout this far ahead


class Notifier:
    """Sends notify messages; every failure is logged once and otherwise ignored."""

    def __init__(self, address: str | None) -> None:
        self.address = address
        self._socket: socket.socket | None = None
        self._failed = False
        if address:
            # "@name" is an abstract socket (Linux): its name starts with a NUL byte.
            self._target = "\0" + address[1:] if address.startswith("@") else address
            self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self._socket.setblocking(False)

    @classmethod
    def from_environment(cls) -> Notifier:
        return cls(os.environ.get("NOTIFY_SOCKET"))

    @property
    def enabled(self) -> bool:
        return self._socket is not None

    def send(self, **fields: str) -> None:
        """e.g. send(READY="1", STATUS="watching 10 branches")."""
        if self._socket is None:
            return
        message = "\n".join(f"{k}={v}" for k, v in fields.items()).encode()
        try:
            self._socket.sendto(message, self._target)
        except OSError as exc:
            if not self._failed:
                self._failed = True
                _log.warning("systemd_notify_failed", socket=self.address, error=str(exc))

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None


def watchdog_interval(environ: dict[str, str] | None = None) -> float | None:
    """Half of WATCHDOG_USEC (sd_watchdog_enabled(3)), if the watchdog is on for this process."""
    env = os.environ if environ is None else environ
    usec = env.get("WATCHDOG_USEC")
    pid = env.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return max(0.05, int(usec) / 2 / 1_000_000)
    except ValueError:
        return None


async def supervise(
    notifier: Notifier,
    scheduler: Scheduler,
    *,
    interval: float | None,
    wall: Callable[[], float] = time.time,
) -> None:
    """Until cancelled: STATUS while the first poll runs, READY=1 when it is done, then
    WATCHDOG=1 every `interval` seconds while the scheduler is making progress."""
    ready = False
    last_status = -STATUS_EVERY
    last_progress = None
    tick = min(interval or 1.0, 1.0)
    last_ping = -(interval or 0.0)
    while True:
        now = time.monotonic()
        if not ready:
            ready = scheduler.readiness.check(wall())[0]
            if ready:
                p = scheduler.work.watched.progress()
                notifier.send(READY="1", STATUS=f"watching {p.branches} branches of {p.apps} apps")
            elif now - last_status >= STATUS_EVERY:
                p = scheduler.work.watched.progress()
                status = (
                    f"first poll: {p.branches_baselined}/{p.branches} branches read, "
                    f"{p.apps_listed}/{p.apps} apps listed"
                )
                # A large fleet's first poll takes minutes: while it moves (more apps listed,
                # more branches read), push systemd's start timeout on. One that stops moving,
                # however busy it looks (retrying a denied ListApps), still times out.
                if p != last_progress:
                    notifier.send(STATUS=status, EXTEND_TIMEOUT_USEC=str(EXTEND_SECONDS * 10**6))
                else:
                    notifier.send(STATUS=status)
                last_progress = p
                last_status = now
        due = interval is not None and now - last_ping >= interval
        if due and scheduler.making_progress(within=2 * (interval or 0.0)):
            notifier.send(WATCHDOG="1")
            last_ping = now
        await anyio.sleep(tick)
