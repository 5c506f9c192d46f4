"""Every token kind a certified provider issues, through scopegate (SPEC §6.4): panva/oidc-provider
on loopback (`tests/support/oidc_provider.py`) issues opaque tokens it introspects and revokes,
DPoP-bound tokens, and tokens from a login with `acr`/`auth_time`, all from real grants; a real
gateway checks them in front of a recording upstream, which proves that nothing refused arrives.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import pytest
from prometheus_client import CollectorRegistry

from scopegate.app import RunningGateway
from scopegate.config.load import load_config_text
from scopegate.devtools.dpop import make_proof
from scopegate.devtools.keys import SigningKey, generate
from tests.e2e.conftest import wait_ready
from tests.support.oidc_provider import (
    INTROSPECTION_CLIENT,
    JWT_RESOURCE,
    OPAQUE_RESOURCE,
    SHORT_LIVED_RESOURCE,
    OidcProvider,
    running_provider,
)
from tests.support.upstream import RecordingUpstream

CONFIG = """
listen: 127.0.0.1:0
admin_listen: 127.0.0.1:0
issuers:
  - issuer: {issuer}
    audiences: [{jwt_resource}, {opaque_resource}, {short_lived}]
    algorithms: [RS256]
    leeway: 0
    introspection:
      client_id: {client_id}
      client_secret: ${{SCOPEGATE_PEER_INTROSPECTION_SECRET}}
      cache_ttl: {cache_ttl}
      negative_cache_ttl: 0
    dpop: allowed
upstreams:
  contacts: {upstream}
routes:
  - path: /contacts
    methods: [GET]
    upstream: contacts
    scopes: [read:contacts]
  - path: /contacts/{{id}}
    methods: [DELETE]
    upstream: contacts
    scopes: [delete:contacts]
  - path: /elsewhere
    upstream: contacts
    audience: https://another-api.example.com
  - path: /payments
    methods: [POST]
    upstream: contacts
    scopes: [read:contacts]
    acr_values: [mfa]
    max_age: 300
