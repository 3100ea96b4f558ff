"""The heart: previous branch state + the jobs just listed -> new state, transitions, alerts.

Owns every rule about what a branch's state becomes, including the ones about ListBranches'
change markers (when ListJobs may be skipped, when markers are not remembered, when they hid a
job). Pure: no clock, no I/O, no logging. Oddities in the API's answer come back as `Anomaly`
values for the caller to log and count.
"""

from __future__ import annotations

from collections.abc import Iterable, Set
from dataclasses import dataclass, replace

from monitor.model import (
    FAILED,
    SUCCEED,
    Alert,
    Anomaly,
    Branch,
    BranchState,
    DiffResult,
    JobSummary,
    Markers,
    Transition,
    is_terminal,
    is_unfinished,
    job_number,
    status_rank,
)


@dataclass(frozen=True)
class AlertPolicy:
    """:param progress: some route keeps a living message per job (``notify_start``): every
    transition that raises no other alert raises a "progress" one."""

    on: frozenset[str] = frozenset({"FAILED", "CANCELLED"})
    recovery: bool = True
    progress: bool = False


def _is_backwards(old: str, new: str) -> bool:
    """A job never leaves a terminal status nor moves back a step; unknown statuses pass."""
    if is_terminal(old):
        return True
    old_rank, new_rank = status_rank(old), status_rank(new)
    return old_rank is not None and new_rank is not None and new_rank < old_rank


def markers_unchanged(branch: Branch, state: BranchState) -> bool:
    if branch.total_jobs is None and branch.active_job_id is None:
        return False  # no change markers to trust
    return branch.markers == state.markers


def needs_jobs(branch: Branch, state: BranchState | None) -> bool:
    """ListJobs only when ListBranches says something changed or a job is still unfinished."""
    if state is None or state.has_unfinished:
        return True
    return not markers_unchanged(branch, state)


def markers_lied(shown: Markers, branch: Branch) -> bool:
    """A job the markers did not announce was found while they showed `shown`. It may have
    started just after ListBranches answered; if the next ListBranches still shows the same
    markers, they hide jobs."""
    return shown == branch.markers


def _markers_listed(branch: Branch, state: BranchState) -> bool:
    """False when ListBranches names a job the listing did not show yet (a lagging replica):
    remembering those markers would skip the branch before its new job was ever seen."""
    active = branch.active_job_id
    return active is None or job_number(active) <= state.last_job_number


def _markers_after(branch: Branch, jobs: Iterable[JobSummary]) -> Markers | None:
    """The markers the next ListBranches should show, when ListJobs saw jobs newer than the
    listing's active job (an event asked for it between two listings); None otherwise.
    Remembering the listing's own markers would make the next listing look changed and list
    the branch once more for nothing. Assumes totalNumberOfJobs counts jobs and activeJobId names
    the newest; on a server where they do not, the prediction misses and costs that one ListJobs
    (the same as not predicting); it can never hide a job, whose start moves the total on."""
    listed = job_number(branch.active_job_id) if branch.active_job_id else 0
    if branch.total_jobs is not None and branch.total_jobs > listed:
        return None  # the listing's two markers are out of step: predict nothing from them
    newer = {j.job_id: j for j in jobs if j.number > listed}
    if not newer:
        return None
    newest = max(newer.values(), key=lambda j: j.number)
    total = branch.total_jobs + len(newer) if branch.total_jobs is not None else None
    return total, newest.job_id


def baseline(branch: Branch, jobs: Iterable[JobSummary]) -> BranchState:
    """First sighting: remember where the branch is, alert nothing about its history."""
    ordered = sorted(jobs, key=lambda j: j.number)
    successes = [j.end_time for j in ordered if j.status == SUCCEED and j.end_time]
    return BranchState(
        key=branch.key,
        app_name=branch.app_name,
        latest=ordered[-1] if ordered else None,
        unfinished={j.job_id: j.status for j in ordered if is_unfinished(j.status)},
        last_success_time=max(successes) if successes else None,
        active_job_id=branch.active_job_id,
        total_jobs=branch.total_jobs,
    )


