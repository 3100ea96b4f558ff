"""No silent region: `run`, `once` and `check-config` take the region from the config, else
AWS_REGION, AWS_DEFAULT_REGION or the profile, and otherwise exit 2 naming `aws.region`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from monitor import cli


@pytest.fixture
def bare(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A config without [aws] region, on a machine with no region anywhere."""
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    path = tmp_path / "c.toml"
    path.write_text(f'[metrics]\nlisten = "127.0.0.1:0"\n[state]\npath = "{tmp_path / "s.db"}"\n')
    return path


@pytest.mark.parametrize("command", [["check-config"], ["once", "--config"], ["run", "--config"]])
def test_no_region_anywhere_exits_2_with_one_line_naming_aws_region(
    bare: Path, command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main([*command, str(bare)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith(f"amplify-monitor: config error: {bare}: aws.region: not set")


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"AWS_REGION": "eu-west-3"}, "eu-west-3"),
        ({"AWS_DEFAULT_REGION": "ap-south-1"}, "ap-south-1"),
        ({"AWS_REGION": "eu-west-3", "AWS_DEFAULT_REGION": "ap-south-1"}, "eu-west-3"),
    ],
)
def test_the_region_comes_from_the_environment_when_the_config_has_none(
    bare: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    env: dict[str, str],
    expected: str,
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert cli.main(["check-config", str(bare)]) == 0
    assert json.loads(capsys.readouterr().out)["aws"]["region"] == expected


def test_the_region_comes_from_the_profile_when_neither_config_nor_environment_has_one(
    bare: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    aws_config = tmp_path / "aws-config"
    aws_config.write_text("[profile ops]\nregion = ca-central-1\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(aws_config))
    bare.write_text(bare.read_text() + '[aws]\nprofile = "ops"\n')
    assert cli.main(["check-config", str(bare)]) == 0
    assert json.loads(capsys.readouterr().out)["aws"]["region"] == "ca-central-1"


def test_a_region_in_the_config_wins_over_the_environment(
    bare: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AWS_REGION", "eu-west-3")
    bare.write_text(bare.read_text() + '[aws]\nregion = "us-west-2"\n')
    assert cli.main(["check-config", str(bare)]) == 0
    assert json.loads(capsys.readouterr().out)["aws"]["region"] == "us-west-2"
