"""Push mode: Amplify's EventBridge events, read from SQS, each turned into "look at this now".

An event is a hint, never the truth (delivery is best-effort, and no event announces a
cancel): it asks the scheduler for a refresh, and the diff of what ListJobs then shows decides
what happened, so every alert stays exactly-once. A message is deleted once the refresh it asked
for was saved, or once it is judged foreign or malformed; a refresh that fails leaves it in the
queue to come back. `parse` and `plan` are pure.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

import anyio
import anyio.abc

from monitor import log
from monitor.model import BranchKey
from monitor.scheduler import Scheduler
from monitor.sqs import Message, QueueError, SqsQueue
from monitor.tasks import DISCOVER, PollApp, PollBranch
from monitor.watch import Watched

_log = log.get(__name__)

SOURCE = "aws.amplify"
DETAIL_TYPE = "Amplify Deployment Status Change"
STARTED = "STARTED"

REFRESH_TIMEOUT = 60.0  # beyond this a refresh is left to the message's next delivery
MAX_IN_FLIGHT = 500  # messages being handled at once; receiving waits beyond it
BACKOFF_FIRST, BACKOFF_MAX = 1.0, 60.0
_RNG = random.Random()


@dataclass(frozen=True)
class AmplifyEvent:
    """One "Amplify Deployment Status Change": a job of a branch reached `job_status`."""

    key: BranchKey
    job_id: str
    job_status: str  # STARTED, SUCCEED or FAILED today; any other is a hint all the same
    time: datetime | None
    region: str


@dataclass(frozen=True)
class Rejected:
    outcome: Literal["ignored", "malformed"]
    reason: str


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed


def parse(body: str, *, unwrap: bool = True) -> AmplifyEvent | Rejected:
    """An SQS message body: an EventBridge event as EventBridge delivers it to SQS (or wrapped
    once by SNS, when a topic sits between the rule and the queue)."""
    try:
        data = json.loads(body)
    except ValueError:
        return Rejected("malformed", "not JSON")
    if not isinstance(data, dict):
        return Rejected("malformed", "not a JSON object")
    if unwrap and data.get("Type") == "Notification" and isinstance(data.get("Message"), str):
        return parse(data["Message"], unwrap=False)
    if data.get("source") != SOURCE or data.get("detail-type") != DETAIL_TYPE:
        return Rejected("ignored", "not an Amplify deployment status change")
    detail = data.get("detail")
    if not isinstance(detail, dict):
        return Rejected("malformed", "no detail object")
    app_id, branch = _text(detail.get("appId")), _text(detail.get("branchName"))
    job_id, status = _text(detail.get("jobId")), _text(detail.get("jobStatus"))
    if app_id is None or branch is None or job_id is None or status is None:
        return Rejected("malformed", "detail lacks appId, branchName, jobId or jobStatus")
    return AmplifyEvent(
        key=BranchKey(app_id, branch),
        job_id=job_id,
        job_status=status,
        time=_time(data.get("time")),
        region=str(data.get("region") or ""),
    )


@dataclass(frozen=True)
class Plan:
    """What an event needs before its branch can be refreshed: nothing, its app's branch list
    (a branch not seen yet), or a discovery first (an app not seen yet)."""

    first: Literal["none", "app", "discover"]


def plan(event: AmplifyEvent, watched: Watched, region: str) -> Plan | Rejected:
    if event.region and event.region != region:
        return Rejected("ignored", f"event of region {event.region}")
    if not watched.targeted(event.key):
        return Rejected("ignored", "branch not targeted")
    if event.key in watched.branches:
        return Plan("none")
    return Plan("app" if event.key.app_id in watched.apps else "discover")


class EventObserver(Protocol):
    def event(self, outcome: str, lag_seconds: float | None) -> None:
        """One message settled: outcome refreshed|ignored|malformed|unknown_branch; the lag
        from the event's time to its branch refreshed, when there is one to tell."""

    def sqs_request(self, operation: str, outcome: str, seconds: float) -> None:
        """One SQS call, outcome ok|throttled|not_found|unauthorized|bad_request|error."""


def backoff(failures: int, rng: random.Random | None = None) -> float:
    """Seconds to wait after `failures` failed calls in a row: doubling, jittered, capped."""
    ceiling = min(BACKOFF_MAX, BACKOFF_FIRST * 2.0 ** min(failures - 1, 30))
    jitter: float = (rng if rng is not None else _RNG).uniform(0, ceiling / 2)
    return ceiling / 2 + jitter


