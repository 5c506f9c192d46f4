"""What `scopegate check` prints: the compiled route table, then warnings, or every error.

Built from the configuration and the pure pipeline alone: no server, no network.
"""

from __future__ import annotations

from pathlib import Path
from typing import TextIO

from scopegate.config.errors import ConfigError, ConfigErrors
from scopegate.config.lint import catalogue_warnings
from scopegate.config.load import load_config
from scopegate.config.model import Config, Route, ScopeRule
from scopegate.pipeline.routing import compile_routes


def describe_rule(route: Route) -> str:
    """The route's requirement as an operator reads it: `a b` is both, `a | b` either."""
    if route.auth == "none":
        return "(public: no token)"
    return describe_scopes(route.scopes)


def describe_scopes(rule: ScopeRule) -> str:
    if rule.needs_nothing:
        return "(any valid token)"
    parts = [" ".join(sorted(alternative)) for alternative in rule.alternatives]
    if len(parts) == 1:
        return parts[0]
    return " | ".join(f"({part})" if " " in part else part for part in parts)


def _methods(route: Route) -> str:
    allowed = route.allowed_methods
    return "*" if allowed is None else ",".join(sorted(allowed))


def route_table(routes: list[Route]) -> str:
    """A fixed-width table, one route a line, most specific first."""
    header = ("METHODS", "PATH", "ROUTE", "UPSTREAM", "REQUIRES")
    rows = [header] + [
        (_methods(r), r.path, r.name, r.upstream, describe_rule(r)) for r in routes
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
    lines = []
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        lines.append("  ".join([*cells, row[-1]]).rstrip())
    return "\n".join(lines)


def _summary(config: Config) -> str:
    return (
        f"{config.file}: valid: {len(config.routes)} route(s), {len(config.issuers)} issuer(s), "
        f"{len(config.upstreams)} upstream(s)"
    )


def run_check(path: Path, out: TextIO, err: TextIO) -> int:
    """Validate `path`; print the table and warnings (exit 0) or every error (exit 1)."""
    try:
        config = load_config(path)
    except ConfigErrors as errors:
        for error in errors.errors:
            print(error, file=err)
        return 1
    compiled = compile_routes(config.routes)
    if compiled.errors:
        for issue in compiled.errors:
            print(issue, file=err)
        return 1
    print(_summary(config), file=out)
    print(file=out)
    print(route_table(list(compiled.table)), file=out)
    warnings: list[ConfigError | object] = [*compiled.warnings, *catalogue_warnings(config)]
    if warnings:
        print(file=out)
        for warning in warnings:
            print(f"warning: {warning}", file=out)
    return 0
