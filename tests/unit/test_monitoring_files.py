"""deploy/prometheus and deploy/grafana checked with the real `promtool` (Debian `prometheus`):
the scrape config and the rules are valid, every alert has a unit test and the unit tests pass,
and every metric the rules and the dashboard name is one Zephyr exports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

from tests.support.host_tools import require_debian_packages
from zephyr import metrics

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
GRAFANA_DIR = ROOT / "deploy" / "grafana"
DASHBOARD = GRAFANA_DIR / "dashboards" / "zephyr.json"
METRIC_NAME = re.compile(r"\bzephyr_[a-z_]+\b")


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    require_debian_packages({"promtool": "prometheus"})
    return subprocess.run(["promtool", *args], cwd=cwd, capture_output=True, text=True, check=False)


def exported_series_names() -> set[str]:
    """Every series name Zephyr's metrics produce (`_total`, `_bucket`, `_sum`, `_count` included)."""
    names: set[str] = set()
    for value in vars(metrics).values():
        if not isinstance(value, MetricWrapperBase):
            continue
        for family in value.describe():
            if family.type == "counter":
                names.add(family.name + "_total")
            elif family.type == "histogram":
                names.update(family.name + suffix for suffix in ("_bucket", "_sum", "_count"))
            else:
                names.add(family.name)
    return names


def dashboard_expressions() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


def rules_expressions() -> list[str]:
    groups = yaml.safe_load((PROMETHEUS_DIR / "zephyr-rules.yml").read_text())["groups"]
    return [rule["expr"] for group in groups for rule in group["rules"]]


def test_scrape_config_and_its_rules_are_valid(tmp_path: Path) -> None:
    # The token files the config reads live beside it in a deployment (secrets/, not in the repo).
    config_dir = tmp_path / "prometheus"
    shutil.copytree(PROMETHEUS_DIR, config_dir)
    (config_dir / "secrets").mkdir()
    for name in ("api-token", "cluster-token"):
        (config_dir / "secrets" / name).write_text("test-token\n")
    result = promtool("check", "config", "prometheus.yml", cwd=config_dir)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "zephyr-rules.yml" in result.stdout + result.stderr


def test_rules_are_valid() -> None:
    result = promtool("check", "rules", "zephyr-rules.yml", cwd=PROMETHEUS_DIR)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_unit_test_and_the_unit_tests_pass() -> None:
    groups = yaml.safe_load((PROMETHEUS_DIR / "zephyr-rules.yml").read_text())["groups"]
    alerts = {rule["alert"] for group in groups for rule in group["rules"] if "alert" in rule}
    tests = yaml.safe_load((PROMETHEUS_DIR / "zephyr-rules.test.yml").read_text())["tests"]
    firing = {
        case["alertname"]
        for test in tests
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    silent = {
        case["alertname"]
        for test in tests
        for case in test.get("alert_rule_test", [])
        if not case.get("exp_alerts")
    }
    assert alerts == firing, f"alerts without a firing test: {alerts - firing}"
    assert alerts == silent, f"alerts without a silent test: {alerts - silent}"
    result = promtool("test", "rules", "zephyr-rules.test.yml", cwd=PROMETHEUS_DIR)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_a_broken_alert_fails_its_unit_test(tmp_path: Path) -> None:
    """The unit tests can fail: with the type-without-worker threshold raised they do."""
    copy = tmp_path / "prometheus"
    shutil.copytree(PROMETHEUS_DIR, copy)
    rules = copy / "zephyr-rules.yml"
    text = rules.read_text()
    broken = text.replace(
        "max by (type) (zephyr_pending_without_worker) > 0",
        "max by (type) (zephyr_pending_without_worker) > 5",
    )
    assert broken != text
    rules.write_text(broken)
    result = promtool("test", "rules", "zephyr-rules.test.yml", cwd=copy)
    assert result.returncode != 0
    assert "ZephyrTypeWithoutWorker" in result.stdout + result.stderr


@pytest.mark.parametrize("source", ["rules", "dashboard"])
def test_every_metric_named_is_exported(source: str) -> None:
    expressions = rules_expressions() if source == "rules" else dashboard_expressions()
    named = {name for expr in expressions for name in METRIC_NAME.findall(expr)}
    assert named, "no zephyr_ metric named at all"
    assert named <= exported_series_names(), (
        f"not exported by zephyr.metrics: {named - exported_series_names()}"
    )


def test_grafana_provisioning_points_at_the_dashboard_and_datasource() -> None:
    datasource = yaml.safe_load((GRAFANA_DIR / "provisioning" / "datasources" / "zephyr.yml").read_text())
    uids = {d["uid"] for d in datasource["datasources"]}
    dashboard = json.loads(DASHBOARD.read_text())
    used = {panel["datasource"]["uid"] for panel in dashboard["panels"]}
    used |= {t["datasource"]["uid"] for panel in dashboard["panels"] for t in panel["targets"]}
    assert used == uids
    providers = yaml.safe_load((GRAFANA_DIR / "provisioning" / "dashboards" / "zephyr.yml").read_text())
    assert [p["type"] for p in providers["providers"]] == ["file"]
    titles = {panel["title"] for panel in dashboard["panels"]}
    for wanted in (
        "Throughput",
        "Dispatch latency (due to assigned)",
        "Queue depth by type",
        "Oldest due task by type",
        "Failures by type",
        "Workers",
        "Slots",
    ):
        assert wanted in titles
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
