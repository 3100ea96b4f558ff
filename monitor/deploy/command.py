"""`deploy` and `wait`: from parsed arguments to an exit code.

Owns settings resolution (flags over `--config` over the standard AWS chain), the deploy
sequence (archive -> CreateDeployment -> upload -> StartDeployment), the wait with its timeout,
signal handling that stops waiting without touching the job, and turning every refusal into one
line and exit code 2.
"""

from __future__ import annotations

import argparse
import functools
import os
import re
import signal
import tempfile
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import anyio
from anyio.abc import TaskStatus

from monitor import config
from monitor.amplify import (
    AmplifyClient,
    AmplifyError,
    BadRequest,
    NotFound,
    Unauthorized,
    default_region,
)
from monitor.config import AwsSettings, Settings
from monitor.deploy.archive import ArchiveError, ArchiveInfo, build_zip, check_zip
from monitor.deploy.console import Console
from monitor.deploy.events import (
    EXIT_SUCCEED,
    EXIT_USAGE,
    Finished,
    Interrupted,
    Note,
    Prepared,
    Refused,
    Started,
    Target,
    TimedOut,
    Uploaded,
    Watching,
    signal_exit_code,
)
from monitor.deploy.follow import Follower, PollPolicy
from monitor.deploy.render import live_line
from monitor.deploy.upload import UploadError, redact, upload
from monitor.model import CREATED, BranchKey, is_unfinished

LIVE_REFRESH_SECONDS = 0.25


class UsageError(Exception):
    """Bad flags or settings, phrased for a person; exit 2 before anything is sent."""


@dataclass(frozen=True)
class Setup:
    aws: AwsSettings
    target: Target
    # The whole config, for --notify (routes, [alerts] on); None without --config.
    settings: Settings | None
    policy: PollPolicy
    timeout: float | None


def resolve(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> Setup:
    """Flags win over `--config`, which wins over the environment's AWS chain."""
    env = os.environ if env is None else env
    config_path: str | None = args.config or env.get(config.CONFIG_ENV) or None
    aws = AwsSettings()
    settings: Settings | None = None
    if config_path:
        settings = config.load(config_path)
        aws = settings.aws
    # AwsSettings defaults region to us-east-1 for the daemon; here only an explicit one counts,
    # else the deploy could silently go to the wrong region and report "app not found".
    region = (
        args.region
        or (aws.region if "region" in aws.model_fields_set else None)
        or env.get("AWS_REGION")
        or default_region(aws.profile)
    )
    if not region:
        raise UsageError("no AWS region: pass --region, set AWS_REGION or [aws] region")
    endpoint_url = args.endpoint_url or aws.endpoint_url
    if args.timeout is not None and not args.timeout > 0:
        raise UsageError("--timeout must be a positive number of seconds")
    # deploy without --wait returns once the job starts: there is no wait to time out and no
    # verdict to send.
    if getattr(args, "wait", True) is False:
        if args.timeout is not None:
            raise UsageError("--timeout applies to waiting: add --wait")
        if args.notify:
            raise UsageError("--notify sends the job's result: add --wait")
    if args.notify and (settings is None or settings.slack is None):
        raise UsageError("--notify needs a [slack] section in the --config file")
    try:
        policy = PollPolicy.from_env(env)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    key = BranchKey(args.app, args.branch)
    return Setup(
        aws=aws.model_copy(update={"region": region, "endpoint_url": endpoint_url}),
        target=Target(key, region, endpoint_url, config_path),
        settings=settings,
        policy=policy,
        timeout=args.timeout,
    )


class _Run:
    """What the command body and the signal watcher share: the job once it exists, the signal."""

    def __init__(self) -> None:
        self.job_id: str | None = None
        self.signal: int | None = None


Body = Callable[[argparse.Namespace, AmplifyClient, Setup, Console, _Run], Awaitable[int]]


def run_deploy(args: argparse.Namespace) -> int:
    return _main(args, _deploy)


def run_wait(args: argparse.Namespace) -> int:
    return _main(args, _wait)


def _main(args: argparse.Namespace, body: Body) -> int:
    console = Console(json_mode=args.json)
    try:
        setup = resolve(args)
    except (UsageError, config.ConfigError, AmplifyError) as exc:
        console.emit(Refused(str(exc)))
        return EXIT_USAGE
    try:
        return anyio.run(_supervise, args, setup, console, body)
    finally:
        console.close()


async def _supervise(args: argparse.Namespace, setup: Setup, console: Console, body: Body) -> int:
    run = _Run()
    code: int | None = None
    async with anyio.create_task_group() as tg:
        await tg.start(_watch_signals, tg.cancel_scope, run)
        try:
            async with AmplifyClient.connect(setup.aws) as client:
                code = await body(args, client, setup, console, run)
        except Refusal as exc:
            console.emit(exc.event)
            code = exc.event.exit_code
        except AmplifyError as exc:
            console.emit(_refusal(exc, setup.target, run.job_id))
            code = EXIT_USAGE
        tg.cancel_scope.cancel()
    if code is not None:
        return code
    signum = run.signal or signal.SIGINT
    console.emit(
        Interrupted(setup.target, run.job_id, signal.Signals(signum).name, signal_exit_code(signum))
    )
    return signal_exit_code(signum)


async def _watch_signals(
    scope: anyio.CancelScope, run: _Run, *, task_status: TaskStatus[None]
) -> None:
    """SIGINT/SIGTERM stop the command, never the job: a CI cancel must not cancel a release."""
    try:
        receiver = anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM)
    except NotImplementedError:  # no signal handlers on this event loop (Windows)
        task_status.started()
        return
    with receiver as signals:
        task_status.started()
        async for signum in signals:
            run.signal = signum
            scope.cancel()
            return


