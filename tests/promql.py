"""What the shipped dashboard and alerts query, read with a real PromQL parser, against what live
processes expose.

Each query is parsed by promql-parser (the Rust PromQL parser Prometheus-compatible tools use), so a
query that does not parse fails here as it would in Prometheus; every vector selector's metric name
and label matchers are then checked against the /metrics of a running receiver and tailer.
"""

from __future__ import annotations

import json
import operator
import re
from dataclasses import dataclass
from pathlib import Path

import promql_parser
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.kube_state_metrics import KUBE_STATE_METRICS, labels_allowed

__all__ = ["ALERTS", "DASHBOARD", "EXTERNAL_METRICS", "SCRAPE_LABELS", "Exposed", "Query", "alert_queries", "check",
           "dashboard_queries", "exposed", "groupings", "parse", "scalar", "selectors"]

ROOT = Path(__file__).resolve().parent.parent
PRODUCTION = ROOT / "deploy" / "kustomize" / "overlays" / "production"
DASHBOARD = PRODUCTION / "dashboards" / "spoolship.json"
ALERTS = PRODUCTION / "alerts.yaml"

# Grafana's built-in variables stand where PromQL wants a duration; any valid one parses the same.
GRAFANA_DURATIONS = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h"}
# Labels Prometheus attaches to every scraped series (the Prometheus Operator's PodMonitor targets).
TARGET_LABELS = {"namespace", "pod", "container", "endpoint", "job", "instance", "service"}
# What a scrape of kube-state-metrics adds besides its own labels (which it keeps: honorLabels).
SCRAPE_LABELS = {"job", "instance", "endpoint", "service"}
# Metrics that come from other exporters: named here on purpose, so a typo is never taken for one.
# kube-state-metrics' names and labels are pinned from its docs (tests/kube_state_metrics.py).
EXTERNAL_METRICS = {"up": "Prometheus, per scrape target", **{name: "kube-state-metrics" for name in KUBE_STATE_METRICS}}
SUFFIXES = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count", "_created"),
            "summary": ("", "_sum", "_count", "_created"), "gauge": ("",), "info": ("_info",)}


@dataclass(frozen=True)
class Query:
    where: str  # "alert X" or "panel Y / A"
    expr: str


@dataclass
class Exposed:
    """Sample names a process exposes (also those a labelled metric will have once it has a child),
    and the label values seen on each."""

    names: set[str]
    labels: dict[str, dict[str, set[str]]]


def exposed(*texts: str) -> Exposed:
    out = Exposed(names=set(), labels={})
    for text in texts:
        for family in text_string_to_metric_families(text):
            out.names.update(family.name + suffix for suffix in SUFFIXES.get(family.type, ("",)))
            for sample in family.samples:
                out.names.add(sample.name)
                for label, value in sample.labels.items():
                    out.labels.setdefault(sample.name, {}).setdefault(label, set()).add(value)
    return out


def parse(expr: str):
    for variable, duration in GRAFANA_DURATIONS.items():
        expr = expr.replace(variable, duration)
    return promql_parser.parse(expr)


def selectors(expr: str) -> list[tuple[str | None, list[tuple[str, str, str]]]]:
    """(metric name, [(label, op, value)]) of every vector selector in `expr`."""
    found = []

    def visit(node) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            matchers = [(m.name, str(m.op).rsplit(".", 1)[-1], m.value) for m in node.matchers.matchers]
            found.append((node.name, matchers))

    promql_parser.walk(parse(expr), pre_visit=visit)
    return found


def groupings(expr: str) -> list[tuple[list[str], list[str]]]:
    """(labels of a `by (...)`, metric names aggregated) of every aggregation in `expr`."""
    found = []

    def visit(node) -> None:
        modifier = getattr(node, "modifier", None)
        if isinstance(node, promql_parser.AggregateExpr) and modifier is not None and str(modifier.type).endswith("By"):
            names: list[str] = []
            promql_parser.walk(node.expr, pre_visit=lambda n: _collect_name(n, names))
            found.append((list(modifier.labels), names))

    promql_parser.walk(parse(expr), pre_visit=visit)
    return found


