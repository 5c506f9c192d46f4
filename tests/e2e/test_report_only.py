"""Report-only routes (SPEC §6.6): what the token checks would deny is forwarded and counted as a
shadow denial; the request's own shape is enforced as everywhere; identity headers come only
from a verified token. A recording upstream shows what arrived."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import pytest
from prometheus_client import CollectorRegistry

from scopegate.app import RunningGateway
from scopegate.config.load import load_config_text
from scopegate.devtools.keys import generate
from scopegate.devtools.tokens import mint
from tests.e2e.conftest import AUDIENCE, BASE_CONFIG, Env, base_config, closed_port, gateway_env
from tests.support.access_log import log_lines
from tests.support.jwks_server import JwksServer
from tests.support.rawhttp import exchange, request_bytes
from tests.support.upstream import RecordingUpstream

# Every route reports by default; `strict` keeps enforcing.
REPORT_CONFIG = (
    BASE_CONFIG.replace("routes:\n", "enforce: report\nroutes:\n", 1)
    + """\
  - name: strict
    path: /strict
    upstream: contacts
    enforce: enforce
"""
)
IDENTITY = ("x-auth-subject", "x-auth-client", "x-auth-tenant", "x-auth-scopes")
STRANGER = generate("RS256")  # a key the test issuer never publishes
PS256 = generate("PS256")
NOW = int(time.time())


@pytest.fixture(name="env")
async def _report_env() -> AsyncIterator[Env]:
    async with gateway_env(REPORT_CONFIG) as env:
        yield env


@dataclass(frozen=True)
class Shadowed:
    method: str
    target: str
    headers: Callable[[Env], dict[str, str]]
    route: str
    reason: str
    verified: bool  # the token was verified: its identity goes upstream


def _auth(value: str) -> Callable[[Env], dict[str, str]]:
    return lambda env: {"Authorization": value}


def _token(scopes: tuple[str, ...] = ("read:contacts",), **kwargs: object) -> Callable[[Env], dict[str, str]]:  # fmt: skip
    return lambda env: env.bearer(scopes, **kwargs)


SHADOWED = [
    pytest.param(Shadowed("GET", "/contacts", lambda env: {}, "list-contacts", "missing_token", False),
                 id="no token"),
    pytest.param(Shadowed("GET", "/contacts", _auth("Bearer a b"), "list-contacts", "invalid_request", False),
                 id="a token with a space"),
    pytest.param(Shadowed("GET", "/contacts", _auth("Bearer not-a-jwt"), "list-contacts", "malformed_token", False),
                 id="not a JWT"),
    pytest.param(Shadowed("GET", "/contacts", _token(lifetime=-3600), "list-contacts", "expired_token", False),
                 id="expired"),
    pytest.param(Shadowed("GET", "/contacts", _token(audience="https://other.example.com"), "list-contacts",
                          "invalid_audience", False), id="another audience"),
    pytest.param(Shadowed("GET", "/contacts", _token(issuer="https://evil.example.com/"), "list-contacts",
                          "invalid_issuer", False), id="an unknown issuer"),
    pytest.param(Shadowed("GET", "/contacts", _token(extra_claims={"nbf": NOW + 3600}), "list-contacts",
                          "not_yet_valid", False), id="not yet valid"),
    pytest.param(Shadowed("GET", "/contacts", _token(key=STRANGER), "list-contacts", "unknown_key", False),
                 id="a key the issuer never published"),
    pytest.param(Shadowed("GET", "/contacts", lambda env: env.bearer(key=STRANGER, headers={"kid": env.rsa.kid}),
                          "list-contacts", "bad_signature", False), id="a published kid, another key's signature"),
    pytest.param(Shadowed("GET", "/contacts", _token(key=PS256), "list-contacts", "disallowed_alg", False),
                 id="an algorithm the issuer does not allow"),
    pytest.param(Shadowed("GET", "/contacts", _token(extra_claims={"exp": None}), "list-contacts", "missing_claim",
                          False), id="no exp"),
    pytest.param(Shadowed("DELETE", "/contacts/7", _token(("read:contacts",)), "delete-contact",
                          "insufficient_scope", True), id="a verified token without the scope"),
]  # fmt: skip


@pytest.mark.parametrize("case", SHADOWED)
async def test_what_the_token_checks_would_deny_is_forwarded_and_counted_as_shadow(
    env: Env, case: Shadowed
) -> None:
    spoofed = {"X-Auth-Subject": "admin", "X-Auth-Scopes": "admin", "X_Auth_Tenant": "other"}
    answer = await exchange(env.port, request_bytes(case.method, case.target,
                                                    {**case.headers(env), **spoofed}))  # fmt: skip
    assert answer.status == 200
    assert answer.header("WWW-Authenticate") is None
    seen = env.upstream.last
    assert (seen.method, seen.target) == (case.method, case.target)
    assert "admin" not in (seen.header("X-Auth-Subject"), seen.header("X-Auth-Scopes"))
    assert seen.header("X-Auth-Tenant") != "other"
    if case.verified:
        assert seen.header("X-Auth-Subject") == "user-1"
        assert seen.header("X-Auth-Scopes") == "read:contacts"
    else:
        assert not set(IDENTITY) & seen.names
    labels = {"route": case.route, "reason": case.reason}
    assert env.sample("scopegate_shadow_denials_total", **labels) == 1
    assert env.sample("scopegate_denials_total", **labels) == 0


async def test_a_valid_token_on_a_report_only_route_is_a_plain_allow(env: Env) -> None:
    answer = await exchange(env.port, request_bytes("GET", "/contacts", env.bearer()))
    assert answer.status == 200
    assert env.upstream.last.header("X-Auth-Subject") == "user-1"
    families = {m.name for m in env.registry.collect()}
    assert "scopegate_shadow_denials" in families
    shadowed = [s for m in env.registry.collect() if m.name == "scopegate_shadow_denials"
                for s in m.samples if s.name.endswith("_total")]  # fmt: skip
    assert shadowed == []


@dataclass(frozen=True)
class Enforced:
    request: Callable[[Env], bytes]
    status: int
    reason: str
    route: str


ENFORCED = [
    pytest.param(Enforced(lambda env: request_bytes("GET", "/public/a%2Fb"), 400, "bad_path", "unmatched"),
                 id="bad path: 400"),
    pytest.param(Enforced(lambda env: request_bytes("GET", "/nowhere"), 404, "no_route", "unmatched"),
                 id="no route: 404"),
    pytest.param(Enforced(lambda env: request_bytes("PATCH", "/contacts"), 405, "method_not_allowed",
                          "unmatched"), id="wrong method: 405"),
    pytest.param(Enforced(lambda env: request_bytes("POST", "/small", body=b"x" * 11), 413, "body_too_large",
                          "small-body"), id="body over the route's limit: 413"),
    pytest.param(Enforced(lambda env: request_bytes("GET", "/contacts", {"X-Big": "x" * 20000}), 431,
                          "headers_too_large", "unmatched"), id="head over max_header_bytes: 431"),
    pytest.param(Enforced(lambda env: b"GET /contacts HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n"
                          b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, "invalid_request", "unmatched"),
                 id="smuggling framing: 400"),
    pytest.param(Enforced(lambda env: request_bytes("GET", "/strict"), 401, "missing_token", "strict"),
                 id="a route that says enforce: 401"),
]  # fmt: skip


@pytest.mark.parametrize("case", ENFORCED)
async def test_the_request_s_own_shape_is_enforced_on_report_only_routes(
    env: Env, case: Enforced
) -> None:
    answer = await exchange(env.port, case.request(env))
    assert answer.status == case.status
    assert env.upstream.received == []
    labels = {"route": case.route, "reason": case.reason}
    assert env.sample("scopegate_denials_total", **labels) == 1
    assert env.sample("scopegate_shadow_denials_total", **labels) == 0


async def test_the_access_log_says_shadow_deny_and_why(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    with log_lines(monkeypatch) as lines:
        await exchange(env.port, request_bytes("GET", "/contacts"))
        await exchange(env.port, request_bytes("GET", "/contacts", env.bearer()))
        await exchange(env.port, request_bytes("GET", "/strict"))
    requests = [line for line in lines if line.get("message") == "request"]
    assert [(r["path"], r["status"], r["decision"], r["reason"]) for r in requests] == [
        ("/contacts", 200, "shadow_deny", "missing_token"),
        ("/contacts", 200, "allow", None),
        ("/strict", 401, "deny", "missing_token"),
    ]


async def test_a_token_of_the_wrong_type_or_an_unreachable_issuer_is_shadowed_too() -> None:
    """invalid_token_type (the issuer requires `typ: at+jwt`) and issuer_unavailable (a second
    issuer whose keys cannot be fetched) are forwarded on a report-only route as well."""
    rsa = generate("RS256")
    down = "https://down.example/"
    async with RecordingUpstream() as upstream, JwksServer([rsa]) as jwks:
        text = base_config(jwks, upstream, REPORT_CONFIG).replace(
            "    algorithms: [RS256, ES256]\n",
            "    algorithms: [RS256, ES256]\n    token_type: at+jwt\n"
            f"  - issuer: {down}\n    jwks_uri: http://127.0.0.1:{closed_port()}/jwks\n"
            f"    audiences: [{AUDIENCE}]\n",
            1,
        )
        registry = CollectorRegistry()
        config = load_config_text(text, "report.yaml")
        async with RunningGateway.start(config, registry=registry, shutdown_grace=1) as gateway:
            for _ in range(200):  # the reachable issuer's keys; the other never gets any
                if gateway.runtime.key_stores[jwks.issuer].ready:
                    break
                await asyncio.sleep(0.01)
            plain_jwt = mint(rsa, issuer=jwks.issuer, audience=AUDIENCE)
            unreachable = mint(rsa, issuer=down, audience=AUDIENCE)
            for token in (plain_jwt, unreachable):
                headers = {"Authorization": f"Bearer {token}"}
                answer = await exchange(
                    gateway.public_port, request_bytes("GET", "/contacts", headers)
                )
                assert answer.status == 200
    assert len(upstream.received) == 2
    assert not {"x-auth-subject", "x-auth-scopes"} & upstream.received[-1].names
    for reason in ("invalid_token_type", "issuer_unavailable"):
        labels = {"route": "list-contacts", "reason": reason}
        assert registry.get_sample_value("scopegate_shadow_denials_total", labels) == 1
        assert (registry.get_sample_value("scopegate_denials_total", labels) or 0) == 0
