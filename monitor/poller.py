"""One unit of polling work: discover apps, poll an app's branches, poll one branch's jobs.

Owns the in-memory picture of the fleet (apps, branches, their saved state), the rule for when
ListJobs can be skipped, and the order list -> diff -> enrich -> save -> metrics -> notify.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable
from dataclasses import replace

import anyio

from monitor import log
from monitor.amplify import AmplifyClient, AmplifyError, NotFound
from monitor.config import Settings, Target
from monitor.diff import AlertPolicy, diff
from monitor.metrics import Metrics
from monitor.model import (
    SUCCEED,
    Alert,
    App,
    Branch,
    BranchKey,
    BranchState,
    JobSummary,
    job_number,
)
from monitor.store.base import Store

_log = log.get(__name__)


def alert_policy(settings: Settings) -> AlertPolicy:
    """Alert on the union of [alerts] on and every route's own `on`; routes filter later."""
    statuses = set(settings.alerts.on)
    if settings.slack is not None:
        for route in settings.slack.routes:
            statuses.update(route.on or ())
    return AlertPolicy(on=frozenset(statuses), recovery=settings.alerts.recovery)


def _app_targets(targets: Iterable[Target], app: App) -> list[Target]:
    return [t for t in targets if t.app_id in ("*", app.app_id)]


def _branch_matches(targets: Iterable[Target], name: str) -> bool:
    return any(fnmatch.fnmatchcase(name, glob) for t in targets for glob in t.branches)


def needs_jobs(branch: Branch, state: BranchState | None) -> bool:
    """ListJobs only when ListBranches says something changed or a job is still unfinished."""
    if state is None or state.has_unfinished:
        return True
    if branch.total_jobs is None and branch.active_job_id is None:
        return True  # no change markers to trust
    return (branch.total_jobs, branch.active_job_id) != (state.total_jobs, state.active_job_id)


class Poller:
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
        self.settings = settings
        self.targets = settings.effective_targets()
        self.policy = alert_policy(settings)
        self.states = states
        self.apps: dict[str, App] = {}
        self.branches: dict[BranchKey, Branch] = {}
        self._on_alerts = on_alerts

    # --- discovery ---------------------------------------------------------------------------

    async def discover(self) -> tuple[set[str], set[str]]:
        """ListApps and keep the targeted ones; returns (added, removed) app ids."""
        listed = await self.client.list_apps()
        apps = {a.app_id: a for a in listed if _app_targets(self.targets, a)}
        for target in self.targets:
            if target.app_id != "*" and target.app_id not in apps:
                _log.warning("target_app_not_found", app_id=target.app_id)
        added = set(apps) - set(self.apps)
        removed = set(self.apps) - set(apps)
        for app_id in removed:
            await self.drop_app(app_id)
        self.apps = apps
        return added, removed

    async def drop_app(self, app_id: str) -> None:
        self.apps.pop(app_id, None)
        for key in [k for k in self.branches if k.app_id == app_id]:
            await self.drop_branch(key)
        for key in [k for k in self.states if k.app_id == app_id]:
            await self.drop_branch(key)

    async def drop_branch(self, key: BranchKey) -> None:
        _log.info("branch_dropped", app_id=key.app_id, branch=key.branch)
        self.branches.pop(key, None)
        self.states.pop(key, None)
        self.metrics.remove_branch(key)
        await self.store.delete(key)
        self.metrics.set_watched(len(self.branches))

    # --- polling -----------------------------------------------------------------------------

    async def poll_app(self, app_id: str) -> bool:
        """ListBranches, drop vanished branches, ListJobs where needed. True if all went well."""
        app = self.apps.get(app_id)
        if app is None:
            return True
        try:
            listed = await self.client.list_branches(app)
        except NotFound:
            _log.info("app_gone", app_id=app_id)
            await self.drop_app(app_id)
            return True
        except AmplifyError as exc:
            _log.warning("poll_failed", operation=exc.operation, app_id=app_id, error=exc.detail)
            return False
        targets = _app_targets(self.targets, app)
        current = {b.key: b for b in listed if _branch_matches(targets, b.key.branch)}
        known = {k for k in self.branches if k.app_id == app_id} | {
            k for k in self.states if k.app_id == app_id
        }
        for key in known - set(current):
            await self.drop_branch(key)
        self.branches.update(current)
        self.metrics.set_watched(len(self.branches))

        results: list[bool] = []

        async def one(branch: Branch) -> None:
            results.append(await self.poll_branch(branch))

        async with anyio.create_task_group() as tg:
            for branch in current.values():
                if needs_jobs(branch, self.states.get(branch.key)):
                    tg.start_soon(one, branch)
        return all(results)

    async def poll_branch(self, branch: Branch) -> bool:
        key = branch.key
        previous = self.states.get(key)
        try:
            jobs = await self._list_jobs(key, previous)
        except NotFound:
            await self.drop_branch(key)
            return True
        except AmplifyError as exc:
            _log.warning(
                "poll_failed",
                operation=exc.operation,
                app_id=key.app_id,
                branch=key.branch,
                error=exc.detail,
            )
            return False

        result = diff(branch, previous, jobs, self.policy)
        for anomaly in result.anomalies:
            _log.warning(
                "job_anomaly",
                app_id=key.app_id,
                branch=key.branch,
                job_id=anomaly.job_id,
                reason=anomaly.reason,
                detail=anomaly.detail,
            )
            self.metrics.anomaly(anomaly.reason)
        for t in result.transitions:
            _log.info(
                "job_transition",
                app_id=key.app_id,
                branch=key.branch,
                job_id=t.job.job_id,
                from_status=t.from_status,
                to_status=t.to_status,
            )
        if previous is None:
            _log.info("branch_baselined", app_id=key.app_id, branch=key.branch)
        alerts = [await self._enrich(a) for a in result.alerts]
        # Saved (with its alerts) before anyone is told: a crash now loses nothing, and a
        # replayed save cannot enqueue an alert twice.
        await self.store.save(result.state, alerts)
        self.states[key] = result.state
        self.metrics.apply(result.state, result.transitions)
        if alerts:
            self._on_alerts()
        return True

    async def _list_jobs(self, key: BranchKey, previous: BranchState | None) -> list[JobSummary]:
        if previous is None:
            return await self.client.list_jobs(key)
        wanted = [job_number(j) for j in previous.unfinished]
        since = min([previous.last_job_number, *wanted])
        jobs = await self.client.list_jobs(key, since=since)
        # An unfinished job older than everything listed (more new jobs than pages allowed):
        # ask for it directly rather than lose track of it.
        listed = {j.job_id for j in jobs}
        oldest = min((j.number for j in jobs), default=None)
        for job_id in previous.unfinished:
            if job_id not in listed and (oldest is None or job_number(job_id) < oldest):
                try:
                    jobs.append((await self.client.get_job(key, job_id)).summary)
                except NotFound:
                    continue
        return jobs

    async def _enrich(self, alert: Alert) -> Alert:
        """Add the failed step and its reason (GetJob); an alert is never lost for want of it."""
        alert = replace(alert, region=self.settings.aws.region)
        if alert.kind != "failure" or alert.status == SUCCEED:
            return alert  # only a failed or cancelled job has a step worth naming
        try:
            detail = await self.client.get_job(alert.key, alert.job.job_id)
        except AmplifyError as exc:
            _log.warning(
                "enrich_failed", app_id=alert.key.app_id, job_id=alert.job.job_id, error=exc.detail
            )
            return alert
        return replace(alert, steps=detail.steps)
