"""The Grafana dashboard in deploy/grafana is a well-formed dashboard whose every query reads
metrics and labels scopegate exports (SPEC §5), and that covers what an operator watches.

Queries are checked on a real Prometheus scraping scopegate's own metrics (tests/deploy/
prometheus.py), with the dashboard's variables replaced as Grafana replaces them: each must
evaluate, and find series.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.prometheus import (
    JOB,
    RATE_INTERVAL,
    ROUTE,
    SCRAPE_SECONDS,
    Prometheus,
    QueryError,
    scopegate_metrics,
)

DASHBOARD = Path(__file__).parents[2] / "deploy" / "grafana" / "scopegate-dashboard.json"
DATASOURCE = "${datasource}"
GRID_WIDTH = 24
# The value chosen for each of the dashboard's query variables: one job, one route.
SELECTED = {"job": JOB, "route": ROUTE}
# Grafana's variable syntaxes: $name, ${name}, ${name:format}, [[name]].
_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]")


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


def _variable_queries() -> dict[str, str]:
    """Each query variable's name and query."""
    queries = {}
    for variable in _dashboard()["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]
            queries[variable["name"]] = query["query"] if isinstance(query, dict) else query
    return queries


def _grafana(expr: str) -> str:
    """`expr` as Grafana sends it to Prometheus: the query variables set to SELECTED, the
    built-in ones to what Grafana gives them for this dashboard and a Prometheus scraped every
    SCRAPE_SECONDS."""
    time_range = _dashboard()["time"]
    assert time_range["to"] == "now", time_range
    values: dict[str, str] = {
        **SELECTED,
        "__interval": f"{SCRAPE_SECONDS}s",
        "__rate_interval": RATE_INTERVAL,
        "__range": str(time_range["from"]).removeprefix("now-"),
    }

    def value(match: re.Match[str]) -> str:
        name = next(group for group in match.groups() if group)
        assert name in values, f"${name} is neither a dashboard variable nor a built-in one"
        return values[name]

    return _VARIABLE.sub(value, expr)


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


def test_every_query_evaluates_and_finds_scopegate_series(prometheus: Prometheus) -> None:
    """Each expr, variables replaced, evaluates on Prometheus and finds series among scopegate's
    metrics: a misspelt metric, label or value would find none. Legends name labels every
    series of the answer carries."""
    assert set(_variable_queries()) == set(SELECTED)
    errors = []
    for title, target in _targets():
        expr = _grafana(target["expr"])
        try:
            result = prometheus.query(expr)
        except QueryError as error:
            errors.append(f"{title!r}: {error}")
            continue
        if not result:
            errors.append(f"{title!r}: finds no series: {expr}")
        for label in re.findall(r"\{\{\s*(\w+)\s*\}\}", target.get("legendFormat", "")):
            if any(label not in series["metric"] for series in result):
                errors.append(f"{title!r}: legend uses {label}, which the answer lacks: {expr}")
    assert not errors, "\n".join(errors)


def test_variable_queries_find_values(prometheus: Prometheus) -> None:
    """Each variable's `label_values(selector, label)`, asked of Prometheus as Grafana asks it,
    offers the job and the route scopegate reports."""
    found = {}
    for name, query in _variable_queries().items():
        match = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", query)
        assert match, query
        selector, label = match.groups()
        found[name] = prometheus.label_values(label, _grafana(selector))
    assert found == {name: [value] for name, value in SELECTED.items()}


@pytest.mark.parametrize(
    ("expr", "error_type"),
    [
        pytest.param(
            "sum(rate(scopegate_requests_total[4s])", "bad_data", id="unclosed parenthesis"
        ),
        pytest.param("sum(rat(scopegate_requests_total[4s]))", "bad_data", id="unknown function"),
        pytest.param("rate(scopegate_requests_total)", "bad_data", id="no range for rate"),
        pytest.param(
            "rate(scopegate_requests_total[$__rate_interval])",
            "bad_data",
            id="a Grafana variable left in",
        ),
        pytest.param(
            "scopegate_requests_total / on (route) scopegate_denials_total",
            "execution",
            id="a match only the data shows to be many-to-many",
        ),
    ],
)
def test_prometheus_refuses_a_broken_expression(
    prometheus: Prometheus, expr: str, error_type: str
) -> None:
    """The evaluation above can fail: Prometheus refuses what does not parse, and what parses but
    cannot be evaluated on scopegate's series."""
    with pytest.raises(QueryError) as refused:
        prometheus.query(expr)
    assert refused.value.error_type == error_type, refused.value


@pytest.mark.parametrize(
    ("misspelt", "right"),
    [
        pytest.param(
            "sum(rate(scopegate_request_total[$__rate_interval]))",
            "sum(rate(scopegate_requests_total[$__rate_interval]))",
            id="misspelt metric",
        ),
        pytest.param(
            'sum(rate(scopegate_denials_total{reasons="missing_token"}[$__rate_interval]))',
            'sum(rate(scopegate_denials_total{reason="missing_token"}[$__rate_interval]))',
            id="misspelt label",
        ),
        pytest.param(
            'sum(rate(scopegate_denials_total{reason="missing-token"}[$__rate_interval]))',
            'sum(rate(scopegate_denials_total{reason="missing_token"}[$__rate_interval]))',
            id="misspelt label value",
        ),
    ],
)
def test_a_misspelt_name_finds_no_series(prometheus: Prometheus, misspelt: str, right: str) -> None:
    """The emptiness check above is not vacuous: a misspelt name evaluates to nothing, where the
    same query spelt right finds scopegate's series."""
    assert prometheus.query(_grafana(misspelt)) == []
    assert prometheus.query(_grafana(right))


@pytest.mark.parametrize(
    ("what", "pattern"),
    [
        ("requests by route", r"sum by \(route\) \(rate\(scopegate_requests_total"),
        ("denials by reason", r"sum by \(reason\) \(rate\(scopegate_denials_total"),
        ("denials by route", r"sum by \(route\) \(rate\(scopegate_denials_total"),
        ("would be denied, by reason", r"sum by \(reason\) \(rate\(scopegate_shadow_denials_total"),
        ("p50 latency", r"histogram_quantile\(0\.5, .*scopegate_request_duration_seconds_bucket"),
        ("p99 latency", r"histogram_quantile\(0\.99, .*scopegate_request_duration_seconds_bucket"),
        ("upstream errors", r"by \(upstream, reason\) \(rate\(scopegate_upstream_errors_total"),
        ("JWKS keys", r"scopegate_jwks_keys\b"),
        ("JWKS last success age", r"time\(\) - scopegate_jwks_last_success_timestamp_seconds"),
        ("JWKS fetch errors", r"by \(issuer, result\) .*scopegate_jwks_fetches_total"),
        ("config reloads", r"by \(result\) .*scopegate_config_reloads_total"),
        (
            "rate-limited requests by route",
            r'sum by \(route\) \(rate\(scopegate_denials_total\{[^}]*reason="rate_limited"',
        ),
        ("rate-limit store errors", r"rate\(scopegate_rate_limit_store_errors_total"),
        ("introspections by result", r"by \(issuer, result\) .*scopegate_introspections_total"),
        ("failed TLS handshakes", r"rate\(scopegate_tls_handshake_failures_total"),
        (
            "days until certificates expire",
            r"min by \(certificate\) \(scopegate_tls_certificate_expiry_timestamp_seconds"
            r"\{[^}]*\}\) - time\(\)\) / 86400",
        ),
    ],
)
def test_dashboard_shows_what_operators_watch(what: str, pattern: str) -> None:
    """The dashboard has a query for each thing the runbook asks about."""
    assert any(re.search(pattern, t["expr"]) for _, t in _targets()), what


def test_dashboard_covers_every_exported_metric() -> None:
    """No metric scopegate registers is left off the dashboard."""
    exprs = "\n".join(target["expr"] for _, target in _targets())
    families = [family.name for family in scopegate_metrics().collect()]
    assert families
    missing = [
        name
        for name in families
        if not re.search(rf"\b{name}(_total|_bucket|_sum|_count)?\b", exprs)
    ]
    assert not missing, missing
