"""Shared fixtures: dummy AWS credentials and helpers to build settings for the simulator."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from monitor import config


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """botocore signs every request; the simulator accepts any signature, so dummies will do."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    yield


def make_settings(endpoint_url: str, state_path: Path, **sections: Any) -> config.Settings:
    """Settings for a daemon pointed at a simulator, metrics on a free port."""
    data: dict[str, Any] = {
        "aws": {"region": "us-east-1", "endpoint_url": endpoint_url},
        "metrics": {"listen": "127.0.0.1:0"},
        "state": {"path": str(state_path)},
        "log": {"format": "console", "level": "warning"},
    }
    for name, value in sections.items():
        data[name] = {**data.get(name, {}), **value} if isinstance(value, dict) else value
    return config.parse(data, "test")
