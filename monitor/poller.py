"""The polling units the scheduler runs: discover apps, list an app's branches, poll a branch.

Each unit does its calls, hands the answers to the pure `diff`, and records the outcome in the
order list -> diff -> enrich -> save -> metrics -> notify. Also owns how far ListBranches'
change markers are trusted (the safety sweep and the verdict when they hid a job).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import replace

from monitor import log
from monitor.amplify import AmplifyClient, AmplifyError, NotFound, Unauthorized
from monitor.config import Settings
from monitor.diff import AlertPolicy, diff, markers_lied, needs_jobs
from monitor.metrics import Metrics
from monitor.model import (
    CANCELLED,
    FAILED,
    Alert,
    Branch,
    BranchKey,
    BranchState,
    JobSummary,
    Markers,
    Priority,
    job_number,
)
from monitor.store.base import Store
from monitor.tasks import AppPoll, BranchPoll, Discovery
from monitor.watch import Watched

_log = log.get(__name__)

# DNS labels only: a display name or domain with anything else makes no link at all.
_HOST = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)+")


def _failed(event: str, exc: AmplifyError, **context: str) -> None:
    """A failed call, logged once here; an unauthorized one is the client's to tell (once per
    operation every few minutes, with the permission to grant), not once per app."""
    if isinstance(exc, Unauthorized):
        _log.debug(event, operation=exc.operation, error=exc.detail, **context)
    else:
        _log.warning(event, operation=exc.operation, error=exc.detail, **context)


def alert_policy(settings: Settings) -> AlertPolicy:
    """Alert on the union of [alerts] on and every route's own `on`; routes filter later."""
    statuses = set(settings.alerts.on)
    if settings.slack is not None:
        for route in settings.slack.routes:
            statuses.update(route.on or ())
    # Only a bot token can update a message: with a webhook, notify_start is ignored.
    bot = settings.slack is not None and settings.slack.webhook_url is None
    routes = settings.slack.routes if settings.slack is not None and bot else ()
    return AlertPolicy(
        on=frozenset(statuses),
        recovery=settings.alerts.recovery,
        progress=any(route.notify_start for route in routes),
    )


# The skip rule trusts ListBranches' change markers, which the API does not define precisely: a
# server may keep `activeJobId` on the deployed job and never move `totalNumberOfJobs`, so a job
# that fails would change neither. Branches the markers call unchanged are therefore still listed
# now and then, round-robin within each app: each app poll earns `SWEEP_SHARE` of a ListJobs
# (one branch every twentieth poll of the app: 5 % on top of the ListBranches of an idle fleet),
# and apps take turns. The diff still alerts on a job found this way, and if the next
# ListBranches shows the same markers, the trust ends for good.
SWEEP_SHARE = 0.05


class Sweep:
    """Which branches the markers call unchanged are listed anyway (see SWEEP_SHARE)."""

    def __init__(self) -> None:
        self._credit: dict[str, float] = {}
        self._last: dict[str, BranchKey] = {}
        self._seq = 0

    def add_app(self, app_id: str) -> None:
        # Staggered start, so a fleet discovered at once does not sweep all at once.
        turns = round(1 / SWEEP_SHARE)
        self._credit[app_id] = SWEEP_SHARE * (self._seq % turns)
        self._seq += 1

    def drop_app(self, app_id: str) -> None:
        self._credit.pop(app_id, None)
        self._last.pop(app_id, None)

    def choose(self, app_id: str, skipped: list[BranchKey]) -> list[BranchKey]:
        credit = self._credit.get(app_id, 0.0) + SWEEP_SHARE
        whole = int(credit + 1e-9)  # float dust: twenty twentieths make one
        self._credit[app_id] = max(0.0, credit - whole)
        if not whole or not skipped:
            return []
        ordered = sorted(skipped)
        last = self._last.get(app_id)
        if last is not None:
            ordered = [k for k in ordered if k > last] + [k for k in ordered if k <= last]
        chosen = ordered[:whole]
        self._last[app_id] = chosen[-1]
        return chosen


