"""benchmarks/fleet.py end to end on a tiny fleet: both contenders see every failure, once."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCHMARK = Path(__file__).resolve().parent.parent / "benchmarks" / "fleet.py"
# 20 branches, jobs of 2-4 s starting often, polled every 2 s (0.5 s while a job runs): a dozen
# failures or cancellations in 15 s, each contender in its own processes, in about 45 s.
TINY = [
    "--apps=10",
    "--branches=2",
    "--interval=2",
    "--active-interval=0.5",
    "--minutes=0.25",
    "--settle=0.17",
    "--latency-ms=5",
    "--start-rate=6",
    "--job-seconds=2-4",
    "--fail-share=0.3",
    "--cancel-share=0.1",
    "--seed=1",
]


def test_both_contenders_alert_every_failure_once_on_a_tiny_fleet(tmp_path: Path) -> None:
    figures = tmp_path / "fleet.json"
    done = subprocess.run(
        [sys.executable, str(BENCHMARK), *TINY, f"--json={figures}"],
        capture_output=True,
        text=True,
        timeout=150,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    results = json.loads(figures.read_text())["results"]
    assert set(results) == {"daemon", "plain"}
    for name, r in results.items():
        assert r["expected_alerts"] >= 3, (name, r)
        assert (r["missed"], r["doubled"], r["wrong"]) == (0, 0, 0), (name, r)
        assert r["received_alerts"] == r["expected_alerts"]
        assert r["calls"] > 0
        assert r["calls_per_minute_by_operation"]["ListJobs"] > 0
        assert r["latency_seconds"]["p50"] is not None
        assert 0 <= r["latency_seconds"]["p50"] <= r["latency_seconds"]["max"] < 10
        assert r["peak_rss_mib"] > 10
        assert r["cpu_seconds"] > 0
    # The same seeded workload for both.
    assert results["daemon"]["jobs_started"] == results["plain"]["jobs_started"]
    for label in (
        "| API calls / min (workload + settle) |",
        "| detection latency p95 (s) |",
        "| missed alerts | 0 | 0 |",
        "| doubled alerts | 0 | 0 |",
        "| peak RSS (MiB) |",
        "| CPU s (whole run) |",
    ):
        assert label in done.stdout, done.stdout


def test_push_mode_alerts_every_failure_once_with_dropped_events_and_no_cancel_events(
    tmp_path: Path,
) -> None:
    """The daemon alone, in push mode: events through moto's SQS with a fifth of them dropped;
    cancels (never announced) are found by following the branch, and a job whose events were
    all dropped by the safety-net poll (every 4 s here, within the settle)."""
    figures = tmp_path / "push.json"
    push = [
        "--push",
        "--only=daemon",
        "--push-interval=4",
        "--push-active-interval=1",
        "--drop-share=0.2",
    ]
    done = subprocess.run(
        [sys.executable, str(BENCHMARK), *TINY, *push, f"--json={figures}"],
        capture_output=True,
        text=True,
        timeout=150,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    r = json.loads(figures.read_text())["results"]["daemon"]
    assert r["expected_alerts"] >= 3, r
    assert (r["missed"], r["doubled"], r["wrong"]) == (0, 0, 0), r
    assert r["events_sent"] > 0 and r["events_dropped"] > 0
    assert "CANCELLED" in r["latency_by_status"], r  # found although no event announced one
    assert r["latency_by_status"]["FAILED"]["p50"] < 3
