"""The metric names a PromQL expression reads (enough of PromQL for the dashboard and the alerts)."""

from __future__ import annotations

import json
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
MONITORING = REPO / "k8s" / "components" / "monitoring"
RULES = REPO / "k8s" / "components" / "alerts" / "prometheusrule.json"
DASHBOARD = MONITORING / "dashboards" / "streamrec.json"

KEYWORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool", "offset",
    "sum", "min", "max", "avg", "count", "stddev", "stdvar", "topk", "bottomk", "quantile", "count_values", "group",
}  # fmt: skip
#: Series Prometheus makes itself when it scrapes; no endpoint exposes them.
SYNTHETIC = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}
#: Series of kube-state-metrics (part of kube-prometheus-stack), not of a streamrec component.
EXTERNAL = {"kube_cronjob_status_last_successful_time"}


def metric_names(expr: str) -> set[str]:
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # label values, regexes
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # range selectors
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)  # label lists
    text = text.replace("$__rate_interval", "")
    names = set()
    for match in re.finditer(r"(?<![\w.$])([a-zA-Z_:][\w:]*)\b(\s*\()?", text):
        name, call = match.group(1), match.group(2)
        if call or name in KEYWORDS or re.fullmatch(r"\d+[smhdwy]", name) or name in {"Inf", "NaN"}:
            continue
        names.add(name)
    return names


def alert_rules() -> list[dict]:
    return [rule for group in rule_groups() for rule in group["rules"]]


def rule_groups() -> list[dict]:
    return json.loads(RULES.read_text())["spec"]["groups"]


def dashboard_exprs() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]


def used_metrics() -> set[str]:
    """Every metric family the dashboard and the alerts read (histograms by their family name)."""
    names: set[str] = set()
    for expr in [r["expr"] for r in alert_rules()] + dashboard_exprs():
        names |= metric_names(expr)
    return names - SYNTHETIC - EXTERNAL
