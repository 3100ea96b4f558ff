"""deploy/systemd: the unit parses, passes `systemd-analyze verify` and a hardening threshold,
and agrees with the config.toml shipped beside it."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from monitor import config
from tests.packaging.tools import SYSTEMD

UNIT = SYSTEMD / "amplify-monitor.service"
CONFIG = SYSTEMD / "config.toml"
EXEC_START = "/usr/local/bin/amplify-monitor run --config /etc/amplify-monitor/config.toml"
# systemd-analyze's exposure scale is 0.0-10.0; --threshold takes tenths.
MAX_EXPOSURE_TENTHS = 15


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """Sections -> key -> every value given (systemd allows repeating a key)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        key, sep, value = line.partition("=")
        assert sep and current is not None, f"line {number} is not key=value in a section: {raw}"
        assert re.fullmatch(r"[A-Za-z][A-Za-z0-9]*", key.strip()), f"line {number}: bad key {key}"
        assert not raw.endswith("\\"), f"line {number}: no continuation lines, please"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def seconds(value: str) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|min)?", value)
    assert match, f"unexpected time span {value!r}"
    number, unit = float(match.group(1)), match.group(2) or "s"
    return number * {"ms": 0.001, "s": 1.0, "min": 60.0}[unit]


@pytest.fixture(scope="module")
def unit() -> dict[str, dict[str, list[str]]]:
    return parse_unit(UNIT.read_text(encoding="utf-8"))


def one(unit: dict[str, dict[str, list[str]]], section: str, key: str) -> str:
    values = unit[section].get(key, [])
    assert len(values) == 1, f"[{section}] {key}: expected exactly one value, got {values}"
    return values[0]


def test_unit_runs_the_daemon_hardened_with_state_and_credentials(
    unit: dict[str, dict[str, list[str]]],
) -> None:
    assert set(unit) == {"Unit", "Service", "Install"}
    assert one(unit, "Service", "ExecStart") == EXEC_START
    expected = {
        "DynamicUser": "yes",
        "StateDirectory": "amplify-monitor",
        "ConfigurationDirectory": "amplify-monitor",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "NoNewPrivileges": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "CapabilityBoundingSet": "",
        "Restart": "on-failure",
        "RestartPreventExitStatus": "2",
    }
    for key, value in expected.items():
        assert one(unit, "Service", key) == value, key
    assert one(unit, "Install", "WantedBy") == "multi-user.target"


def test_stop_timeout_leaves_room_for_the_five_second_clean_stop(
    unit: dict[str, dict[str, list[str]]],
) -> None:
    assert one(unit, "Service", "KillSignal") == "SIGTERM"
    assert 5.0 < seconds(one(unit, "Service", "TimeoutStopSec")) <= 30.0


def test_shipped_config_validates_and_points_into_the_units_directories(
    unit: dict[str, dict[str, list[str]]], tmp_path: Path
) -> None:
    credential_name, _, source = one(unit, "Service", "LoadCredential").partition(":")
    assert source.startswith("/etc/amplify-monitor/")
    state_dir, creds_dir = tmp_path / "state", tmp_path / "creds"
    # What systemd prepares before ExecStart: the directories and the copied credential.
    state_dir.mkdir()
    creds_dir.mkdir()
    (creds_dir / credential_name).write_text("xoxb-from-credential\n", encoding="utf-8")
    env = {"STATE_DIRECTORY": str(state_dir), "CREDENTIALS_DIRECTORY": str(creds_dir)}
    settings = config.load(CONFIG, env=env)
    assert settings.slack is not None
    assert settings.slack.token_file == creds_dir / credential_name
    assert settings.slack.bot_token() == "xoxb-from-credential"
    assert settings.state.backend == "sqlite"
    assert settings.state.path.parent == state_dir


def test_shipped_config_without_systemds_variables_names_the_missing_one() -> None:
    with pytest.raises(config.ConfigError, match="CREDENTIALS_DIRECTORY is not set"):
        config.load(CONFIG, env={"STATE_DIRECTORY": "/var/lib/amplify-monitor"})


def _installed_unit(tmp_path: Path) -> Path:
    """The unit with ExecStart on the amplify-monitor of this environment: verify insists
    that the binary exists, and /usr/local/bin/amplify-monitor need not here."""
    binary = Path(sys.executable).parent / "amplify-monitor"
    if not binary.exists():
        found = shutil.which("amplify-monitor")
        assert found, "amplify-monitor is not installed (pip install -e .)"
        binary = Path(found)
    text = UNIT.read_text(encoding="utf-8")
    assert text.count("ExecStart=/usr/local/bin/amplify-monitor ") == 1
    path = tmp_path / UNIT.name
    path.write_text(
        text.replace("ExecStart=/usr/local/bin/amplify-monitor ", f"ExecStart={binary} "),
        encoding="utf-8",
    )
    return path


def _systemd_analyze() -> str:
    path = shutil.which("systemd-analyze")
    if path is None:
        pytest.skip("systemd-analyze not installed; the unit is still parse-checked above")
    return path


def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    analyze = _systemd_analyze()
    result = subprocess.run(
        [analyze, "verify", str(_installed_unit(tmp_path))],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    ours = [line for line in (result.stdout + result.stderr).splitlines() if UNIT.name in line]
    assert result.returncode == 0 and not ours, result.stdout + result.stderr


def test_systemd_analyze_security_rates_the_unit_well_hardened(tmp_path: Path) -> None:
    analyze = _systemd_analyze()
    result = subprocess.run(
        [
            analyze,
            "security",
            "--offline=yes",
            f"--threshold={MAX_EXPOSURE_TENTHS}",
            "--no-pager",
            str(_installed_unit(tmp_path)),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if "--offline" in result.stderr and "unrecognized" in result.stderr:
        pytest.skip("this systemd-analyze has no --offline (systemd < 250)")
    level = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert level, result.stdout + result.stderr
    assert result.returncode == 0, f"exposure {level.group(1)} > {MAX_EXPOSURE_TENTHS / 10}"
