"""The pure diff: every case issue 3 lists, as a table and as named tests, then its invariants
checked by hypothesis against a simulated job history seen through random poll timings."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitor.diff import AlertPolicy, diff, markers_lied, needs_jobs
from monitor.model import (
    CANCELLED,
    CANCELLING,
    CREATED,
    FAILED,
    PENDING,
    PROVISIONING,
    RUNNING,
    SUCCEED,
    TERMINAL_STATUSES,
    Alert,
    Branch,
    BranchKey,
    BranchState,
    DiffResult,
    JobSummary,
    dedup_key,
)

KEY = BranchKey("d1abc", "main")
BRANCH = Branch(KEY, "shop", active_job_id=None, total_jobs=None)
UNKNOWN = "QUEUED_NEW"  # a status the API might add tomorrow
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
DEFAULT = AlertPolicy()


def job(job_id: str, status: str, end: datetime | None = None) -> JobSummary:
    return JobSummary(job_id=job_id, status=status, end_time=end)


def jobs(*pairs: tuple[str, str]) -> list[JobSummary]:
    return [job(job_id, status) for job_id, status in pairs]


def seen(listing: list[JobSummary], policy: AlertPolicy = DEFAULT) -> BranchState:
    """The state after a first sighting of `listing`."""
    return diff(BRANCH, None, listing, policy).state


def quiet(result: DiffResult) -> bool:
    """Nothing happened: no transition, no alert, no anomaly."""
    return not (result.alerts or result.transitions or result.anomalies)


def alerted(result: DiffResult) -> list[tuple[str, str, str]]:
    return [(a.job.job_id, a.status, a.kind) for a in result.alerts]


def moved(result: DiffResult) -> list[tuple[str, str | None, str]]:
    return [(t.job.job_id, t.from_status, t.to_status) for t in result.transitions]


def odd(result: DiffResult) -> list[tuple[str, str]]:
    return [(a.job_id, a.reason) for a in result.anomalies]


# --- the table ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    before: list[tuple[str, str]]  # the first sighting (baseline)
    after: list[tuple[str, str]]  # the next poll
    transitions: list[tuple[str, str | None, str]] = field(default_factory=list)
    alerts: list[tuple[str, str, str]] = field(default_factory=list)
    anomalies: list[tuple[str, str]] = field(default_factory=list)
    unfinished: dict[str, str] = field(default_factory=dict)
    latest: str | None = None


CASES = [
    pytest.param(
        Case(
            before=[("4", SUCCEED), ("5", RUNNING)],
            after=[("4", SUCCEED), ("5", FAILED)],
            transitions=[("5", RUNNING, FAILED)],
            alerts=[("5", FAILED, "failure")],
            latest="5",
        ),
        id="unfinished_job_that_fails_alerts",
    ),
    pytest.param(
        Case(
            before=[("5", RUNNING)],
            after=[("5", CANCELLED)],
            transitions=[("5", RUNNING, CANCELLED)],
            alerts=[("5", CANCELLED, "failure")],
            latest="5",
        ),
        id="unfinished_job_that_is_cancelled_alerts",
    ),
    pytest.param(
        Case(
            before=[("5", CANCELLING)],
            after=[("5", CANCELLED)],
            transitions=[("5", CANCELLING, CANCELLED)],
            alerts=[("5", CANCELLED, "failure")],
            latest="5",
        ),
        id="cancelling_job_that_ends_cancelled_alerts",
    ),
    pytest.param(
        Case(
            before=[("5", RUNNING)],
            after=[("5", SUCCEED)],
            transitions=[("5", RUNNING, SUCCEED)],
            latest="5",
        ),
        id="unfinished_job_that_succeeds_alerts_nothing",
    ),
    pytest.param(
        Case(
            before=[("5", PENDING)],
            after=[("5", RUNNING)],
            transitions=[("5", PENDING, RUNNING)],
            unfinished={"5": RUNNING},
            latest="5",
        ),
        id="unfinished_job_moving_forward_is_a_transition_without_alert",
    ),
    pytest.param(
        Case(
            before=[("5", RUNNING)],
            after=[("5", RUNNING)],
            unfinished={"5": RUNNING},
            latest="5",
        ),
        id="unchanged_listing_gives_nothing",
    ),
    pytest.param(
        Case(
            before=[("5", SUCCEED)],
            after=[("6", FAILED), ("5", SUCCEED)],
            transitions=[("6", None, FAILED)],
            alerts=[("6", FAILED, "failure")],
            latest="6",
        ),
        id="new_job_that_failed_between_polls_alerts_though_never_seen_running",
    ),
    pytest.param(
        Case(
            before=[("5", SUCCEED)],
            after=[("6", CANCELLED), ("5", SUCCEED)],
            transitions=[("6", None, CANCELLED)],
            alerts=[("6", CANCELLED, "failure")],
            latest="6",
        ),
        id="new_job_cancelled_between_polls_alerts",
    ),
    pytest.param(
        Case(
            before=[("5", SUCCEED)],
            after=[("6", PENDING), ("5", SUCCEED)],
            transitions=[("6", None, PENDING)],
            unfinished={"6": PENDING},
            latest="6",
        ),
        id="new_unfinished_job_is_tracked",
    ),
    pytest.param(
        Case(
            before=[("5", SUCCEED)],
            after=[("8", FAILED), ("7", SUCCEED), ("6", FAILED), ("5", SUCCEED)],
            transitions=[("6", None, FAILED), ("7", None, SUCCEED), ("8", None, FAILED)],
            alerts=[
                ("6", FAILED, "failure"),
                ("7", SUCCEED, "recovery"),
                ("8", FAILED, "failure"),
            ],
            latest="8",
        ),
        id="several_new_jobs_between_polls_are_each_considered",
    ),
    pytest.param(
        Case(
            before=[("5", SUCCEED)],
            after=[("7", FAILED), ("5", SUCCEED), ("8", RUNNING), ("6", CANCELLED)],
            transitions=[("6", None, CANCELLED), ("7", None, FAILED), ("8", None, RUNNING)],
            alerts=[("6", CANCELLED, "failure"), ("7", FAILED, "failure")],
            unfinished={"8": RUNNING},
            latest="8",
        ),
        id="listing_in_any_order_is_read_by_job_number",
    ),
    pytest.param(
        Case(
            before=[("8", SUCCEED)],
            after=[("10", SUCCEED), ("9", FAILED), ("8", SUCCEED)],
            transitions=[("9", None, FAILED), ("10", None, SUCCEED)],
            alerts=[("9", FAILED, "failure"), ("10", SUCCEED, "recovery")],
            latest="10",
        ),
        id="job_ids_compare_as_numbers_not_strings",
    ),
    pytest.param(
        Case(
            before=[("5", SUCCEED)],
            after=[("6", FAILED), ("6", FAILED), ("5", SUCCEED)],
            transitions=[("6", None, FAILED)],
            alerts=[("6", FAILED, "failure")],
            latest="6",
        ),
        id="a_job_listed_twice_alerts_once",
    ),
    pytest.param(
        Case(
            before=[("4", RUNNING), ("5", RUNNING)],
            after=[("5", RUNNING), ("4", FAILED)],
            transitions=[("4", RUNNING, FAILED)],
            alerts=[("4", FAILED, "failure")],
            unfinished={"5": RUNNING},
            latest="5",
        ),
        id="older_overlapping_job_that_fails_alerts",
    ),
    pytest.param(
        Case(
            before=[("5", RUNNING)],
            after=[("5", PENDING)],
            anomalies=[("5", "status_went_backwards")],
            unfinished={"5": RUNNING},
            latest="5",
        ),
        id="status_going_backwards_running_to_pending_is_ignored_with_anomaly",
    ),
    pytest.param(
        Case(
            before=[("5", FAILED)],
            after=[("5", RUNNING)],
            anomalies=[("5", "status_went_backwards")],
            latest="5",
        ),
        id="status_going_backwards_failed_to_running_is_ignored_with_anomaly",
    ),
    pytest.param(
        Case(
            before=[("6", SUCCEED), ("5", SUCCEED)],
            after=[("5", SUCCEED), ("4", FAILED)],
            anomalies=[("5", "listing_went_backwards")],
            latest="6",
        ),
        id="listing_older_than_what_we_know_is_ignored_with_anomaly",
    ),
    pytest.param(
        Case(
            before=[("6", SUCCEED), ("5", SUCCEED), ("4", FAILED)],
            after=[("6", SUCCEED), ("5", SUCCEED), ("4", FAILED)],
            latest="6",
        ),
        id="history_relisted_alerts_nothing",
    ),
    pytest.param(
        Case(
            before=[("5", SUCCEED)],
            after=[("6", UNKNOWN), ("5", SUCCEED)],
            transitions=[("6", None, UNKNOWN)],
            unfinished={"6": UNKNOWN},
            latest="6",
        ),
        id="unknown_status_is_kept_raw_and_tracked_as_unfinished",
    ),
    pytest.param(
        Case(
            before=[("6", UNKNOWN)],
            after=[("6", FAILED)],
            transitions=[("6", UNKNOWN, FAILED)],
            alerts=[("6", FAILED, "failure")],
            latest="6",
        ),
        id="unknown_status_then_failed_alerts",
    ),
    pytest.param(
        Case(
            before=[("6", RUNNING)],
            after=[("6", UNKNOWN)],
            transitions=[("6", RUNNING, UNKNOWN)],
            unfinished={"6": UNKNOWN},
            latest="6",
        ),
        id="known_status_to_unknown_status_is_followed",
    ),
    pytest.param(
        Case(
            before=[],
            after=[("2", FAILED), ("1", SUCCEED)],
            transitions=[("1", None, SUCCEED), ("2", None, FAILED)],
            alerts=[("2", FAILED, "failure")],
            latest="2",
        ),
        id="branch_first_seen_empty_then_every_job_is_new",
    ),
]


@pytest.mark.parametrize("case", CASES)
def test_diff_table(case: Case) -> None:
    previous = seen(jobs(*case.before))
    result = diff(BRANCH, previous, jobs(*case.after))

    assert moved(result) == case.transitions
    assert alerted(result) == case.alerts
    assert odd(result) == case.anomalies
    assert result.state.unfinished == case.unfinished
    latest = result.state.latest
    assert (latest.job_id if latest else None) == case.latest


# --- first sighting ----------------------------------------------------------------------------


def test_first_sighting_alerts_nothing_for_history_and_tracks_unfinished_jobs() -> None:
    listing = jobs(("7", PENDING), ("6", RUNNING), ("5", FAILED), ("4", CANCELLED), ("3", SUCCEED))

    result = diff(BRANCH, None, listing)

    assert result.alerts == ()
    assert result.transitions == ()
    assert result.anomalies == ()
    assert result.state.unfinished == {"7": PENDING, "6": RUNNING}
    assert result.state.latest == listing[0]
    assert result.state.failing_job_id is None


def test_first_sighting_tracks_unfinished_job_and_alerts_when_it_later_fails() -> None:
    state = diff(BRANCH, None, jobs(("3", RUNNING), ("2", FAILED))).state

    result = diff(BRANCH, state, jobs(("3", FAILED), ("2", FAILED)))

    assert alerted(result) == [("3", FAILED, "failure")]
    assert moved(result) == [("3", RUNNING, FAILED)]
    assert result.state.unfinished == {}


def test_first_sighting_of_branch_without_jobs_gives_empty_state() -> None:
    result = diff(BRANCH, None, [])

    assert result.state.latest is None
    assert result.state.unfinished == {}
    assert quiet(result)


# --- alert once --------------------------------------------------------------------------------


@pytest.mark.parametrize("terminal", [FAILED, CANCELLED])
def test_unfinished_job_that_ends_badly_alerts_once_across_repeated_polls(terminal: str) -> None:
    state = seen(jobs(("5", RUNNING)))
    listing = jobs(("5", terminal))

    first = diff(BRANCH, state, listing)
    second = diff(BRANCH, first.state, listing)
    third = diff(BRANCH, second.state, listing)

    assert [a.dedup_key for a in first.alerts] == [dedup_key(KEY, "5", terminal)]
    assert quiet(second)
    assert quiet(third)


def test_new_job_that_failed_between_polls_alerts_once_though_never_seen_running() -> None:
    state = seen(jobs(("1", SUCCEED)))
    listing = jobs(("2", FAILED), ("1", SUCCEED))

    first = diff(BRANCH, state, listing)
    again = diff(BRANCH, first.state, listing)

    assert alerted(first) == [("2", FAILED, "failure")]
    assert moved(first) == [("2", None, FAILED)]
    assert again.alerts == ()


def test_three_new_jobs_two_failed_give_two_alerts_and_three_transitions() -> None:
    state = seen(jobs(("10", SUCCEED)))

    result = diff(
        BRANCH, state, jobs(("13", FAILED), ("12", RUNNING), ("11", CANCELLED), ("10", SUCCEED))
    )

    assert alerted(result) == [("11", CANCELLED, "failure"), ("13", FAILED, "failure")]
    assert moved(result) == [("11", None, CANCELLED), ("12", None, RUNNING), ("13", None, FAILED)]
    assert result.state.unfinished == {"12": RUNNING}
    assert result.state.latest is not None and result.state.latest.job_id == "13"


# --- going backwards ---------------------------------------------------------------------------


def test_listing_older_than_known_is_ignored_and_state_keeps_what_it_knew() -> None:
    state = seen(jobs(("9", RUNNING), ("8", SUCCEED)))
    stale = jobs(("7", FAILED), ("6", SUCCEED))

    result = diff(BRANCH, state, stale)

    assert ("7", "listing_went_backwards") in odd(result)
    assert (result.alerts, result.transitions) == ((), ())
    assert result.state.latest == state.latest
    assert result.state.unfinished == {"9": RUNNING}


def test_backwards_status_is_ignored_and_a_later_forward_move_still_alerts() -> None:
    state = seen(jobs(("5", RUNNING)))

    back = diff(BRANCH, state, jobs(("5", PENDING)))
    forward = diff(BRANCH, back.state, jobs(("5", FAILED)))

    assert odd(back) == [("5", "status_went_backwards")]
    assert back.state.unfinished == {"5": RUNNING}
    assert alerted(forward) == [("5", FAILED, "failure")]
    assert moved(forward) == [("5", RUNNING, FAILED)]


def test_terminal_job_reported_running_again_never_realerts() -> None:
    state = diff(BRANCH, seen(jobs(("5", RUNNING))), jobs(("5", FAILED))).state

    back = diff(BRANCH, state, jobs(("5", RUNNING)))
    failed_again = diff(BRANCH, back.state, jobs(("5", FAILED)))

    assert odd(back) == [("5", "status_went_backwards")]
    assert (back.alerts, back.transitions) == ((), ())
    assert quiet(failed_again)


# --- unknown statuses --------------------------------------------------------------------------


def test_unknown_status_is_kept_raw_tracked_and_a_later_failure_alerts() -> None:
    state = seen(jobs(("1", SUCCEED)))

    queued = diff(BRANCH, state, jobs(("2", UNKNOWN), ("1", SUCCEED)))
    failed = diff(BRANCH, queued.state, jobs(("2", FAILED), ("1", SUCCEED)))

    assert queued.transitions[0].to_status == UNKNOWN
    assert queued.transitions[0].job.status == UNKNOWN
    assert queued.state.unfinished == {"2": UNKNOWN}
    assert queued.state.has_unfinished
    assert queued.alerts == ()
    assert alerted(failed) == [("2", FAILED, "failure")]
    assert moved(failed) == [("2", UNKNOWN, FAILED)]


# --- recovery ----------------------------------------------------------------------------------


def test_failure_then_newer_success_gives_one_recovery_naming_the_failed_job() -> None:
    state = seen(jobs(("1", SUCCEED)))
    failed = diff(BRANCH, state, jobs(("2", FAILED), ("1", SUCCEED)))

    recovered = diff(BRANCH, failed.state, jobs(("3", SUCCEED), ("2", FAILED)))
    later = diff(BRANCH, recovered.state, jobs(("4", SUCCEED), ("3", SUCCEED)))

    assert failed.state.failing_job_id == "2"
    assert [(a.kind, a.job.job_id, a.failed_job_id) for a in recovered.alerts] == [
        ("recovery", "3", "2")
    ]
    assert recovered.state.failing_job_id is None
    assert later.alerts == ()


def test_recovery_names_the_newest_failure() -> None:
    state = seen(jobs(("1", SUCCEED)))
    failed = diff(BRANCH, state, jobs(("3", FAILED), ("2", FAILED), ("1", SUCCEED)))

    recovered = diff(BRANCH, failed.state, jobs(("4", SUCCEED), ("3", FAILED)))

    assert [(a.kind, a.failed_job_id) for a in recovered.alerts] == [("recovery", "3")]


def test_no_recovery_alert_when_policy_turns_recovery_off() -> None:
    policy = AlertPolicy(recovery=False)
    state = seen(jobs(("1", SUCCEED)), policy)
    failed = diff(BRANCH, state, jobs(("2", FAILED), ("1", SUCCEED)), policy)

    recovered = diff(BRANCH, failed.state, jobs(("3", SUCCEED), ("2", FAILED)), policy)

    assert alerted(failed) == [("2", FAILED, "failure")]
    assert recovered.alerts == ()
    assert moved(recovered) == [("3", None, SUCCEED)]


def test_cancelled_job_does_not_arm_recovery() -> None:
    state = seen(jobs(("1", SUCCEED)))
    cancelled = diff(BRANCH, state, jobs(("2", CANCELLED), ("1", SUCCEED)))

    succeeded = diff(BRANCH, cancelled.state, jobs(("3", SUCCEED), ("2", CANCELLED)))

    assert alerted(cancelled) == [("2", CANCELLED, "failure")]
    assert cancelled.state.failing_job_id is None
    assert succeeded.alerts == ()


def test_older_overlapping_job_succeeding_after_a_newer_failure_is_no_recovery() -> None:
    state = seen(jobs(("2", RUNNING), ("1", SUCCEED)))
    failed = diff(BRANCH, state, jobs(("3", FAILED), ("2", RUNNING)))

    older_ok = diff(BRANCH, failed.state, jobs(("3", FAILED), ("2", SUCCEED)))
    newer_ok = diff(BRANCH, older_ok.state, jobs(("4", SUCCEED), ("3", FAILED)))

    assert older_ok.alerts == ()
    assert older_ok.state.failing_job_id == "3"
    assert [(a.kind, a.job.job_id, a.failed_job_id) for a in newer_ok.alerts] == [
        ("recovery", "4", "3")
    ]


# --- last success time -------------------------------------------------------------------------


def test_last_success_time_is_carried_into_failure_and_recovery_alerts() -> None:
    t1, t2 = T0, T0 + timedelta(hours=1)
    state = seen([job("1", SUCCEED, end=t1)])
    failed = diff(BRANCH, state, [job("2", FAILED, end=t1 + timedelta(minutes=5))])

    recovered = diff(BRANCH, failed.state, [job("3", SUCCEED, end=t2)])

    assert state.last_success_time == t1
    assert [a.last_success_time for a in failed.alerts] == [t1]
    # The recovery reports the success before it (how long the branch was broken) ...
    assert [(a.kind, a.last_success_time) for a in recovered.alerts] == [("recovery", t1)]
    # ... and the state moves on to the new one.
    assert recovered.state.last_success_time == t2


def test_last_success_time_never_moves_back_for_an_older_success() -> None:
    t1 = T0
    state = seen([job("2", RUNNING), job("1", SUCCEED, end=t1)])

    result = diff(BRANCH, state, [job("2", SUCCEED, end=t1 - timedelta(hours=1))])

    assert result.state.last_success_time == t1


def test_first_sighting_takes_the_newest_success_end_time() -> None:
    listing = [
        job("3", FAILED, end=T0 + timedelta(hours=3)),
        job("2", SUCCEED, end=T0 + timedelta(hours=2)),
        job("1", SUCCEED, end=T0),
    ]

    assert seen(listing).last_success_time == T0 + timedelta(hours=2)


# --- policy.on ---------------------------------------------------------------------------------


def test_policy_on_succeed_alerts_for_a_successful_job() -> None:
    policy = AlertPolicy(on=frozenset({SUCCEED}))
    state = seen(jobs(("1", RUNNING)), policy)

    result = diff(BRANCH, state, jobs(("2", FAILED), ("1", SUCCEED)), policy)

    assert [(a.job.job_id, a.status) for a in result.alerts] == [("1", SUCCEED)]


def test_policy_on_failed_only_does_not_alert_cancelled() -> None:
    policy = AlertPolicy(on=frozenset({FAILED}))
    state = seen(jobs(("1", RUNNING)), policy)

    result = diff(BRANCH, state, jobs(("2", FAILED), ("1", CANCELLED)), policy)

    assert alerted(result) == [("2", FAILED, "failure")]


def test_policy_on_succeed_with_recovery_alerts_the_recovering_job_once() -> None:
    policy = AlertPolicy(on=frozenset({FAILED, SUCCEED}), recovery=True)
    state = seen(jobs(("1", FAILED)), policy)
    failed = diff(BRANCH, state, jobs(("2", FAILED), ("1", FAILED)), policy)

    recovered = diff(BRANCH, failed.state, jobs(("3", SUCCEED), ("2", FAILED)), policy)

    keys = [a.dedup_key for a in recovered.alerts]
    assert keys == [dedup_key(KEY, "3", SUCCEED)]
    # The one alert is the recovery: it carries the failed job for threading.
    assert [(a.kind, a.failed_job_id) for a in recovered.alerts] == [("recovery", "2")]


# --- transitions and markers -------------------------------------------------------------------


def test_transitions_carry_from_and_to_status_with_none_for_a_job_first_seen() -> None:
    state = seen(jobs(("1", PENDING)))

    result = diff(BRANCH, state, jobs(("2", CREATED), ("1", PROVISIONING)))

    assert [(t.key, t.job.job_id, t.from_status, t.to_status) for t in result.transitions] == [
        (KEY, "1", PENDING, PROVISIONING),
        (KEY, "2", None, CREATED),
    ]


def test_state_markers_are_copied_from_the_branch() -> None:
    first = Branch(KEY, "shop", active_job_id="3", total_jobs=3)
    later = Branch(KEY, "shop-renamed", active_job_id="4", total_jobs=4)

    base = diff(first, None, jobs(("3", RUNNING)))
    result = diff(later, base.state, jobs(("4", RUNNING), ("3", SUCCEED)))

    assert (base.state.active_job_id, base.state.total_jobs) == ("3", 3)
    assert (result.state.active_job_id, result.state.total_jobs) == ("4", 4)
    assert result.state.app_name == "shop-renamed"
    assert all(a.app_name == "shop-renamed" for a in result.alerts)


def test_markers_are_copied_even_when_nothing_changed() -> None:
    base = diff(Branch(KEY, "shop", active_job_id=None, total_jobs=1), None, jobs(("1", SUCCEED)))

    result = diff(Branch(KEY, "shop", active_job_id="1", total_jobs=1), base.state, [])

    assert result.state.active_job_id == "1"
    assert result.state.latest == base.state.latest


def test_same_status_with_fresher_fields_updates_the_latest_job() -> None:
    state = seen([JobSummary("5", RUNNING)])
    fresher = JobSummary("5", RUNNING, commit_id="abc123", start_time=T0)

    result = diff(BRANCH, state, [fresher])

    assert result.transitions == ()
    assert result.state.latest == fresher


# --- properties --------------------------------------------------------------------------------

# Statuses a job may pass through before its terminal one, in the API's order.
_PATH = (CREATED, PENDING, PROVISIONING, RUNNING)
_ALERTABLE = (FAILED, CANCELLED, SUCCEED)


@dataclass(frozen=True)
class TrueJob:
    """One job's real history: (time, status) steps, the first at creation, the last terminal."""

    number: int
    steps: tuple[tuple[int, str], ...]

    @property
    def created(self) -> int:
        return self.steps[0][0]

    @property
    def ended(self) -> int:
        return self.steps[-1][0]

    @property
    def terminal(self) -> str:
        return self.steps[-1][1]

    def status_at(self, t: int) -> str | None:
        status = None
        for when, step in self.steps:
            if when <= t:
                status = step
        return status

    def summary_at(self, t: int) -> JobSummary:
        status = self.status_at(t)
        assert status is not None
        end = T0 + timedelta(minutes=self.ended) if status in TERMINAL_STATUSES else None
        return JobSummary(str(self.number), status, end_time=end)


