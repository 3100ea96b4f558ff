"""Generates deploy/kubernetes/base/prometheusrule.yaml from deploy/prometheus/rules.yml.

The PrometheusRule's `spec` is rules.yml from its `groups:` line on, indented by two spaces
and otherwise byte for byte, so the two can never drift: `python -m tests.packaging.sync`
rewrites it, `--check` (and tests/packaging/test_kubernetes.py) fails when it is stale.
"""

from __future__ import annotations

import argparse
import sys

from tests.packaging.tools import KUBERNETES, RULES

PROMETHEUSRULE = KUBERNETES / "prometheusrule.yaml"
INDENT = "  "

HEADER = """\
# GENERATED from deploy/prometheus/rules.yml by `python -m tests.packaging.sync`: edit that
# file and rerun, never this one. prometheus-operator loads these rules into every Prometheus
# whose ruleSelector matches the labels below (kube-prometheus-stack: add
# `release: <helm release>` unless ruleSelectorNilUsesHelmValues is false).
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: amplify-monitor
  labels:
    app.kubernetes.io/name: amplify-monitor
spec:
"""


def groups_block(rules_text: str) -> str:
    """rules.yml from the top-level `groups:` line on (its leading comments are not rules)."""
    lines = rules_text.splitlines(keepends=True)
    starts = [i for i, line in enumerate(lines) if line.rstrip("\r\n") == "groups:"]
    if len(starts) != 1:
        raise ValueError("rules.yml must have exactly one top-level `groups:` line")
    return "".join(lines[starts[0] :])


def render(rules_text: str) -> str:
    block = groups_block(rules_text)
    indented = "".join(
        INDENT + line if line.strip() else line for line in block.splitlines(keepends=True)
    )
    return HEADER + indented


def embedded_groups(prometheusrule_text: str) -> str:
    """The inverse of `render`'s indentation: the PrometheusRule's spec as a rules file."""
    _head, sep, spec = prometheusrule_text.partition("\nspec:\n")
    if not sep:
        raise ValueError("no top-level `spec:` line")
    out = []
    for line in spec.splitlines(keepends=True):
        if line.strip() and not line.startswith(INDENT):
            raise ValueError(f"line not indented under spec: {line!r}")
        out.append(line[len(INDENT) :] if line.strip() else line)
    return "".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the file is stale")
    args = parser.parse_args(argv)
    wanted = render(RULES.read_text(encoding="utf-8"))
    current = PROMETHEUSRULE.read_text(encoding="utf-8") if PROMETHEUSRULE.exists() else ""
    if args.check:
        if current != wanted:
            print(f"{PROMETHEUSRULE} is stale: run python -m tests.packaging.sync", file=sys.stderr)
            return 1
        return 0
    if current != wanted:
        PROMETHEUSRULE.write_text(wanted, encoding="utf-8")
        print(f"wrote {PROMETHEUSRULE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
