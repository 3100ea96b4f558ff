"""The Grafana dashboard's panels and queries, with template variables filled in as Grafana
would before it sends a query to Prometheus."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from tests.packaging.tools import DASHBOARD

# Grafana's own variables that can appear in a Prometheus query.
BUILTINS = {"__rate_interval": "30s", "__interval": "15s", "__range": "1h"}
_VARIABLE = re.compile(r"\$(?:\{(?P<braced>\w+)(?::\w+)?\}|(?P<plain>\w+))")
_LABEL_VALUES = re.compile(r"^label_values\((?:(?P<selector>.+),\s*)?(?P<label>\w+)\)$")


@dataclass(frozen=True)
class Query:
    panel: str
    ref_id: str
    expr: str
    instant: bool


def load() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return data


def panels(dashboard: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, rows' nested panels included, rows themselves excluded."""
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            yield from panel.get("panels", [])
        else:
            yield panel


def queries(dashboard: Mapping[str, Any]) -> list[Query]:
    return [
        Query(p["title"], t["refId"], t["expr"], bool(t.get("instant")))
        for p in panels(dashboard)
        for t in p.get("targets", [])
    ]


def variables(dashboard: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in dashboard["templating"]["list"]}


def used_variables(text: str) -> set[str]:
    return {m.group("braced") or m.group("plain") for m in _VARIABLE.finditer(text)}


def substitute(text: str, values: Mapping[str, str]) -> str:
    """Replace `$name` / `${name}` by values (Grafana builtins included); unknown ones raise."""
    merged = {**BUILTINS, **values}

    def value(match: re.Match[str]) -> str:
        name = match.group("braced") or match.group("plain")
        if name not in merged:
            raise KeyError(f"no value for template variable ${name}")
        return merged[name]

    return _VARIABLE.sub(value, text)


def label_values(definition: str) -> tuple[str | None, str]:
    """A `label_values(selector, label)` variable query -> (selector or None, label)."""
    match = _LABEL_VALUES.match(definition.strip())
    if match is None:
        raise ValueError(f"not a label_values() query: {definition}")
    return match.group("selector"), match.group("label")