@st.composite
def histories(draw: st.DrawFn, unknown: bool = True) -> list[TrueJob]:
    """Jobs numbered 1..n, created in order, each moving forward to a terminal status; the
    durations let several jobs run at once and finish in any order."""
    count = draw(st.integers(0, 7))
    out: list[TrueJob] = []
    created = draw(st.integers(0, 3))
    for number in range(1, count + 1):
        created += draw(st.integers(1, 4))
        path = [s for s in _PATH if draw(st.booleans())]
        if unknown and draw(st.integers(0, 3)) == 0:
            path.insert(draw(st.integers(0, len(path))), UNKNOWN)
        terminal = draw(st.sampled_from(_ALERTABLE))
        if terminal == CANCELLED and draw(st.booleans()):
            path.append(CANCELLING)
        path.append(terminal)
        steps: list[tuple[int, str]] = []
        when = created
        for status in path:
            steps.append((when, status))
            when += draw(st.integers(1, 6))
        out.append(TrueJob(number, tuple(steps)))
    return out


def _listing(
    data: st.DataObject, truth: list[TrueJob], t: int, state: BranchState | None
) -> list[JobSummary]:
    """What ListJobs returns at time t: the newest N jobs, N reaching back far enough.

    After the first sighting the poller pages back to the oldest job it still follows (or the
    latest it knows). At first sighting it cannot know; the simulation grants it a page that
    reaches every unfinished job (one page of 50 does in practice)."""
    existing = sorted((j for j in truth if j.created <= t), key=lambda j: -j.number)
    if state is None:
        open_ = [j.number for j in existing if j.status_at(t) not in TERMINAL_STATUSES]
        floor = min(open_, default=existing[0].number if existing else 0)
    elif state.latest is None:
        floor = 0
    else:
        floor = min([int(k) for k in state.unfinished] + [state.latest.number])
    needed = sum(1 for j in existing if j.number >= floor)
    size = min(len(existing), needed + data.draw(st.integers(0, 2), label="extra"))
    page = [j.summary_at(t) for j in existing[:size]]
    return data.draw(st.permutations(page), label="order")


