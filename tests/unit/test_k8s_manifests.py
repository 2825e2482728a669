"""deploy/k8s validated offline: every built-in object against the Kubernetes schemas
(kubernetes-validate, strict: no unknown fields), the KEDA ScaledObject against KEDA's own CRD schema
(tests/data/keda, Apache-2.0), and the promises the files make checked on the parsed objects."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
KEDA_CRD = ROOT / "tests" / "data" / "keda" / "keda.sh_scaledobjects.yaml"
KUBERNETES_VERSION = "1.30.0"
SERVICES = ("scheduler", "coordinator", "worker")


def load(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def all_objects() -> list[tuple[Path, dict[str, Any]]]:
    return [(path, obj) for path in sorted(K8S.rglob("*.yaml")) for obj in load(path)]


def find(kind: str, name: str) -> dict[str, Any]:
    found = [obj for _path, obj in all_objects() if obj["kind"] == kind and obj["metadata"]["name"] == name]
    assert len(found) == 1, (kind, name, found)
    return found[0]


def container(deployment: str) -> dict[str, Any]:
    spec = find("Deployment", f"zephyr-{deployment}")["spec"]["template"]["spec"]
    (only,) = spec["containers"]
    return dict(only)


@pytest.mark.parametrize(
    "path_and_object",
    [
        pytest.param(item, id=f"{item[0].name}:{item[1]['kind']}/{item[1]['metadata']['name']}")
        for item in all_objects()
    ],
)
def test_each_object_is_valid_against_its_schema(path_and_object: tuple[Path, dict[str, Any]]) -> None:
    _path, obj = path_and_object
    if obj["apiVersion"].startswith("keda.sh/"):
        crd = load(KEDA_CRD)[0]
        version = next(v for v in crd["spec"]["versions"] if f"keda.sh/{v['name']}" == obj["apiVersion"])
        schema = version["schema"]["openAPIV3Schema"]
        jsonschema.validate(obj, schema)
        assert obj["kind"] == crd["spec"]["names"]["kind"]
    else:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


def test_a_schema_violation_is_caught() -> None:
    """The checks above can fail: a misspelled field and a trigger missing its query are refused."""
    deployment = find("Deployment", "zephyr-worker")
    broken = {**deployment, "spec": {**deployment["spec"], "replica": 2}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)
    scaled = find("ScaledObject", "zephyr-worker")
    schema = load(KEDA_CRD)[0]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**scaled, "spec": {**scaled["spec"], "triggers": [{"metadata": {}}]}}, schema)


def test_every_deployment_has_probes_a_pdb_and_runs_as_non_root() -> None:
    for service in SERVICES:
        spec = container(service)
        assert {"livenessProbe", "startupProbe"} <= set(spec), service
        pod = find("Deployment", f"zephyr-{service}")["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["allowPrivilegeEscalation"] is False
        find("PodDisruptionBudget", f"zephyr-{service}")
    assert container("scheduler")["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container("scheduler")["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container("coordinator")["readinessProbe"]["exec"]["command"][:4] == [
        "python",
        "-m",
        "zephyr.cli.probe",
        "coordinator",
    ]


def env_names(service: str) -> dict[str, Any]:
    return {item["name"]: item for item in container(service).get("env", [])}


def test_workers_hold_no_database_credentials_and_may_not_reach_private_addresses() -> None:
    env = env_names("worker")
    assert "ZEPHYR_DATABASE_URL" not in env
    assert env["ZEPHYR_HTTP_ALLOW_PRIVATE"]["value"] == "0"
    config = find("ConfigMap", "zephyr-config")["data"]
    assert "ZEPHYR_DATABASE_URL" not in config
    # The drain fits in the pod's grace period, so a scale-down lets runs finish.
    pod = find("Deployment", "zephyr-worker")["spec"]["template"]["spec"]
    assert float(env["ZEPHYR_DRAIN_S"]["value"]) < pod["terminationGracePeriodSeconds"]


def test_worker_network_policy_reaches_only_coordinators_dns_and_public_addresses() -> None:
    policy = find("NetworkPolicy", "zephyr-worker")["spec"]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    rules = policy["egress"]
    assert rules[0]["to"] == [
        {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "zephyr-coordinator"}}}
    ]
    public = rules[1]["to"][0]["ipBlock"]
    assert public["cidr"] == "0.0.0.0/0"
    assert {"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16"} <= set(public["except"])
    assert find("NetworkPolicy", "default-deny")["spec"] == {
        "podSelector": {},
        "policyTypes": ["Ingress", "Egress"],
    }


def test_autoscaling_follows_the_queue_depth_metric() -> None:
    scaled = find("ScaledObject", "zephyr-worker")["spec"]
    assert scaled["scaleTargetRef"]["name"] == "zephyr-worker"
    (trigger,) = scaled["triggers"]
    assert trigger["type"] == "prometheus" and "zephyr_queue_depth" in trigger["metadata"]["query"]
    hpa = find("HorizontalPodAutoscaler", "zephyr-worker")["spec"]
    assert hpa["scaleTargetRef"]["name"] == "zephyr-worker"
    assert hpa["metrics"][0]["external"]["metric"]["name"] == "zephyr_queue_depth"
