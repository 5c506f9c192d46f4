"""scopegate against an OpenID Connect provider nobody on the team wrote: panva/oidc-provider
(OpenID certified), run on loopback, issuing RFC 9068 JWT access tokens by client credentials
with resource indicators. Its keys are found by discovery; its tokens are accepted for their
scopes and refused otherwise."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from scopegate.app import RunningGateway
from scopegate.config.load import load_config_text
from tests.e2e.conftest import wait_ready
from tests.support.oidc_provider import running_provider
from tests.support.rawhttp import exchange, request_bytes
from tests.support.upstream import RecordingUpstream

RESOURCE = "https://contacts.example.com"
CLIENT = ("scopegate-tests", "loopback-only-test-secret")

CONFIG = """
listen: 127.0.0.1:0
admin_listen: 127.0.0.1:0
issuers:
  - issuer: {issuer}
    audiences: [{resource}]
    algorithms: [RS256]
    token_type: at+jwt
    required_claims: [exp, iat, jti, client_id]
upstreams:
  contacts: {upstream}
forward:
  claims_to_headers: {{sub: X-Auth-Subject, client_id: X-Auth-Client}}
routes:
  - path: /contacts
    methods: [GET]
    upstream: contacts
    scopes: [read:contacts]
  - path: /contacts/{{id}}
    methods: [DELETE]
    upstream: contacts
    scopes: [delete:contacts]
"""


@pytest.fixture(name="provider")
async def _provider() -> AsyncIterator[str]:
    async with running_provider(RESOURCE) as provider:
        yield provider.issuer


def _client_auth() -> dict[str, str]:
    import base64

    credentials = base64.b64encode(f"{CLIENT[0]}:{CLIENT[1]}".encode()).decode()
    return {"Authorization": f"Basic {credentials}"}


async def _token(issuer: str, scope: str, resource: str = RESOURCE) -> str:
    form = {"grant_type": "client_credentials", "scope": scope, "resource": resource}
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{issuer}/token", data=form, headers=_client_auth()) as response,
    ):
        body = await response.json()
    assert response.status == 200, body
    return str(body["access_token"])


async def test_tokens_of_a_certified_provider_are_enforced_by_scope(provider: str) -> None:
    async with RecordingUpstream() as upstream:
        config = load_config_text(
            CONFIG.format(issuer=provider, resource=RESOURCE, upstream=upstream.url), "peer.yaml"
        )
        async with RunningGateway.start(config, shutdown_grace=1) as gateway:
            await wait_ready(gateway)
            port = gateway.public_port
            reader = {"Authorization": f"Bearer {await _token(provider, 'read:contacts')}"}
            deleter = {"Authorization": f"Bearer {await _token(provider, 'delete:contacts')}"}
            other_api = await _token(provider, "read:contacts", "https://billing.example.com")

            allowed = await exchange(port, request_bytes("GET", "/contacts", reader))
            assert allowed.status == 200
            assert upstream.last.header("X-Auth-Client") == "scopegate-tests"
            assert upstream.last.header("X-Auth-Scopes") == "read:contacts"

            refused = await exchange(port, request_bytes("DELETE", "/contacts/1", reader))
            assert refused.status == 403
            assert 'scope="delete:contacts"' in (refused.header("WWW-Authenticate") or "")

            deleted = await exchange(port, request_bytes("DELETE", "/contacts/1", deleter))
            assert deleted.status == 200

            wrong_audience = await exchange(
                port, request_bytes("GET", "/contacts", {"Authorization": f"Bearer {other_api}"})
            )
            assert wrong_audience.status == 401
            assert 'error="invalid_token"' in (wrong_audience.header("WWW-Authenticate") or "")
            assert len(upstream.received) == 2
