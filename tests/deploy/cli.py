"""Run `python -m monitor deploy|wait` as a real subprocess, the way a CI job does.

Output goes to files (no pipe can fill up and stall the child); the child is reaped with
`os.wait4`, which hands back that one process's resource usage, peak RSS included.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import anyio

from monitor.simulator import Simulator

WAIT_INTERVAL = "0.05"
APP = "dshop"
# Job timelines in seconds: FAST ends within a test, SLOW outlives one.
FAST = {"PENDING": 0.2, "PROVISIONING": 0.2, "RUNNING": 0.9}
SLOW = {"PENDING": 0.1, "PROVISIONING": 0.1, "RUNNING": 120.0}


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str
    max_rss_kib: int

    def lines(self) -> list[str]:
        return self.out.splitlines()

    def __str__(self) -> str:
        return f"exit {self.code}\n--- stdout\n{self.out}--- stderr\n{self.err}"


def cli_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AWS_", "AMPLIFY_MONITOR_")) and k != "COLUMNS"
    }
    env.update(
        AWS_ACCESS_KEY_ID="test",
        AWS_SECRET_ACCESS_KEY="test-secret-never-printed",
        AWS_EC2_METADATA_DISABLED="true",
        AMPLIFY_MONITOR_WAIT_INTERVAL=WAIT_INTERVAL,
    )
    env.update(extra)
    return env


def conn(sim: Simulator) -> list[str]:
    """The flags that point a command at the simulator's app and branch."""
    return ["--app", APP, "--branch", "main", "--region", "us-east-1", "--endpoint-url", sim.url]


class Cli:
    def __init__(self, workdir: Path, *args: str, env: dict[str, str] | None = None) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        n = len(list(workdir.glob("cli-*.out")))
        self._out_path = workdir / f"cli-{n}.out"
        self._err_path = workdir / f"cli-{n}.err"
        with self._out_path.open("wb") as out, self._err_path.open("wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "monitor", *args],
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
                env=env if env is not None else cli_env(),
            )

    def out(self) -> str:
        return self._out_path.read_text()

    def err(self) -> str:
        return self._err_path.read_text()

    def send(self, sig: int) -> None:
        os.kill(self.proc.pid, sig)

    async def wait_for_output(self, text: str, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.out():
            if self.proc.poll() is not None:
                raise AssertionError(f"exited before printing {text!r}:\n{self.out()}{self.err()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no {text!r} after {timeout}s:\n{self.out()}{self.err()}")
            await anyio.sleep(0.02)

    async def result(self, timeout: float = 60.0) -> Result:
        """Reap the child without blocking the loop (the simulator serves from this loop)."""
        deadline = time.monotonic() + timeout
        while True:
            # WNOHANG: never blocks, so the simulator in this loop keeps serving meanwhile.
            pid, status, usage = os.wait4(self.proc.pid, os.WNOHANG)  # noqa: ASYNC222
            if pid:
                break
            if time.monotonic() > deadline:
                os.kill(self.proc.pid, signal.SIGKILL)
                os.wait4(self.proc.pid, 0)  # noqa: ASYNC222 -- just killed: returns at once
                raise AssertionError(f"still running after {timeout}s:\n{self.out()}{self.err()}")
            await anyio.sleep(0.02)
        code = os.waitstatus_to_exitcode(status)
        self.proc.returncode = code  # reaped here; keep Popen from trying again
        # ru_maxrss is in KiB on Linux (bytes on macOS; these tests run on Linux CI).
        return Result(code, self.out(), self.err(), int(usage.ru_maxrss))


async def run_cli(workdir: Path, *args: str, timeout: float = 60.0, **env: str) -> Result:
    return await Cli(workdir, *args, env=cli_env(**env)).result(timeout)