class Poller:
    calls_per_app = 1.0 + SWEEP_SHARE

    def __init__(
        self,
        client: AmplifyClient,
        store: Store,
        metrics: Metrics,
        settings: Settings,
        states: dict[BranchKey, BranchState],
        on_alerts: Callable[[], None] = lambda: None,
    ) -> None:
        self.client = client
        self.store = store
        self.metrics = metrics
        self.region = settings.aws.region
        self.policy = alert_policy(settings)
        self.watched = Watched(settings.effective_targets(), states)
        self._on_alerts = on_alerts
        self.sweep = Sweep()
        self.markers_trusted = True
        # Branches where a job turned up that the markers hid, with the markers shown then.
        self._suspects: dict[BranchKey, Markers] = {}

    @property
    def states(self) -> dict[BranchKey, BranchState]:
        return self.watched.states

    @property
    def branches(self) -> dict[BranchKey, Branch]:
        return self.watched.branches

    # --- replicas: apps coming and going -----------------------------------------------------

    async def adopt(self, app_ids: list[str]) -> None:
        """This replica now polls these apps: start from the states their last owner saved."""
        saved = await self.store.load_all()
        wanted = set(app_ids)
        by_app: dict[str, dict[BranchKey, BranchState]] = {a: {} for a in app_ids}
        for key, state in saved.items():
            if key.app_id in wanted:
                by_app[key.app_id][key] = state
        for app_id, states in by_app.items():
            self.watched.adopt(app_id, states)
            for state in states.values():
                self.metrics.apply(state)

    def release(self, app_ids: list[str]) -> None:
        """Another replica polls these apps now: its series, not ours, describe them."""
        for app_id in app_ids:
            for key in self.watched.disown(app_id):
                self.metrics.remove_branch(key)

    # --- discovery ---------------------------------------------------------------------------

    async def discover(self) -> Discovery:
        """ListApps and keep the targeted ones."""
        try:
            listed = await self.client.list_apps(Priority.DISCOVERY)
        except AmplifyError as exc:
            _failed("discovery_failed", exc)
            return Discovery(ok=False)
        watched = self.watched
        apps = watched.targeted_apps(listed)
        for app_id in watched.missing_targets(apps):
            _log.warning("target_app_not_found", app_id=app_id)
        added = set(apps) - set(watched.apps)
        removed = set(watched.apps) - set(apps)
        for app_id in removed:
            await self.drop_app(app_id)
        for app_id in sorted(added):
            self.sweep.add_app(app_id)
        watched.apps = apps
        return Discovery(ok=True, added=frozenset(added), removed=frozenset(removed))

    async def drop_app(self, app_id: str) -> None:
        for key in self.watched.known(app_id):
            await self.drop_branch(key)
        self.watched.forget_app(app_id)
        self.sweep.drop_app(app_id)

    async def drop_branch(self, key: BranchKey) -> None:
        _log.info("branch_dropped", app_id=key.app_id, branch=key.branch)
        self._suspects.pop(key, None)
        self.watched.forget_branch(key)
        self.metrics.remove_branch(key)
        await self.store.delete(key)
        self.metrics.set_watched(len(self.watched.branches))

    # --- an app ------------------------------------------------------------------------------

    async def poll_app(self, app_id: str) -> AppPoll:
        """ListBranches: drop vanished branches, say which need their jobs listed."""
        app = self.watched.apps.get(app_id)
        if app is None:
            return AppPoll(ok=True)
        try:
            listed = await self.client.list_branches(app, Priority.APP)
        except NotFound:
            _log.info("app_gone", app_id=app_id)
            dropped = tuple(self.watched.known(app_id))
            await self.drop_app(app_id)
            return AppPoll(ok=True, dropped=dropped)
        except AmplifyError as exc:
            _failed("poll_failed", exc, app_id=app_id)
            return AppPoll(ok=False)
        current = self.watched.targeted_branches(app, listed)
        dropped = tuple(self.watched.known(app_id) - set(current))
        for key in dropped:
            await self.drop_branch(key)
        self.watched.set_branches(app_id, current)
        self.metrics.set_watched(len(self.watched.branches))
        for key, branch in current.items():
            shown = self._suspects.pop(key, None)
            if shown is not None and markers_lied(shown, branch):
                self._distrust_markers(key)

        changed = tuple(
            key
            for key, branch in current.items()
            if not self.markers_trusted or needs_jobs(branch, self.states.get(key))
        )
        skipped = [key for key in current if key not in changed]
        return AppPoll(
            ok=True,
            changed=changed,
            swept=tuple(self.sweep.choose(app_id, skipped)),
            dropped=dropped,
        )

    def _distrust_markers(self, key: BranchKey) -> None:
        if not self.markers_trusted:
            return
        self.markers_trusted = False
        _log.warning(
            "change_markers_unreliable",
            app_id=key.app_id,
            branch=key.branch,
            detail="ListBranches markers stayed put over a new job: listing every branch",
        )
        self.metrics.anomaly("markers_missed_job")

    # --- a branch ----------------------------------------------------------------------------

    async def poll_branch(self, key: BranchKey, priority: Priority) -> BranchPoll:
        branch = self.watched.branches.get(key)
        if branch is None:
            return BranchPoll(ok=True)  # dropped since it was planned
        previous = self.states.get(key)
        try:
            jobs, vanished = await self._list_jobs(key, previous, priority)
        except NotFound:
            await self.drop_branch(key)
            return BranchPoll(ok=True)
        except AmplifyError as exc:
            _failed("poll_failed", exc, app_id=key.app_id, branch=key.branch)
            return BranchPoll(ok=False, in_flight=previous is not None and previous.in_flight)

        result = diff(branch, previous, jobs, self.policy, vanished)
        for anomaly in result.anomalies:
            _log.warning(
                "api_anomaly",
                reason=anomaly.reason,
                app_id=key.app_id,
                branch=key.branch,
                job_id=anomaly.job_id,
                detail=anomaly.detail,
            )
            self.metrics.anomaly(anomaly.reason)
        # Only a sweep tests the markers: an event or a follow-up lists a branch between two
        # listings on purpose, and a listing that lags behind it proves nothing.
        if result.unannounced and priority is Priority.SWEEP:
            self._suspects[key] = branch.markers
        alerts = [await self._enrich(a) for a in result.alerts]
        if key not in self.watched.branches:
            return BranchPoll(ok=True)  # its app's listing dropped it meanwhile: keep nothing
        # Saved (with its alerts) before anyone is told: a crash now loses nothing, and a
        # replayed save cannot enqueue an alert twice.
        await self.store.save(result.state, alerts)
        self.states[key] = result.state
        self.metrics.apply(result.state, result.transitions)
        if alerts:
            self._on_alerts()
        return BranchPoll(ok=True, in_flight=result.state.in_flight)

    async def _list_jobs(
        self, key: BranchKey, previous: BranchState | None, priority: Priority
    ) -> tuple[list[JobSummary], set[str]]:
        """The jobs to diff, and the followed jobs the API no longer knows (GetJob: 404)."""
        if previous is None:
            return await self.client.list_jobs(key, priority=priority), set()
        wanted = [job_number(j) for j in previous.unfinished]
        since = min([previous.last_job_number, *wanted])
        jobs = await self.client.list_jobs(key, since=since, priority=priority)
        # An unfinished job missing from the listing (more new jobs than one listing holds, or
        # a server that let it go): ask for it directly rather than lose track of it.
        listed = {j.job_id for j in jobs}
        vanished: set[str] = set()
        for job_id in previous.unfinished:
            if job_id not in listed:
                try:
                    jobs.append((await self.client.get_job(key, job_id, priority)).summary)
                except NotFound:
                    vanished.add(job_id)
        return jobs, vanished

    def _branch_url(self, key: BranchKey) -> str:
        """The branch's site, from what ListApps and ListBranches said (no call of its own);
        empty when either part is missing or is not a plain host name."""
        app = self.watched.apps.get(key.app_id)
        branch = self.watched.branches.get(key)
        if app is None or branch is None:
            return ""
        host = f"{branch.display_name}.{app.default_domain}".lower()
        if not branch.display_name or not _HOST.fullmatch(host):
            return ""
        return f"https://{host}"

    async def _enrich(self, alert: Alert) -> Alert:
        """Add the failed step and its reason (GetJob); an alert is never lost for want of it."""
        alert = replace(alert, region=self.region, branch_url=self._branch_url(alert.key))
        if alert.kind == "recovery" or alert.status not in (FAILED, CANCELLED):
            return alert  # only a failed or cancelled job has a step worth naming
        try:
            detail = await self.client.get_job(alert.key, alert.job.job_id, Priority.ENRICH)
        except AmplifyError as exc:
            _failed("enrich_failed", exc, app_id=alert.key.app_id, job_id=alert.job.job_id)
            return alert
        return replace(alert, steps=detail.steps)
