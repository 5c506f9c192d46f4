"""A DPoP proof passes once across workers and replicas (SPEC §6.4): when the rate limits' store
is Redis, every gateway sharing it remembers the proofs used, so a proof replayed at another
gateway is refused; without Redis each process remembers its own. Two real gateways on loopback
ports, a real `redis-server`, a recording upstream, proofs signed by real keys."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import aiohttp
import pytest
from prometheus_client import CollectorRegistry

from scopegate.app import RunningGateway
from scopegate.config.load import load_config_text
from scopegate.devtools.dpop import confirmation, make_proof
from scopegate.devtools.keys import SigningKey, generate
from scopegate.devtools.tokens import mint
from tests.e2e.conftest import AUDIENCE, wait_ready
from tests.support.jwks_server import JwksServer
from tests.support.redis import RedisServer
from tests.support.upstream import RecordingUpstream

CONFIG = """
listen: 127.0.0.1:0
admin_listen: 127.0.0.1:0
issuers:
  - issuer: {issuer}
    jwks_uri: {jwks_uri}
    audiences: [{audience}]
    algorithms: [RS256]
    dpop: allowed
upstreams:
  contacts: {upstream}
routes:
  - path: /contacts
    upstream: contacts
{rate_limits}"""

RATE_LIMITS = """rate_limits:
  store: {store}
  timeout: 0.3
  rules:
    - {{name: per-client, key: subject, limit: 1000, window: 60}}
"""


@asynccontextmanager
async def two_gateways(
    store: str | None,
) -> AsyncIterator[
    tuple[list[RunningGateway], RecordingUpstream, SigningKey, str, list[CollectorRegistry]]
]:
    key = generate("RS256")
    async with (
        RecordingUpstream() as upstream,
        JwksServer([key]) as jwks,
        AsyncExitStack() as stack,
    ):
        limits = "" if store is None else RATE_LIMITS.format(store=store)
        text = CONFIG.format(
            issuer=jwks.issuer, jwks_uri=jwks.jwks_uri, audience=AUDIENCE,
            upstream=upstream.url, rate_limits=limits,
        )  # fmt: skip
        gateways, registries = [], []
        for _ in range(2):
            registry = CollectorRegistry()
            config = load_config_text(text, "gateway.yaml")
            gateway = await stack.enter_async_context(
                RunningGateway.start(config, registry=registry, shutdown_grace=1.0)
            )
            await wait_ready(gateway)
            gateways.append(gateway)
            registries.append(registry)
        yield gateways, upstream, key, jwks.issuer, registries


async def _send(
    http: aiohttp.ClientSession, gateway: RunningGateway, token: str, proof: str
) -> int:
    # Both gateways are "https://api.example.com" to the client: the proof names one URL, as
    # it does behind a load balancer; here each gateway is called at its own loopback port and
    # its Host header says the public name.
    headers = {"Authorization": f"DPoP {token}", "DPoP": proof, "Host": "api.example.com"}
    url = f"http://127.0.0.1:{gateway.public_port}/contacts"
    async with http.get(url, headers=headers) as answer:
        await answer.read()
        return answer.status


def _token_and_proof(signing: SigningKey, issuer: str) -> tuple[str, str]:
    client = generate("ES256")
    token = mint(
        signing, issuer=issuer, audience=AUDIENCE, extra_claims={"cnf": confirmation(client)}
    )
    proof = make_proof(client, "GET", "http://api.example.com/contacts", access_token=token)
    return token, proof


async def test_a_proof_used_at_one_gateway_is_refused_at_the_other_through_redis() -> None:
    async with (
        RedisServer() as redis,
        two_gateways(redis.url) as (gateways, upstream, key, issuer, _),
    ):
        token, proof = _token_and_proof(key, issuer)
        async with aiohttp.ClientSession() as http:
            assert await _send(http, gateways[0], token, proof) == 200
            assert await _send(http, gateways[1], token, proof) == 401
            assert await _send(http, gateways[0], token, proof) == 401
        assert len(upstream.received) == 1
        remembered = await redis.command("KEYS", "scopegate:dpop:*")
        assert isinstance(remembered, list) and len(remembered) == 1
        assert isinstance(remembered[0], bytes)
        ttl = await redis.command("PTTL", remembered[0])
        assert isinstance(ttl, int) and 290_000 < ttl <= 300_000


async def test_without_redis_each_gateway_remembers_its_own_proofs() -> None:
    """What docs/tokens.md warns about: a proof replayed at another process passes once there."""
    async with two_gateways(None) as (gateways, upstream, key, issuer, _):
        token, proof = _token_and_proof(key, issuer)
        async with aiohttp.ClientSession() as http:
            assert await _send(http, gateways[0], token, proof) == 200
            assert await _send(http, gateways[0], token, proof) == 401
            assert await _send(http, gateways[1], token, proof) == 200
            assert await _send(http, gateways[1], token, proof) == 401
        assert len(upstream.received) == 2


@pytest.mark.slow
async def test_a_failing_redis_leaves_the_check_to_each_process_and_is_counted() -> None:
    async with (
        RedisServer() as redis,
        two_gateways(redis.url) as (gateways, upstream, key, issuer, registries),
    ):
        await redis.stop()
        token, proof = _token_and_proof(key, issuer)
        async with aiohttp.ClientSession() as http:
            errors = "scopegate_rate_limit_store_errors_total"
            assert await _send(http, gateways[0], token, proof) == 200
            # Two failed calls: the rate limit's count, then the proof's (allowed, remembered
            # in this process only).
            assert registries[0].get_sample_value(errors) == 2
            assert await _send(http, gateways[0], token, proof) == 401
            # One more, the rate limit's: the replay is refused by this process before Redis.
            assert registries[0].get_sample_value(errors) == 3
        assert len(upstream.received) == 1