def _branch(truth: list[TrueJob], t: int) -> Branch:
    existing = [j for j in truth if j.created <= t]
    active = max((j.number for j in existing), default=None)
    marker = None if active is None else str(active)
    return Branch(KEY, "shop", active_job_id=marker, total_jobs=len(existing))


policies = st.builds(
    AlertPolicy,
    on=st.frozensets(st.sampled_from(_ALERTABLE)),
    recovery=st.booleans(),
)


@dataclass
class Run:
    alerts: list[Alert] = field(default_factory=list)
    baseline_at: int = 0
    last_seen: int = 0


def _simulate(
    data: st.DataObject,
    truth: list[TrueJob],
    policy: AlertPolicy,
    stale: bool,
) -> Run:
    horizon = max((j.ended for j in truth), default=0) + 2
    times = sorted(data.draw(st.sets(st.integers(0, horizon), min_size=1, max_size=10)))
    if data.draw(st.booleans(), label="poll after the end"):
        times.append(horizon + 1)
    run = Run(baseline_at=times[0])
    state: BranchState | None = None
    for t in times:
        seen_at = t
        if stale and state is not None and data.draw(st.booleans(), label="stale"):
            # A slow or eventually consistent answer: a snapshot from an earlier moment.
            seen_at = data.draw(st.integers(run.baseline_at, t), label="stale at")
        result = diff(_branch(truth, seen_at), state, _listing(data, truth, seen_at, state), policy)
        run.alerts.extend(result.alerts)
        # A stale answer replaces a poll: what was observed is the newest snapshot, not the
        # time of the last poll.
        run.last_seen = max(run.last_seen, seen_at)
        state = result.state
        assert all(s not in TERMINAL_STATUSES for s in state.unfinished.values())
    return run


