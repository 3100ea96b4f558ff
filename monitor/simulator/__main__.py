"""`python -m monitor.simulator`: serve a demo or idle fleet until Ctrl-C."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal

from monitor import log
from monitor.simulator.fleet import Fleet
from monitor.simulator.server import Simulator


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m monitor.simulator", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=4566)
    parser.add_argument("--fleet", choices=("demo", "idle"), default="demo")
    parser.add_argument("--apps", type=int, default=200, help="idle fleet size")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--log-format", choices=("json", "console"), default="console")
    return parser.parse_args(argv)


async def serve(args: argparse.Namespace) -> None:
    if args.fleet == "demo":
        fleet = Fleet.demo(seed=args.seed)
    else:
        fleet = Fleet.idle(apps=args.apps, seed=args.seed)
    sim = Simulator(fleet)
    url = await sim.start(args.host, args.port)
    # The URL alone on stdout, so scripts can read it; logs go to stderr.
    print(url, flush=True)
    stop = asyncio.Event()
    # SIGTERM (docker stop, systemd) ends as cleanly as Ctrl-C does.
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    try:
        await stop.wait()
    finally:
        await sim.stop()


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    log.setup(args.log_format)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
