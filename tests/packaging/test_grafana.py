"""deploy/grafana: the dashboard is well-formed, uses its datasource variable everywhere, defines
every variable it uses, lays panels out without overlap, and queries only listed metrics.
(That each query is valid PromQL and returns data is checked against a real Prometheus in
test_live_prometheus.py.)"""

from __future__ import annotations

from typing import Any

import pytest

from tests.packaging import dashboard
from tests.packaging.tools import DASHBOARD, unlisted_metrics

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}


@pytest.fixture(scope="module")
def db() -> dict[str, Any]:
    return dashboard.load()


def test_datasource_app_name_and_branch_variables(db: dict[str, Any]) -> None:
    variables = dashboard.variables(db)
    assert list(variables) == ["datasource", "app_name", "branch"]
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for name in ("app_name", "branch"):
        variable = variables[name]
        assert variable["datasource"] == DATASOURCE
        assert variable["includeAll"] is True and variable["allValue"] == ".*"
        _selector, label = dashboard.label_values(variable["definition"])
        assert label == name
        assert variable["query"]["query"] == variable["definition"]
    # The branch list follows the app selection.
    assert dashboard.used_variables(variables["branch"]["definition"]) == {"app_name"}


def test_every_panel_and_query_uses_the_datasource_variable(db: dict[str, Any]) -> None:
    for panel in dashboard.panels(db):
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE, panel["title"]
    assert "__inputs" not in db, "a hard-wired datasource input; use ${datasource}"


def test_queries_use_only_defined_variables_and_listed_metrics(db: dict[str, Any]) -> None:
    known = set(dashboard.variables(db)) | set(dashboard.BUILTINS)
    for query in dashboard.queries(db):
        assert dashboard.used_variables(query.expr) <= known, query
    assert unlisted_metrics(DASHBOARD.read_text(encoding="utf-8")) == set()


def test_ids_unique_refids_unique_and_layout_without_overlap(db: dict[str, Any]) -> None:
    ids = [p["id"] for p in db["panels"]]
    assert len(ids) == len(set(ids))
    occupied: set[tuple[int, int]] = set()
    for panel in db["panels"]:
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24, panel["title"]
        cells = {
            (x, y)
            for x in range(pos["x"], pos["x"] + pos["w"])
            for y in range(pos["y"], pos["y"] + pos["h"])
        }
        assert not cells & occupied, f"{panel['title']} overlaps another panel"
        occupied |= cells
        refs = [t["refId"] for t in panel.get("targets", [])]
        assert len(refs) == len(set(refs)), panel["title"]


def test_the_panels_the_brief_asks_for(db: dict[str, Any]) -> None:
    titles = {p["title"] for p in dashboard.panels(db)}
    assert {
        "Fleet status",
        "Failures by branch",
        "Build duration",
        "Time since last success",
        "Amplify API calls by outcome",
        "Poll cycle duration",
        "Outbox pending",
        "Alerts by outcome",
    } <= titles
    table = next(p for p in dashboard.panels(db) if p["title"] == "Fleet status")
    assert table["type"] == "table"
    assert all(t["instant"] and t["format"] == "table" for t in table["targets"])
    assert [t["id"] for t in table["transformations"]] == ["merge", "organize"]
    poll = next(p for p in dashboard.panels(db) if p["title"] == "Poll cycle duration")
    assert any("histogram_quantile(0.95," in t["expr"] for t in poll["targets"])
