"""Fleet benchmark: the daemon against a plain poller, on one seeded workload over the wire.

Run: .venv/bin/python benchmarks/fleet.py [--apps 400] [--branches 5] [--minutes 5] [--json out]
(`--apps 2000` for 10,000 branches, `--quota 50` for an account limited to 50 calls a second,
`--push` for the daemon in push mode: the simulator sends its jobs' EventBridge events into an
SQS stand-in (moto's server, its own process), dropping `--drop-share` of them and sending none
for a cancel, and the daemon polls at `--push-interval` / `--push-active-interval` only.)

Each contender gets its own simulator process (`monitor.simulator` serving an idle `Fleet` with
20 ms per call, through the real aioboto3 wire protocol on loopback) and runs in its own process:
`amplify-monitor run` with a generated config, printing alerts through the console notifier, or
a plain poller built in here (ListJobs for every branch each interval, and each active interval
for branches whose latest job was unfinished, 16 calls in flight, through the same
`AmplifyClient`). Once the contender is ready (the daemon's /readyz, the poller's first round),
the simulator starts a seeded workload (by default 5 % of the branches start a job a minute,
10-40 s long, 20 % fail, 5 % are cancelled) for `--minutes`, then a settle period without new
jobs that ends early once every expected alert arrived.

Measured per contender: API calls a minute (the simulator's counters, per operation), calls the
quota throttled, detection latency (the job's end in the simulator to the alert) p50/p95/max,
missed, doubled and wrong alerts, peak RSS (VmHWM) and CPU seconds of the contender's process.
Prints a markdown table; `--json PATH` also writes the figures.

The same command is the two children (`--serve-simulator`, `--plain-poller URL`), whose code is
in benchmarks/fleet_children.py.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any, TypeVar

import aioboto3
import aiohttp
import anyio
import anyio.abc
from anyio.streams.buffered import BufferedByteReceiveStream

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fleet_children import ALERT_ON, plain_poller, serve_simulator

from monitor.model import is_unfinished

MAX_LINE = 1 << 26
SCRIPT = Path(__file__).resolve()
ROOT = SCRIPT.parent.parent
CONTENDERS = ("daemon", "plain")

T = TypeVar("T")
# (app_id, branch, job_id, status): what an alert is about.
AlertKey = tuple[str, str, str, str]
Json = dict[str, Any]


# -- shared ---------------------------------------------------------------------------------


def _seconds_range(text: str) -> tuple[float, float]:
    low, _, high = text.partition("-")
    try:
        pair = (float(low), float(high or low))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LOW-HIGH seconds, got {text!r}") from None
    if not 0 < pair[0] <= pair[1]:
        raise argparse.ArgumentTypeError("need 0 < LOW <= HIGH")
    return pair


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="benchmarks/fleet.py",
        description="The daemon against a plain poller on one seeded Amplify workload.",
    )
    add = parser.add_argument
    add("--apps", type=int, default=400)
    add("--branches", type=int, default=5, help="branches per app")
    add("--minutes", type=float, default=5.0, help="workload length")
    add(
        "--settle",
        type=float,
        default=None,
        help="minutes without new jobs (at most); default 2, or with --push the push interval"
        " plus 1 (a job whose events were all dropped is found by the safety-net poll)",
    )
    add("--interval", type=float, default=30.0, help="poll interval, seconds")
    add("--active-interval", type=float, default=5.0, help="interval for unfinished jobs")
    add("--latency-ms", type=float, default=20.0, help="simulator latency per API call")
    add("--quota", type=float, default=None, help="API quota, calls/s (429 beyond it)")
    add("--max-rps", type=float, default=None, help="daemon's max_requests_per_second")
    add("--seed", type=int, default=1)
    add("--only", choices=("daemon", "plain", "both"), default="both")
    add("--start-rate", type=float, default=0.05, help="jobs per branch per minute")
    add("--job-seconds", type=_seconds_range, default=(10.0, 40.0), help="LOW-HIGH, uniform")
    add("--fail-share", type=float, default=0.2)
    add("--cancel-share", type=float, default=0.05)
    add("--ready-timeout", type=float, default=None, help="seconds; default from fleet size")
    add("--push", action="store_true", help="the daemon in push mode (events through SQS)")
    add("--push-interval", type=float, default=600.0, help="daemon's interval with --push")
    add("--push-active-interval", type=float, default=60.0, help="its active interval")
    add("--drop-share", type=float, default=0.03, help="events dropped on purpose (--push)")
    add("--json", type=Path, default=None, help="also write the figures here")
    add("--keep", action="store_true", help="keep the work directory (logs, configs)")
    # The children (started by the benchmark itself).
    add("--serve-simulator", action="store_true", help=argparse.SUPPRESS)
    add("--plain-poller", metavar="URL", default=None, help=argparse.SUPPRESS)
    add("--sqs-queue-url", default=None, help=argparse.SUPPRESS)
    add("--sqs-endpoint", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.settle is None:
        args.settle = args.push_interval / 60 + 1 if args.push else 2.0
    return args


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("AWS_PROFILE", None)
    # The simulator takes any signature; botocore still wants something to sign with.
    env.update(
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",
        AWS_DEFAULT_REGION="us-east-1",
        PYTHONUNBUFFERED="1",
    )
    return env


# -- the benchmark -------------------------------------------------------------------------


async def _lines(stream: anyio.abc.ByteReceiveStream) -> AsyncIterator[bytes]:
    buffered = BufferedByteReceiveStream(stream)
    while True:
        try:
            yield await buffered.receive_until(b"\n", MAX_LINE)
        except (anyio.IncompleteRead, anyio.EndOfStream, anyio.ClosedResourceError):
            return


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _proc_figures(pid: int) -> tuple[float, float]:
    """(CPU seconds, peak RSS in MiB) of a live process, from /proc."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    # Fields after the command name, which may hold spaces: utime and stime are 14th and 15th.
    fields = stat.rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    hwm = 0.0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            hwm = int(line.split()[1]) / 1024
    return float(cpu), hwm


