"""The only module that knows aioboto3: Amplify calls in, our frozen dataclasses out.

Owns pagination (incremental for ListJobs), pacing and concurrency limits, per-call metrics,
and mapping botocore errors to four exception types the rest of the code can act on.

Pacing is per HTTP attempt, not per call: botocore retries a throttled or failed call by itself,
and each retry spends the same API budget, so the pacer is asked from botocore's own
`before-send` event and told of each throttle from `needs-retry`.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aioboto3
import anyio
from aiobotocore.config import AioConfig
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from monitor import __version__, log
from monitor.config import AwsSettings
from monitor.model import App, Branch, BranchKey, JobDetail, JobSummary, Priority, Step
from monitor.observe import NullObserver, Observer
from monitor.pacing import BudgetShort, Pacer, SharedBudget

_log = log.get(__name__)

MAX_JOBS_PAGE = 50
# An incremental ListJobs pages back to the last job seen; a server may serve fewer jobs per page
# than asked (even one), so the bound is on jobs, with pages bounded only against a server loop.
MAX_JOBS_LISTED = 500
MAX_JOBS_PAGES = 100
MAX_BRANCHES_PAGE = 50
MAX_APPS_PAGE = 100
# ListApps and ListBranches list everything; these bound a server that never stops paging
# (100,000 apps, 5,000 branches an app) without ever cutting a real listing short.
MAX_APPS_PAGES = 1000
MAX_BRANCHES_PAGES = 100
# An unauthorized call is told once per operation, then again at most this often: every app
# of an account failing every interval is one problem, not a thousand lines a minute.
UNAUTHORIZED_REPEAT_SECONDS = 300.0

# Seconds a sweep or a discovery call waits for the API budget before it is skipped.
LOW_PRIORITY_PATIENCE = 10.0


class AmplifyError(Exception):
    """An Amplify call failed; `operation` names it, the message is safe to log."""

    outcome = "error"

    def __init__(self, operation: str, message: str, code: str = "") -> None:
        super().__init__(f"{operation}: {message}")
        self.operation = operation
        self.code = code
        self.detail = message


class Throttled(AmplifyError):
    outcome = "throttled"


class NotFound(AmplifyError):
    outcome = "not_found"


class Unauthorized(AmplifyError):
    outcome = "unauthorized"


class BadRequest(AmplifyError):
    outcome = "bad_request"


class Transient(AmplifyError):
    """Network errors, timeouts and 5xx: try again next cycle."""


_THROTTLE_CODES = {"LimitExceededException", "TooManyRequestsException", "ThrottlingException"}
_AUTH_CODES = {
    "UnauthorizedException",
    "AccessDeniedException",
    "AccessDenied",
    "ExpiredTokenException",
    "InvalidSignatureException",
    "UnrecognizedClientException",
    "InvalidClientTokenId",
    "SignatureDoesNotMatch",
}


def _map_client_error(operation: str, exc: ClientError) -> AmplifyError:
    error = exc.response.get("Error", {})
    code = str(error.get("Code", ""))
    message = str(error.get("Message", "")) or code
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    if code in _THROTTLE_CODES or status == 429:
        return Throttled(operation, message, code)
    if code == "NotFoundException" or status == 404:
        return NotFound(operation, message, code)
    if code in _AUTH_CODES or status in (401, 403):
        return Unauthorized(operation, message, code)
    if code == "BadRequestException" or (400 <= status < 500):
        return BadRequest(operation, message, code)
    return Transient(operation, message, code)


@dataclass
class _Attempts:
    """What the attempts of one call share: its priority, and the time they waited for tokens."""

    priority: Priority
    waited: float = 0.0


# Set around each call; botocore's event handlers run in the calling task, so they see it.
_CALL: ContextVar[_Attempts | None] = ContextVar("amplify_call", default=None)


def _is_throttle(response: Any) -> bool:
    if not isinstance(response, tuple) or len(response) != 2:
        return False
    http, parsed = response
    code = str((parsed or {}).get("Error", {}).get("Code", "")) if isinstance(parsed, dict) else ""
    return code in _THROTTLE_CODES or getattr(http, "status_code", 0) == 429


def _time(value: Any) -> datetime | None:
    if not isinstance(value, datetime):
        return None
    # botocore leaves an ISO timestamp without an offset naive; the API's clock is UTC.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def _job_summary(raw: dict[str, Any]) -> JobSummary:
    return JobSummary(
        job_id=str(raw.get("jobId", "")),
        status=str(raw.get("status", "")),
        job_type=str(raw.get("jobType", "")),
        commit_id=str(raw.get("commitId", "")),
        commit_message=str(raw.get("commitMessage", "")),
        commit_time=_time(raw.get("commitTime")),
        start_time=_time(raw.get("startTime")),
        end_time=_time(raw.get("endTime")),
    )


def _step(raw: dict[str, Any]) -> Step:
    return Step(
        name=str(raw.get("stepName", "")),
        status=str(raw.get("status", "")),
        start_time=_time(raw.get("startTime")),
        end_time=_time(raw.get("endTime")),
        log_url=str(raw.get("logUrl", "")),
        status_reason=str(raw.get("statusReason", "")),
    )


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def default_region(profile: str | None = None) -> str | None:
    """The region botocore's chain resolves (AWS_DEFAULT_REGION, the profile's config), or None.

    For commands whose region is optional (deploy, wait); the daemon's config names its own.
    """
    try:
        session = aioboto3.Session(profile_name=profile) if profile else aioboto3.Session()
    except BotoCoreError as exc:  # e.g. ProfileNotFound: a config problem, not a transient one
        raise BadRequest("Session", str(exc)) from None
    region = session.region_name
    return str(region) if region else None


class AmplifyClient:
    """Paced, limited, observed Amplify calls. Build it with `AmplifyClient.connect(...)`."""

    def __init__(
        self,
        client: Any,
        *,
        observer: Observer,
        pacer: Pacer,
        max_concurrency: int,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._client = client
        self._observer = observer
        self.pacer = pacer
        self._limiter = anyio.CapacityLimiter(max_concurrency)
        self._clock = clock
        self._unauthorized_told: dict[str, float] = {}
        events = getattr(getattr(client, "meta", None), "events", None)
        if events is not None:
            events.register("before-send.amplify", self._pace_attempt)
            events.register("needs-retry.amplify", self._attempt_answered)

    async def _pace_attempt(self, **_: Any) -> None:
        """Every HTTP attempt, retries included, waits for a token at its call's priority.
        Returns None: a value here would stand in for the HTTP response."""
        call = _CALL.get()
        priority = call.priority if call else Priority.ENRICH
        # A sweep or a discovery can wait: under a budget saturated by more urgent work it
        # would wait for ever, holding its branch (whose news then has no way in) with it.
        patience = LOW_PRIORITY_PATIENCE if priority >= Priority.SWEEP else None
        waited = await self.pacer.acquire(priority, patience)
        self._observer.budget_wait(priority, waited)
        if call:
            call.waited += waited

    def _attempt_answered(self, response: Any = None, **_: Any) -> None:
        """Each throttled attempt halves the rate, also the ones botocore then retries.
        Returns None: a value here would decide botocore's retry."""
        if _is_throttle(response):
            self.pacer.throttled()

    @classmethod
    @asynccontextmanager
    async def connect(
        cls,
        aws: AwsSettings,
        *,
        observer: Observer | None = None,
        max_concurrency: int = 16,
        requests_per_second: float = 20.0,
        shared_budget: SharedBudget | None = None,
    ) -> AsyncIterator[AmplifyClient]:
        config = AioConfig(
            # max_attempts left to botocore (3, or AWS_MAX_ATTEMPTS) so operators can tune it.
            retries={"mode": "standard"},
            max_pool_connections=max_concurrency,
            connect_timeout=aws.connect_timeout_seconds,
            read_timeout=aws.read_timeout_seconds,
            user_agent_extra=f"amplify-monitor/{__version__}",
        )
        async with AsyncExitStack() as stack:
            try:
                session = aioboto3.Session(profile_name=aws.profile)
                client = await stack.enter_async_context(
                    session.client(
                        "amplify",
                        region_name=aws.region,
                        endpoint_url=aws.endpoint_url,
                        config=config,
                    )
                )
            except BotoCoreError as exc:  # unknown profile, bad endpoint URL, ...
                raise AmplifyError("connect", str(exc)) from None
            yield cls(
                client,
                observer=observer or NullObserver(),
                pacer=Pacer(requests_per_second, shared=shared_budget),
                max_concurrency=max_concurrency,
            )

    async def _call(
        self, operation: str, method: str, priority: Priority = Priority.ENRICH, **params: Any
    ) -> dict[str, Any]:
        async with self._limiter:
            attempts = _Attempts(priority)
            token = _CALL.set(attempts)
            started = self._clock()
            outcome = "ok"
            try:
                response: dict[str, Any] = await getattr(self._client, method)(**params)
                self.pacer.succeeded()
                return response
            except ClientError as exc:
                error = _map_client_error(operation, exc)
                outcome = error.outcome
                if isinstance(error, Unauthorized):
                    self._tell_unauthorized(error)
                raise error from None
            except NoCredentialsError as exc:
                outcome = "unauthorized"
                error = Unauthorized(operation, str(exc))
                self._tell_unauthorized(error)
                raise error from None
            except BudgetShort as exc:
                outcome = "skipped"
                raise Transient(operation, str(exc)) from None
            except (BotoCoreError, OSError, TimeoutError) as exc:
                outcome = "error"
                raise Transient(operation, f"{type(exc).__name__}: {exc}") from None
            finally:
                _CALL.reset(token)
                # The call's own time: waits for the budget are reported apart, as budget_wait.
                elapsed = self._clock() - started - attempts.waited
                self._observer.api_request(operation, outcome, max(0.0, elapsed))

    def _tell_unauthorized(self, error: Unauthorized) -> None:
        now = self._clock()
        last = self._unauthorized_told.get(error.operation)
        if last is not None and now - last < UNAUTHORIZED_REPEAT_SECONDS:
            return
        self._unauthorized_told[error.operation] = now
        _log.warning(
            "api_unauthorized",
            operation=error.operation,
            code=error.code,
            error=error.detail,
            fix=f"grant amplify:{error.operation} to the daemon's role "
            "(deploy/aws/iam-daemon.json), or renew its credentials",
            repeated_at_most_every_seconds=UNAUTHORIZED_REPEAT_SECONDS,
        )

    async def _listing(
        self,
        operation: str,
        method: str,
        member: str,
        priority: Priority,
        max_pages: int,
        **params: Any,
    ) -> list[dict[str, Any]]:
        """Every page of a listing that must be whole. A server that repeats a nextToken or
        pages past `max_pages` fails the call (counted as an anomaly): a listing cut short
        would look like apps or branches deleted."""
        items: list[dict[str, Any]] = []
        token: str | None = None
        seen: set[str] = set()
        for _ in range(max_pages):
            page = await self._call(
                operation, method, priority, **params, **({"nextToken": token} if token else {})
            )
            items.extend(page.get(member, []))
            token = page.get("nextToken")
            if not token:
                return items
            if token in seen:
                raise self._endless(operation, "repeated_next_token", "a nextToken came back")
            seen.add(token)
        raise self._endless(operation, "too_many_pages", f"more than {max_pages} pages")

    def _endless(self, operation: str, reason: str, detail: str) -> AmplifyError:
        _log.warning("api_anomaly", operation=operation, reason=reason, detail=detail)
        self._observer.anomaly(reason)
        return Transient(operation, f"paging did not end ({detail}); trying again later")

    async def list_apps(self, priority: Priority = Priority.ENRICH) -> list[App]:
        listed = await self._listing(
            "ListApps", "list_apps", "apps", priority, MAX_APPS_PAGES, maxResults=MAX_APPS_PAGE
        )
        return [
            App(
                app_id=str(raw["appId"]),
                name=str(raw.get("name", "")),
                default_domain=str(raw.get("defaultDomain", "")),
            )
            for raw in listed
        ]

    async def get_app(self, app_id: str) -> App:
        response = await self._call("GetApp", "get_app", appId=app_id)
        raw = response.get("app", {})
        return App(
            app_id=str(raw.get("appId", app_id)),
            name=str(raw.get("name", "")),
            default_domain=str(raw.get("defaultDomain", "")),
        )

    async def list_branches(self, app: App, priority: Priority = Priority.ENRICH) -> list[Branch]:
        listed = await self._listing(
            "ListBranches",
            "list_branches",
            "branches",
            priority,
            MAX_BRANCHES_PAGES,
            appId=app.app_id,
            maxResults=MAX_BRANCHES_PAGE,
        )
        return [
            Branch(
                key=BranchKey(app.app_id, str(raw["branchName"])),
                app_name=app.name,
                active_job_id=(str(raw["activeJobId"]) if raw.get("activeJobId") else None),
                total_jobs=_int_or_none(raw.get("totalNumberOfJobs")),
                display_name=str(raw.get("displayName", "")),
            )
            for raw in listed
        ]

    async def list_jobs(
        self, key: BranchKey, *, since: int | None = None, priority: Priority = Priority.ENRICH
    ) -> list[JobSummary]:
        """Jobs newest first. With `since`, page only until a job numbered <= since appears
        (the API lists newest first, so everything older is already known); without it, one page.
        """
        jobs: list[JobSummary] = []
        token: str | None = None
        seen_tokens: set[str] = set()
        for _ in range(MAX_JOBS_PAGES):
            params: dict[str, Any] = {
                "appId": key.app_id,
                "branchName": key.branch,
                "maxResults": MAX_JOBS_PAGE,
            }
            if token:
                params["nextToken"] = token
            page = await self._call("ListJobs", "list_jobs", priority, **params)
            batch = [_job_summary(raw) for raw in page.get("jobSummaries", [])]
            jobs.extend(batch)
            token = page.get("nextToken")
            if not token or since is None or not batch or token in seen_tokens:
                break
            seen_tokens.add(token)
            if min(job.number for job in batch) <= since or len(jobs) >= MAX_JOBS_LISTED:
                break
        return jobs

    async def get_job(
        self, key: BranchKey, job_id: str, priority: Priority = Priority.ENRICH
    ) -> JobDetail:
        response = await self._call(
            "GetJob", "get_job", priority, appId=key.app_id, branchName=key.branch, jobId=job_id
        )
        job = response.get("job", {})
        return JobDetail(
            summary=_job_summary(job.get("summary", {})),
            steps=tuple(_step(raw) for raw in job.get("steps", [])),
        )

    async def create_deployment(self, key: BranchKey) -> tuple[str, str]:
        """CreateDeployment for a zip upload: returns (job_id, zip_upload_url)."""
        response = await self._call(
            "CreateDeployment", "create_deployment", appId=key.app_id, branchName=key.branch
        )
        return str(response.get("jobId", "")), str(response["zipUploadUrl"])

    async def start_deployment(
        self,
        key: BranchKey,
        *,
        job_id: str | None = None,
        source_url: str | None = None,
        source_url_type: str | None = None,
    ) -> JobSummary:
        params: dict[str, Any] = {"appId": key.app_id, "branchName": key.branch}
        if job_id:
            params["jobId"] = job_id
        if source_url:
            params["sourceUrl"] = source_url
        if source_url_type:
            params["sourceUrlType"] = source_url_type
        response = await self._call("StartDeployment", "start_deployment", **params)
        return _job_summary(response.get("jobSummary", {}))
