"""Paths to deploy/ and the external tools its tests need (missing: fail in CI, skip locally)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
RULES = DEPLOY / "prometheus" / "rules.yml"
RULES_TEST = DEPLOY / "prometheus" / "rules.test.yml"
DASHBOARD = DEPLOY / "grafana" / "amplify-monitor.json"
KUBERNETES = DEPLOY / "kubernetes"
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
