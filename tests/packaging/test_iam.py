"""deploy/aws/iam-*.json grant exactly what the code calls: the Amplify operations of the daemon
and of `deploy`/`wait` (read from the one client module and its callers), and the SQS
operations of push mode; `parliament` finds nothing to say about any of them."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest
from parliament import analyze_policy_string  # type: ignore[import-untyped]

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "monitor"
AWS = ROOT / "deploy" / "aws"
CLIENT = re.compile(r"_?client$")


def _operations_by_method(module: Path, cls: str) -> dict[str, str]:
    """Method name -> the operation its `self._call("Operation", ...)` (or `_listing`) makes."""
    tree = ast.parse(module.read_text(encoding="utf-8"))
    [klass] = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == cls]
    found: dict[str, str] = {}
    for method in klass.body:
        if not isinstance(method, ast.AsyncFunctionDef | ast.FunctionDef):
            continue
        for node in ast.walk(method):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in ("_call", "_listing")
                and node.args
                and isinstance(node.args[0], ast.Constant)
            ):
                found[method.name] = str(node.args[0].value)
    return found


def _receiver(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return ""


def _called(modules: list[Path], methods: dict[str, str]) -> set[str]:
    """The operations of the client methods these modules call on something named *client."""
    operations: set[str] = set()
    for module in modules:
        for node in ast.walk(ast.parse(module.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in methods
                and CLIENT.search(_receiver(node.func.value))
            ):
                operations.add(methods[node.func.attr])
    return operations


def _sources(*, deploy: bool) -> list[Path]:
    out = []
    for path in PACKAGE.rglob("*.py"):
        relative = path.relative_to(PACKAGE).as_posix()
        if relative.startswith("simulator/") or relative == "amplify.py":
            continue
        if relative.startswith("deploy/") == deploy:
            out.append(path)
    return out


def _granted(policy: str) -> set[str]:
    actions: set[str] = set()
    for statement in json.loads((AWS / policy).read_text(encoding="utf-8"))["Statement"]:
        assert statement["Effect"] == "Allow"
        listed = statement["Action"]
        actions.update([listed] if isinstance(listed, str) else listed)
    return actions


AMPLIFY = _operations_by_method(PACKAGE / "amplify.py", "AmplifyClient")


def test_the_daemon_policy_grants_exactly_the_amplify_operations_the_daemon_calls() -> None:
    called = _called(_sources(deploy=False), AMPLIFY)
    assert called == {"ListApps", "ListBranches", "ListJobs", "GetJob"}  # the scan works
    assert _granted("iam-daemon.json") == {f"amplify:{op}" for op in called}


def test_the_deploy_policy_grants_exactly_what_deploy_and_wait_call() -> None:
    called = _called(_sources(deploy=True), AMPLIFY)
    assert "CreateDeployment" in called and "GetJob" in called
    assert _granted("iam-deploy.json") == {f"amplify:{op}" for op in called}


def test_the_events_policy_grants_exactly_the_sqs_operations_push_mode_makes() -> None:
    sqs = _operations_by_method(PACKAGE / "sqs.py", "SqsQueue")
    assert _granted("iam-events.json") == {f"sqs:{op}" for op in sqs.values()}


def test_no_client_method_is_left_that_nothing_calls() -> None:
    called = _called(_sources(deploy=False), AMPLIFY) | _called(_sources(deploy=True), AMPLIFY)
    assert set(AMPLIFY.values()) == called


@pytest.mark.parametrize("policy", ["iam-daemon.json", "iam-deploy.json", "iam-events.json"])
def test_parliament_finds_nothing_in_the_policy(policy: str) -> None:
    analyzed = analyze_policy_string((AWS / policy).read_text(encoding="utf-8"))
    assert [(f.issue, f.detail) for f in analyzed.findings] == []
