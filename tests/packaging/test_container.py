"""The Dockerfile, checked as far as a machine that cannot pull a base image can: hadolint, the
instructions a runtime relies on, one image name everywhere, and the first stage's wheel
installed into a fresh venv and run as a non-root user from a read-only directory."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
IMAGE = f"registry.example.com/amplify-monitor:{VERSION}"
UID = 65532


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the final stage, continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text(encoding="utf-8"))
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    lines = [line for line in lines if not line.startswith("#")]
    last_from = max(i for i, line in enumerate(lines) if line.startswith("FROM "))
    return [tuple(line.split(" ", 1)) for line in lines[last_from:]]  # type: ignore[misc]


def test_hadolint_finds_nothing() -> None:
    hadolint = Path(sys.executable).with_name("hadolint")
    result = subprocess.run(
        [str(hadolint), str(DOCKERFILE)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_image_runs_the_daemon_as_65532_with_its_state_on_a_volume() -> None:
    found = dict(_instructions())
    assert found["USER"] == f"{UID}:{UID}"
    assert found["VOLUME"] == '["/var/lib/amplify-monitor"]'
    assert found["WORKDIR"] == "/var/lib/amplify-monitor"  # state.path's default lands there
    assert found["EXPOSE"] == "9853"
    assert found["ENTRYPOINT"] == '["amplify-monitor"]'
    assert found["CMD"] == '["run", "--config", "/etc/amplify-monitor/config.toml"]'
    assert "/healthz" in found["HEALTHCHECK"]
    assert "PYTHONDONTWRITEBYTECODE=1" in found["ENV"]  # a read-only root filesystem
    assert f'org.opencontainers.image.version="{VERSION}"' in found["LABEL"]
    assert f"amplify-monitor=={VERSION}" in found["RUN"]


def test_the_readme_and_the_kubernetes_manifest_name_the_same_image() -> None:
    for manifest in ("base/statefulset.yaml", "overlays/ha/deployment.yaml"):
        text = (ROOT / "deploy" / "kubernetes" / manifest).read_text()
        assert re.findall(r"image: (\S+)", text) == [IMAGE], manifest
    readme = (ROOT / "README.md").read_text()
    assert f"docker build -t {IMAGE} ." in readme
    assert IMAGE in DOCKERFILE.read_text()


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory another user can read (pytest's own tmp_path is private to this one)."""
    path = Path(tempfile.mkdtemp(prefix="amplify-monitor-image-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _as_image_user() -> list[str]:
    """Run as uid 65532 when this is root (CI); as the current user otherwise."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("setpriv (util-linux) is needed to drop to uid 65532")
    return [setpriv, f"--reuid={UID}", f"--regid={UID}", "--clear-groups"]


def test_the_wheel_installs_in_a_fresh_venv_and_checks_the_shipped_config_as_non_root(
    shared_dir: Path,
) -> None:
    # What the first stage copies (pyproject.toml, README.md, monitor/), built from a copy so
    # the build leaves nothing in the checkout.
    src = shared_dir / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "monitor", src / "monitor", ignore=shutil.ignore_patterns("__pycache__"))
    wheels = shared_dir / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(src)],
        check=True,
        capture_output=True,
    )
    [wheel] = wheels.glob("amplify_monitor-*.whl")
    venv = shared_dir / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    install = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", str(wheel)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert install.returncode == 0, install.stderr[-3000:]
    work = shared_dir / "readonly"
    work.mkdir()
    shutil.copy(ROOT / "config.example.toml", work / "config.toml")
    work.chmod(0o555)
    env = {
        "PATH": f"{venv / 'bin'}:/usr/bin:/bin",
        "HOME": str(work),
        "PYTHONDONTWRITEBYTECODE": "1",
        "AWS_CONFIG_FILE": "/nonexistent",
    }
    done = subprocess.run(
        [*_as_image_user(), str(venv / "bin" / "amplify-monitor"), "check-config", "config.toml"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert '"region"' in done.stdout
    assert list(work.iterdir()) == [work / "config.toml"]  # nothing written beside it
