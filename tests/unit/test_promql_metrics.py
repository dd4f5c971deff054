"""Every metric the alert rules, their tests and the dashboards query is one the daemon exports.

Metric names are a public contract (docs: README "Metrics"); a renamed or misspelled metric in
monitor/metrics.py or in a query makes these tests fail instead of leaving an empty panel or an
alert that can never fire. Dashboard queries are also parsed by promtool (as recording rules,
with Grafana's variables substituted), since Grafana itself is not available offline.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry
from prometheus_client.metrics import MetricWrapperBase

from monitor.metrics import Metrics

ROOT = Path(__file__).resolve().parents[2]
RULE_FILES = sorted((ROOT / "deploy" / "prometheus" / "rules").glob("*.yml"))
RULE_TESTS = sorted((ROOT / "deploy" / "prometheus" / "tests").glob("*.yml"))
DASHBOARDS = sorted((ROOT / "grafana" / "dashboards").glob("*.json"))

PREFIX = "dprk_monitor_"
# Labels Prometheus adds at scrape (the vantage from the scrape config).
TARGET_LABELS = {"job", "instance", "vantage"}
# Prometheus's own series the rules and dashboards may use.
PROMETHEUS_SERIES = {"up"}

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
_SELECTOR = re.compile(r"([A-Za-z_:][A-Za-z0-9_:]*)\s*\{([^}]*)\}")
_MATCHER = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)")


# ---- what the daemon exports ------------------------------------------------------------------


def exported() -> dict[str, set[str]]:
    """Exposed series name -> its label names, from a fresh `Metrics()` registry."""
    metrics = Metrics(CollectorRegistry())
    labels = {
        w._name: set(w._labelnames)  # private: prometheus_client has no public accessor
        for w in vars(metrics).values()
        if isinstance(w, MetricWrapperBase)
    }
    out: dict[str, set[str]] = {}
    for family in metrics.registry.collect():
        names = {
            "counter": [family.name + "_total"],
            "histogram": [family.name + s for s in ("_bucket", "_sum", "_count")],
            "summary": [family.name + s for s in ("", "_sum", "_count")],
        }.get(family.type, [family.name])
        for name in names:
            out[name] = labels.get(family.name, set()) | (
                {"le"} if name.endswith("_bucket") else set()
            )
    return out


# ---- what the rules and dashboards query ------------------------------------------------------


def recorded_names() -> set[str]:
    return {
        r["record"]
        for p in RULE_FILES
        for g in load(p)["groups"]
        for r in g["rules"]
        if "record" in r
    }


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def rule_exprs() -> Iterator[tuple[str, str]]:
    for path in RULE_FILES:
        for group in load(path)["groups"]:
            for rule in group["rules"]:
                yield f"{path.name}: {rule.get('alert') or rule.get('record')}", rule["expr"]


def dashboard_exprs() -> Iterator[tuple[str, str]]:
    """Panel targets, annotations (every `expr`) and query variables of every dashboard."""

    def walk(node: Any, where: str) -> Iterator[tuple[str, str]]:
        if isinstance(node, dict):
            where = f"{where}/{node.get('title') or node.get('name') or ''}".rstrip("/")
            if isinstance(node.get("expr"), str):
                yield f"{where}/{node.get('refId', '')}".rstrip("/"), node["expr"]
            for key, value in node.items():
                if key != "templating":
                    yield from walk(value, where)
        elif isinstance(node, list):
            for item in node:
                yield from walk(item, where)

    for path in DASHBOARDS:
        d = json.loads(path.read_text())
        yield from walk([d["annotations"], d["panels"]], path.stem)
        for var in d["templating"]["list"]:
            if var["type"] == "query":
                q = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
                yield f"{path.stem}/${var['name']}", q


def rule_test_exprs() -> Iterator[tuple[str, str]]:
    """The input series of the promtool tests: they must be real series too."""
    for path in RULE_TESTS:
        for case in load(path)["tests"]:
            for s in case.get("input_series", []):
                yield f"{path.name}: {case.get('name')}", s["series"]
            for t in case.get("promql_expr_test", []):
                yield f"{path.name}: {case.get('name')}", t["expr"]


def metric_names(expr: str) -> set[str]:
    """Identifiers in a PromQL expression that can be series names (strings removed)."""
    return set(_IDENT.findall(_STRING.sub('""', expr)))


def problems(expr: str, known: dict[str, set[str]], recorded: set[str]) -> list[str]:
    """Unknown dprk_monitor metrics and unknown label names in selectors of known metrics."""
    out = []
    for name in sorted(metric_names(expr)):
        if name in recorded or name in known:
            continue
        if PREFIX in name:
            out.append(f"unknown metric {name}")
    for name, body in _SELECTOR.findall(_STRING.sub('""', expr)):
        if name not in known:
            continue
        for label in _MATCHER.findall(body):
            if label not in known[name] | TARGET_LABELS | {"__name__"}:
                out.append(f"{name} has no label {label!r}")
    return out


ALL_EXPRS = [*rule_exprs(), *dashboard_exprs(), *rule_test_exprs()]


def test_extraction_finds_the_queries() -> None:
    """The extractor sees the rules' and dashboards' queries (guards against a vacuous pass)."""
    used = set().union(*(metric_names(e) for _, e in ALL_EXPRS))
    for name in (
        "dprk_monitor_entity_state",
        "dprk_monitor_target_up",
        "dprk_monitor_probe_rtt_seconds_bucket",
        "dprk_monitor_vantage_healthy",
        "dprk_monitor_bgp_prefix_visibility_ratio",
        "up",
    ):
        assert name in used, name
    assert len([w for w, _ in ALL_EXPRS if w.startswith("dprk-")]) >= 30


def test_extractor_ignores_strings_and_flags_renames() -> None:
    """Names inside quotes are ignored; an unregistered dprk_monitor_ name or label is flagged."""
    known = exported()
    expr = 'sum(rate(dprk_monitor_probes_total{kind="dprk_monitor_nope", entity=~"a|b"}[5m]))'
    assert metric_names(expr) & {"dprk_monitor_nope"} == set()
    assert problems(expr, known, set()) == []
    assert problems("rate(dprk_monitor_probe_total[5m])", known, set()) == [
        "unknown metric dprk_monitor_probe_total"
    ]
    assert problems('dprk_monitor_outage_active{kind="web"}', known, set()) == [
        "dprk_monitor_outage_active has no label 'kind'"
    ]
    assert problems("job:dprk_monitor_x:sum", known, set()) == [
        "unknown metric job:dprk_monitor_x:sum"
    ]
    assert problems("job:dprk_monitor_x:sum", known, {"job:dprk_monitor_x:sum"}) == []


def test_registry_exposes_the_documented_metrics() -> None:
    """A fresh Metrics() registers the contract's metrics under their exposed names."""
    known = exported()
    for name in (
        "dprk_monitor_probes_total",
        "dprk_monitor_probe_failures_total",
        "dprk_monitor_probe_rtt_seconds_bucket",
        "dprk_monitor_entity_state",
        "dprk_monitor_outages_total",
    ):
        assert name in known, name
    assert known["dprk_monitor_entity_state"] == {"entity", "state"}


