"""The shipped Prometheus scrape configuration and alerting rules are valid and do what they say:
`promtool` checks them and runs their unit tests, and a real Prometheus scraping scopegate's
metrics evaluates every rule's expression."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import yaml

from tests.deploy.prometheus import Prometheus, QueryError
from tests.support.tools import require_tool

DEPLOY = Path(__file__).parents[2] / "deploy" / "prometheus"
SPEC_METRICS = {
    "scopegate_requests_total",
    "scopegate_denials_total",
    "scopegate_request_duration_seconds",
    "scopegate_upstream_duration_seconds",
    "scopegate_upstream_errors_total",
    "scopegate_jwks_fetches_total",
    "scopegate_jwks_keys",
    "scopegate_jwks_last_success_timestamp_seconds",
    "scopegate_config_reloads_total",
    "scopegate_build_info",
    "scopegate_rate_limit_store_errors_total",  # SPEC §6.5
    "scopegate_tls_certificate_expiry_timestamp_seconds",  # SPEC §6.1
}


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    promtool = require_tool("promtool", "Debian package prometheus")
    return subprocess.run(
        [promtool, *args], cwd=DEPLOY, capture_output=True, text=True, timeout=60, check=False
    )


def test_rules_are_valid() -> None:
    result = _promtool("check", "rules", "scopegate.rules.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_rule_unit_tests_pass() -> None:
    result = _promtool("test", "rules", "scopegate.rules.test.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_scrape_config_is_valid() -> None:
    result = _promtool("check", "config", "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_rules_read_only_metrics_scopegate_exports() -> None:
    """A misspelt metric in an alert silently never fires: every name must be one of SPEC §5."""
    text = (DEPLOY / "scopegate.rules.yml").read_text()
    used = {re.sub(r"_(bucket|sum|count)$", "", m) for m in re.findall(r"scopegate_[a-z_]+", text)}
    assert used, "the rules read no scopegate metric"
    assert used <= SPEC_METRICS, used - SPEC_METRICS


def test_every_rule_expression_evaluates(prometheus: Prometheus) -> None:
    """Prometheus evaluates each recording and alerting rule's expression on scopegate's series
    without an error (an alert that is not firing evaluates to nothing, which is fine)."""
    groups = yaml.safe_load((DEPLOY / "scopegate.rules.yml").read_text())["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    assert rules
    errors = []
    for rule in rules:
        try:
            prometheus.query(rule["expr"])
        except QueryError as error:
            errors.append(f"{rule.get('alert') or rule['record']}: {error}")
    assert not errors, "\n".join(errors)