# --- deploy ------------------------------------------------------------------------------------


async def _deploy(
    args: argparse.Namespace, client: AmplifyClient, setup: Setup, console: Console, run: _Run
) -> int:
    key = setup.target.key
    if args.source_url:
        source_type = _source_url_type(setup.target, args.source_url)
        started = await _start(client, setup, run, source_url=args.source_url, kind=source_type)
    else:
        with tempfile.TemporaryDirectory(
            prefix="amplify-monitor-", ignore_cleanup_errors=True
        ) as scratch:
            await _preflight(client, setup.target)
            info = await _prepare(setup.target, args, Path(scratch))
            console.emit(
                Prepared(
                    args.dir or args.zip,
                    info.files,
                    info.content_bytes,
                    info.archive_bytes,
                    built=bool(args.dir),
                )
            )
            try:
                created_id, url = await client.create_deployment(key)
            except BadRequest as exc:
                raise await _maybe_unfinished(client, setup.target, exc) from None
            try:
                # The retry pause scales with the poll interval: 1 s by default, short in tests.
                sent = await upload(url, info.path, retry_delay=setup.policy.interval / 2)
            except UploadError as exc:
                raise Refusal(Refused(f"{exc}; nothing was deployed", setup.target)) from None
            console.emit(Uploaded(sent.bytes_sent, sent.seconds, sent.attempts))
            started = await _start(client, setup, run, job_id=created_id)
    console.emit(Started(setup.target, started, waiting=args.wait))
    if not args.wait:
        return EXIT_SUCCEED
    return await _follow(args, client, setup, console, started)


async def _preflight(client: AmplifyClient, target: Target) -> None:
    """Refuse before zipping and uploading (maybe hundreds of MB) what Amplify would refuse.

    Advisory only: StartDeployment's own refusal is still handled, and a CI role that may not
    call ListJobs skips this check rather than failing the deploy.
    """
    try:
        jobs = await client.list_jobs(target.key)
    except NotFound:
        raise
    except AmplifyError:
        return
    # A CREATED job is a deployment still waiting for its upload; it blocks nothing.
    started = [job for job in jobs if job.status != CREATED]
    if started:
        newest = max(started, key=lambda j: j.number)
        if is_unfinished(newest.status):
            raise Refusal(_unfinished_refusal(target, newest.job_id, newest.status))