class _SimulatorChild:
    """The simulator process: one JSON command in, one JSON report out."""

    def __init__(self, proc: anyio.abc.Process) -> None:
        self.proc = proc
        assert proc.stdout is not None
        self._out = BufferedByteReceiveStream(proc.stdout)
        self.url = ""

    async def _read(self) -> Json:
        try:
            line = await self._out.receive_until(b"\n", MAX_LINE)
        except (anyio.IncompleteRead, anyio.EndOfStream) as exc:
            raise RuntimeError(f"simulator exited ({self.proc.returncode})") from exc
        message: Json = json.loads(line)
        return message

    async def command(self, cmd: str) -> Json:
        assert self.proc.stdin is not None
        await self.proc.stdin.send(json.dumps({"cmd": cmd}).encode() + b"\n")
        return await self._read() if cmd != "stop" else {}


@asynccontextmanager
async def _simulator(
    args: argparse.Namespace, workdir: Path, queue_url: str | None
) -> AsyncIterator[_SimulatorChild]:
    cmd = [sys.executable, str(SCRIPT), "--serve-simulator"]
    cmd += _shared_flags(args)
    if queue_url:
        cmd += [f"--sqs-queue-url={queue_url}", f"--sqs-endpoint={args.sqs_endpoint}"]
        cmd += [f"--drop-share={args.drop_share}"]
    with (workdir / "simulator.err").open("wb") as err:
        proc = await anyio.open_process(
            cmd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=err,
            env=_child_env(),
            cwd=ROOT,
        )
        child = _SimulatorChild(proc)
        try:
            child.url = str((await child._read())["url"])
            yield child
        finally:
            with suppress(Exception):
                await child.command("stop")
            with anyio.move_on_after(10):
                await proc.wait()
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


def _shared_flags(args: argparse.Namespace) -> list[str]:
    low, high = args.job_seconds
    flags = [
        f"--apps={args.apps}",
        f"--branches={args.branches}",
        f"--minutes={args.minutes}",
        f"--interval={args.interval}",
        f"--active-interval={args.active_interval}",
        f"--latency-ms={args.latency_ms}",
        f"--seed={args.seed}",
        f"--start-rate={args.start_rate}",
        f"--job-seconds={low}-{high}",
        f"--fail-share={args.fail_share}",
        f"--cancel-share={args.cancel_share}",
    ]
    if args.quota:
        flags.append(f"--quota={args.quota}")
    return flags


@dataclass
class _Contender:
    """A contender's process and what it told us: alerts with their times, readiness, errors."""

    name: str
    proc: anyio.abc.Process
    alerts: list[tuple[AlertKey, float]] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    ready: anyio.Event = field(default_factory=anyio.Event)
    metrics_url: str = ""

    def check_alive(self, workdir: Path) -> None:
        if self.proc.returncode is not None:
            tail = (workdir / f"{self.name}.err").read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{self.name} exited {self.proc.returncode}:\n{tail}")


