"""deploy/kubernetes/overlays/ha: `kubectl kustomize` builds three replicas on the Redis backend
(a Deployment in place of the StatefulSet, no volume, a PodDisruptionBudget), every built object
passes kubernetes-validate's schemas, and the embedded config is a valid clustered config."""

from __future__ import annotations

import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml  # type: ignore[import-untyped]

from monitor import config
from tests.packaging.tools import HA_OVERLAY

CRDS = {"ServiceMonitor", "PrometheusRule"}  # prometheus-operator's: not in the core schemas


@pytest.fixture(scope="module")
def built() -> dict[str, Any]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl not installed")
    result = subprocess.run(
        [kubectl, "kustomize", str(HA_OVERLAY)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    objects = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    kinds = [o["kind"] for o in objects]
    assert len(kinds) == len(set(kinds))
    return {o["kind"]: o for o in objects}


def test_the_overlay_runs_three_replicas_and_no_statefulset(built: dict[str, Any]) -> None:
    assert set(built) == {
        "ServiceAccount",
        "ConfigMap",
        "Service",
        "Deployment",
        "PodDisruptionBudget",
        "ServiceMonitor",
        "PrometheusRule",
    }
    deployment = built["Deployment"]
    assert deployment["spec"]["replicas"] == 3
    pod = deployment["spec"]["template"]["spec"]
    assert "volumeClaimTemplates" not in deployment["spec"]
    assert {v["name"] for v in pod["volumes"]} == {"config", "slack-token", "tmp"}
    [container] = pod["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert env["REDIS_URL"]["valueFrom"]["secretKeyRef"]["name"] == "amplify-monitor-redis"
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    pdb = built["PodDisruptionBudget"]["spec"]
    assert pdb["selector"]["matchLabels"].items() <= labels.items()
    assert pdb["maxUnavailable"] == 1


def test_every_built_object_passes_the_kubernetes_schemas(built: dict[str, Any]) -> None:
    version = kubernetes_validate.latest_version()
    for kind, obj in built.items():
        if kind in CRDS:
            continue
        kubernetes_validate.validate(obj, version, strict=True)


def test_the_overlay_config_is_a_valid_clustered_config(
    built: dict[str, Any], tmp_path: Path
) -> None:
    data = tomllib.loads(built["ConfigMap"]["data"]["config.toml"])
    # In the pod the Secret is mounted at token_file; the loader insists that it exists.
    stand_in = tmp_path / "slack-token"
    stand_in.write_text("xoxb-test\n", encoding="utf-8")
    data["slack"]["token_file"] = str(stand_in)
    env = {"REDIS_URL": "redis://redis.example.internal:6379/0", "POD_NAME": "amplify-monitor-x"}
    settings = config.parse(data, "overlays/ha configmap", env=env)
    assert settings.state.backend == "redis"
    assert settings.cluster.replica_id == "amplify-monitor-x"
    assert settings.state.redis_url is not None
