"""Flood control, pacing and backoff as pure functions of an injected time."""

from __future__ import annotations

from monitor.notify.base import Pacing
from monitor.notify.policy import (
    MAX_RETRY_AFTER,
    TRANSIENT_BACKOFF,
    Backoff,
    FloodWindow,
    admit,
    consume,
    full_bucket,
    ready_at,
    retry_after,
)


def run_admissions(times: list[float], threshold: int = 5, window: float = 30.0) -> list[str]:
    state: FloodWindow | None = None
    verdicts: list[str] = []
    for now in times:
        state, verdict = admit(state, now, threshold, window)
        verdicts.append(verdict)
    return verdicts


def test_a_lone_alert_is_sent_at_once() -> None:
    assert run_admissions([100.0]) == ["send"]


def test_the_first_threshold_alerts_of_a_window_are_sent_and_the_rest_held() -> None:
    assert run_admissions([100.0 + i * 0.1 for i in range(8)]) == ["send"] * 5 + ["hold"] * 3


def test_a_new_window_opens_after_the_old_one_ends() -> None:
    verdicts = run_admissions([0, 1, 2, 3, 4, 5, 29.9, 30.0, 31, 32, 33, 34, 35])
    assert verdicts == ["send"] * 5 + ["hold", "hold"] + ["send"] * 5 + ["hold"]


def test_alerts_spread_wider_than_the_window_are_never_held() -> None:
    assert run_admissions([i * 31.0 for i in range(20)]) == ["send"] * 20


def test_the_window_ends_where_it_started_plus_its_length() -> None:
    state, _ = admit(None, 100.0, 5, 30.0)
    assert state.end(30.0) == 130.0


def test_bucket_allows_a_burst_then_one_a_second() -> None:
    pacing = Pacing(rate=1.0, burst=3.0)
    bucket = full_bucket(pacing, 0.0)
    sent_at = []
    now = 0.0
    for _ in range(6):
        now = ready_at(bucket, now, pacing)
        bucket = consume(bucket, now, pacing)
        sent_at.append(now)
    assert sent_at == [0.0, 0.0, 0.0, 1.0, 2.0, 3.0]


def test_bucket_refills_while_idle_but_never_beyond_the_burst() -> None:
    pacing = Pacing(rate=1.0, burst=3.0)
    bucket = consume(
        consume(consume(full_bucket(pacing, 0.0), 0.0, pacing), 0.0, pacing), 0.0, pacing
    )
    assert ready_at(bucket, 0.0, pacing) == 1.0
    assert ready_at(bucket, 100.0, pacing) == 100.0
    later = consume(bucket, 100.0, pacing)
    assert later.tokens == 2.0


def test_a_clock_stepping_back_does_not_drain_the_bucket() -> None:
    pacing = Pacing(rate=1.0, burst=3.0)
    bucket = full_bucket(pacing, 100.0)
    assert ready_at(bucket, 50.0, pacing) == 50.0


def test_backoff_doubles_up_to_its_cap_with_jitter_below() -> None:
    backoff = Backoff(base=1.0, cap=60.0, jitter=0.5)
    highs = [backoff.delay(n, lambda: 0.0) for n in range(1, 10)]
    lows = [backoff.delay(n, lambda: 1.0) for n in range(1, 10)]
    assert highs == [1, 2, 4, 8, 16, 32, 60, 60, 60]
    assert lows == [h / 2 for h in highs]
    assert backoff.delay(10_000, lambda: 0.0) == 60.0  # no overflow for a long outage


def test_retry_after_is_honoured_but_bounded() -> None:
    assert retry_after(7.0, 1, lambda: 0.0) == 7.0
    assert retry_after(86_400.0, 1, lambda: 0.0) == MAX_RETRY_AFTER
    assert retry_after(None, 3, lambda: 0.0) == TRANSIENT_BACKOFF.delay(3, lambda: 0.0)
