"""Alerts and dashboard: the rule file the chart embeds passes `promtool check rules` and
its unit tests; every dashboard query parses (promtool) and names metrics the operator
exports; the chart renders the PrometheusRule and ServiceMonitor only where their CRDs
exist, from the same files."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import yaml
from prometheus_client import REGISTRY

import aigate.metrics  # noqa: F401 (registers the operator's metrics)

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "aigate"
ALERTS = CHART / "files" / "alerts.yaml"
DASHBOARD = CHART / "files" / "dashboard.json"
MONITORING_APIS = (
    "monitoring.coreos.com/v1/PrometheusRule",
    "monitoring.coreos.com/v1/ServiceMonitor",
)
# Values Grafana substitutes before a query reaches Prometheus.
GRAFANA_VARIABLES = {
    "$__rate_interval": "1m",
    "$__range": "6h",
    "$namespace": ".*",
    "$name": ".*",
}


def run(*argv: str | Path) -> str:
    result = subprocess.run([str(a) for a in argv], capture_output=True, text=True, check=False)
    assert result.returncode == 0, f"{argv}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def test_alert_rules_check_and_pass_their_unit_tests(binaries):
    out = run(binaries / "promtool", "check", "rules", ALERTS)
    assert "SUCCESS: 7 rules found" in out
    out = run(
        binaries / "promtool", "test", "rules", ROOT / "tests" / "alerts" / "alerts_test.yaml"
    )
    assert "SUCCESS" in out


def test_every_alert_has_a_unit_test():
    rules = yaml.safe_load(ALERTS.read_text())["groups"]
    alerts = {r["alert"] for group in rules for r in group["rules"]}
    tests = yaml.safe_load((ROOT / "tests" / "alerts" / "alerts_test.yaml").read_text())["tests"]
    tested = {
        case["alertname"]
        for test in tests
        for case in test["alert_rule_test"]
        if case["exp_alerts"]  # a test that only expects silence proves little
    }
    assert alerts == tested


def dashboard_queries() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    queries = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    for variable in dashboard["templating"]["list"]:
        query = (variable.get("query") or {}) if variable["type"] == "query" else {}
        match = re.fullmatch(r"label_values\((.+),\s*\w+\)", query.get("query", ""))
        if match:  # Grafana's label_values(selector, label): the selector is PromQL
            queries.append(match.group(1))
    return queries


def grafana_substituted(query: str) -> str:
    for variable, value in GRAFANA_VARIABLES.items():
        query = query.replace(variable, value)
    assert "$" not in query, f"unknown Grafana variable in {query}"
    return query


def test_dashboard_queries_parse_and_use_exported_metrics(binaries, tmp_path):
    queries = [grafana_substituted(q) for q in dashboard_queries()]
    assert len(queries) >= 12
    # promtool parses each expression as a recording rule: a PromQL syntax error fails.
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:query{i}", "expr": q} for i, q in enumerate(queries)
                ],
            }
        ]
    }
    path = tmp_path / "dashboard-rules.yaml"
    path.write_text(yaml.safe_dump(rules))
    assert f"SUCCESS: {len(queries)} rules found" in run(
        binaries / "promtool", "check", "rules", path
    )

    # The names the operator's registry exposes, including labelled families that have no
    # series yet (a counter family "x" is exposed as x_total, a histogram as x_bucket, ...).
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}
    exported = set()
    for family in REGISTRY.collect():
        exported |= {family.name + suffix for suffix in suffixes.get(family.type, ("",))}
    rule_exprs = [
        r["expr"] for g in yaml.safe_load(ALERTS.read_text())["groups"] for r in g["rules"]
    ]
    for query in queries + rule_exprs:
        for metric in re.findall(r"\baigate_[a-z_]+", query):
            assert metric in exported, f"{metric} (in {query!r}) is not exported by the operator"


def render(binaries: Path, *args: str) -> list[dict]:
    out = run(binaries / "helm", "template", "aigate", CHART, "-n", "aigate-system", *args)
    return [doc for doc in yaml.safe_load_all(out) if doc]


def test_chart_renders_rules_and_service_monitor_only_where_the_crds_exist(binaries):
    run(binaries / "helm", "lint", "--strict", CHART)
    plain = render(binaries)
    kinds = {d["kind"] for d in plain}
    assert "PrometheusRule" not in kinds and "ServiceMonitor" not in kinds
    (dashboard,) = [
        d for d in plain if d["kind"] == "ConfigMap" and "dashboard" in d["metadata"]["name"]
    ]
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(dashboard["data"]["aigate-rollouts.json"]) == json.loads(
        DASHBOARD.read_text()
    )

    apis = [arg for api in MONITORING_APIS for arg in ("--api-versions", api)]
    docs = render(binaries, *apis, "--set", "monitoring.alerts.labels.release=kps")
    (rule,) = [d for d in docs if d["kind"] == "PrometheusRule"]
    assert rule["spec"] == yaml.safe_load(ALERTS.read_text())  # the file promtool tested
    assert rule["metadata"]["labels"]["release"] == "kps"
    (monitor,) = [d for d in docs if d["kind"] == "ServiceMonitor"]
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == "metrics" and endpoint["honorLabels"] is True
    (service,) = [d for d in docs if d["kind"] == "Service"]
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )

    off = render(
        binaries,
        *apis,
        "--set",
        "monitoring.alerts.enabled=false",
        "--set",
        "monitoring.dashboard.enabled=false",
    )
    assert not [
        d for d in off if d["kind"] in ("PrometheusRule",) or "dashboard" in d["metadata"]["name"]
    ]
