"""The `amplify-monitor` command line: run, once, check-config, demo, deploy, wait.

Owns argument parsing and exit codes (0 ok, 1 runtime failure, 2 bad config or usage); each
command's work lives in its own module, imported only when that command runs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence

from monitor import __version__, config
from monitor.deploy.args import add_deploy_commands

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2

Handler = Callable[[argparse.Namespace], int]


def _load(path: str) -> config.Settings:
    """The config with its region settled: as the AWS CLI, never guess one. Without
    `aws.region`, the region comes from AWS_REGION / AWS_DEFAULT_REGION or the profile; with
    none of them, a config error naming the key (watching the wrong region is silent)."""
    from monitor.amplify import AmplifyError, default_region

    settings = config.load(path)
    aws = settings.aws
    if "region" in aws.model_fields_set:
        return settings
    try:
        # AWS_REGION first, as the AWS CLI and SDKs read it; botocore knows only the others.
        region = os.environ.get("AWS_REGION") or default_region(aws.profile)
    except AmplifyError:
        # An unknown profile: connecting reports it (exit 1, as always), naming the profile.
        return settings
    if region is None:
        raise config.ConfigError(
            f"{path}: aws.region: not set, and neither AWS_REGION, AWS_DEFAULT_REGION nor the "
            "profile names one: set the region to watch"
        )
    return settings.model_copy(update={"aws": aws.model_copy(update={"region": region})})


def _cmd_check_config(args: argparse.Namespace) -> int:
    settings = _load(args.path)
    print(json.dumps(settings.masked(), indent=2, default=str))
    return EXIT_OK


def _cmd_run(args: argparse.Namespace) -> int:
    from monitor import service

    settings = _load(config.resolve_path(args.config))
    return service.run_daemon(settings)


def _cmd_once(args: argparse.Namespace) -> int:
    from monitor import service

    settings = _load(config.resolve_path(args.config))
    return service.run_once(settings)


def _cmd_demo(args: argparse.Namespace) -> int:
    from monitor import demo

    return demo.run(duration=args.duration, listen=args.listen, push=args.push)


def _cmd_deploy(args: argparse.Namespace) -> int:
    from monitor.deploy.command import run_deploy

    return run_deploy(args)


def _cmd_wait(args: argparse.Namespace) -> int:
    from monitor.deploy.command import run_wait

    return run_wait(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="amplify-monitor",
        description="Watch every AWS Amplify Hosting app and branch; metrics, alerts, deploys.",
    )
    parser.add_argument("--version", action="version", version=f"amplify-monitor {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run the monitoring daemon")
    run.add_argument("--config", help=f"TOML config file (or set {config.CONFIG_ENV})")
    run.set_defaults(handler=_cmd_run)

    once = sub.add_parser(
        "once", help="poll once, print every branch's latest job; exit 1 if any failed"
    )
    once.add_argument("--config", help=f"TOML config file (or set {config.CONFIG_ENV})")
    once.set_defaults(handler=_cmd_once)

    check = sub.add_parser(
        "check-config", help="validate a config file and print it, secrets masked"
    )
    check.add_argument("path")
    check.set_defaults(handler=_cmd_check_config)

    demo = sub.add_parser("demo", help="run against the built-in Amplify simulator")
    demo.add_argument("--duration", type=float, default=None, help="stop after SECONDS")
    demo.add_argument("--listen", default="127.0.0.1:9853", help="metrics host:port")
    demo.add_argument(
        "--push",
        action="store_true",
        help="push mode: the simulator's events through an SQS stand-in (needs moto[server])",
    )
    demo.set_defaults(handler=_cmd_demo)

    add_deploy_commands(sub, deploy=_cmd_deploy, wait=_cmd_wait)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args)
    except config.ConfigError as exc:
        print(f"amplify-monitor: config error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