def _check_invariants(truth: list[TrueJob], policy: AlertPolicy, run: Run) -> None:
    counts = Counter(a.dedup_key for a in run.alerts)
    # (1) never two alerts for one job and status
    assert [k for k, n in counts.items() if n > 1] == []

    by_number = {j.number: j for j in truth}
    for alert in run.alerts:
        real = by_number[int(alert.job.job_id)]
        # Alerts only ever name a job's real terminal status ...
        assert alert.status == real.terminal
        # (3) ... and never a job that was already finished at the first sighting.
        assert real.ended > run.baseline_at, alert
        if alert.kind == "recovery":
            assert alert.status == SUCCEED and policy.recovery
            # A recovery answers an older job that really failed.
            assert alert.failed_job_id is not None
            assert int(alert.failed_job_id) < real.number
            assert by_number[int(alert.failed_job_id)].terminal == FAILED
        else:
            assert alert.status in policy.on

    # (2) every alerted terminal status reached after the baseline, and observed by a later
    # snapshot, is alerted exactly once, whatever the poll timing.
    for j in truth:
        if j.terminal in policy.on and run.baseline_at < j.ended <= run.last_seen:
            assert counts[dedup_key(KEY, str(j.number), j.terminal)] == 1, j


_FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_FAST
@given(truth=histories(), policy=policies, data=st.data())
def test_property_every_failure_after_baseline_alerted_exactly_once(
    truth: list[TrueJob], policy: AlertPolicy, data: st.DataObject
) -> None:
    run = _simulate(data, truth, policy, stale=False)
    _check_invariants(truth, policy, run)


