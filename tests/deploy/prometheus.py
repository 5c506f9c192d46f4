"""A real Prometheus on loopback, scraping scopegate's own metrics, to evaluate the PromQL that
deploy/ ships: the dashboard's queries and the alerting and recording rules.

The scrape target serves a `scopegate.telemetry.metrics.Metrics` registry on which one of each event the
dashboard and the alerts look at was recorded, so every series exists with the labels scopegate
gives it. An expression Prometheus cannot parse or evaluate is a `QueryError` with Prometheus's
message; one that names a metric or a label scopegate does not export evaluates to nothing.

Usage::

    with exposition(scopegate_metrics()) as target, running(binary, target, tmp) as prometheus:
        prometheus.query("sum(rate(scopegate_requests_total[4s]))")  # the result vector
        prometheus.query("sum(rate(scopegate_requests_total[4s])")   # raises QueryError
"""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import MetricsHandler

from scopegate.reasons import Reason
from scopegate.telemetry.metrics import Metrics

JOB = "scopegate"
ROUTE = "list-contacts"
UPSTREAM = "contacts"
ISSUER = "https://issuer.example"
SCRAPE_SECONDS = 1
# Grafana's $__rate_interval for a datasource scraped every SCRAPE_SECONDS: four scrapes.
RATE_INTERVAL = f"{4 * SCRAPE_SECONDS}s"
# Prometheus hands its targets to the scraper about five seconds after it starts.
STARTUP_SECONDS = 30


class QueryError(Exception):
    """Prometheus refused an expression: it does not parse, or it failed to evaluate."""

    def __init__(self, expr: str, error_type: str, error: str) -> None:
        super().__init__(f"{error_type}: {error}: {expr}")
        self.expr = expr
        self.error_type = error_type
        self.error = error


def scopegate_metrics() -> CollectorRegistry:
    """scopegate's registry after one of every event the dashboard and the alerts read."""
    metrics = Metrics(CollectorRegistry())
    metrics.answered(ROUTE, "GET", 200, 0.004)
    metrics.answered(ROUTE, "GET", 503, 0.2)
    metrics.denied(ROUTE, Reason.MISSING_TOKEN)
    metrics.denied(ROUTE, Reason.ISSUER_UNAVAILABLE)
    metrics.denied(ROUTE, Reason.RATE_LIMITED)
    metrics.rate_limit_store_failed()
    metrics.shadow_denied(ROUTE, Reason.INSUFFICIENT_SCOPE)
    metrics.upstream_answered(UPSTREAM, 0.003)
    metrics.websocket_opened(ROUTE)
    metrics.websocket_opened(ROUTE)
    metrics.websocket_closed(ROUTE, "token_expired")
    metrics.upstream_failed(UPSTREAM, "timeout")
    metrics.jwks_fetched(ISSUER, ok=True, key_count=2, at=time.time())
    metrics.jwks_fetched(ISSUER, ok=False, key_count=0, at=None)
    for result in ("active", "inactive", "error"):
        metrics.introspected(ISSUER, result)
    metrics.certificate_expires("listen", time.time() + 30 * 86400)
    for result in ("ok", "error"):
        metrics.config_reloads.labels(result=result).inc()
    return metrics.registry


@contextmanager
def exposition(registry: CollectorRegistry) -> Iterator[str]:
    """Serve `registry` on a loopback port; yields the `host:port` to scrape."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), MetricsHandler.factory(registry))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@dataclass(frozen=True)
class Prometheus:
    url: str

    def query(self, expr: str) -> list[dict[str, Any]]:
        """The instant vector (or scalar, as one sample) `expr` evaluates to now."""
        data = self._get("/api/v1/query", {"query": expr}, expr)
        if data["resultType"] in ("scalar", "string"):
            return [{"metric": {}, "value": data["result"]}]
        vector: list[dict[str, Any]] = data["result"]
        return vector

    def label_values(self, label: str, selector: str) -> list[str]:
        """The values of `label` on the series `selector` matches, as Grafana's
        `label_values(selector, label)` asks for them."""
        values: list[str] = self._get(
            f"/api/v1/label/{label}/values", {"match[]": selector}, selector
        )
        return values

    def _get(self, path: str, params: dict[str, str], expr: str) -> Any:
        url = f"{self.url}{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                body = json.load(response)
        except urllib.error.HTTPError as error:
            with error:
                body = json.load(error)
        if body["status"] != "success":
            raise QueryError(expr, body["errorType"], body["error"])
        return body["data"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _config(target: str) -> str:
    return (
        f"global: {{scrape_interval: {SCRAPE_SECONDS}s, scrape_timeout: {SCRAPE_SECONDS}s}}\n"
        "scrape_configs:\n"
        f"  - job_name: {JOB}\n"
        f"    static_configs: [{{targets: ['{target}']}}]\n"
    )


@contextmanager
def running(binary: str, target: str, directory: Path) -> Iterator[Prometheus]:
    """Prometheus scraping `target`, once every rate window of RATE_INTERVAL holds two samples."""
    config = directory / "prometheus.yml"
    config.write_text(_config(target))
    log = directory / "prometheus.log"
    port = _free_port()
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={directory / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=log_file,
        )
    try:
        prometheus = Prometheus(f"http://127.0.0.1:{port}")
        _wait_for_samples(prometheus, process, log)
        yield prometheus
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_for_samples(prometheus: Prometheus, process: subprocess.Popen[bytes], log: Path) -> None:
    ready = f'count_over_time(scopegate_build_info{{job="{JOB}"}}[{RATE_INTERVAL}]) >= 2'
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"prometheus exited: {log.read_text()}")
        try:
            if prometheus.query(ready):
                return
        except (OSError, ValueError):
            pass  # not listening yet, or answering 503 (not JSON) until it is ready
        time.sleep(0.2)
    raise AssertionError(f"prometheus had no samples after {STARTUP_SECONDS}s: {log.read_text()}")
