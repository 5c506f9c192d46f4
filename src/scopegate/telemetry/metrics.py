"""Every `scopegate_*` metric of SPEC §5, declared once, on a registry passed in.

Labels stay bounded: `route` is a route's configured name (or `unmatched`), `reason` one of the
fixed `Reason` values, `upstream` and `issuer` come from the configuration — never from the
request. Buckets run from a tenth of a millisecond (a cached-token denial) to tens of seconds
(a slow upstream), which is the span a proxy's latency lives in.

What every request records (its answer, its duration, the upstream's duration, a denial) is
tallied in plain numbers and handed to prometheus-client in batches: its `inc()` and `observe()`
take a lock and, under `--workers`, write a memory-mapped file on every call, which costs a
request several times what a tally does, and more with workers. The tallies are flushed when
the registry is collected (a scrape of the admin port sees every request answered before it)
and every `FLUSH_SECONDS` by the gateway, which is how a worker's counts reach the files the
supervisor serves. Tallying and flushing both happen on the event loop's thread.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.metrics_core import Metric

from scopegate import __version__
from scopegate.reasons import Reason

UNMATCHED = "unmatched"
FLUSH_SECONDS = 1.0

LATENCY_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
    0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)  # fmt: skip


class _Tally:
    """What one label set saw since the last flush: a count, and for a histogram the sum and
    a count per bucket (index `i` is the first bound ≥ the value, as prometheus-client's own
    `observe` picks it; the last is +Inf)."""

    __slots__ = ("buckets", "count", "counter", "histogram", "total")

    def __init__(self, counter: Any, histogram: Any) -> None:
        self.counter = counter
        self.histogram = histogram
        self.count = 0
        self.total = 0.0
        self.buckets = [0] * (len(LATENCY_BUCKETS) + 1) if histogram is not None else []

    def observe(self, seconds: float) -> None:
        self.count += 1
        self.total += seconds
        self.buckets[bisect_left(LATENCY_BUCKETS, seconds)] += 1

    def flush(self) -> None:
        if not self.count:
            return
        if self.counter is not None:
            self.counter.inc(self.count)
        if self.histogram is not None:
            # prometheus-client's histogram child keeps one value per bucket and one for the
            # sum; `observe()` would add one observation at a time. (A test holds a flushed
            # tally to what `observe()` would have exposed, value for value.)
            values = self.histogram._buckets
            for index, count in enumerate(self.buckets):
                if count:
                    values[index].inc(count)
                    self.buckets[index] = 0
            self.histogram._sum.inc(self.total)
        self.count = 0
        self.total = 0.0


class _FlushOnCollect:
    """Registered before every metric: a registry collects in registration order, so the
    tallies are in the metrics by the time they are read."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def describe(self) -> Iterable[Metric]:
        return ()

    def collect(self) -> Iterable[Metric]:
        self._metrics.flush()
        return ()