@_FAST
@given(truth=histories(), policy=policies, data=st.data())
def test_property_stale_snapshots_neither_double_nor_lose_alerts(
    truth: list[TrueJob], policy: AlertPolicy, data: st.DataObject
) -> None:
    run = _simulate(data, truth, policy, stale=True)
    _check_invariants(truth, policy, run)


statuses = st.one_of(st.sampled_from((*_PATH, CANCELLING, *_ALERTABLE)), st.text(max_size=12))
job_ids = st.one_of(st.integers(-3, 30).map(str), st.text(max_size=4))
summaries = st.builds(JobSummary, job_id=job_ids, status=statuses)


@st.composite
def arbitrary_states(draw: st.DrawFn) -> BranchState | None:
    if draw(st.booleans()):
        return None
    return BranchState(
        key=KEY,
        app_name="shop",
        latest=draw(st.none() | summaries),
        unfinished=draw(st.dictionaries(job_ids, statuses, max_size=4)),
        failing_job_id=draw(st.none() | job_ids),
        last_success_time=draw(st.none() | st.just(T0)),
    )


@_FAST
@given(
    state=arbitrary_states(),
    listing=st.lists(summaries, max_size=8),
    policy=policies,
)
def test_property_diff_never_raises_on_any_listing(
    state: BranchState | None, listing: list[JobSummary], policy: AlertPolicy
) -> None:
    result = diff(BRANCH, state, listing, policy)

    keys = [a.dedup_key for a in result.alerts]
    assert len(keys) == len(set(keys))
    assert all(a.status in TERMINAL_STATUSES for a in result.alerts)
    # A job never leaves a terminal status, whatever the state or listing claims.
    assert all(t.from_status not in TERMINAL_STATUSES for t in result.transitions)
    # Feeding the same listing again is quiet: nothing is alerted twice.
    again = diff(BRANCH, result.state, listing, policy)
    assert {a.dedup_key for a in again.alerts}.isdisjoint(keys)


