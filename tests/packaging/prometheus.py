"""A real `prometheus` process for tests: temp config and TSDB, loopback port, JSON API.

Also derives the rules it loads from deploy/prometheus/rules.yml with every `for:` shortened,
so an alert meant to wait 15 minutes fires in seconds without a second hand-kept copy.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

_FOR = re.compile(r"^(?P<indent>[ \t]+)for:[ \t]*(?P<value>\S+)[ \t]*$", re.MULTILINE)
_ALERT = re.compile(r"^[ \t]+- alert:[ \t]*(\S+)[ \t]*$", re.MULTILINE)
_RECORD = re.compile(r"^[ \t]+- record:[ \t]*(\S+)[ \t]*$", re.MULTILINE)


def rule_names(rules_text: str) -> tuple[list[str], list[str]]:
    """(alert names, record names) in file order."""
    return _ALERT.findall(rules_text), _RECORD.findall(rules_text)


def shorten_for(rules_text: str, duration: str) -> str:
    """The rules with each non-zero `for:` set to `duration`; one `for:` per alert at most."""
    alerts, _ = rule_names(rules_text)
    found = _FOR.findall(rules_text)
    if len(found) > len(alerts):
        raise ValueError("more `for:` lines than alerts: the pattern matched something else")

    def replace(match: re.Match[str]) -> str:
        if re.fullmatch(r"0+[smhdwy]?", match.group("value")):
            return match.group(0)
        return f"{match.group('indent')}for: {duration}"

    return _FOR.sub(replace, rules_text)


class PrometheusError(AssertionError):
    pass


class Prometheus:
    """`prometheus` scraping `targets` every second and evaluating `rule_file` every second."""

    def __init__(
        self, binary: str, workdir: Path, port: int, targets: list[str], rule_file: Path
    ) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.workdir = workdir
        config = {
            "global": {
                "scrape_interval": "1s",
                "scrape_timeout": "1s",
                "evaluation_interval": "1s",
            },
            "rule_files": [str(rule_file)],
            "scrape_configs": [
                {"job_name": "amplify-monitor", "static_configs": [{"targets": targets}]}
            ],
        }
        # JSON is YAML: no YAML library needed to write Prometheus's config.
        config_path = workdir / "prometheus.yml"
        config_path.write_text(json.dumps(config, indent=2), encoding="utf-8")
        self.log_path = workdir / "prometheus.log"
        self._log = self.log_path.open("w")
        self.proc = subprocess.Popen(
            [
                binary,
                f"--config.file={config_path}",
                f"--storage.tsdb.path={workdir / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=workdir,
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def get(self, path: str, **params: str) -> Any:
        """GET a JSON API path; the `data` of a success, else PrometheusError."""
        url = self.url + path
        if params:
            url += "?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                body = json.loads(resp.read().decode())
        except urllib.error.HTTPError as exc:
            body = json.loads(exc.read().decode() or "{}")
        if body.get("status") != "success":
            raise PrometheusError(f"{path} {params}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def is_ready(self) -> bool:
        if self.proc.poll() is not None:
            raise PrometheusError(f"prometheus exited {self.proc.returncode}:\n{self.log()}")
        try:
            with urllib.request.urlopen(self.url + "/-/ready", timeout=2) as resp:
                return int(resp.status) == 200
        except OSError:
            return False

    def query(self, expr: str) -> list[dict[str, Any]]:
        data = self.get("/api/v1/query", query=expr, time=f"{time.time():.3f}")
        result: list[dict[str, Any]] = data["result"] if data["resultType"] == "vector" else []
        if data["resultType"] == "scalar":
            result = [{"metric": {}, "value": data["result"]}]
        return result

    def alerts(self) -> list[dict[str, Any]]:
        alerts: list[dict[str, Any]] = self.get("/api/v1/alerts")["alerts"]
        return alerts

    def rules(self) -> list[dict[str, Any]]:
        rules: list[dict[str, Any]] = [
            rule for group in self.get("/api/v1/rules")["groups"] for rule in group["rules"]
        ]
        return rules

    def stop(self) -> None:
        try:
            if self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(10)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(10)
        finally:
            self._log.close()
