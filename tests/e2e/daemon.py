"""Run `amplify-monitor` as a real subprocess and talk to it like a user would."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import anyio


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_config(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def daemon_config(path: Path, endpoint_url: str, metrics_port: int, extra: str = "") -> Path:
    """A config for a fast-polling daemon against a simulator; `extra` adds TOML sections."""
    return write_config(
        path,
        f"""
[aws]
region = "us-east-1"
endpoint_url = "{endpoint_url}"

[poll]
interval_seconds = 0.5
active_interval_seconds = 0.2
discovery_interval_seconds = 5

[metrics]
listen = "127.0.0.1:{metrics_port}"

[state]
path = "{path.parent / "state.db"}"

[log]
format = "json"
level = "info"
{extra}""",
    )


def cli_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test", PYTHONUNBUFFERED="1", **extra
    )
    return env


def run_cli(*args: str, timeout: float = 60, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "monitor", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=cli_env(**env),
        check=False,
    )


class Daemon:
    """`amplify-monitor run` in the background; stdout and stderr collected into files."""

    def __init__(
        self, config: Path, workdir: Path, metrics_port: int, env: dict[str, str] | None = None
    ) -> None:
        self.metrics_url = f"http://127.0.0.1:{metrics_port}"
        self.stdout_path = workdir / "daemon.out"
        self.stderr_path = workdir / "daemon.err"
        self._out = self.stdout_path.open("w")
        self._err = self.stderr_path.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "monitor", "run", "--config", str(config)],
            stdout=self._out,
            stderr=self._err,
            env=cli_env(**(env or {})),
        )

    def stdout(self) -> str:
        return self.stdout_path.read_text()

    def stderr(self) -> str:
        return self.stderr_path.read_text()

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(self.metrics_url + path, timeout=5) as resp:
                return int(resp.status), resp.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()
        except OSError:
            return 0, ""

    async def wait_for(self, what: Any, timeout: float = 30.0, step: float = 0.2) -> Any:
        """Poll `what()` (run in a thread: it may block on HTTP) until it is truthy."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"daemon exited {self.proc.returncode}:\n{self.stderr()}")
            value = await anyio.to_thread.run_sync(what)
            if value:
                return value
            await anyio.sleep(step)
        raise AssertionError(f"timed out waiting; stderr:\n{self.stderr()[-4000:]}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        finally:
            self._out.close()
            self._err.close()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._out.close()
        self._err.close()