def test_failure_that_was_not_alerted_does_not_arm_recovery() -> None:
    policy = AlertPolicy(on=frozenset({CANCELLED}))
    state = seen(jobs(("1", SUCCEED)), policy)
    failed = diff(BRANCH, state, jobs(("2", FAILED), ("1", SUCCEED)), policy)

    later = diff(BRANCH, failed.state, jobs(("3", SUCCEED), ("2", FAILED)), policy)

    assert failed.alerts == ()
    assert failed.state.failing_job_id is None
    assert later.alerts == ()


# --- the change-marker rules and the edits the caller used to make after diff -------------------


def marked(total: int | None, active: str | None) -> Branch:
    return Branch(KEY, "shop", active_job_id=active, total_jobs=total)


@pytest.mark.parametrize(
    ("branch", "state", "expected"),
    [
        (marked(3, "3"), None, True),  # never listed
        (marked(3, "3"), BranchState(KEY, "shop", active_job_id="3", total_jobs=3), False),
        (marked(4, "4"), BranchState(KEY, "shop", active_job_id="3", total_jobs=3), True),
        (marked(3, "4"), BranchState(KEY, "shop", active_job_id="3", total_jobs=3), True),
        (marked(None, None), BranchState(KEY, "shop"), True),  # no markers to trust
        (
            marked(3, "3"),
            BranchState(KEY, "shop", unfinished={"3": RUNNING}, active_job_id="3", total_jobs=3),
            True,  # a job still to follow
        ),
    ],
    ids=["new", "unchanged", "total-moved", "active-moved", "no-markers", "unfinished"],
)
def test_needs_jobs_table(branch: Branch, state: BranchState | None, expected: bool) -> None:
    assert needs_jobs(branch, state) is expected


