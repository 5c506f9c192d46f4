"""What `scopegate check` and `scopegate explain` print.

`check`: the compiled route table, then warnings, or every error; no server, no network.
`explain`: which route a request meets, what it requires, what a token grants, and the verdict,
checked by the same pipeline stages the gateway runs (a `--token` is verified against its
issuer's real keys).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from scopegate.commands.loading import load_with_routes
from scopegate.config.errors import ConfigError, ConfigErrors
from scopegate.config.lint import catalogue_warnings
from scopegate.config.model import Config, RateLimits, Route, ScopeRule
from scopegate.keys.fetch import new_session
from scopegate.keys.introspection import Introspector
from scopegate.keys.store import JwksStore
from scopegate.pipeline import Principal, RouteMatch
from scopegate.pipeline.routing import CompiledRoutes, RouteTable
from scopegate.pipeline.scopes import require
from scopegate.pipeline.step_up import require_authentication
from scopegate.pipeline.target import parse_target
from scopegate.pipeline.verify import TokenVerifier
from scopegate.reasons import Denied, Reason


def describe_rule(route: Route) -> str:
    """The route's requirement as an operator reads it: `a b` is both, `a | b` either."""
    if route.auth == "none":
        return "(public: no token)" + (" [websocket]" if route.websocket else "")
    rule = describe_scopes(route.scopes)
    if route.enforce == "report":
        rule += " [report only]"
    if route.websocket:
        query = route.websocket_token_query
        rule += " [websocket]" if query is None else f" [websocket, token in ?{query}]"
    if route.steps_up:
        rule += f" [step-up: {describe_step_up(route)}]"
    return rule


def describe_step_up(route: Route) -> str:
    """RFC 9470: what a token's authentication must be on this route."""
    parts = []
    if route.acr_values is not None:
        parts.append("acr " + " | ".join(route.acr_values))
    if route.max_age is not None:
        parts.append(f"auth_time within {route.max_age} s")
    return ", ".join(parts)


def issuer_lines(config: Config) -> list[str]:
    """What each issuer accepts beyond signed JWTs (SPEC §6.4), the client secret left out."""
    lines = []
    for issuer in config.issuers:
        said = []
        introspection = issuer.introspection
        if introspection is not None:
            where = introspection.endpoint or "the endpoint its discovery document names"
            kinds = "opaque tokens and JWTs" if introspection.jwt else "opaque tokens"
            said.append(
                f"{kinds} introspected at {where} as {introspection.client_id} "
                f"({introspection.auth_method}; active answers kept {introspection.cache_ttl:g} s, "
                f"inactive {introspection.negative_cache_ttl:g} s)"
            )
        if issuer.dpop != "disabled":
            nonce = ", with nonces" if issuer.dpop_nonce else ""
            said.append(f"DPoP {issuer.dpop}{nonce}")
        if said:
            lines.append(f"issuer {issuer.issuer}: " + "; ".join(said))
    return lines


def describe_scopes(rule: ScopeRule) -> str:
    if not rule.alternatives:
        return "(no token passes)"
    if rule.needs_nothing:
        return "(any valid token)"
    parts = [" ".join(sorted(alternative)) for alternative in rule.alternatives]
    if len(parts) == 1:
        return parts[0]
    return " | ".join(f"({part})" if " " in part else part for part in parts)


def _methods(route: Route) -> str:
    allowed = route.allowed_methods
    return "*" if allowed is None else ",".join(sorted(allowed))


def _origin(route: Route) -> str:
    """Where a route came from: the OpenAPI operation it was generated from, else its place."""
    return route.origin or f"{route.source.file}:{route.source.line}"


