"""Alerts and dashboard: promtool checks and unit-tests the rules; the dashboard is provisioned and covers the
signals it must show; every expression parses."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.k8s.manifests import Doc
from tests.k8s.schemas import CrdRegistry, crds_dir
from tests.monitoring.promql import (
    DASHBOARD,
    MONITORING,
    RULES,
    alert_rules,
    dashboard_exprs,
    metric_names,
    rule_groups,
)

HERE = Path(__file__).resolve().parent
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool not installed (apt-get install -y prometheus): rules not checked"
)
REQUIRED_ALERTS = {
    "StreamrecConsumerLagGrowing",
    "StreamrecDeadLetterSpike",
    "StreamrecApiLatencyHigh",
    "StreamrecFallbackShareHigh",
    "StreamrecTritonDown",
    "StreamrecArchiverStalled",
    "StreamrecFineTuneMissing",
}
#: What the dashboard must show, as one metric each panel group reads.
REQUIRED_SIGNALS = {
    "ingest rate": "streamrec_worker_events_in_total",
    "consumer lag per partition": "streamrec_worker_consumer_lag",
    "freshness": "streamrec_worker_event_age_seconds_bucket",
    "DLQ rate by reason": "streamrec_worker_events_invalid_total",
    "API rate": "streamrec_api_requests_total",
    "API latency percentiles": "streamrec_api_request_seconds_bucket",
    "fallback flags": "streamrec_api_recommendation_flags_total",
    "Triton queue time": "nv_inference_queue_duration_us",
    "Triton compute time": "nv_inference_compute_infer_duration_us",
    "archiver throughput": "streamrec_archiver_events_total",
    "last successful training": "streamrec_training_last_success_timestamp_seconds",
}


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run([PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def write_rule_groups(directory: Path, groups: list[dict]) -> Path:
    path = directory / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": groups}))
    return path


@needs_promtool
def test_promtool_accepts_the_rules(tmp_path: Path) -> None:
    write_rule_groups(tmp_path, rule_groups())
    result = promtool("check", "rules", "rules.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in result.stdout


@needs_promtool
def test_every_alert_fires_and_stays_quiet_as_its_unit_tests_expect(tmp_path: Path) -> None:
    write_rule_groups(tmp_path, rule_groups())
    shutil.copy(HERE / "alerts_test.yaml", tmp_path / "alerts_test.yaml")
    result = promtool("test", "rules", "alerts_test.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_promtool_unit_tests_catch_a_broken_threshold(tmp_path: Path) -> None:
    groups = rule_groups()
    for group in groups:
        for rule in group["rules"]:
            if rule["alert"] == "StreamrecDeadLetterSpike":
                rule["expr"] = rule["expr"].replace("> 0.05", "> 0.5")
    write_rule_groups(tmp_path, groups)
    shutil.copy(HERE / "alerts_test.yaml", tmp_path / "alerts_test.yaml")
    result = promtool("test", "rules", "alerts_test.yaml", cwd=tmp_path)
    assert result.returncode != 0 and "StreamrecDeadLetterSpike" in result.stdout + result.stderr


@needs_promtool
def test_every_dashboard_expression_parses(tmp_path: Path) -> None:
    rules = [
        {"record": f"streamrec:dashboard_expr_{n}", "expr": expr.replace("$__rate_interval", "5m")}
        for n, expr in enumerate(dashboard_exprs())
    ]
    write_rule_groups(tmp_path, [{"name": "dashboard", "rules": rules}])
    result = promtool("check", "rules", "rules.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_required_alert_exists_with_severity_summary_and_two_unit_tests() -> None:
    rules = {r["alert"]: r for r in alert_rules()}
    assert set(rules) == REQUIRED_ALERTS
    for rule in rules.values():
        assert rule["labels"]["severity"] in {"warning", "critical"}
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
    tests = yaml.safe_load((HERE / "alerts_test.yaml").read_text())["tests"]
    firing: dict[str, int] = {}
    quiet: dict[str, int] = {}
    for case in tests:
        for check in case["alert_rule_test"]:
            seen = firing if check["exp_alerts"] else quiet
            seen[check["alertname"]] = seen.get(check["alertname"], 0) + 1
    assert set(firing) == set(quiet) == REQUIRED_ALERTS


def test_dashboard_covers_every_required_signal() -> None:
    read = set().union(*(metric_names(e) for e in dashboard_exprs()))
    missing = {signal: metric for signal, metric in REQUIRED_SIGNALS.items() if metric not in read}
    assert missing == {}


def test_dashboard_is_a_configmap_for_the_grafana_sidecar() -> None:
    kustomize = shutil.which("kustomize") or shutil.which("kubectl")
    if kustomize is None:
        pytest.skip("neither kustomize nor kubectl installed: the monitoring component is not rendered")
    args = [kustomize, "build"] if kustomize.endswith("kustomize") else [kustomize, "kustomize"]
    rendered = subprocess.run([*args, str(MONITORING.parents[1] / "overlays" / "gpu")], capture_output=True, text=True)
    assert rendered.returncode == 0, rendered.stderr
    docs = [d for d in yaml.safe_load_all(rendered.stdout) if d]
    maps = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("streamrec-dashboard")]
    assert len(maps) == 1
    assert maps[0]["metadata"]["labels"]["grafana_dashboard"] == "1"
    dashboard = json.loads(maps[0]["data"]["streamrec.json"])
    assert dashboard == json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] and all(p.get("targets") for p in dashboard["panels"] if p["type"] != "row")


def test_prometheus_rule_matches_the_operator_crd() -> None:
    crd = crds_dir() / "prometheus-operator" / "monitoring.coreos.com_prometheusrules.yaml"
    if not crd.is_file():
        pytest.skip(f"PrometheusRule CRD not vendored ({crd.name} absent from {crd.parent}): schema not checked")
    registry = CrdRegistry(crds_dir())
    rule = json.loads(RULES.read_text())
    assert registry.validate(Doc(rule, str(RULES.relative_to(MONITORING.parents[2])))) == []
    broken = {**rule, "spec": {"groups": [{"name": "g", "rules": [{"alert": "A", "expr": 1, "forr": "5m"}]}]}}
    assert registry.validate(Doc(broken, "broken")) != []


def test_an_overlay_with_the_alerts_component_renders_the_rule(tmp_path: Path) -> None:
    kustomize = shutil.which("kustomize") or shutil.which("kubectl")
    if kustomize is None:
        pytest.skip("neither kustomize nor kubectl installed: the alerts component is not rendered")
    args = [kustomize, "build"] if kustomize.endswith("kustomize") else [kustomize, "kustomize"]
    overlay = {
        "resources": [os.path.relpath(MONITORING.parents[1] / "overlays" / "gpu", tmp_path)],
        "components": [os.path.relpath(RULES.parent, tmp_path)],
    }
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump(overlay))
    rendered = subprocess.run(
        [*args, "--load-restrictor=LoadRestrictionsNone", str(tmp_path)], capture_output=True, text=True
    )
    assert rendered.returncode == 0, rendered.stderr
    rules = [d for d in yaml.safe_load_all(rendered.stdout) if d and d["kind"] == "PrometheusRule"]
    assert len(rules) == 1 and rules[0]["spec"] == json.loads(RULES.read_text())["spec"]
