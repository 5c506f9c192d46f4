"""The admin port and the key lifecycle as an operator sees them: readiness, 503 while an issuer
has no keys, and metrics that move by exactly what happened."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

from prometheus_client import CollectorRegistry

from scopegate.app import RunningGateway
from scopegate.config.load import load_config_text
from scopegate.devtools.keys import generate
from scopegate.devtools.tokens import mint
from tests.e2e.conftest import AUDIENCE, Env, base_config
from tests.support.jwks_server import JwksServer
from tests.support.rawhttp import exchange, request_bytes
from tests.support.upstream import RecordingUpstream


async def test_an_issuer_down_at_start_gives_503_then_recovers() -> None:
    """`serve` starts with the provider down: not ready, tokens answered 503 with Retry-After
    and no challenge, nothing forwarded; once the provider answers, ready and 200."""
    key = generate("RS256")
    async with RecordingUpstream() as upstream, JwksServer([key]) as jwks:
        jwks.mode = "down"
        text = base_config(jwks, upstream)
        config = load_config_text(text, "gateway.yaml")
        registry = CollectorRegistry()
        async with RunningGateway.start(config, registry=registry, shutdown_grace=1) as gateway:
            admin = gateway.admin_port
            ready = await exchange(admin, request_bytes("GET", "/readyz"))
            assert ready.status == 503
            assert "no signing keys yet" in ready.json()["reasons"][0]
            healthy = await exchange(admin, request_bytes("GET", "/healthz"))
            assert healthy.status == 200
            token = mint(key, issuer=jwks.issuer, audience=AUDIENCE)
            answer = await exchange(
                gateway.public_port,
                request_bytes("GET", "/contacts", {"Authorization": f"Bearer {token}"}),
            )
            assert answer.status == 503
            assert answer.header("Retry-After") is not None
            assert answer.header("WWW-Authenticate") is None
            assert upstream.received == []
            failed = registry.get_sample_value(
                "scopegate_jwks_fetches_total", {"issuer": jwks.issuer, "result": "error"}
            )
            assert failed is not None and failed >= 1

            jwks.mode = "ok"
            async with asyncio.timeout(10):
                while (await exchange(admin, request_bytes("GET", "/readyz"))).status != 200:
                    await asyncio.sleep(0.2)
            answer = await exchange(
                gateway.public_port,
                request_bytes("GET", "/contacts", {"Authorization": f"Bearer {token}"}),
            )
            assert answer.status == 200
            assert registry.get_sample_value("scopegate_jwks_keys", {"issuer": jwks.issuer}) == 1


async def test_counters_move_by_exactly_the_requests_made(env: Env) -> None:
    for _ in range(3):
        await exchange(env.port, request_bytes("GET", "/contacts", env.bearer()))
    for _ in range(2):
        await exchange(env.port, request_bytes("GET", "/contacts"))
    await exchange(env.port, request_bytes("GET", "/nowhere"))
    assert (
        env.sample("scopegate_requests_total", route="list-contacts", method="GET", code="200") == 3
    )
    assert (
        env.sample("scopegate_requests_total", route="list-contacts", method="GET", code="401") == 2
    )
    assert env.sample("scopegate_requests_total", route="unmatched", method="GET", code="404") == 1
    assert env.sample("scopegate_denials_total", route="list-contacts", reason="missing_token") == 2
    assert env.sample("scopegate_denials_total", route="unmatched", reason="no_route") == 1
    assert env.sample("scopegate_request_duration_seconds_count", route="list-contacts") == 5
    assert env.sample("scopegate_upstream_duration_seconds_count", upstream="contacts") == 3
    assert env.sample("scopegate_build_info", version="0.1.0") == 1


async def test_metrics_are_served_on_the_admin_port_only(env: Env) -> None:
    metrics = await exchange(env.gateway.admin_port, request_bytes("GET", "/metrics"))
    assert metrics.status == 200
    assert b"scopegate_build_info" in metrics.body
    public = await exchange(env.port, request_bytes("GET", "/metrics"))
    assert public.status == 404
    assert env.upstream.received == []


async def test_a_reload_that_keeps_the_key_source_fetches_nothing(env: Env) -> None:
    """Changing audiences, leeway or routes keeps the issuer's keys: no fetch, still ready."""
    from dataclasses import replace

    config = env.gateway.runtime.config
    issuer = replace(config.issuers[0], audiences=("https://other.example.com",), leeway=5)
    fetched = env.jwks.count()
    await env.gateway.reload(replace(config, issuers=(issuer,)))
    assert env.jwks.count() == fetched
    assert env.gateway.runtime.not_ready() == []
    token = env.token(audience="https://other.example.com")
    answer = await exchange(
        env.port, request_bytes("GET", "/contacts", {"Authorization": f"Bearer {token}"})
    )
    assert answer.status == 200


async def test_a_reload_of_routes_only_keeps_verified_tokens(env: Env) -> None:
    """Nothing about verification changed, so no client's token needs verifying again."""
    from dataclasses import replace

    headers = env.bearer()
    first = await exchange(env.port, request_bytes("GET", "/contacts", headers))
    assert first.status == 200 and env.gateway.runtime.verifier.remembered == 1
    config = env.gateway.runtime.config
    await env.gateway.reload(replace(config, routes=config.routes[:-1]))
    assert env.gateway.runtime.verifier.remembered == 1
    again = await exchange(env.port, request_bytes("GET", "/contacts", headers))
    assert again.status == 200


async def test_a_reload_that_changes_the_checks_forgets_verified_tokens(env: Env) -> None:
    """A token cached under the old audiences is checked anew under the new ones, and refused."""
    from dataclasses import replace

    headers = env.bearer()
    first = await exchange(env.port, request_bytes("GET", "/contacts", headers))
    assert first.status == 200
    config = env.gateway.runtime.config
    issuer = replace(config.issuers[0], audiences=("https://other.example.com",))
    await env.gateway.reload(replace(config, issuers=(issuer,)))
    assert env.gateway.runtime.verifier.remembered == 0
    received = len(env.upstream.received)
    again = await exchange(env.port, request_bytes("GET", "/contacts", headers))
    assert again.status == 401
    assert "(aud)" in str(again.header("WWW-Authenticate"))
    assert len(env.upstream.received) == received


async def test_a_denial_passes_through_a_context_manager_unharmed() -> None:
    """contextlib sets __traceback__ on exceptions leaving a context manager."""
    import contextlib

    from scopegate.reasons import Denied, Reason

    @contextlib.contextmanager
    def scope() -> Iterator[None]:
        yield

    try:
        with scope():
            raise Denied(Reason.EXPIRED_TOKEN, "expired")
    except Denied as denied:
        assert denied.reason is Reason.EXPIRED_TOKEN