def test_a_followed_job_the_api_forgot_stops_being_followed_as_an_anomaly() -> None:
    before = seen(jobs(("1", SUCCEED), ("2", RUNNING)))
    result = diff(BRANCH, before, [], DEFAULT, vanished={"2"})  # the server let the job go
    assert result.state.unfinished == {}
    assert odd(result) == [("2", "job_vanished")]
    assert not result.alerts


def test_vanished_names_only_jobs_still_followed() -> None:
    before = seen(jobs(("1", SUCCEED)))
    result = diff(BRANCH, before, jobs(("1", SUCCEED)), DEFAULT, vanished={"7"})
    assert quiet(result)


def test_markers_ahead_of_the_listing_are_not_remembered() -> None:
    before = diff(marked(1, "1"), None, jobs(("1", SUCCEED))).state
    # ListBranches names job 2; the listing (a lagging replica) does not show it yet.
    result = diff(marked(2, "2"), before, jobs(("1", SUCCEED)))
    assert result.state.markers == (1, "1")
    assert needs_jobs(marked(2, "2"), result.state)  # so the next poll lists it again


def test_markers_the_listing_caught_up_with_are_remembered() -> None:
    before = diff(marked(1, "1"), None, jobs(("1", SUCCEED))).state
    result = diff(marked(2, "2"), before, jobs(("2", FAILED), ("1", SUCCEED)))
    assert result.state.markers == (2, "2")
    assert not result.unannounced  # the markers did announce it


