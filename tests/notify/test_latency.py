"""Alert latency, measured and bounded (slow: run with `pytest -m slow -s` to see figures)."""

from __future__ import annotations

import pytest

from .latency import measure


@pytest.mark.slow
async def test_alert_latency_of_a_lone_failure_and_of_a_storm_of_50() -> None:
    window = 2.0
    figures = await measure(lone_samples=20, storm=50, threshold=5, window=window)
    print()
    for line in figures.lines():
        print(line)
    assert max(figures.lone) < 0.5  # a lone failure is never held back
    assert len(figures.storm_single) == 5 and max(figures.storm_single) < 1.0
    assert len(figures.storm_digested) == 45
    assert figures.storm_messages == 6  # five on their own, one digest naming the other 45
    assert window - 0.5 < max(figures.storm_digested) < window + 1.5
