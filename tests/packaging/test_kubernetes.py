"""deploy/kubernetes: the PrometheusRule is rules.yml's groups byte for byte, the embedded
config.toml is a valid config, and (with a YAML parser) the objects agree with each other:
ports, labels, probes, volumes, security context, one replica on a persistent volume."""

from __future__ import annotations

import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest

from monitor import config
from tests.packaging import sync, yaml_docs
from tests.packaging.tools import KUBERNETES, RULES, require

APPLIED = [
    "serviceaccount.yaml",
    "configmap.yaml",
    "statefulset.yaml",
    "service.yaml",
    "servicemonitor.yaml",
    "prometheusrule.yaml",
]
NAME_LABEL = {"app.kubernetes.io/name": "amplify-monitor"}


def embedded_config_text() -> str:
    """configmap.yaml's `config.toml: |` block, read as text (no YAML parser needed)."""
    lines = (KUBERNETES / "configmap.yaml").read_text(encoding="utf-8").splitlines()
    start = lines.index("  config.toml: |") + 1
    block: list[str] = []
    for line in lines[start:]:
        if line.strip() and not line.startswith("    "):
            break
        block.append(line[4:])
    return "\n".join(block).strip() + "\n"


def test_prometheusrule_is_generated_from_rules_yml_and_in_sync() -> None:
    current = sync.PROMETHEUSRULE.read_text(encoding="utf-8")
    assert current == sync.render(RULES.read_text(encoding="utf-8")), (
        "stale: run python -m tests.packaging.sync"
    )
    assert sync.embedded_groups(current) == sync.groups_block(RULES.read_text(encoding="utf-8"))