class EventListener:
    """Long-polls the queue in its own task and settles each message in a task of its own."""

    def __init__(
        self,
        queue: SqsQueue,
        scheduler: Scheduler,
        watched: Watched,
        region: str,
        observer: EventObserver,
        *,
        wall: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    ) -> None:
        self.queue = queue
        self.scheduler = scheduler
        self.watched = watched
        self.region = region
        self.observer = observer
        self.wall = wall
        self.sleep = sleep
        active = scheduler.poll.active_interval_seconds
        # A STARTED waits for the branch's first active poll; every message stays hidden from
        # other readers while it is handled, and comes back if the daemon dies meanwhile.
        self.started_timeout = active + REFRESH_TIMEOUT
        self.visibility = int(min(43_200, active + 2 * REFRESH_TIMEOUT))
        self._slots = anyio.Semaphore(MAX_IN_FLIGHT)

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Until cancelled. SQS errors are logged with their fix and retried with backoff;
        they never reach polling, which goes on regardless."""
        failures = 0
        checked = False
        async with anyio.create_task_group() as tg:
            task_status.started()
            while True:
                try:
                    if not checked:
                        await self.queue.check()
                        _log.info("events_listening", queue=self.queue.url)
                        checked = True
                    messages = await self.queue.receive(self.visibility)
                except QueueError as exc:
                    failures += 1
                    delay = backoff(failures)
                    _log.warning(
                        "events_queue_failed",
                        operation=exc.operation,
                        code=exc.code,
                        error=exc.detail,
                        fix=exc.fix,
                        retry_in_seconds=round(delay, 1),
                    )
                    await self.sleep(delay)
                    continue
                if failures:
                    _log.info("events_queue_recovered", after_failures=failures)
                    failures = 0
                for message in messages:
                    await self._slots.acquire()
                    tg.start_soon(self._handle, message)

    async def _handle(self, message: Message) -> None:
        try:
            settled = await self._settle(message)
        except Exception:  # a bug here must not stop the listener; the message comes back
            _log.exception("event_handling_crashed", message_id=message.message_id)
            settled = None
        finally:
            self._slots.release()
        if settled is None:
            return
        outcome, lag = settled
        self.observer.event(outcome, lag)
        try:
            await self.queue.delete(message)
        except QueueError as exc:
            _log.warning(
                "event_delete_failed", message_id=message.message_id, error=str(exc), fix=exc.fix
            )

    async def _settle(self, message: Message) -> tuple[str, float | None] | None:
        """The outcome and lag once the message may be deleted; None to leave it queued."""
        event = parse(message.body)
        if isinstance(event, Rejected):
            if event.outcome == "malformed":
                _log.warning("event_malformed", message_id=message.message_id, reason=event.reason)
            return event.outcome, None
        planned = plan(event, self.watched, self.region)
        if isinstance(planned, Rejected):
            return planned.outcome, None
        timeout = self.started_timeout if event.job_status == STARTED else REFRESH_TIMEOUT
        with anyio.move_on_after(timeout):
            ok = await self._refresh(event, planned)
            if ok is None:  # the app or branch is not there (any more): nothing to refresh
                return "ignored", None
            if ok:
                outcome = "refreshed" if planned.first == "none" else "unknown_branch"
                lag = None
                if event.job_status != STARTED and event.time is not None:
                    lag = max(0.0, self.wall() - event.time.timestamp())
                return outcome, lag
        _log.warning(
            "event_refresh_failed",
            app_id=event.key.app_id,
            branch=event.key.branch,
            job_id=event.job_id,
            detail="left in the queue for another delivery; polling goes on meanwhile",
        )
        return None

    async def _refresh(self, event: AmplifyEvent, planned: Plan) -> bool | None:
        """The refresh the event asks for, after what it needs first; None if the branch turns
        out not to exist."""
        key, scheduler = event.key, self.scheduler
        if planned.first == "discover":
            if not await scheduler.refresh(DISCOVER):
                return False
            if key.app_id not in self.watched.apps:
                return None
        if planned.first != "none":
            if not await scheduler.refresh(PollApp(key.app_id)):
                return False
            if key not in self.watched.branches:
                return None
        if event.job_status == STARTED:
            return await scheduler.follow(key, event.job_id)
        return await scheduler.refresh(PollBranch(key))