class Metrics:
    """The gateway's instruments. Tests build one on a fresh `CollectorRegistry()`."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        registry.register(_FlushOnCollect(self))
        # A registry exposes its metrics in registration order: keep the families in this one.
        self._declare_request_metrics(registry)
        self._declare_upstream_metrics(registry)
        self._declare_websocket_metrics(registry)
        self._declare_rate_limit_metrics(registry)
        self._declare_tls_metrics(registry)
        self._declare_key_metrics(registry)
        self._declare_process_metrics(registry)

        # One tally per label set, its label children looked up once: `labels()` validates and
        # locks on every call. The registry keeps each child for good anyway, so these maps
        # grow no further than it does (label values are bounded: see above).
        self._answered: dict[tuple[str, str, int], _Tally] = {}
        self._upstream_durations: dict[str, _Tally] = {}
        self._denials: dict[tuple[str, Reason], _Tally] = {}

    def _declare_request_metrics(self, registry: CollectorRegistry) -> None:
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
        self.shadow_denials = Counter(
            "scopegate_shadow_denials_total",
            "Requests on report-only routes forwarded although a check would deny them, by "
            "route and the check that failed.",
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

    def _declare_upstream_metrics(self, registry: CollectorRegistry) -> None:
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

    def _declare_websocket_metrics(self, registry: CollectorRegistry) -> None:
        self.websocket_connections = Gauge(
            "scopegate_websocket_connections",
            "WebSocket connections being relayed, by route.",
            ["route"],
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.websocket_closes = Counter(
            "scopegate_websocket_closes_total",
            "Relayed WebSocket connections closed, by route and by who or what closed them: "
            "client, upstream, idle, token_expired, shutdown.",
            ["route", "reason"],
            registry=registry,
        )

    def _declare_rate_limit_metrics(self, registry: CollectorRegistry) -> None:
        self.rate_limit_store_errors = Counter(
            "scopegate_rate_limit_store_errors_total",
            "Rate limit store calls that failed or timed out (SPEC 6.5): each request they "
            "concerned was allowed uncounted, or refused 503, as on_store_error says.",
            registry=registry,
        )

    def _declare_key_metrics(self, registry: CollectorRegistry) -> None:
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
        self.introspections = Counter(
            "scopegate_introspections_total",
            "RFC 7662 introspection calls per issuer, by result: active, inactive, or error "
            "(no usable answer: the request was answered 503 issuer_unavailable).",
            ["issuer", "result"],
            registry=registry,
        )

    def _declare_tls_metrics(self, registry: CollectorRegistry) -> None:
        self.tls_certificate_expiry = Gauge(
            "scopegate_tls_certificate_expiry_timestamp_seconds",
            "Unix time at which the first certificate of each configured certificate file "
            "expires (listen, client_ca, NAME:ca and NAME:cert for upstream NAME).",
            ["certificate"],
            registry=registry,
            multiprocess_mode="min",
        )
        self.tls_handshake_failures = Counter(
            "scopegate_tls_handshake_failures_total",
            "Connections to the TLS port whose handshake did not complete: plain HTTP or other "
            "bytes that are not TLS, a refused protocol version or client certificate, a client "
            "that refused the server's certificate, or no handshake within 2 s.",
            registry=registry,
        )

    def _declare_process_metrics(self, registry: CollectorRegistry) -> None:
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

    def flush(self) -> None:
        """Hand every tally to prometheus-client."""
        for tallies in (self._answered, self._upstream_durations, self._denials):
            for tally in tallies.values():
                tally.flush()

    def answered(self, route: str, method: str, status: int, seconds: float) -> None:
        # Any method token is valid HTTP; only the standard ones become label values.
        key = (route, method if method in _KNOWN_METHODS else "OTHER", status)
        tally = self._answered.get(key)
        if tally is None:
            tally = self._answered[key] = _Tally(
                self.requests.labels(route=route, method=key[1], code=str(status)),
                self.request_duration.labels(route=route),
            )
        tally.observe(seconds)

    def upstream_answered(self, upstream: str, seconds: float) -> None:
        tally = self._upstream_durations.get(upstream)
        if tally is None:
            tally = self._upstream_durations[upstream] = _Tally(
                None, self.upstream_duration.labels(upstream=upstream)
            )
        tally.observe(seconds)

    def upstream_failed(self, upstream: str, reason: str) -> None:
        self.upstream_errors.labels(upstream=upstream, reason=reason).inc()

    def denied(self, route: str, reason: Reason) -> None:
        tally = self._denials.get((route, reason))
        if tally is None:
            tally = self._denials[route, reason] = _Tally(
                self.denials.labels(route=route, reason=str(reason)), None
            )
        tally.count += 1

    def shadow_denied(self, route: str, reason: Reason) -> None:
        """A report-only route forwarded what `reason` would have denied (rare: not tallied)."""
        self.shadow_denials.labels(route=route, reason=str(reason)).inc()

    def websocket_opened(self, route: str) -> None:
        self.websocket_connections.labels(route=route).inc()

    def websocket_closed(self, route: str, reason: str) -> None:
        self.websocket_connections.labels(route=route).dec()
        self.websocket_closes.labels(route=route, reason=reason).inc()

    def certificate_expires(self, certificate: str, at: float) -> None:
        self.tls_certificate_expiry.labels(certificate=certificate).set(at)

    def tls_handshake_failed(self) -> None:
        self.tls_handshake_failures.inc()

    def rate_limit_store_failed(self) -> None:
        self.rate_limit_store_errors.inc()

    def introspected(self, issuer: str, result: str) -> None:
        self.introspections.labels(issuer=issuer, result=result).inc()

    def jwks_fetched(self, issuer: str, ok: bool, key_count: int, at: float | None) -> None:
        self.jwks_fetches.labels(issuer=issuer, result="ok" if ok else "error").inc()
        if ok:
            self.jwks_keys.labels(issuer=issuer).set(key_count)
            if at is not None:
                self.jwks_last_success.labels(issuer=issuer).set(at)


_KNOWN_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"}
)
