"""SPEC §5's metric table, and a reader of the PromQL that dashboards and configurations use.

`parse` finds, in one PromQL expression, the metric names (every identifier that is not a
function, an aggregation, a keyword, a label name or a Grafana variable), the label names each
selector matches on, the label names of every `by (...)`/`without (...)`/`on (...)` clause, and
the functions called. It is a tokenizer, not a full parser: enough to check names against the
table, which is what a misspelt metric or label, silently matching nothing, gets wrong.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# name -> (type, labels): SPEC §5, the contract dashboards and alerts are written against.
SPEC_METRICS: dict[str, tuple[str, frozenset[str]]] = {
    "scopegate_requests_total": ("counter", frozenset({"route", "method", "code"})),
    "scopegate_denials_total": ("counter", frozenset({"route", "reason"})),
    "scopegate_request_duration_seconds": ("histogram", frozenset({"route"})),
    "scopegate_upstream_duration_seconds": ("histogram", frozenset({"upstream"})),
    "scopegate_upstream_errors_total": ("counter", frozenset({"upstream", "reason"})),
    "scopegate_jwks_fetches_total": ("counter", frozenset({"issuer", "result"})),
    "scopegate_jwks_keys": ("gauge", frozenset({"issuer"})),
    "scopegate_jwks_last_success_timestamp_seconds": ("gauge", frozenset({"issuer"})),
    "scopegate_config_reloads_total": ("counter", frozenset({"result"})),
    "scopegate_build_info": ("gauge", frozenset({"version"})),
}
# Labels Prometheus adds to every scraped series; `up` is the series it makes for each target.
TARGET_LABELS = frozenset({"job", "instance"})
PROMETHEUS_SERIES: dict[str, frozenset[str]] = {"up": frozenset()}
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")

AGGREGATIONS = frozenset(
    {"sum", "min", "max", "avg", "count", "stddev", "stdvar", "topk", "bottomk", "quantile"}
    | {"count_values", "group"}
)
FUNCTIONS = frozenset(
    {"abs", "absent", "absent_over_time", "ceil", "changes", "clamp", "clamp_max", "clamp_min"}
    | {"delta", "deriv", "exp", "floor", "histogram_quantile", "idelta", "increase", "irate"}
    | {"label_replace", "label_join", "ln", "log2", "log10", "predict_linear", "rate", "resets"}
    | {"round", "scalar", "sort", "sort_desc", "sqrt", "time", "timestamp", "vector"}
    | {"avg_over_time", "min_over_time", "max_over_time", "sum_over_time", "count_over_time"}
    | {"last_over_time", "quantile_over_time", "stddev_over_time", "present_over_time"}
)
KEYWORDS = frozenset(
    {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless"}
    | {"bool", "offset", "inf", "nan"}
)

_SELECTOR = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)?\s*\{([^}]*)\}")
_MATCHER = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*\"(?:[^\"\\]|\\.)*\"")
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
_IDENTIFIER = re.compile(r"(?<![\w$.])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?")


@dataclass
class Expression:
    metrics: set[str] = field(default_factory=set)
    functions: set[str] = field(default_factory=set)
    matchers: dict[str, set[str]] = field(default_factory=dict)  # metric -> matched label names
    grouping: set[str] = field(default_factory=set)


def parse(expr: str) -> Expression:
    """The names one PromQL expression uses; see the module's docstring."""
    found = Expression()
    text = expr
    for match in _SELECTOR.finditer(text):
        names = {m.group(1) for m in _MATCHER.finditer(match.group(2))}
        leftover = _MATCHER.sub("", match.group(2)).replace(",", "").strip()
        if leftover:
            raise ValueError(f"cannot read label matchers {match.group(2)!r} in {expr!r}")
        if match.group(1):
            found.matchers.setdefault(match.group(1), set()).update(names)
    text = _SELECTOR.sub(lambda m: m.group(1) or "", text)
    text = re.sub(r"\[[^\]]*\]", "", text)  # range and subquery durations, $__rate_interval
    for match in _GROUPING.finditer(text):
        found.grouping.update(n.strip() for n in match.group(2).split(",") if n.strip())
    text = _GROUPING.sub(" ", text)
    text = re.sub(r"\"(?:[^\"\\]|\\.)*\"", "", text)  # string arguments
    for match in _IDENTIFIER.finditer(text):
        name, call = match.group(1), match.group(2)
        if call:
            found.functions.add(name)
        elif name not in KEYWORDS:
            found.metrics.add(name)
    return found


def base_metric(name: str) -> str | None:
    """The SPEC §5 (or Prometheus) series a name reads: itself, or the histogram a `_bucket`,
    `_sum` or `_count` series belongs to; None for a name nobody exports."""
    if name in SPEC_METRICS or name in PROMETHEUS_SERIES:
        return name
    for suffix in HISTOGRAM_SUFFIXES:
        base = name.removesuffix(suffix)
        if base != name and SPEC_METRICS.get(base, ("", frozenset()))[0] == "histogram":
            return base
    return None


def labels_of(name: str) -> frozenset[str]:
    """The labels a series has once scraped: its own, the target's, and `le` for buckets."""
    base = base_metric(name)
    if base is None:
        return frozenset()
    own = SPEC_METRICS[base][1] if base in SPEC_METRICS else PROMETHEUS_SERIES[base]
    bucket = {"le"} if name.endswith("_bucket") and base != name else set()
    return own | TARGET_LABELS | bucket


def problems(expr: str) -> list[str]:
    """Everything wrong with one expression's names, as sentences; empty when it is sound."""
    found = parse(expr)
    errors = [f"unknown metric {m}" for m in sorted(found.metrics) if base_metric(m) is None]
    errors += [f"unknown function {f}" for f in sorted(found.functions - FUNCTIONS - AGGREGATIONS)]
    available: set[str] = set()
    for metric in found.metrics:
        available |= labels_of(metric)
    for metric, names in sorted(found.matchers.items()):
        unknown = names - labels_of(metric)
        if unknown:
            errors.append(f"{metric} has no label {sorted(unknown)}")
    unknown_grouping = found.grouping - available
    if unknown_grouping:
        errors.append(f"grouping by labels no series has: {sorted(unknown_grouping)}")
    buckets = any(m.endswith("_bucket") for m in found.metrics) and "le" in found.grouping
    if "histogram_quantile" in found.functions and not buckets:
        errors.append("histogram_quantile needs a _bucket series aggregated by le")
    return errors