"""

DENIALS = "scopegate_denials_total"


@dataclass
class Peer:
    provider: OidcProvider
    gateway: RunningGateway
    upstream: RecordingUpstream
    http: aiohttp.ClientSession
    registry: CollectorRegistry

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.gateway.public_port}{path}"

    async def call(
        self, path: str, token: str, *, method: str = "GET", proof: str | None = None
    ) -> int:
        headers = {"Authorization": f"{'DPoP' if proof else 'Bearer'} {token}"}
        if proof is not None:
            headers["DPoP"] = proof
        async with self.http.request(method, self.url(path), headers=headers) as answer:
            await answer.read()
            return answer.status

    def proof(self, key: SigningKey, path: str, token: str, method: str = "GET") -> str:
        return make_proof(key, method, self.url(path), access_token=token)

    def denied(self, reason: str) -> float:
        return sum(
            sample.value
            for family in self.registry.collect()
            for sample in family.samples
            if sample.name == DENIALS and sample.labels.get("reason") == reason
        )


async def _peer(monkeypatch: pytest.MonkeyPatch, cache_ttl: float) -> AsyncIterator[Peer]:
    monkeypatch.setenv("SCOPEGATE_PEER_INTROSPECTION_SECRET", str(INTROSPECTION_CLIENT.secret))
    async with running_provider() as provider, RecordingUpstream() as upstream:
        text = CONFIG.format(
            issuer=provider.issuer, jwt_resource=JWT_RESOURCE, opaque_resource=OPAQUE_RESOURCE,
            short_lived=SHORT_LIVED_RESOURCE,
            client_id=INTROSPECTION_CLIENT.client_id, cache_ttl=cache_ttl, upstream=upstream.url,
        )  # fmt: skip
        registry = CollectorRegistry()
        config = load_config_text(text, "gateway.yaml")
        async with (
            RunningGateway.start(config, registry=registry, shutdown_grace=1.0) as gateway,
            aiohttp.ClientSession() as http,
        ):
            await wait_ready(gateway)
            yield Peer(provider, gateway, upstream, http, registry)


@pytest.fixture(name="peer")
async def _peer_fixture(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Peer]:
    async for peer in _peer(monkeypatch, cache_ttl=60):
        yield peer


@pytest.fixture(name="uncached_peer")
async def _uncached_peer(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Peer]:
    """Every opaque token is introspected on every request (`cache_ttl: 0`)."""
    async for peer in _peer(monkeypatch, cache_ttl=0):
        yield peer


# --- opaque tokens, introspected -------------------------------------------------------------


async def test_an_opaque_token_is_introspected_and_its_scopes_enforced(peer: Peer) -> None:
    token = await peer.provider.client_credentials("read:contacts", resource=OPAQUE_RESOURCE)
    assert "." not in token
    assert await peer.call("/contacts", token) == 200
    assert await peer.call("/contacts/7", token, method="DELETE") == 403
    assert len(peer.upstream.received) == 1
    assert peer.upstream.last.header("Authorization") == f"Bearer {token}"


async def test_a_revoked_opaque_token_is_refused(uncached_peer: Peer) -> None:
    peer = uncached_peer
    token = await peer.provider.client_credentials("read:contacts", resource=OPAQUE_RESOURCE)
    assert await peer.call("/contacts", token) == 200
    await peer.provider.revoke(token)
    assert await peer.call("/contacts", token) == 401
    assert peer.denied("inactive_token") == 1
    assert len(peer.upstream.received) == 1


async def test_a_revoked_token_answered_before_is_accepted_until_cache_ttl_ends(
    peer: Peer,
) -> None:
    """The documented trade-off of `cache_ttl`: an answer is reused for that long."""
    token = await peer.provider.client_credentials("read:contacts", resource=OPAQUE_RESOURCE)
    assert await peer.call("/contacts", token) == 200
    await peer.provider.revoke(token)
    assert await peer.call("/contacts", token) == 200


async def test_an_expired_opaque_token_is_refused_once_its_exp_has_passed(peer: Peer) -> None:
    """`cache_ttl` is 60 s but the token lives 2 s: its answer is not reused past `exp`, and
    the provider then calls it inactive."""
    token = await peer.provider.client_credentials("read:contacts", resource=SHORT_LIVED_RESOURCE)
    assert await peer.call("/contacts", token) == 200
    await asyncio.sleep(3.1)
    assert await peer.call("/contacts", token) == 401
    assert peer.denied("inactive_token") == 1
    assert len(peer.upstream.received) == 1


async def test_an_opaque_token_for_another_audience_is_refused(peer: Peer) -> None:
    token = await peer.provider.client_credentials("read:contacts", resource=OPAQUE_RESOURCE)
    assert await peer.call("/elsewhere", token) == 401
    assert peer.denied("invalid_audience") == 1
    assert peer.upstream.received == []


async def test_a_made_up_opaque_token_is_inactive(peer: Peer) -> None:
    assert await peer.call("/contacts", "made-up-opaque-token-that-nobody-issued") == 401
    assert peer.denied("inactive_token") == 1
    assert peer.upstream.received == []


async def test_a_jwt_of_the_provider_is_still_verified_locally(peer: Peer) -> None:
    token = await peer.provider.client_credentials("read:contacts", resource=JWT_RESOURCE)
    assert token.count(".") == 2
    assert await peer.call("/contacts", token) == 200


# --- DPoP ------------------------------------------------------------------------------------


@pytest.mark.parametrize("resource", [JWT_RESOURCE, OPAQUE_RESOURCE], ids=["JWT", "opaque"])
async def test_a_dpop_bound_token_with_its_proof_is_accepted_and_refused_otherwise(
    peer: Peer, resource: str
) -> None:
    key = generate("ES256")
    token = await peer.provider.client_credentials("read:contacts", resource=resource, dpop_key=key)
    assert token.token_type == "DPoP"
    proof = peer.proof(key, "/contacts", token)
    assert await peer.call("/contacts", token, proof=proof) == 200
    assert await peer.call("/contacts", token, proof=proof) == 401  # replayed
    other_method = peer.proof(key, "/contacts", token, method="POST")
    assert await peer.call("/contacts", token, proof=other_method) == 401
    other_url = peer.proof(key, "/contacts/1", token)
    assert await peer.call("/contacts", token, proof=other_url) == 401
    other_token = await peer.provider.client_credentials(
        "read:contacts", resource=resource, dpop_key=key
    )
    assert (
        await peer.call("/contacts", token, proof=peer.proof(key, "/contacts", other_token)) == 401
    )
    assert peer.denied("invalid_dpop_proof") == 4
    stranger = generate("ES256")
    assert (
        await peer.call("/contacts", token, proof=peer.proof(stranger, "/contacts", token)) == 401
    )
    assert await peer.call("/contacts", token) == 401  # the bound token as Bearer
    assert peer.denied("token_binding_mismatch") == 2
    assert len(peer.upstream.received) == 1
    assert peer.upstream.last.header("Authorization") == f"DPoP {token}"


# --- step-up ---------------------------------------------------------------------------------


async def test_step_up_is_met_by_a_recent_mfa_login_only(peer: Peer) -> None:
    mfa = await peer.provider.authorization_code("read:contacts", resource=JWT_RESOURCE, acr="mfa")
    assert await peer.call("/payments", mfa, method="POST") == 200
    password = await peer.provider.authorization_code(
        "read:contacts", resource=JWT_RESOURCE, acr="pwd"
    )
    assert await peer.call("/payments", password, method="POST") == 401
    assert await peer.call("/contacts", password) == 200  # no step-up there
    old = await peer.provider.authorization_code(
        "read:contacts", resource=JWT_RESOURCE, acr="mfa", auth_time=int(time.time()) - 3600
    )
    assert await peer.call("/payments", old, method="POST") == 401
    assert peer.denied("insufficient_user_authentication") == 2
    assert len(peer.upstream.received) == 2


async def test_step_up_reads_an_opaque_tokens_introspection(peer: Peer) -> None:
    mfa = await peer.provider.authorization_code(
        "read:contacts", resource=OPAQUE_RESOURCE, acr="mfa"
    )
    assert "." not in mfa
    assert await peer.call("/payments", mfa, method="POST") == 200
    password = await peer.provider.authorization_code(
        "read:contacts", resource=OPAQUE_RESOURCE, acr="pwd"
    )
    assert await peer.call("/payments", password, method="POST") == 401
    assert len(peer.upstream.received) == 1


async def test_the_step_up_challenge_says_what_would_be_met(peer: Peer) -> None:
    token = await peer.provider.authorization_code(
        "read:contacts", resource=JWT_RESOURCE, acr="pwd"
    )
    headers = {"Authorization": f"Bearer {token}"}
    async with peer.http.post(peer.url("/payments"), headers=headers) as answer:
        assert answer.status == 401
        challenges = answer.headers.getall("WWW-Authenticate")
    assert challenges[0].startswith(
        'Bearer realm="scopegate", error="insufficient_user_authentication"'
    )
    assert challenges[0].endswith('acr_values="mfa", max_age="300"')
    assert challenges[1].startswith("DPoP algs=")