def _daemon_config(
    args: argparse.Namespace, workdir: Path, url: str, port: int, queue_url: str | None
) -> Path:
    rps = args.max_rps or args.quota
    interval, active = _daemon_intervals(args)
    events = ""
    if queue_url:
        events = f'[events]\nsqs_queue_url = "{queue_url}"\nendpoint_url = "{args.sqs_endpoint}"\n'
    path = workdir / "daemon.toml"
    path.write_text(
        f"""[aws]
region = "us-east-1"
endpoint_url = "{url}"

[poll]
interval_seconds = {interval}
active_interval_seconds = {active}
{f"max_requests_per_second = {rps}" if rps else ""}

{events}

[alerts]
on = ["FAILED", "CANCELLED"]
recovery = false
digest_threshold = 100000

[metrics]
listen = "127.0.0.1:{port}"

[state]
path = "{workdir / "daemon.db"}"

[log]
format = "json"
level = "info"
""",
        encoding="utf-8",
    )
    return path


async def _read_daemon(c: _Contender, workdir: Path) -> None:
    assert c.proc.stderr is not None
    with (workdir / "daemon.err").open("wb") as sink:
        async for raw in _lines(c.proc.stderr):
            sink.write(raw + b"\n")
            try:
                event = json.loads(raw)
            except ValueError:
                c.errors["unparsed log line"] += 1
                continue
            if event.get("level") in ("warning", "error", "critical"):
                c.errors[f"{event.get('level')} {event.get('event')}"] += 1
            if event.get("event") != "alert_printed":
                continue
            # The log's own timestamp (microseconds, UTC) is the moment the alert went out.
            at = datetime.fromisoformat(str(event["timestamp"])).timestamp()
            key = (event["app_id"], event["branch"], str(event["job_id"]), event["status"])
            c.alerts.append((key, at))


async def _drain(stream: anyio.abc.ByteReceiveStream | None, sink: IO[bytes]) -> None:
    if stream is not None:
        async for raw in _lines(stream):
            sink.write(raw + b"\n")


async def _read_plain(c: _Contender) -> None:
    assert c.proc.stdout is not None
    async for raw in _lines(c.proc.stdout):
        event = json.loads(raw)
        kind = event["event"]
        if kind == "ready":
            c.ready.set()
        elif kind == "alert":
            key = (event["app_id"], event["branch"], event["job_id"], event["status"])
            c.alerts.append((key, float(event["t"])))
        elif kind == "error":
            c.errors[f"{event['operation']} {event['outcome']}"] += 1


async def _watch_ready(c: _Contender) -> None:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
        while not c.ready.is_set():
            with suppress(aiohttp.ClientError, TimeoutError):
                async with http.get(c.metrics_url + "/readyz") as resp:
                    if resp.status == 200:
                        c.ready.set()
                        return
            await anyio.sleep(0.5)


def _daemon_intervals(args: argparse.Namespace) -> tuple[float, float]:
    if args.push:
        return args.push_interval, args.push_active_interval
    return args.interval, args.active_interval


@asynccontextmanager
async def _contender(
    name: str, args: argparse.Namespace, workdir: Path, url: str, queue_url: str | None
) -> AsyncIterator[_Contender]:
    async with AsyncExitStack() as stack:
        out = stack.enter_context((workdir / f"{name}.out").open("wb"))
        if name == "daemon":
            port = _free_port()
            config = _daemon_config(args, workdir, url, port, queue_url)
            cmd = [sys.executable, "-m", "monitor", "run", "--config", str(config)]
            err: int | IO[bytes] = subprocess.PIPE
        else:
            cmd = [sys.executable, str(SCRIPT), "--plain-poller", url]
            cmd += _shared_flags(args)
            err = stack.enter_context((workdir / f"{name}.err").open("wb"))
        proc = await anyio.open_process(
            cmd, stdout=subprocess.PIPE, stderr=err, env=_child_env(), cwd=ROOT
        )
        c = _Contender(name, proc)
        try:
            async with anyio.create_task_group() as tg:
                if name == "daemon":
                    c.metrics_url = f"http://127.0.0.1:{port}"
                    tg.start_soon(_read_daemon, c, workdir)
                    tg.start_soon(_drain, proc.stdout, out)
                    tg.start_soon(_watch_ready, c)
                else:
                    tg.start_soon(_read_plain, c)
                try:
                    yield c
                finally:
                    tg.cancel_scope.cancel()
        finally:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
                with anyio.move_on_after(10):
                    await proc.wait()
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