async def _prepare(target: Target, args: argparse.Namespace, scratch: Path) -> ArchiveInfo:
    try:
        if args.dir:
            # Zipping is blocking work in a thread; it checks for cancellation between chunks
            # so a signal stops it at once (an abandoned thread would keep the process alive).
            return await anyio.to_thread.run_sync(
                functools.partial(
                    build_zip,
                    Path(args.dir),
                    scratch / "deploy.zip",
                    checkpoint=anyio.from_thread.check_cancelled,
                )
            )
        return await anyio.to_thread.run_sync(check_zip, Path(args.zip))
    except ArchiveError as exc:
        raise Refusal(Refused(str(exc), target)) from None


def _source_url_type(target: Target, url: str) -> str:
    if url.startswith("s3://"):
        return "BUCKET_PREFIX"
    if url.startswith(("https://", "http://")):
        return "ZIP"
    # Redacted: a source URL may be presigned, and its query would grant access to the build.
    raise Refusal(
        Refused(
            f"--source-url {redact(url)!r}: expected an https:// zip URL or an s3:// prefix",
            target,
        )
    )


async def _start(
    client: AmplifyClient,
    setup: Setup,
    run: _Run,
    *,
    job_id: str | None = None,
    source_url: str | None = None,
    kind: str | None = None,
) -> str:
    # Shielded: once StartDeployment is sent the job may exist, and a signal arriving now must
    # not leave us without its id to print (the resume hint needs it).
    with anyio.CancelScope(shield=True):
        try:
            summary = await client.start_deployment(
                setup.target.key, job_id=job_id, source_url=source_url, source_url_type=kind
            )
        except BadRequest as exc:
            raise await _maybe_unfinished(client, setup.target, exc) from None
    run.job_id = summary.job_id or job_id
    if not run.job_id:
        raise Refusal(Refused("StartDeployment answered without a job id", setup.target))
    return run.job_id


# --- wait --------------------------------------------------------------------------------------


async def _wait(
    args: argparse.Namespace, client: AmplifyClient, setup: Setup, console: Console, run: _Run
) -> int:
    key = setup.target.key
    job_id: str | None = args.job
    if job_id is None:
        # A CREATED job is a deployment nobody started (its upload may never come): waiting on
        # it would last until --timeout, so the latest job means the latest started one.
        jobs = [job for job in await client.list_jobs(key) if job.status != CREATED]
        if not jobs:
            raise Refusal(Refused(f"branch {key} has no jobs to wait for", setup.target))
        job_id = max(jobs, key=lambda j: j.number).job_id
    run.job_id = job_id
    console.emit(Watching(setup.target, job_id))
    return await _follow(args, client, setup, console, job_id)


async def _follow(
    args: argparse.Namespace, client: AmplifyClient, setup: Setup, console: Console, job_id: str
) -> int:
    follower = Follower(client, setup.target, job_id, policy=setup.policy, emit=console.emit)
    finished: Finished | None = None
    error: AmplifyError | None = None
    async with anyio.create_task_group() as tg:
        if console.live:
            tg.start_soon(_redraw, follower, console)
        with anyio.move_on_after(setup.timeout if setup.timeout is not None else float("inf")):
            try:
                finished = await follower.run()
            except AmplifyError as exc:
                error = exc  # re-raised below, unwrapped by the task group's exception group
        tg.cancel_scope.cancel()
    if error is not None:
        raise error
    result: Finished | TimedOut = finished or TimedOut(
        setup.target, job_id, follower.status, follower.elapsed
    )
    console.emit(result)
    if args.notify and setup.settings is not None and isinstance(result, Finished):
        console.emit(await _notify(setup.settings, client, result))
    return result.exit_code


