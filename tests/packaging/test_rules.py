"""deploy/prometheus: promtool accepts the rules and their unit tests pass; the rules use only
metrics README.md lists, every alert is labelled and explained, and every alert has a unit
test where it fires and one where it stays silent."""

from __future__ import annotations

import subprocess
from typing import Any

from tests.packaging import yaml_docs
from tests.packaging.prometheus import rule_names
from tests.packaging.tools import RULES, RULES_TEST, require, unlisted_metrics


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    binary = require("promtool", "checks and unit-tests the alerting rules")
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=120, check=False)


def test_promtool_check_rules_accepts_the_rules() -> None:
    result = promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    alerts, records = rule_names(RULES.read_text(encoding="utf-8"))
    assert f"SUCCESS: {len(alerts) + len(records)} rules found" in result.stdout


def test_promtool_unit_tests_pass() -> None:
    result = promtool("test", "rules", str(RULES_TEST))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_rules_use_only_metrics_the_readme_lists() -> None:
    assert unlisted_metrics(RULES.read_text(encoding="utf-8")) == set()


def test_the_alerts_the_brief_asks_for_exist() -> None:
    alerts, _ = rule_names(RULES.read_text(encoding="utf-8"))
    assert {
        "AmplifyBuildFailing",
        "AmplifyBranchNoSuccessIn",
        "AmplifyMonitorDown",
        "AmplifyMonitorNotReady",
        "AmplifyMonitorThrottled",
        "AmplifyAlertsUndelivered",
        "AmplifyMonitorApiErrors",
        "AmplifyMonitorEventsFailing",
    } <= set(alerts)
    assert len(alerts) == len(set(alerts))


def _alert_rules() -> list[dict[str, Any]]:
    data = yaml_docs.load_one(RULES)
    return [rule for group in data["groups"] for rule in group["rules"] if "alert" in rule]


def test_every_alert_has_severity_component_summary_description_and_runbook() -> None:
    for rule in _alert_rules():
        assert rule["labels"]["severity"] in ("critical", "warning"), rule["alert"]
        assert rule["labels"]["component"] in ("build", "monitor"), rule["alert"]
        assert set(rule["annotations"]) == {"summary", "description", "runbook_url"}, rule["alert"]


def test_every_alert_is_unit_tested_firing_and_silent() -> None:
    tests = yaml_docs.load_one(RULES_TEST)
    assert tests["rule_files"] == ["rules.yml"]
    fires: set[str] = set()
    silent: set[str] = set()
    for case in tests["tests"]:
        for check in case.get("alert_rule_test", []):
            (fires if check.get("exp_alerts") else silent).add(check["alertname"])
    names = {rule["alert"] for rule in _alert_rules()}
    assert names - fires == set(), "alerts never shown firing"
    assert names - silent == set(), "alerts never shown silent"


def test_every_runbook_url_leads_to_its_own_section_of_docs_runbook_md() -> None:
    runbook = (RULES.parents[2] / "docs" / "runbook.md").read_text(encoding="utf-8")
    headings = {
        line.removeprefix("## ").strip().lower()
        for line in runbook.splitlines()
        if line.startswith("## ")
    }
    anchors = []
    for rule in _alert_rules():
        url = rule["annotations"]["runbook_url"]
        page, _, anchor = url.partition("#")
        assert page.endswith("/docs/runbook.md"), url
        assert anchor == rule["alert"].lower(), url
        anchors.append(anchor)
    assert set(anchors) == headings  # one section per alert, none left over