def _ready_timeout(args: argparse.Namespace, name: str) -> float:
    if args.ready_timeout:
        return float(args.ready_timeout)
    calls = args.apps * (1 + args.branches) + args.apps / 100
    rate = (args.max_rps or args.quota or 20.0) if name == "daemon" else (args.quota or 100.0)
    return 60.0 + 3 * float(calls) / float(rate)


async def _wait(c: _Contender, workdir: Path, seconds: float, done: Callable[[], bool]) -> None:
    """Sleep up to `seconds`, failing fast if the contender dies; stop early once `done()`."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0 and not done():
        c.check_alive(workdir)
        await anyio.sleep(min(0.25, left))
    c.check_alive(workdir)


def _calls(before: Json, after: Json) -> Counter[str]:
    counts: Counter[str] = Counter(after["counts"])
    counts.subtract(before["counts"])
    return +counts


def _percentile(values: list[float], share: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def _figures(
    c: _Contender,
    start: Json,
    workload_end: Json,
    final: Json,
    *,
    ready_seconds: float,
    cpu: tuple[float, float, float],
) -> Json:
    expected: dict[AlertKey, float] = {}
    unfinished = 0
    for job in final["jobs"]:
        if is_unfinished(job["status"]):
            unfinished += 1
        elif job["status"] in ALERT_ON:
            expected[job["app_id"], job["branch"], job["job_id"], job["status"]] = job["end"]
    first: dict[AlertKey, float] = {}
    times: Counter[AlertKey] = Counter()
    for key, at in c.alerts:
        times[key] += 1
        first.setdefault(key, at)
    latencies = [first[key] - end for key, end in expected.items() if key in first]
    by_status: dict[str, list[float]] = {}
    for key, end in expected.items():
        if key in first:
            by_status.setdefault(key[3], []).append(first[key] - end)
    missed = sorted(key for key in expected if key not in first)
    window = final["now"] - start["now"]
    workload = workload_end["now"] - start["now"]
    calls = _calls(start, final)
    workload_calls = _calls(start, workload_end)
    total_cpu, window_cpu, rss = cpu
    return {
        "ready_seconds": ready_seconds,
        "setup_calls": sum(start["counts"].values()),
        "window_seconds": window,
        "workload_seconds": workload,
        "calls": sum(calls.values()),
        "calls_by_operation": dict(sorted(calls.items())),
        "calls_per_minute": sum(calls.values()) / window * 60,
        "calls_per_minute_by_operation": {op: n / window * 60 for op, n in sorted(calls.items())},
        "workload_calls_per_minute": sum(workload_calls.values()) / workload * 60,
        "throttled": final["throttled"] - start["throttled"],
        "setup_throttled": start["throttled"],
        "contender_errors": dict(c.errors),
        "jobs_started": len(final["jobs"]),
        "jobs_unfinished_at_end": unfinished,
        "expected_alerts": len(expected),
        "received_alerts": len(c.alerts),
        "latency_seconds": {
            "p50": _percentile(latencies, 0.50),
            "p95": _percentile(latencies, 0.95),
            "max": max(latencies, default=None),
        },
        "latency_by_status": {
            status: {"p50": _percentile(v, 0.5), "p95": _percentile(v, 0.95), "max": max(v)}
            for status, v in sorted(by_status.items())
        },
        "missed": len(missed),
        "missed_examples": [list(key) for key in missed[:10]],
        "doubled": sum(1 for n in times.values() if n > 1),
        "wrong": sum(1 for key in times if key not in expected),
        "wrong_examples": [list(key) for key in sorted(set(times) - set(expected))[:10]],
        "peak_rss_mib": rss,
        "cpu_seconds": total_cpu,
        "cpu_seconds_window": window_cpu,
        "simulator_cpu_seconds": final["cpu_seconds"],
    }


async def run_contender(name: str, args: argparse.Namespace, workdir: Path) -> Json:
    workdir = workdir / name
    workdir.mkdir()
    async with AsyncExitStack() as stack:
        queue_url = None
        if args.push and name == "daemon":
            queue_url = await _create_queue(args.sqs_endpoint, f"bench-{args.seed}-{os.getpid()}")
        sim = await stack.enter_async_context(_simulator(args, workdir, queue_url))
        began = time.monotonic()
        c = await stack.enter_async_context(_contender(name, args, workdir, sim.url, queue_url))
        print(f"[{name}] waiting for ready ({sim.url})", file=sys.stderr)
        await _wait(c, workdir, _ready_timeout(args, name), c.ready.is_set)
        if not c.ready.is_set():
            raise RuntimeError(f"{name} not ready after {time.monotonic() - began:.0f} s")
        ready_seconds = time.monotonic() - began
        cpu_at_start, _ = _proc_figures(c.proc.pid)
        start = await sim.command("start")
        print(f"[{name}] ready after {ready_seconds:.1f} s; workload running", file=sys.stderr)
        await _wait(c, workdir, args.minutes * 60, lambda: False)
        workload_end = await sim.command("report")
        # Every job's timeline is scripted when it starts: what will need an alert, and when the
        # last job ends, are known now. Settling stops early once all of that arrived.
        jobs = workload_end["jobs"]
        last_end = max((j["end"] for j in jobs), default=0.0)
        pending = {
            (j["app_id"], j["branch"], j["job_id"], j["outcome"])
            for j in jobs
            if j["outcome"] in ALERT_ON
        }

        def settled() -> bool:
            return time.time() >= last_end and pending <= {key for key, _ in c.alerts}

        print(f"[{name}] settling ({len(pending)} alerts expected)", file=sys.stderr)
        await _wait(c, workdir, args.settle * 60, settled)
        cpu_at_end, rss = _proc_figures(c.proc.pid)
        final = await sim.command("report")
    figures = _figures(
        c,
        start,
        workload_end,
        final,
        ready_seconds=ready_seconds,
        cpu=(cpu_at_end, cpu_at_end - cpu_at_start, rss),
    )
    figures["events_sent"] = sum(final["events_sent"].values())
    figures["events_dropped"] = sum(final["events_dropped"].values())
    return figures


async def _create_queue(endpoint: str, name: str) -> str:
    session = aioboto3.Session(aws_access_key_id="bench", aws_secret_access_key="bench")
    async with session.client("sqs", endpoint_url=endpoint, region_name="us-east-1") as sqs:
        created = await sqs.create_queue(QueueName=name)
    return str(created["QueueUrl"])


@asynccontextmanager
async def _moto(workdir: Path) -> AsyncIterator[str]:
    """moto's server in its own process: the SQS stand-in for push mode."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    with (workdir / "moto.err").open("wb") as err:
        proc = await anyio.open_process(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=err,
            stderr=err,
            env=_child_env(),
        )
        try:
            async with aiohttp.ClientSession() as http:
                for _ in range(300):
                    with suppress(aiohttp.ClientError):
                        async with http.get(url + "/moto-api/") as resp:
                            if resp.status == 200:
                                break
                    await anyio.sleep(0.1)
            yield url
        finally:
            proc.terminate()
            with anyio.move_on_after(10):
                await proc.wait()
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


