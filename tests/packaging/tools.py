"""Paths to deploy/ and the external tools its tests need (missing: fail in CI, skip locally)."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
RULES = DEPLOY / "prometheus" / "rules.yml"
RULES_TEST = DEPLOY / "prometheus" / "rules.test.yml"
DASHBOARD = DEPLOY / "grafana" / "amplify-monitor.json"
KUBERNETES = DEPLOY / "kubernetes" / "base"
HA_OVERLAY = DEPLOY / "kubernetes" / "overlays" / "ha"
SYSTEMD = DEPLOY / "systemd"


def require(binary: str, why: str) -> str:
    """The binary's path; a missing one fails the test in CI and skips it elsewhere."""
    path = shutil.which(binary)
    if path is not None:
        return path
    message = f"{binary} not found on PATH ({why})"
    if os.environ.get("CI"):
        pytest.fail(f"{message}; CI must have it (.ci/run installs promtool and prometheus)")
    pytest.skip(message)


README = ROOT / "README.md"
_README_METRIC = re.compile(r"^\| `(amplify_[a-z0-9_]+)` \|", re.MULTILINE)
_METRIC_REF = re.compile(r"(?<![\w:])amplify_[a-z0-9_]+(?![\w:])")
_HISTOGRAM_SERIES = ("_bucket", "_sum", "_count")


def readme_metrics() -> set[str]:
    """The metric names README.md's Metrics table lists."""
    return set(_README_METRIC.findall(README.read_text(encoding="utf-8")))


def unlisted_metrics(text: str) -> set[str]:
    """Metric names used in `text` (PromQL, rules, a dashboard) that README.md does not list.

    Recording-rule names (`level:metric:ops`) contain colons and are not matched; a
    histogram's `_bucket`/`_sum`/`_count` series count as the histogram."""
    listed = readme_metrics()
    assert listed, "README.md's Metrics table was not found"
    unlisted = set()
    for name in set(_METRIC_REF.findall(text)):
        bases = {name} | {name.removesuffix(s) for s in _HISTOGRAM_SERIES if name.endswith(s)}
        if not bases & listed:
            unlisted.add(name)
    return unlisted
