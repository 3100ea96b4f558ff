"""`--notify`: the deploy's verdict to Slack, through the daemon's own renderer and notifiers.

Owns turning a finished job into the `Alert` the daemon would have raised (app name and last
success looked up, best effort), the "would the daemon send this?" check, and a short, bounded
retry: a CLI has no outbox to come back to. A notification never changes the exit code.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable

import anyio

from monitor.amplify import AmplifyClient, AmplifyError
from monitor.config import Settings
from monitor.deploy.events import Finished, Note
from monitor.model import SUCCEED, Alert
from monitor.notify.base import Delivered, Notifier, Rejected, Retry, SendResult, Single
from monitor.notify.factory import build_router_and_notifier
from monitor.observe import NullObserver

ATTEMPTS = 3
MAX_RETRY_DELAY = 10.0


async def alert_for(client: AmplifyClient, finished: Finished) -> Alert:
    """The alert the daemon would build for this job. Lookups that fail only make it plainer."""
    target = finished.target
    summary = finished.detail.summary
    app_name = ""
    last_success = None
    with contextlib.suppress(AmplifyError):  # without it the message names the app id
        app_name = (await client.get_app(target.key.app_id)).name
    try:
        earlier = [
            job
            for job in await client.list_jobs(target.key)
            if job.status == SUCCEED and job.number < summary.number and job.end_time
        ]
        if earlier:
            last_success = max(earlier, key=lambda j: j.number).end_time
    except AmplifyError:
        pass  # "Last success: none on record" is honest enough
    return Alert(
        key=target.key,
        app_name=app_name,
        # The daemon's status alert; a SUCCEED one renders as "Build succeeded".
        kind="failure",
        job=summary,
        last_success_time=last_success,
        steps=finished.detail.steps,
        region=target.region,
    )


async def notify(settings: Settings, client: AmplifyClient, finished: Finished) -> Note:
    alert = await alert_for(client, finished)
    router, notifier = build_router_and_notifier(settings, NullObserver())
    destination = router.route(alert)
    # A failure goes where, and only if, the daemon would send it; a success was asked for by
    # passing --notify, so it goes to the same place whatever `[alerts] on` says.
    if alert.status != SUCCEED and not router.wants(alert, destination):
        return Note(f"--notify: not sent: [alerts] on leaves out {alert.status} for this branch")
    return await deliver(notifier, Single(alert, destination))


async def deliver(
    notifier: Notifier,
    single: Single,
    *,
    attempts: int = ATTEMPTS,
    sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
) -> Note:
    result: SendResult | None = None
    for attempt in range(attempts):
        result = await notifier.send(single)
        if isinstance(result, Delivered):
            return Note(f"sent the result of job {single.alert.job.job_id} to Slack")
        if isinstance(result, Rejected):
            return Note(f"--notify: Slack refused the message: {result.hint or result.error}")
        if attempt + 1 < attempts:
            await sleep(min(MAX_RETRY_DELAY, result.after or 2.0 * 2**attempt))
    error = result.error if isinstance(result, Retry) else "no answer"
    return Note(f"--notify: Slack did not take the message after {attempts} attempts: {error}")
