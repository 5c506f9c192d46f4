"""Every `scopegate_*` metric of SPEC §5, declared once, on a registry passed in.

Labels stay bounded: `route` is a route's configured name (or `unmatched`), `reason` one of the
fixed `Reason` values, `upstream` and `issuer` come from the configuration — never from the
request. Buckets run from a tenth of a millisecond (a cached-token denial) to tens of seconds
(a slow upstream), which is the span a proxy's latency lives in.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from scopegate import __version__
from scopegate.reasons import Reason

UNMATCHED = "unmatched"
_MAX_CACHED_LABEL_SETS = 100_000

LATENCY_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
    0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)  # fmt: skip


class Metrics:
    """The gateway's instruments. Tests build one on a fresh `CollectorRegistry()`."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.requests = Counter(
            "scopegate_requests_total",
            "Requests answered, by route, method and status code.",
            ["route", "method", "code"],
            registry=registry,
        )
        self.denials = Counter(
            "scopegate_denials_total",
            "Requests refused by scopegate itself, by route and the check that failed.",
            ["route", "reason"],
            registry=registry,
        )
        self.request_duration = Histogram(
            "scopegate_request_duration_seconds",
            "Time from a request's arrival to the end of its answer.",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.upstream_duration = Histogram(
            "scopegate_upstream_duration_seconds",
            "Time spent on the upstream exchange, body streaming included.",
            ["upstream"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.upstream_errors = Counter(
            "scopegate_upstream_errors_total",
            "Upstream exchanges that failed: connect, timeout or reset.",
            ["upstream", "reason"],
            registry=registry,
        )
        self.jwks_fetches = Counter(
            "scopegate_jwks_fetches_total",
            "Key set fetches per issuer, by result.",
            ["issuer", "result"],
            registry=registry,
        )
        self.jwks_keys = Gauge(
            "scopegate_jwks_keys",
            "Usable signing keys currently held per issuer.",
            ["issuer"],
            registry=registry,
            multiprocess_mode="max",
        )
        self.jwks_last_success = Gauge(
            "scopegate_jwks_last_success_timestamp_seconds",
            "Unix time of the last successful key set fetch per issuer.",
            ["issuer"],
            registry=registry,
            multiprocess_mode="max",
        )
        self.config_reloads = Counter(
            "scopegate_config_reloads_total",
            "Configuration reloads, by result.",
            ["result"],
            registry=registry,
        )
        self.build_info = Gauge(
            "scopegate_build_info",
            "Always 1; the version label says which scopegate is running.",
            ["version"],
            registry=registry,
            multiprocess_mode="max",
        )
        self.build_info.labels(version=__version__).set(1)

        # Label children, looked up once per label set: `labels()` validates and locks on every
        # call, a tenth of a forwarded request's CPU. The registry keeps each child for good
        # anyway, so these maps grow no further than it does.
        self._answered: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self._upstream_durations: dict[str, Any] = {}
        self._denials: dict[tuple[str, Reason], Any] = {}

    def answered(self, route: str, method: str, status: int, seconds: float) -> None:
        key = (route, method, status)
        children = self._answered.get(key)
        if children is None:
            children = (
                self.requests.labels(route=route, method=_method_label(method), code=str(status)),
                self.request_duration.labels(route=route),
            )
            if len(self._answered) < _MAX_CACHED_LABEL_SETS:  # odd methods are "OTHER" anyway
                self._answered[key] = children
        counter, histogram = children
        counter.inc()
        histogram.observe(seconds)

    def upstream_answered(self, upstream: str, seconds: float) -> None:
        child = self._upstream_durations.get(upstream)
        if child is None:
            child = self._upstream_durations[upstream] = self.upstream_duration.labels(
                upstream=upstream
            )
        child.observe(seconds)

    def upstream_failed(self, upstream: str, reason: str) -> None:
        self.upstream_errors.labels(upstream=upstream, reason=reason).inc()

    def denied(self, route: str, reason: Reason) -> None:
        key = (route, reason)
        child = self._denials.get(key)
        if child is None:
            child = self.denials.labels(route=route, reason=str(reason))
            if len(self._denials) < _MAX_CACHED_LABEL_SETS:
                self._denials[key] = child
        child.inc()

    def jwks_fetched(self, issuer: str, ok: bool, key_count: int, at: float | None) -> None:
        self.jwks_fetches.labels(issuer=issuer, result="ok" if ok else "error").inc()
        if ok:
            self.jwks_keys.labels(issuer=issuer).set(key_count)
            if at is not None:
                self.jwks_last_success.labels(issuer=issuer).set(at)


_KNOWN_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"}
)


def _method_label(method: str) -> str:
    """Any method token is valid HTTP; only the standard ones become label values."""
    return method if method in _KNOWN_METHODS else "OTHER"