def test_prometheusrule_groups_pass_promtool(tmp_path: Path) -> None:
    promtool = require("promtool", "checks the PrometheusRule's embedded rules")
    extracted = tmp_path / "embedded.yml"
    extracted.write_text(
        sync.embedded_groups(sync.PROMETHEUSRULE.read_text(encoding="utf-8")), encoding="utf-8"
    )
    result = subprocess.run(
        [promtool, "check", "rules", str(extracted)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def parse_config(text: str, tmp_path: Path) -> tuple[config.Settings, Path]:
    """The settings, and the token_file path as written. The config loader insists that the
    token file exists; in the pod the Secret is mounted there, here a stand-in is used."""
    data = tomllib.loads(text)
    token_file = Path(data["slack"]["token_file"])
    stand_in = tmp_path / token_file.name
    stand_in.write_text("xoxb-test\n", encoding="utf-8")
    data["slack"]["token_file"] = str(stand_in)
    return config.parse(data, "configmap.yaml", env={}), token_file


def test_embedded_config_toml_is_a_valid_config(tmp_path: Path) -> None:
    settings, token_file = parse_config(embedded_config_text(), tmp_path)
    assert settings.metrics.host == "0.0.0.0"
    assert settings.state.backend == "sqlite"
    assert token_file.is_absolute()


@pytest.fixture(scope="module")
def objects() -> dict[str, Any]:
    """kind -> the object, from every YAML file in deploy/kubernetes (one object per file)."""
    files = sorted(KUBERNETES.glob("*.yaml"))
    out: dict[str, Any] = {}
    for path, docs in zip(files, yaml_docs.load(*files), strict=True):
        assert len(docs) == 1, f"{path.name}: one object per file"
        (obj,) = docs
        assert obj["kind"] not in out, f"two {obj['kind']}s"
        out[obj["kind"]] = obj | {"_file": path.name}
    return out


def test_every_manifest_parses_and_names_no_namespace(objects: dict[str, Any]) -> None:
    assert set(objects) == {
        "Kustomization",
        "ServiceAccount",
        "ConfigMap",
        "Secret",
        "StatefulSet",
        "Service",
        "ServiceMonitor",
        "PrometheusRule",
    }
    for kind, obj in objects.items():
        if kind == "Kustomization":
            continue
        assert "namespace" not in obj["metadata"], obj["_file"]
        assert obj["metadata"]["labels"] == NAME_LABEL, obj["_file"]
    # The Secret is an example to copy, never applied with a placeholder token.
    assert objects["Kustomization"]["resources"] == APPLIED
    assert "namespace" not in objects["Kustomization"]


def test_prometheusrule_groups_equal_rules_yml(objects: dict[str, Any]) -> None:
    assert objects["PrometheusRule"]["spec"]["groups"] == yaml_docs.load_one(RULES)["groups"]


def _container(objects: dict[str, Any]) -> dict[str, Any]:
    (container,) = objects["StatefulSet"]["spec"]["template"]["spec"]["containers"]
    assert isinstance(container, dict)
    return container


def test_configmap_agrees_with_the_pod_and_the_service(
    objects: dict[str, Any], tmp_path: Path
) -> None:
    text = objects["ConfigMap"]["data"]["config.toml"]
    assert text == embedded_config_text()
    settings, token_file = parse_config(text, tmp_path)
    container = _container(objects)
    (port,) = container["ports"]
    assert port == {"name": "metrics", "containerPort": settings.metrics.port, "protocol": "TCP"}
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert container["args"] == ["run", "--config", f"{mounts['config']['mountPath']}/config.toml"]
    assert Path(mounts["state"]["mountPath"]) == settings.state.path.parent
    assert Path(mounts["slack-token"]["mountPath"]) == token_file.parent
    assert "subPath" not in mounts["slack-token"], "a subPath mount never sees a rotated Secret"
    volumes = {v["name"]: v for v in objects["StatefulSet"]["spec"]["template"]["spec"]["volumes"]}
    secret = objects["Secret"]
    assert volumes["slack-token"]["secret"]["secretName"] == secret["metadata"]["name"]
    assert set(secret["stringData"]) == {token_file.name}
    assert volumes["config"]["configMap"]["name"] == objects["ConfigMap"]["metadata"]["name"]


def test_state_lives_on_a_persistent_volume_of_a_single_replica(objects: dict[str, Any]) -> None:
    spec = objects["StatefulSet"]["spec"]
    assert spec["replicas"] == 1
    assert spec["serviceName"] == objects["Service"]["metadata"]["name"]
    (claim,) = spec["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "state"
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    volumes = {v["name"] for v in spec["template"]["spec"]["volumes"]}
    assert "state" not in volumes, "state must come from the claim, not a pod volume"


def test_probes_resources_and_security_context(objects: dict[str, Any]) -> None:
    pod = objects["StatefulSet"]["spec"]["template"]["spec"]
    container = _container(objects)
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert {"cpu", "memory"} <= set(container["resources"]["requests"])
    assert "memory" in container["resources"]["limits"]
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    # The daemon stops within 5 s of SIGTERM.
    assert 5 < pod["terminationGracePeriodSeconds"] <= 30
    assert pod["serviceAccountName"] == objects["ServiceAccount"]["metadata"]["name"]
    annotations = objects["ServiceAccount"]["metadata"]["annotations"]
    assert annotations["eks.amazonaws.com/role-arn"].startswith("arn:aws:iam::")


def test_service_and_servicemonitor_select_the_pod_and_its_metrics_port(
    objects: dict[str, Any],
) -> None:
    pod_labels = objects["StatefulSet"]["spec"]["template"]["metadata"]["labels"]
    assert objects["StatefulSet"]["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    service = objects["Service"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    (port,) = service["spec"]["ports"]
    assert port["targetPort"] == "metrics"
    assert service["spec"]["publishNotReadyAddresses"] is True
    monitor = objects["ServiceMonitor"]["spec"]
    assert monitor["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    (endpoint,) = monitor["endpoints"]
    assert endpoint["port"] == port["name"]
    assert endpoint["path"] == "/metrics"


def test_kubectl_kustomize_builds_the_manifests() -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl not installed; the YAML checks above still ran")
    result = subprocess.run(
        [kubectl, "kustomize", str(KUBERNETES)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    kinds = [line for line in result.stdout.splitlines() if line.startswith("kind: ")]
    assert sorted(kinds) == sorted(
        f"kind: {k}"
        for k in (
            "ServiceAccount",
            "ConfigMap",
            "StatefulSet",
            "Service",
            "ServiceMonitor",
            "PrometheusRule",
        )
    )
