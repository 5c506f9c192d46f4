"""The Grafana dashboard in deploy/grafana is a well-formed dashboard whose every query reads
metrics and labels scopegate exports (SPEC §5), and that covers what an operator watches."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.metrics import MetricWrapperBase

from scopegate.metrics import Metrics
from tests.deploy.promql import SPEC_METRICS, base_metric, labels_of, parse, problems

DASHBOARD = Path(__file__).parents[2] / "deploy" / "grafana" / "scopegate-dashboard.json"
DATASOURCE = "${datasource}"
GRID_WIDTH = 24


def _dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def _panels() -> list[dict[str, Any]]:
    """Every panel, rows' nested panels included."""
    found: list[dict[str, Any]] = []
    for panel in _dashboard()["panels"]:
        found.append(panel)
        found.extend(panel.get("panels", []))
    return found


def _targets() -> list[tuple[str, dict[str, Any]]]:
    return [(p["title"], t) for p in _panels() for t in p.get("targets", [])]


def _variable_queries() -> list[str]:
    queries = []
    for variable in _dashboard()["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]
            queries.append(query["query"] if isinstance(query, dict) else query)
    return queries


def test_spec_metric_table_is_what_scopegate_registers() -> None:
    """The table these checks use (SPEC §5) is exactly the metrics, types and labels scopegate
    registers, so "in the table" means "exported"."""
    metrics = Metrics(CollectorRegistry())
    registered: dict[str, str] = {}
    for collector in vars(metrics).values():
        if not isinstance(collector, MetricWrapperBase):
            continue
        (family,) = collector.describe()
        name = family.name + ("_total" if family.type == "counter" else "")
        registered[name] = family.type
        labels = SPEC_METRICS[name][1]
        collector.labels(**dict.fromkeys(labels, "x"))  # ValueError on any other label set
    assert registered == {name: kind for name, (kind, _) in SPEC_METRICS.items()}


def test_dashboard_has_the_shape_grafana_imports() -> None:
    """Title, uid and schema version; every panel with a unique numeric id, a title, a type and a
    position inside the 24-column grid; no two panels overlap."""
    dashboard = _dashboard()
    assert dashboard["title"] and dashboard["uid"]
    assert isinstance(dashboard["schemaVersion"], int)
    panels = _panels()
    ids = [p["id"] for p in panels]
    assert all(isinstance(i, int) for i in ids)
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    boxes = []
    for panel in panels:
        assert panel["title"].strip(), panel
        assert panel["type"] in {"row", "timeseries", "stat", "table", "gauge", "bargauge"}
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["w"] > 0 and grid["h"] > 0
        assert grid["x"] + grid["w"] <= GRID_WIDTH, panel["title"]
        boxes.append((panel["title"], grid))
    for index, (title, a) in enumerate(boxes):
        for other, b in boxes[index + 1 :]:
            apart = (
                a["x"] + a["w"] <= b["x"]
                or b["x"] + b["w"] <= a["x"]
                or a["y"] + a["h"] <= b["y"]
                or b["y"] + b["h"] <= a["y"]
            )
            assert apart, f"{title!r} overlaps {other!r}"


def test_every_query_panel_has_targets_on_the_datasource_variable() -> None:
    """Every non-row panel queries: it has targets, each with an expr and a refId unique in the
    panel, and uses the `datasource` variable, which selects among Prometheus datasources."""
    variables = {v["name"]: v for v in _dashboard()["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for panel in _panels():
        if panel["type"] == "row":
            continue
        targets = panel.get("targets", [])
        assert targets, f"{panel['title']!r} has no targets"
        assert panel["datasource"]["uid"] == DATASOURCE, panel["title"]
        ref_ids = [t["refId"] for t in targets]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]
        for target in targets:
            assert target["expr"].strip(), panel["title"]
            assert target["datasource"]["uid"] == DATASOURCE, panel["title"]


def test_every_query_reads_only_spec_metrics_and_labels() -> None:
    """Each expr names only SPEC §5 metrics (histograms also as _bucket/_sum/_count), matches and
    groups by labels those metrics have, calls real PromQL functions, and takes quantiles of
    buckets aggregated by `le`; legends name labels the query keeps."""
    errors = []
    for title, target in _targets():
        expr = target["expr"]
        found = parse(expr)
        assert found.metrics, f"{title!r}: reads no metric"
        errors += [f"{title!r}: {problem}: {expr}" for problem in problems(expr)]
        kept = found.grouping or {label for m in found.metrics for label in labels_of(m)}
        for label in re.findall(r"\{\{\s*(\w+)\s*\}\}", target.get("legendFormat", "")):
            if label not in kept:
                errors.append(f"{title!r}: legend uses {label}, which the query drops")
    assert not errors, "\n".join(errors)


def test_variable_queries_read_spec_metrics_and_labels() -> None:
    """The `label_values(metric, label)` queries of the dashboard's variables name exported
    metrics and labels they carry."""
    queries = _variable_queries()
    assert queries
    for query in queries:
        match = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", query)
        assert match, query
        selector, label = match.groups()
        assert not problems(selector), (query, problems(selector))
        (metric,) = parse(selector).metrics
        assert label in labels_of(metric), query


def test_checker_catches_misspelt_names() -> None:
    """The name check is not vacuous: a misspelt metric, label, function, a quantile of a
    non-bucket series and a non-histogram suffix are each reported."""
    bad = [
        "sum(rate(scopegate_request_total[5m]))",
        'sum(rate(scopegate_denials_total{reasons="x"}[5m]))',
        "sum by (status) (rate(scopegate_requests_total[5m]))",
        "sum(rat(scopegate_requests_total[5m]))",
        "histogram_quantile(0.9, sum by (le) (rate(scopegate_requests_total[5m])))",
        "scopegate_jwks_keys_count",
        "sum(rate(http_requests_total[5m]))",
    ]
    for expr in bad:
        assert problems(expr), expr
    assert base_metric("scopegate_request_duration_seconds_bucket") is not None
    assert not problems(
        'histogram_quantile(0.99, sum by (le, route) (rate(scopegate_request_duration_seconds_bucket{job="$job"}[$__rate_interval])))'
    )


@pytest.mark.parametrize(
    ("what", "pattern"),
    [
        ("requests by route", r"sum by \(route\) \(rate\(scopegate_requests_total"),
        ("denials by reason", r"sum by \(reason\) \(rate\(scopegate_denials_total"),
        ("denials by route", r"sum by \(route\) \(rate\(scopegate_denials_total"),
        ("p50 latency", r"histogram_quantile\(0\.5, .*scopegate_request_duration_seconds_bucket"),
        ("p99 latency", r"histogram_quantile\(0\.99, .*scopegate_request_duration_seconds_bucket"),
        ("upstream errors", r"by \(upstream, reason\) \(rate\(scopegate_upstream_errors_total"),
        ("JWKS keys", r"scopegate_jwks_keys\b"),
        ("JWKS last success age", r"time\(\) - scopegate_jwks_last_success_timestamp_seconds"),
        ("JWKS fetch errors", r"by \(issuer, result\) .*scopegate_jwks_fetches_total"),
        ("config reloads", r"by \(result\) .*scopegate_config_reloads_total"),
    ],
)
def test_dashboard_shows_what_operators_watch(what: str, pattern: str) -> None:
    """The dashboard has a query for each thing the runbook asks about."""
    assert any(re.search(pattern, t["expr"]) for _, t in _targets()), what


def test_dashboard_covers_every_exported_metric() -> None:
    """No SPEC §5 metric is left off the dashboard."""
    used = {base_metric(m) for _, t in _targets() for m in parse(t["expr"]).metrics}
    assert set(SPEC_METRICS) <= used, set(SPEC_METRICS) - used