def route_table(routes: list[Route]) -> str:
    """A fixed-width table, one route a line, most specific first; with an ORIGIN column when
    some routes were generated from an OpenAPI description."""
    header: tuple[str, ...] = ("METHODS", "PATH", "ROUTE", "UPSTREAM", "REQUIRES")
    rows = [header] + [(_methods(r), r.path, r.name, r.upstream, describe_rule(r)) for r in routes]
    if any(route.origin for route in routes):
        origins = ["ORIGIN", *(_origin(route) for route in routes)]
        rows = [(*row[:-1], origin, row[-1]) for row, origin in zip(rows, origins, strict=True)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    lines = []
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        lines.append("  ".join([*cells, row[-1]]).rstrip())
    return "\n".join(lines)


def rate_limit_table(limits: RateLimits) -> str:
    """The rules as an operator reads them, after the store they count in."""
    store = "memory (each process counts alone)" if limits.store is None else limits.store.display
    lines = [f"rate limits, counted in {store}; on store error: {limits.on_store_error}"]
    for rule in limits.rules:
        routes = "every route" if rule.routes is None else ", ".join(sorted(rule.routes))
        lines.append(f"  {rule.name}: {rule.limit} per {rule.window:g} s by {rule.key} on {routes}")
    return "\n".join(lines)


def _summary(config: Config) -> str:
    return (
        f"{config.file}: valid: {len(config.routes)} route(s), {len(config.issuers)} issuer(s), "
        f"{len(config.upstreams)} upstream(s)"
    )


def _load_or_report(path: Path, err: TextIO) -> tuple[Config, CompiledRoutes] | None:
    """The configuration and its route table, or None after printing every error, route table
    errors included, as FILE:LINE:COL: message."""
    try:
        return load_with_routes(path)
    except ConfigErrors as errors:
        for error in errors.errors:
            print(error, file=err)
        return None


def run_check(path: Path, out: TextIO, err: TextIO) -> int:
    """Validate `path`; print the table and warnings (exit 0) or every error (exit 1)."""
    loaded = _load_or_report(path, err)
    if loaded is None:
        return 1
    config, compiled = loaded
    print(_summary(config), file=out)
    for line in issuer_lines(config):
        print(line, file=out)
    print(file=out)
    print(route_table(list(compiled.table)), file=out)
    if config.rate_limits is not None:
        print(file=out)
        print(rate_limit_table(config.rate_limits), file=out)
    warnings: list[ConfigError | object] = [
        *config.load_warnings,
        *compiled.warnings,
        *catalogue_warnings(config),
    ]
    if warnings:
        print(file=out)
        for warning in warnings:
            print(f"warning: {warning}", file=out)
    return 0


@dataclass(frozen=True)
class Verdict:
    """What `explain` found, line by line, and whether the request would pass."""

    lines: list[str]
    allowed: bool


def _match(routes: RouteTable, method: str, raw_target: str, lines: list[str]) -> RouteMatch | None:
    try:
        target = parse_target(raw_target)
        lines.append(f"normalised path: {target.path}")
        match = routes.match(method, target.path)
    except Denied as denied:
        lines.append(f"route: none ({denied.reason}: {denied.detail})")
        lines.append(f"verdict: DENY {denied.reason.status} {denied.reason}")
        return None
    route = match.route
    params = ", ".join(f"{k}={v}" for k, v in match.params.items())
    lines.append(
        f"route: {route.name} ({route.path}, {route.source})" + (f" [{params}]" if params else "")
    )
    if route.origin:
        lines.append(f"origin: {route.origin}")
    lines.append(f"upstream: {route.upstream}")
    lines.append(f"requires: {describe_rule(route)}")
    return match


async def _principal(config: Config, token: str, audience: str | None) -> Principal:
    async with new_session() as session:
        stores = {
            issuer.issuer: JwksStore(issuer, config.jwks, session) for issuer in config.issuers
        }
        introspectors = {
            issuer.issuer: Introspector(issuer, session)
            for issuer in config.issuers
            if issuer.introspection is not None
        }
        try:
            for store in stores.values():
                await store.start()
            verifier = TokenVerifier(config.issuers, stores, introspectors=introspectors)
            return await verifier.verify(token, audience=audience)
        finally:
            for store in stores.values():
                await store.close()


async def explain(
    config: Config,
    routes: RouteTable,
    method: str,
    raw_target: str,
    *,
    token: str | None,
    scopes: str | None,
) -> Verdict:
    """What `config`, whose compiled table is `routes`, does with the request."""
    lines: list[str] = []
    match = _match(routes, method, raw_target, lines)
    if match is None:
        return Verdict(lines, allowed=False)
    if match.route.auth == "none":
        lines.append("verdict: ALLOW (public route)")
        return Verdict(lines, allowed=True)
    return await _scope_verdict(config, match.route, token, scopes, lines)


async def _scope_verdict(
    config: Config, route: Route, token: str | None, scopes: str | None, lines: list[str]
) -> Verdict:
    """Whether what the request is granted meets what `route` requires."""
    try:
        principal = await _granted(config, route, token, scopes, lines)
        granted = principal.scopes
        lines.append(f"grants: {' '.join(sorted(granted)) or '(no scopes)'}")
        if principal.authenticated:
            _explain_binding(config, principal, lines)
        require(route.scopes, granted)
        if route.steps_up:
            _explain_step_up(config, route, principal, lines)
    except Denied as denied:
        if route.enforce == "report":
            # Forwarded all the same: the exit status says what enforcing would do.
            lines.append(f"verdict: SHADOW DENY {denied.reason}: {denied.detail} (report only: "
                         "forwarded, counted in scopegate_shadow_denials_total)")  # fmt: skip
        else:
            lines.append(f"verdict: DENY {denied.reason.status} {denied.reason}: {denied.detail}")
        return Verdict(lines, allowed=False)
    lines.append("verdict: ALLOW")
    return Verdict(lines, allowed=True)


async def _granted(
    config: Config, route: Route, token: str | None, scopes: str | None, lines: list[str]
) -> Principal:
    """Who a verified `token` proves, or an unverified caller with the `scopes` assumed;
    `Denied` if neither."""
    if token is not None:
        principal = await _principal(config, token, route.audience)
        how = "introspected" if token.count(".") != 2 else "valid"
        lines.append(f"token: {how}, issuer {principal.issuer}, subject {principal.subject}")
        return principal
    if scopes is not None:
        return Principal(claims={}, scopes=frozenset(scopes.split()), issuer=None)
    lines.append("token: none given (use --token or --scopes)")
    raise Denied(Reason.MISSING_TOKEN, "no token")


def _explain_binding(config: Config, principal: Principal, lines: list[str]) -> None:
    """What the request must carry besides the token: a DPoP proof for a DPoP-bound token, a
    client certificate for a certificate-bound one (RFC 9449, RFC 8705)."""
    issuer = next(i for i in config.issuers if i.issuer == principal.issuer)
    if principal.dpop_bound_to is not None:
        lines.append(
            f"binding: DPoP, key thumbprint {principal.dpop_bound_to}: send it as "
            "`Authorization: DPoP <token>` with a `DPoP` proof signed by that key for this "
            "method and URL (as Bearer it is refused: token_binding_mismatch)"
        )
        if issuer.dpop == "disabled":
            detail = "the token is DPoP-bound, and its issuer accepts no DPoP (dpop: disabled)"
            raise Denied(Reason.TOKEN_BINDING_MISMATCH, detail)
    elif issuer.dpop == "required":
        detail = "this issuer's tokens must be DPoP-bound (dpop: required), and this one is not"
        raise Denied(Reason.TOKEN_BINDING_MISMATCH, detail)
    if principal.bound_to is not None:
        lines.append(
            f"binding: client certificate, SHA-256 thumbprint {principal.bound_to} (RFC 8705)"
        )


def _explain_step_up(config: Config, route: Route, principal: Principal, lines: list[str]) -> None:
    claims = principal.claims
    lines.append(
        f"authentication: acr {claims.get('acr', '(none)')}, auth_time "
        f"{claims.get('auth_time', '(none)')}; the route needs {describe_step_up(route)}"
    )
    if not principal.authenticated:
        lines.append("step-up: not checked without --token")
        return
    issuer = next(i for i in config.issuers if i.issuer == principal.issuer)
    require_authentication(route, claims, now=time.time(), leeway=issuer.leeway)


def run_explain(
    path: Path,
    method: str,
    target: str,
    token: str | None,
    scopes: str | None,
    out: TextIO,
    err: TextIO,
) -> int:
    """Exit 0 when the request would be allowed, 1 when denied, 2 when the file is invalid."""
    loaded = _load_or_report(path, err)
    if loaded is None:
        return 2
    config, compiled = loaded
    verdict = asyncio.run(
        explain(config, compiled.table, method.upper(), target, token=token, scopes=scopes)
    )
    print("\n".join(verdict.lines), file=out)
    return 0 if verdict.allowed else 1