# -- the report ------------------------------------------------------------------------------


def _number(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}x" if a is not None and b else ""


def table(results: dict[str, Json]) -> str:
    """The side-by-side markdown table; the ratio column is the first contender over the second."""
    names = list(results)
    rows: list[tuple[str, list[str], str]] = []

    def row(
        label: str, pick: Callable[[Json], float | None], digits: int = 1, *, ratio: bool = False
    ) -> None:
        values = [pick(results[n]) for n in names]
        shown = [_number(v, digits) for v in values]
        rows.append(
            (label, shown, _ratio(values[0], values[1]) if ratio and len(values) == 2 else "")
        )

    row("ready after (s)", lambda r: r["ready_seconds"])
    row("calls until ready", lambda r: r["setup_calls"], 0)
    row("API calls / min (workload + settle)", lambda r: r["calls_per_minute"], ratio=True)
    ops = sorted({op for r in results.values() for op in r["calls_per_minute_by_operation"]})
    for op in ops:

        def per_op(r: Json, op: str = op) -> float:
            return float(r["calls_per_minute_by_operation"].get(op, 0.0))

        row(f"  {op} / min", per_op, ratio=True)
    row("API calls / min (workload only)", lambda r: r["workload_calls_per_minute"], ratio=True)
    row("API calls (workload + settle)", lambda r: r["calls"], 0, ratio=True)
    row("throttled (429) in the window", lambda r: r["throttled"], 0)
    row("throttled (429) until ready", lambda r: r["setup_throttled"], 0)
    row("contender warnings / failed calls", lambda r: sum(r["contender_errors"].values()), 0)
    row("jobs started", lambda r: r["jobs_started"], 0)
    row("jobs unfinished at the end (not counted)", lambda r: r["jobs_unfinished_at_end"], 0)
    row("expected alerts", lambda r: r["expected_alerts"], 0)
    row("alerts received", lambda r: r["received_alerts"], 0)
    row("detection latency p50 (s)", lambda r: r["latency_seconds"]["p50"], 2)
    row("detection latency p95 (s)", lambda r: r["latency_seconds"]["p95"], 2)
    row("detection latency max (s)", lambda r: r["latency_seconds"]["max"], 2)
    for status in ("FAILED", "CANCELLED"):
        for q in ("p50", "p95"):

            def by_status(r: Json, status: str = status, q: str = q) -> float | None:
                value = r["latency_by_status"].get(status, {}).get(q)
                return None if value is None else float(value)

            row(f"  {status} {q} (s)", by_status, 2)
    row("missed alerts", lambda r: r["missed"], 0)
    row("doubled alerts", lambda r: r["doubled"], 0)
    row("wrong alerts", lambda r: r["wrong"], 0)
    row("events sent / dropped on purpose", lambda r: r["events_sent"], 0)
    row("  dropped", lambda r: r["events_dropped"], 0)
    row("peak RSS (MiB)", lambda r: r["peak_rss_mib"])
    row("CPU s (whole run)", lambda r: r["cpu_seconds"], 2, ratio=True)
    row("CPU s (workload + settle)", lambda r: r["cpu_seconds_window"], 2, ratio=True)
    row("window (s)", lambda r: r["window_seconds"])
    row("simulator CPU s", lambda r: r["simulator_cpu_seconds"])

    two = len(names) == 2
    head = ["", *names] + ([f"{names[0]} ÷ {names[1]}"] if two else [])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, shown, ratio in rows:
        cells = [label, *shown] + ([ratio] if two else [])
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _params(args: argparse.Namespace) -> Json:
    return {
        "apps": args.apps,
        "branches_per_app": args.branches,
        "branches": args.apps * args.branches,
        "minutes": args.minutes,
        "settle_minutes": args.settle,
        "interval_seconds": args.interval,
        "active_interval_seconds": args.active_interval,
        "latency_ms": args.latency_ms,
        "quota": args.quota,
        "daemon_max_rps": args.max_rps or args.quota or 20.0,
        "plain_rps": args.quota,
        "seed": args.seed,
        "start_rate_per_branch_minute": args.start_rate,
        "job_seconds": list(args.job_seconds),
        "fail_share": args.fail_share,
        "cancel_share": args.cancel_share,
        "push": args.push,
        "daemon_intervals": list(_daemon_intervals(args)),
        "drop_share": args.drop_share if args.push else None,
    }


