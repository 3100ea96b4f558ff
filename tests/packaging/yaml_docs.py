"""YAML documents as plain data, for structural checks of deploy/ manifests.

PyYAML is not a dependency of the project. If this environment lacks it, a `python3` on the
machine that has it parses the files and hands the result back as JSON: a real YAML parser
either way. With neither, the calling test is skipped and says so.
"""

from __future__ import annotations

import importlib
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

_DUMP = (
    "import json, sys, yaml\n"
    "json.dump([list(yaml.safe_load_all(open(p, encoding='utf-8'))) for p in sys.argv[1:]],"
    " sys.stdout)\n"
)


def _interpreters() -> list[str]:
    seen: set[Path] = set()
    found: list[str] = []
    for name in ("python3", "/usr/bin/python3", "/usr/local/bin/python3"):
        path = shutil.which(name)
        if path is not None and Path(path).resolve() not in seen:
            seen.add(Path(path).resolve())
            found.append(path)
    return found


def load(*paths: Path) -> list[list[Any]]:
    """Every document of every file, in order; skips the test when no YAML parser exists."""
    try:
        yaml = importlib.import_module("yaml")
    except ImportError:
        pass
    else:
        return [list(yaml.safe_load_all(p.read_text(encoding="utf-8"))) for p in paths]
    for interpreter in _interpreters():
        result = subprocess.run(
            [interpreter, "-c", _DUMP, *map(str, paths)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if result.returncode == 0:
            docs: list[list[Any]] = json.loads(result.stdout)
            return docs
        if "No module named 'yaml'" not in result.stderr:
            raise AssertionError(f"YAML parse failed ({interpreter}):\n{result.stderr}")
    pytest.skip("no YAML parser here (PyYAML neither in this venv nor in a python3 on PATH)")


def load_one(path: Path) -> Any:
    (docs,) = load(path)
    assert len(docs) == 1, f"{path}: expected one YAML document, found {len(docs)}"
    return docs[0]