@pytest.mark.parametrize(("where", "expr"), ALL_EXPRS, ids=[w for w, _ in ALL_EXPRS])
def test_query_uses_only_exported_metrics(where: str, expr: str) -> None:
    """Each query names only metrics (and labels) a fresh `Metrics()` registers, or rule outputs."""
    assert problems(expr, exported(), recorded_names()) == []


# ---- dashboard queries parse ------------------------------------------------------------------

GRAFANA_VARS = {
    "$__rate_interval": "1m",
    "$__interval": "1m",
    "$__range": "1h",
    "${datasource}": "x",
}


def as_promql(expr: str) -> str:
    """A dashboard query with Grafana's variables replaced by what they expand to."""
    for var, value in GRAFANA_VARS.items():
        expr = expr.replace(var, value)
    expr = re.sub(r"\$\{?[A-Za-z_]+\}?", ".*", expr)
    m = re.fullmatch(r"label_values\((.*),\s*([A-Za-z_]+)\)", expr.strip(), re.S)
    return m.group(1) if m else expr


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        if os.environ.get("REQUIRE_TOOLS") == "1":
            pytest.fail("promtool not installed; REQUIRE_TOOLS=1")
        pytest.skip("promtool not installed (apt-get install prometheus)")
    return path


def test_dashboard_queries_parse(tmp_path: Path) -> None:
    """`promtool check rules` parses every dashboard query (variables substituted)."""
    exprs = list(dashboard_exprs())
    rules = [
        {"record": f"dashboard:query_{i}:x", "expr": as_promql(e)} for i, (_, e) in enumerate(exprs)
    ]
    path = tmp_path / "dashboards.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    proc = subprocess.run(
        [promtool(), "check", "rules", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"{len(rules)} rules found" in proc.stdout


def test_entity_state_timeline_encodes_each_state(tmp_path: Path) -> None:
    """The overview's state query maps the one-hot entity_state to up=0 ... unknown=4."""
    d = json.loads((ROOT / "grafana" / "dashboards" / "dprk-overview.json").read_text())
    (panel,) = [p for p in d["panels"] if p["title"] == "Entity state"]
    expr = as_promql(panel["targets"][0]["expr"])
    states = ["up", "degraded", "partial", "down", "unknown"]
    series = []
    for entity in states:  # entity "down" is in state "down", etc.
        for state in states:
            series.append(
                {
                    "series": f'dprk_monitor_entity_state{{vantage="fra1",entity="{entity}",state="{state}"}}',
                    "values": "1x5" if state == entity else "0x5",
                }
            )
    test = {
        "rule_files": [],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": series,
                "promql_expr_test": [
                    {
                        "expr": expr,
                        "eval_time": "2m",
                        "exp_samples": [
                            {"labels": f'{{vantage="fra1",entity="{e}"}}', "value": code}
                            for code, e in enumerate(states)
                        ],
                    }
                ],
            }
        ],
    }
    path = tmp_path / "state.test.yml"
    path.write_text(yaml.safe_dump(test))
    proc = subprocess.run(
        [promtool(), "test", "rules", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