async def benchmark(args: argparse.Namespace, workdir: Path) -> int:
    names = CONTENDERS if args.only == "both" else (args.only,)
    results: dict[str, Json] = {}
    async with AsyncExitStack() as stack:
        if args.push:
            args.sqs_endpoint = await stack.enter_async_context(_moto(workdir))
        for name in names:
            results[name] = await run_contender(name, args, workdir)
    params = _params(args)
    quota = f", quota {args.quota:g}/s" if args.quota else ""
    print(
        f"\n{params['branches']:,} branches ({args.apps} apps x {args.branches}), "
        f"{args.minutes:g} min workload + up to {args.settle:g} min settle, "
        f"{args.start_rate:g} starts/branch/min, jobs {args.job_seconds[0]:g}-{args.job_seconds[1]:g} s, "
        f"{args.latency_ms:g} ms/call{quota}, intervals {args.interval:g} s / {args.active_interval:g} s, "
        f"daemon max {params['daemon_max_rps']:g} rps, seed {args.seed}"
        + (
            f"; daemon in push mode: intervals {args.push_interval:g} s / "
            f"{args.push_active_interval:g} s, {args.drop_share:.0%} of events dropped"
            if args.push
            else ""
        )
        + "\n"
    )
    print(table(results))
    if args.json is not None:
        args.json.write_text(json.dumps({"params": params, "results": results}, indent=2) + "\n")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    if args.serve_simulator:
        with suppress(KeyboardInterrupt):
            anyio.run(serve_simulator, args)
        return 0
    if args.plain_poller:
        with suppress(KeyboardInterrupt):
            anyio.run(plain_poller, args)
        return 0
    workdir = Path(tempfile.mkdtemp(prefix="fleet-bench-"))
    ok = False
    try:
        code = anyio.run(benchmark, args, workdir)
        ok = True
        return code
    finally:
        if args.keep or not ok:
            print(f"work directory (logs, configs): {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
