"""Arguments of `deploy` and `wait` (their public contract): parsing only, no heavy imports."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

Handler = Callable[[argparse.Namespace], int]

# Shown under --help: CI authors branch on these, so they belong next to the flags.
EXIT_CODES = """\
exit codes:
  0  the job succeeded (deploy without --wait: the job was started)
  1  the job failed
  2  usage, config or credentials problem, or Amplify refused (e.g. the last job is unfinished)
  3  the job was cancelled
  4  --timeout passed; the job keeps running
  130/143  stopped by SIGINT/SIGTERM; the job keeps running (resume with `wait --job N`)

Region and credentials come from the standard AWS chain unless --region/--config say otherwise.
"""


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--app", required=True, metavar="APP_ID", help="Amplify app id")
    parser.add_argument("--branch", required=True, help="branch name")
    parser.add_argument(
        "--timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help="stop waiting after SECONDS (exit 4; the job keeps running)",
    )
    parser.add_argument("--config", help="optional TOML config ([aws], [slack])")
    parser.add_argument("--region", help="AWS region (overrides config and AWS_REGION)")
    parser.add_argument("--endpoint-url", help="Amplify API endpoint override")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.add_argument("--notify", action="store_true", help="send the result to [slack]")


def add_deploy_commands(sub: Any, *, deploy: Handler, wait: Handler) -> None:
    """Add `deploy` and `wait` to the CLI's subparsers."""
    dep: argparse.ArgumentParser = sub.add_parser(
        "deploy",
        help="deploy a build (dir, zip or URL) to a branch, optionally wait for it",
        description="Deploy a build to a branch of an Amplify app (manual deployment).",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _common(dep)
    source = dep.add_mutually_exclusive_group(required=True)
    source.add_argument("--dir", metavar="PATH", help="build directory to zip and upload")
    source.add_argument("--zip", metavar="FILE", help="ready zip archive to upload")
    source.add_argument("--source-url", metavar="URL", help="zip URL or s3:// prefix, no upload")
    dep.add_argument("--wait", action="store_true", help="wait for the job to finish")
    dep.set_defaults(handler=deploy)

    wt: argparse.ArgumentParser = sub.add_parser(
        "wait",
        help="wait for a job to finish",
        description="Wait for an Amplify job (one a push or StartJob started) to finish.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _common(wt)
    which = wt.add_mutually_exclusive_group()
    which.add_argument("--job", metavar="JOB_ID", help="the job to wait for")
    which.add_argument("--latest", action="store_true", help="the branch's latest job (default)")
    wt.set_defaults(handler=wait)