def _collect_name(node, names: list[str]) -> None:
    if isinstance(node, promql_parser.VectorSelector) and node.name:
        names.append(node.name)


def scalar(node) -> float:
    """The value of a number-only expression (`0.8 * 17179869184`), for thresholds."""
    if isinstance(node, promql_parser.NumberLiteral):
        return node.val
    if isinstance(node, promql_parser.ParenExpr):
        return scalar(node.expr)
    if isinstance(node, promql_parser.BinaryExpr):
        arithmetic = {"*": operator.mul, "/": operator.truediv, "+": operator.add, "-": operator.sub, "^": operator.pow}
        return arithmetic[str(node.op)](scalar(node.lhs), scalar(node.rhs))
    raise ValueError(f"not a number-only expression: {node}")


def dashboard_queries(path: Path = DASHBOARD) -> list[Query]:
    dashboard = json.loads(path.read_text())
    queries = []
    for panel in _panels(dashboard["panels"]):
        for target in panel.get("targets", []):
            queries.append(Query(f"panel {panel['title']!r} / {target['refId']}", target["expr"]))
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]["query"] if isinstance(variable["query"], dict) else variable["query"]
            inner = re.fullmatch(r"label_values\((.+),\s*\w+\)", query)
            queries.append(Query(f"variable {variable['name']}", inner.group(1) if inner else query))
    return queries


def _panels(panels: list[dict]) -> list[dict]:
    out = []
    for panel in panels:
        out.append(panel)
        out.extend(_panels(panel.get("panels", [])))
    return out


def alert_queries(path: Path = ALERTS) -> list[Query]:
    rule = yaml.safe_load(path.read_text())
    return [Query(f"alert {r['alert']}", r["expr"]) for g in rule["spec"]["groups"] for r in g["rules"]]


def check(queries: list[Query], live: Exposed, *, names_only: bool = False) -> list[str]:
    """Every problem: a metric nobody exposes, a label a metric lacks (matched or grouped by), a label
    value never seen."""
    problems = []
    for query in queries:
        for name, matchers in selectors(query.expr):
            if name is None:
                problems.append(f"{query.where}: a selector without a metric name")
            elif name.startswith("spoolship_"):
                problems.extend(_check_spoolship(query.where, name, [] if names_only else matchers, live))
            elif name not in EXTERNAL_METRICS:
                problems.append(f"{query.where}: {name} is neither exposed by spoolship nor a known external metric")
            elif name in KUBE_STATE_METRICS:
                problems.extend(f"{query.where}: kube-state-metrics documents no label {label!r} on {name}"
                                for label, _op, _value in matchers
                                if label not in SCRAPE_LABELS and not labels_allowed(name, label))
        for labels, names in [] if names_only else groupings(query.expr):
            if names and all(name in KUBE_STATE_METRICS for name in names):
                problems.extend(f"{query.where}: grouped by {label!r}, which kube-state-metrics documents on none "
                                f"of {names}" for label in sorted(set(labels) - SCRAPE_LABELS)
                                if not any(labels_allowed(name, label) for name in names))
            if not any(name.startswith("spoolship_") for name in names):
                continue  # other exporters' labels are theirs to keep
            for label in sorted(set(labels) - TARGET_LABELS - {"le"}):
                if not any(label in live.labels.get(name, {}) for name in names):
                    problems.append(f"{query.where}: grouped by {label!r}, which none of {names} has on a live series")
    return problems


def _check_spoolship(where: str, name: str, matchers: list, live: Exposed) -> list[str]:
    if name not in live.names:
        return [f"{where}: {name} is not exposed by the receiver or the tailer"]
    problems = []
    for label, op, value in matchers:
        if label in TARGET_LABELS or label == "__name__":
            continue
        seen = live.labels.get(name, {}).get(label)
        if seen is None:
            problems.append(f"{where}: {name} has no label {label!r} on any live series")
        elif op == "Equal" and value not in seen:
            problems.append(f"{where}: {name}{{{label}={value!r}}} never seen; live values: {sorted(seen)}")
    return problems