async def _redraw(follower: Follower, console: Console) -> None:
    frame = 0
    while True:
        console.show_live(
            live_line(
                follower.job_id, follower.status, follower.current_step, follower.elapsed, frame
            )
        )
        frame += 1
        await anyio.sleep(LIVE_REFRESH_SECONDS)


async def _notify(settings: Settings, client: AmplifyClient, finished: Finished) -> Note:
    # Imported here: slack_sdk is only worth loading when a message is to be sent.
    from monitor.deploy.notify import notify

    # Shielded and bounded: a signal after the verdict must not cut the message in half, and a
    # Slack outage must not hold the CI job.
    with anyio.CancelScope(shield=True), anyio.move_on_after(60):
        return await notify(settings, client, finished)
    return Note("--notify: gave up on Slack after 60s")


# --- refusals ----------------------------------------------------------------------------------


class Refusal(Exception):
    """Stops the command with one printed line and its exit code (2 unless it says otherwise)."""

    def __init__(self, event: Refused) -> None:
        super().__init__(event.message)
        self.event = event


_NOT_FINISHED = re.compile(r"not (?:yet )?(?:finished|completed?)", re.IGNORECASE)
# Amplify says "The last job(deployment) 12 was not finished, ..."; allow small variations.
_JOB_NUMBER = re.compile(r"\bjob(?:\([^)]*\))?(?:\s+id)?\s*[:#]?\s*(\d+)", re.IGNORECASE)


async def _maybe_unfinished(client: AmplifyClient, target: Target, exc: BadRequest) -> Exception:
    """Amplify's "last job not finished" refusal, with the job named even when Amplify did not.

    Returns the exception to raise: any other BadRequest goes back unchanged.
    """
    if not _NOT_FINISHED.search(exc.detail):
        return exc
    found = _JOB_NUMBER.search(exc.detail)
    job_id = found.group(1) if found else None
    if job_id is None:
        with anyio.move_on_after(10):
            job_id = await _newest_unfinished(client, target.key)
    return Refusal(_unfinished_refusal(target, job_id, f"{exc.operation} refused"))


async def _newest_unfinished(client: AmplifyClient, key: BranchKey) -> str | None:
    try:
        jobs = await client.list_jobs(key)
    except AmplifyError:
        return None  # the refusal is still worth printing without the id
    unfinished = [job for job in jobs if is_unfinished(job.status)]
    return max(unfinished, key=lambda j: j.number).job_id if unfinished else None


def _unfinished_refusal(target: Target, job_id: str | None, why: str) -> Refused:
    """One line: which job blocks the branch, and the two ways out (wait for it, or stop it)."""
    key = target.key
    if job_id is None:
        return Refused(
            f"Amplify will not start a deployment on {key} while its last job is unfinished "
            f"({why}); find it with: aws amplify list-jobs --app-id {key.app_id} "
            f"--branch-name {key.branch} --max-items 1",
            target,
        )
    return Refused(
        f"Amplify will not start a deployment on {key} while job {job_id} is unfinished "
        f"({why}); wait for it: {target.resume_command(job_id)} - or stop it: "
        f"{target.stop_command(job_id)}",
        target,
        unfinished_job_id=job_id,
    )


def _refusal(exc: AmplifyError, target: Target, job_id: str | None) -> Refused:
    key = target.key
    if isinstance(exc, NotFound):
        what = f"job {job_id} on {key}" if exc.operation == "GetJob" else f"app or branch {key}"
        return Refused(f"{exc.operation}: {what} not found ({exc.detail})", target)
    if isinstance(exc, Unauthorized):
        message = f"{exc.operation}: AWS refused the credentials: {exc.detail}"
    else:
        message = f"{exc.operation} failed: {exc.detail}"
    if job_id is not None:
        # E.g. CI credentials expiring during a long wait: the job itself is unaffected.
        message += f"; job {job_id} keeps running, resume: {target.resume_command(job_id)}"
    return Refused(message, target)
