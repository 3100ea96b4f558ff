"""The proof: the daemon against the simulator, scraped by a real Prometheus that loads
deploy/prometheus/rules.yml; a scripted failure must fire the alerts meant for it (and only
those), every dashboard query must be valid and return data, and stopping the daemon must fire
AmplifyMonitorDown.

`for:` durations are shortened to SHORT_FOR in a copy derived from rules.yml at run time;
the expressions, labels and annotations are the shipped ones.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import anyio
import pytest

from monitor.model import FAILED
from monitor.simulator import Fleet, Simulator
from tests.e2e.daemon import Daemon, daemon_config, free_port
from tests.packaging import dashboard
from tests.packaging.prometheus import Prometheus, rule_names, shorten_for
from tests.packaging.tools import RULES, require

T = TypeVar("T")

FAST = {"PENDING": 0.3, "PROVISIONING": 0.3, "RUNNING": 1.0}
SHORT_FOR = "2s"
SHORT_FOR_SECONDS = 2
BUDGET_SECONDS = 55.0
DAY = 86400.0


class Clock:
    """One deadline for the whole test; every wait takes what is left of it."""

    def __init__(self, budget: float) -> None:
        self.start = time.monotonic()
        self.deadline = self.start + budget

    def now(self) -> float:
        return time.monotonic() - self.start

    async def wait_for(
        self,
        what: Callable[[], T | None],
        describe: str,
        context: Callable[[], str],
        step: float = 0.2,
    ) -> T:
        """Poll `what` in a thread (it blocks on HTTP; the simulator shares this loop)."""
        last_error: Exception | None = None
        while time.monotonic() < self.deadline:
            try:
                value = await anyio.to_thread.run_sync(what)
            except AssertionError:
                raise
            except Exception as exc:  # a query failing transiently is retried until the deadline
                last_error = exc
                value = None
            if value:
                return value
            await anyio.sleep(step)
        raise AssertionError(
            f"timed out after {self.now():.1f}s waiting for {describe} "
            f"(last error: {last_error})\n{context()[-4000:]}"
        )


def firing(prom: Prometheus) -> set[tuple[str, str]]:
    """(alertname, branch or '') of every firing alert."""
    return {
        (a["labels"]["alertname"], a["labels"].get("branch", ""))
        for a in prom.alerts()
        if a["state"] == "firing"
    }


def config(tmp_path: Path, sim: Simulator, port: int) -> Path:
    return daemon_config(tmp_path / "config.toml", sim.url, port)


def rss_mib(pid: int) -> float | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return None


async def test_scripted_failure_fires_alerts_in_real_prometheus_and_dashboard_has_data(
    tmp_path: Path,
) -> None:
    binary = require("prometheus", "the live rules and dashboard test runs a real Prometheus")
    clock = Clock(BUDGET_SECONDS)
    rules_text = RULES.read_text(encoding="utf-8")
    alert_names, record_names = rule_names(rules_text)
    test_rules = tmp_path / "rules.yml"
    test_rules.write_text(shorten_for(rules_text, SHORT_FOR), encoding="utf-8")

    fleet = Fleet(durations=FAST)
    app = fleet.add_app("shop", app_id="dshop")
    fleet.add_branch(app, "main")
    fleet.add_branch(app, "feature/login")
    # main last shipped two days ago, feature/login ten minutes ago.
    fleet.start_job(app, "main", at=fleet.now() - 2 * DAY)
    fleet.start_job(app, "feature/login", at=fleet.now() - 600)

    figures: dict[str, float] = {}
    async with Simulator(fleet) as sim:
        metrics_port = free_port()
        daemon = Daemon(config(tmp_path, sim, metrics_port), tmp_path, metrics_port)
        prom: Prometheus | None = None
        try:
            (tmp_path / "prometheus").mkdir()
            prom = Prometheus(
                binary,
                tmp_path / "prometheus",
                free_port(),
                [f"127.0.0.1:{metrics_port}"],
                test_rules,
            )
            p = prom

            def context() -> str:
                return f"--- prometheus log:\n{p.log()}\n--- daemon stderr:\n{daemon.stderr()}"

            await clock.wait_for(p.is_ready, "Prometheus /-/ready", context)
            await clock.wait_for(lambda: daemon.get("/readyz")[0] == 200, "daemon ready", context)
            figures["ready"] = clock.now()

            # Every rule of rules.yml loaded and evaluated without error.
            def rules_healthy() -> list[dict[str, Any]] | None:
                rules = p.rules()
                if any(r["health"] != "ok" for r in rules):
                    return None
                return rules

            rules = await clock.wait_for(rules_healthy, "every rule health ok", context)
            assert [r["name"] for r in rules if r["type"] == "alerting"] == alert_names
            assert [r["name"] for r in rules if r["type"] == "recording"] == record_names
            for rule in rules:
                if rule["type"] != "alerting":
                    continue
                assert rule["duration"] in (0, SHORT_FOR_SECONDS), rule
                assert rule["labels"]["severity"] in ("critical", "warning"), rule
                assert rule["labels"]["component"] in ("build", "monitor"), rule
                assert {"summary", "description", "runbook_url"} <= set(rule["annotations"]), rule
            await clock.wait_for(
                lambda: p.query('amplify_job_status{app_id="dshop",status="SUCCEED"} == 1'),
                "the baseline scraped",
                context,
            )
            # Until the first scrape (Prometheus sends new targets to the scraper after up
            # to 5 s), absent_over_time makes AmplifyMonitorDown pending or even firing:
            # wait for the first evaluation that sees the series.
            await clock.wait_for(lambda: firing(p) == set(), "no alert firing", context)

            # Script the failures.
            scripted = clock.now()
            fleet.start_job(app, "main", outcome=FAILED, durations=FAST)
            fleet.start_job(app, "feature/login", outcome=FAILED, durations=FAST)
            await clock.wait_for(
                lambda: p.query(
                    'amplify_job_status{app_id="dshop",branch="main",status="FAILED"} == 1'
                ),
                "FAILED scraped",
                context,
                step=0.1,
            )
            figures["failed_scraped"] = clock.now() - scripted
            expected = {
                ("AmplifyBuildFailing", "main"),
                ("AmplifyBuildFailing", "feature/login"),
                ("AmplifyBranchNoSuccessIn", "main"),
            }
            await clock.wait_for(
                lambda: ("AmplifyBuildFailing", "main") in firing(p),
                "AmplifyBuildFailing firing",
                context,
                step=0.1,
            )
            figures["build_failing_fired"] = clock.now() - scripted
            fired = await clock.wait_for(
                lambda: (f := firing(p)) >= expected and f, "all expected alerts", context
            )
            figures["all_expected_fired"] = clock.now() - scripted
            assert fired == expected, p.alerts()
            alert = next(
                a for a in p.alerts() if a["labels"]["alertname"] == "AmplifyBranchNoSuccessIn"
            )
            assert alert["labels"]["app_name"] == "shop", alert
            assert 2 * DAY - 60 < float(alert["value"]) < 2 * DAY + 60, alert
            assert "shop/main" in alert["annotations"]["summary"], alert

            # Every dashboard query: valid PromQL, and data, with "All" and with this test's
            # app and branch selected.
            db = dashboard.load()
            for values in (
                {"app_name": ".*", "branch": ".*"},
                {"app_name": "shop", "branch": "main"},
            ):
                for q in dashboard.queries(db):
                    expr = dashboard.substitute(q.expr, values)
                    await clock.wait_for(
                        functools.partial(p.query, expr),
                        f"data for panel {q.panel!r} {q.ref_id} ({values}): {expr}",
                        context,
                    )
                for name, variable in dashboard.variables(db).items():
                    if variable["type"] != "query":
                        continue
                    selector, label = dashboard.label_values(variable["definition"])
                    params = (
                        {}
                        if selector is None
                        else {"match[]": dashboard.substitute(selector, values)}
                    )
                    found = await anyio.to_thread.run_sync(
                        functools.partial(p.get, f"/api/v1/label/{label}/values", **params)
                    )
                    assert values[name] in found or values[name] == ".*", (name, found)
                    assert found, (name, found)
            fleet_table = p.query(
                dashboard.substitute(
                    next(q for q in dashboard.queries(db) if q.panel == "Fleet status").expr,
                    {"app_name": ".*", "branch": ".*"},
                )
            )
            statuses = {(r["metric"]["branch"], r["metric"]["status"]) for r in fleet_table}
            assert statuses == {("main", FAILED), ("feature/login", FAILED)}, fleet_table
            figures["dashboard_checked"] = clock.now()
            rss = rss_mib(daemon.proc.pid)

            # Stop the daemon: AmplifyMonitorDown must fire, the build alerts go stale.
            stopped = clock.now()
            code = await anyio.to_thread.run_sync(daemon.stop)
            assert code == 0, daemon.stderr()
            down = await clock.wait_for(
                lambda: firing(p) if ("AmplifyMonitorDown", "") in firing(p) else None,
                "AmplifyMonitorDown firing",
                context,
                step=0.1,
            )
            figures["monitor_down_fired"] = clock.now() - stopped
            assert down == {("AmplifyMonitorDown", "")}, p.alerts()
        finally:
            if prom is not None:
                await anyio.to_thread.run_sync(prom.stop)
            await anyio.to_thread.run_sync(daemon.kill)
    figures["total"] = clock.now()
    print(
        "\nlive Prometheus figures (s): "
        + ", ".join(f"{k}={v:.1f}" for k, v in figures.items())
        + (f"; daemon RSS {rss:.0f} MiB" if rss is not None else "")
    )


@pytest.mark.parametrize("value", ["15m", "2h", "5m"])
def test_shortened_rules_keep_everything_but_the_for_durations(value: str) -> None:
    text = RULES.read_text(encoding="utf-8")
    short = shorten_for(text, SHORT_FOR)
    assert f"for: {value}" in text
    assert "for: " + value not in short
    changed = [(a, b) for a, b in zip(text.splitlines(), short.splitlines(), strict=True) if a != b]
    assert changed and all(b.strip() == f"for: {SHORT_FOR}" for _, b in changed)
    assert all(a.strip().startswith("for: ") for a, _ in changed)