def diff(
    branch: Branch,
    previous: BranchState | None,
    jobs: Iterable[JobSummary],
    policy: AlertPolicy = AlertPolicy(),
    vanished: Set[str] = frozenset(),
) -> DiffResult:
    """Compare what was known of `branch` with `jobs` (any order, possibly only the newest page).

    Every job newer than the latest one known is considered, even if it started and finished
    between two polls; a followed (unfinished) job is considered when its status moved forward.
    A job leaves `unfinished` the moment it is terminal, so no job raises the same alert twice.
    `vanished` names followed jobs the API no longer knows (GetJob answered 404): they stop being
    followed, which would otherwise go on forever.
    """
    jobs = list(jobs)
    result = _compare(branch, previous, jobs, policy)
    state = result.state
    anomalies = list(result.anomalies)
    gone = sorted(j for j in vanished if j in state.unfinished)
    if gone:
        state = replace(
            state, unfinished={j: s for j, s in state.unfinished.items() if j not in gone}
        )
        anomalies += [Anomaly(branch.key, j, "job_vanished") for j in gone]
    predicted = _markers_after(branch, jobs)
    if not _markers_listed(branch, state):
        state = replace(
            state,
            active_job_id=previous.active_job_id if previous else None,
            total_jobs=previous.total_jobs if previous else None,
        )
    elif predicted is not None:
        state = replace(state, total_jobs=predicted[0], active_job_id=predicted[1])
    # Listed although the markers said "no news" (a sweep): a new job means they hid it.
    skippable = previous is not None and not needs_jobs(branch, previous)
    unannounced = skippable and any(t.from_status is None for t in result.transitions)
    return replace(result, state=state, anomalies=tuple(anomalies), unannounced=unannounced)


def _compare(
    branch: Branch,
    previous: BranchState | None,
    jobs: Iterable[JobSummary],
    policy: AlertPolicy,
) -> DiffResult:
    if previous is None:
        return DiffResult(state=baseline(branch, jobs))

    ordered = sorted({j.job_id: j for j in jobs}.values(), key=lambda j: j.number)
    key = branch.key
    latest = previous.latest
    unfinished = dict(previous.unfinished)
    last_success = previous.last_success_time
    failing = previous.failing_job_id
    transitions: list[Transition] = []
    alerts: list[Alert] = []
    anomalies: list[Anomaly] = []

    if ordered and latest is not None and ordered[-1].number < latest.number:
        anomalies.append(
            Anomaly(
                key, ordered[-1].job_id, "listing_went_backwards", f"latest known {latest.job_id}"
            )
        )

    for job in ordered:
        if latest is not None and job.number <= latest.number and job.job_id not in unfinished:
            if job.job_id == latest.job_id and job.status != latest.status:
                anomalies.append(
                    Anomaly(
                        key, job.job_id, "status_went_backwards", f"{latest.status}->{job.status}"
                    )
                )
            continue

        old = unfinished.get(job.job_id)
        if old is not None and job.status != old and _is_backwards(old, job.status):
            anomalies.append(
                Anomaly(key, job.job_id, "status_went_backwards", f"{old}->{job.status}")
            )
            continue
        if old is not None and job.status == old:
            if latest is not None and job.job_id == latest.job_id:
                latest = job  # same status, fresher fields (end time, commit)
            continue

        transitions.append(Transition(key, job, old, job.status))
        if is_terminal(job.status):
            unfinished.pop(job.job_id, None)
        else:
            unfinished[job.job_id] = job.status
        if latest is None or job.number >= latest.number:
            latest = job

        success_before = last_success
        if job.status == SUCCEED and job.end_time is not None:
            last_success = max(last_success, job.end_time) if last_success else job.end_time

        recovers = (
            job.status == SUCCEED and failing is not None and job.number > job_number(failing)
        )
        # One alert per job and status: with SUCCEED in policy.on, the recovering job's alert
        # is the recovery (it names the failed job), not a second alert with the same dedup_key.
        if recovers and policy.recovery:
            alerts.append(
                Alert(
                    key,
                    branch.app_name,
                    "recovery",
                    job,
                    last_success_time=success_before,
                    failed_job_id=failing,
                )
            )
        elif job.status in policy.on and is_terminal(job.status):
            alerts.append(
                Alert(key, branch.app_name, "failure", job, last_success_time=success_before)
            )
        elif policy.progress:
            alerts.append(
                Alert(key, branch.app_name, "progress", job, last_success_time=success_before)
            )
        # Only an alerted failure arms a recovery: "recovered" answers a message people saw.
        armed = job.status == FAILED and FAILED in policy.on
        if armed and (failing is None or job.number > job_number(failing)):
            failing = job.job_id
        elif recovers:
            failing = None

    state = replace(
        previous,
        app_name=branch.app_name,
        latest=latest,
        unfinished=unfinished,
        last_success_time=last_success,
        failing_job_id=failing,
        active_job_id=branch.active_job_id,
        total_jobs=branch.total_jobs,
    )
    return DiffResult(state, tuple(transitions), tuple(alerts), tuple(anomalies))