def test_a_new_job_behind_unchanged_markers_is_unannounced_and_still_alerted() -> None:
    before = diff(marked(1, "1"), None, jobs(("1", SUCCEED))).state
    result = diff(marked(1, "1"), before, jobs(("2", FAILED), ("1", SUCCEED)))
    assert result.unannounced
    assert alerted(result) == [("2", FAILED, "failure")]


def test_a_sweep_that_finds_nothing_new_is_not_unannounced() -> None:
    before = diff(marked(1, "1"), None, jobs(("1", SUCCEED))).state
    assert not diff(marked(1, "1"), before, jobs(("1", SUCCEED))).unannounced


def test_markers_lied_only_when_the_next_listing_still_shows_the_same_ones() -> None:
    assert markers_lied((1, "1"), marked(1, "1"))
    assert not markers_lied((1, "1"), marked(2, "2"))  # the job had merely started late


def test_jobs_listed_ahead_of_the_listing_predict_the_next_listings_markers() -> None:
    before = diff(marked(4, "4"), None, jobs(("4", SUCCEED))).state
    # An event asked for ListJobs; the listing it is diffed with is from before jobs 5 and 6.
    result = diff(marked(4, "4"), before, jobs(("6", FAILED), ("5", SUCCEED), ("4", SUCCEED)))
    assert result.state.markers == (6, "6")
    assert not needs_jobs(marked(6, "6"), result.state)  # the next listing costs no ListJobs
    assert needs_jobs(marked(7, "7"), result.state)  # a job started since still shows
    assert needs_jobs(marked(6, "5"), result.state)  # a server whose activeJobId stays put


def test_a_server_without_job_totals_is_predicted_by_the_active_job_alone() -> None:
    before = diff(marked(None, "1"), None, jobs(("1", SUCCEED))).state
    result = diff(marked(None, "1"), before, jobs(("2", RUNNING), ("1", SUCCEED)))
    assert result.state.markers == (None, "2")


def test_no_prediction_from_a_listing_whose_markers_are_out_of_step() -> None:
    # total says 6 jobs, activeJobId still names 5: the fields moved separately.
    before = diff(marked(6, "5"), None, jobs(("5", SUCCEED))).state
    result = diff(marked(6, "5"), before, jobs(("6", FAILED), ("5", SUCCEED)))
    assert result.state.markers == (6, "5")  # the listing's own, as without prediction
    assert needs_jobs(marked(7, "6"), result.state)  # a job 7 behind a lagging listing shows


# --- progress alerts (a route with notify_start) ------------------------------------------------

PROGRESS = AlertPolicy(progress=True)


def test_with_progress_every_step_of_a_job_raises_one_alert_and_the_end_its_usual_one() -> None:
    state = seen(jobs(("1", SUCCEED)), PROGRESS)
    steps = [(PENDING,), (RUNNING,), (FAILED,)]
    raised: list[tuple[str, str, str]] = []
    for (status,) in steps:
        result = diff(BRANCH, state, jobs(("2", status), ("1", SUCCEED)), PROGRESS)
        raised += alerted(result)
        state = result.state
    assert raised == [
        ("2", PENDING, "progress"),
        ("2", RUNNING, "progress"),
        ("2", FAILED, "failure"),
    ]
    # Polled again with nothing new: nothing more (one alert per job and status).
    assert alerted(diff(BRANCH, state, jobs(("2", FAILED), ("1", SUCCEED)), PROGRESS)) == []


def test_with_progress_a_success_is_a_progress_alert_and_a_recovery_stays_a_recovery() -> None:
    state = seen(jobs(("1", SUCCEED)), PROGRESS)
    state = diff(BRANCH, state, jobs(("2", SUCCEED), ("1", SUCCEED)), PROGRESS).state
    failed = diff(BRANCH, state, jobs(("3", FAILED), ("2", SUCCEED)), PROGRESS)
    recovered = diff(BRANCH, failed.state, jobs(("4", SUCCEED), ("3", FAILED)), PROGRESS)
    assert alerted(
        diff(BRANCH, seen(jobs(("1", SUCCEED)), PROGRESS), jobs(("2", SUCCEED)), PROGRESS)
    ) == [("2", SUCCEED, "progress")]
    assert alerted(recovered) == [("4", SUCCEED, "recovery")]


def test_without_progress_no_step_raises_anything_but_the_end() -> None:
    state = seen(jobs(("1", SUCCEED)))
    result = diff(BRANCH, state, jobs(("2", RUNNING), ("1", SUCCEED)))
    assert alerted(result) == [] and moved(result) == [("2", None, RUNNING)]


def test_with_progress_a_first_sighting_still_alerts_nothing() -> None:
    assert diff(BRANCH, None, jobs(("2", RUNNING), ("1", FAILED)), PROGRESS).alerts == ()
