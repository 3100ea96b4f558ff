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


# The skip rule trusts ListBranches' change markers, which the API does not define precisely: a
# server may keep `activeJobId` on the deployed job and never move `totalNumberOfJobs`, so a job
# that fails would change neither. Branches the markers call unchanged are therefore still listed
# now and then, round-robin within each app: each app poll lists `SWEEP_SHARE` more branches
# (a fifth of the ListBranches cost of an idle fleet), but at least `SWEEP_FLOOR` a fleet interval
# in a small fleet, where skipping saves little. The diff still alerts on a job found this way
# (every job newer than the last one seen counts), and if the next ListBranches shows the same
# markers (the job did not merely start after the last one answered), the trust ends for good.
SWEEP_SHARE = 0.2
SWEEP_FLOOR = 10.0


def markers_unchanged(branch: Branch, state: BranchState) -> bool:
    if branch.total_jobs is None and branch.active_job_id is None:
        return False  # no change markers to trust
    return (branch.total_jobs, branch.active_job_id) == (state.total_jobs, state.active_job_id)


def needs_jobs(branch: Branch, state: BranchState | None) -> bool:
    """ListJobs only when ListBranches says something changed or a job is still unfinished."""
    if state is None or state.has_unfinished:
        return True
    return not markers_unchanged(branch, state)


def _markers_listed(branch: Branch, state: BranchState) -> bool:
    """False when ListBranches names a job the listing did not show yet (a lagging replica):
    remembering those markers would skip the branch before its new job was ever seen."""
    active = branch.active_job_id
    return active is None or job_number(active) <= state.last_job_number


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
        self.markers_trusted = True
        # Per app: sweep credit (staggered so apps take turns) and the last branch swept.
        self._sweep_credit: dict[str, float] = {}
        self._sweep_last: dict[str, BranchKey] = {}
        self._sweep_seq = 0
        # Branches whose markers hid a new job, with the markers they showed then.
        self._suspects: dict[BranchKey, tuple[int | None, str | None]] = {}

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
        for app_id in sorted(added):
            self._sweep_credit[app_id] = SWEEP_SHARE * (self._sweep_seq % round(1 / SWEEP_SHARE))
            self._sweep_seq += 1
        self.apps = apps
        return added, removed

    async def drop_app(self, app_id: str) -> None:
        self.apps.pop(app_id, None)
        self._sweep_credit.pop(app_id, None)
        self._sweep_last.pop(app_id, None)
        for key in self._known(app_id):
            await self.drop_branch(key)

    def _known(self, app_id: str) -> set[BranchKey]:
        """An app's branches seen this run or remembered from a previous one."""
        return {k for k in (*self.branches, *self.states) if k.app_id == app_id}

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
        for key in self._known(app_id) - set(current):
            self._suspects.pop(key, None)
            await self.drop_branch(key)
        self.branches.update(current)
        self.metrics.set_watched(len(self.branches))
        for key, branch in current.items():
            shown = self._suspects.pop(key, None)
            if shown is not None and shown == (branch.total_jobs, branch.active_job_id):
                self._distrust_markers(key)

        results: list[bool] = []

        async def one(branch: Branch) -> None:
            results.append(await self.poll_branch(branch))

        wanted = [
            b
            for b in current.values()
            if not self.markers_trusted or needs_jobs(b, self.states.get(b.key))
        ]
        wanted += self._sweep(app_id, [b for b in current.values() if b not in wanted])
        async with anyio.create_task_group() as tg:
            for branch in wanted:
                tg.start_soon(one, branch)
        return all(results)

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

    def _sweep(self, app_id: str, skipped: list[Branch]) -> list[Branch]:
        """The skipped branches to list anyway this time (see SWEEP_SHARE)."""
        rate = max(SWEEP_SHARE, SWEEP_FLOOR / max(1, len(self.apps)))
        credit = self._sweep_credit.get(app_id, 0.0) + rate
        whole = int(credit + 1e-9)  # float dust: five fifths make one
        self._sweep_credit[app_id] = max(0.0, credit - whole)
        if not whole or not skipped:
            return []
        ordered = sorted(skipped, key=lambda b: b.key)
        last = self._sweep_last.get(app_id)
        if last is not None:
            ordered = [b for b in ordered if b.key > last] + [b for b in ordered if b.key <= last]
        chosen = ordered[:whole]
        self._sweep_last[app_id] = chosen[-1].key
        return chosen

    async def poll_branch(self, branch: Branch) -> bool:
        key = branch.key
        previous = self.states.get(key)
        # Listed although the markers said "no news": a sweep, which tests the markers.
        skippable = previous is not None and not needs_jobs(branch, previous)
        try:
            jobs, vanished = await self._list_jobs(key, previous)
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
        state = result.state
        if vanished:
            # Followed forever otherwise, at the active interval, with a GetJob each time.
            _log.warning(
                "job_vanished", app_id=key.app_id, branch=key.branch, job_ids=sorted(vanished)
            )
            self.metrics.anomaly("job_vanished")
            unfinished = {j: s for j, s in state.unfinished.items() if j not in vanished}
            state = replace(state, unfinished=unfinished)
        if not _markers_listed(branch, state):
            state = replace(
                state,
                active_job_id=previous.active_job_id if previous else None,
                total_jobs=previous.total_jobs if previous else None,
            )
        if skippable and any(t.from_status is None for t in result.transitions):
            # A new job the markers did not announce. It may have started just after
            # ListBranches answered; if the markers still say the same next time, they lie.
            self._suspects[key] = (branch.total_jobs, branch.active_job_id)
        alerts = [await self._enrich(a) for a in result.alerts]
        # Saved (with its alerts) before anyone is told: a crash now loses nothing, and a
        # replayed save cannot enqueue an alert twice.
        await self.store.save(state, alerts)
        self.states[key] = state
        self.metrics.apply(state, result.transitions)
        if alerts:
            self._on_alerts()
        return True

    async def _list_jobs(
        self, key: BranchKey, previous: BranchState | None
    ) -> tuple[list[JobSummary], set[str]]:
        """The jobs to diff, and the followed jobs the API no longer knows (GetJob: 404)."""
        if previous is None:
            return await self.client.list_jobs(key), set()
        wanted = [job_number(j) for j in previous.unfinished]
        since = min([previous.last_job_number, *wanted])
        jobs = await self.client.list_jobs(key, since=since)
        # An unfinished job missing from the listing (more new jobs than one listing holds, or
        # a server that let it go): ask for it directly rather than lose track of it.
        listed = {j.job_id for j in jobs}
        vanished: set[str] = set()
        for job_id in previous.unfinished:
            if job_id not in listed:
                try:
                    jobs.append((await self.client.get_job(key, job_id)).summary)
                except NotFound:
                    vanished.add(job_id)
        return jobs, vanished

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
