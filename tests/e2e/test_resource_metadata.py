"""RFC 9728 protected resource metadata (SPEC §6.6): the document on the public port, the
`resource_metadata` parameter of every 401 challenge, and the discovery an MCP-style client
makes from a bare 401 to a token, against a certified provider (oidc-provider)."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator

import aiohttp
import pytest

from scopegate.app import RunningGateway
from scopegate.config.load import load_config_text
from tests.e2e.conftest import AUDIENCE, BASE_CONFIG, Env, closed_port, gateway_env, wait_ready
from tests.e2e.test_oidc_provider import CONFIG as PROVIDER_CONFIG
from tests.e2e.test_oidc_provider import RESOURCE, _client_auth
from tests.e2e.test_oidc_provider import _provider as _provider  # the `provider` fixture
from tests.support.rawhttp import exchange, request_bytes
from tests.support.upstream import RecordingUpstream

WELL_KNOWN = "/.well-known/oauth-protected-resource"
PUBLIC_URL = "https://api.example.com"
METADATA_CONFIG = BASE_CONFIG.replace(
    "routes:\n",
    f"resource_metadata:\n  public_url: {PUBLIC_URL}/\n"
    "  documentation: https://docs.example.com/contacts\nroutes:\n",
    1,
)
CHALLENGE_URL = re.compile(r'resource_metadata="([^"]+)"')


@pytest.fixture(name="env")
async def _metadata_env() -> AsyncIterator[Env]:
    async with gateway_env(METADATA_CONFIG) as env:
        yield env


async def test_the_document_names_the_resource_its_issuers_and_scopes(env: Env) -> None:
    answer = await exchange(env.port, request_bytes("GET", WELL_KNOWN))
    assert answer.status == 200
    assert answer.header("Content-Type") == "application/json"
    assert answer.header("Access-Control-Allow-Origin") == "*"
    assert answer.json() == {
        "resource": AUDIENCE,
        "authorization_servers": [env.issuer],
        "scopes_supported": ["admin", "create:contacts", "delete:contacts", "read:contacts"],
        "bearer_methods_supported": ["header"],
        "dpop_bound_access_tokens_required": False,
        "resource_documentation": "https://docs.example.com/contacts",
    }
    head = await exchange(env.port, request_bytes("HEAD", WELL_KNOWN))
    assert (head.status, head.body) == (200, b"")
    refused = await exchange(env.port, request_bytes("POST", WELL_KNOWN))
    assert refused.status == 405
    assert refused.header("Allow") == "GET, HEAD"
    assert env.upstream.received == []
    assert env.sample("scopegate_requests_total", route="(resource metadata)", method="GET",
                      code="200") == 1  # fmt: skip


async def test_every_401_challenge_names_the_document_and_no_other_answer_does(env: Env) -> None:
    url = f"{PUBLIC_URL}{WELL_KNOWN}"
    unauthenticated = await exchange(env.port, request_bytes("GET", "/contacts"))
    assert unauthenticated.status == 401
    assert unauthenticated.header("WWW-Authenticate") == (
        f'Bearer realm="scopegate", resource_metadata="{url}"'
    )
    expired = await exchange(env.port, request_bytes("GET", "/contacts",
                                                     env.bearer(lifetime=-3600)))  # fmt: skip
    assert expired.status == 401
    assert CHALLENGE_URL.findall(expired.header("WWW-Authenticate") or "") == [url]
    insufficient = await exchange(env.port, request_bytes("DELETE", "/contacts/1", env.bearer()))
    assert insufficient.status == 403
    assert "resource_metadata" not in (insufficient.header("WWW-Authenticate") or "")
    assert env.upstream.received == []


async def test_without_resource_metadata_the_path_is_an_ordinary_one(env_plain: Env) -> None:
    answer = await exchange(env_plain.port, request_bytes("GET", WELL_KNOWN))
    assert answer.status == 404
    challenged = await exchange(env_plain.port, request_bytes("GET", "/contacts"))
    assert "resource_metadata" not in (challenged.header("WWW-Authenticate") or "")


@pytest.fixture(name="env_plain")
async def _plain_env() -> AsyncIterator[Env]:
    async with gateway_env() as env:
        yield env


async def test_an_mcp_style_client_finds_its_way_from_a_bare_401_to_an_answer(
    provider: str,
) -> None:
    """The client knows only the resource's URL: the 401 names the metadata, the metadata the
    authorization server, the server's discovery document its token endpoint; the token it
    gets there (for the resource, RFC 8707) is accepted on the retried request."""
    port = closed_port()
    public_url = f"http://127.0.0.1:{port}"
    text = PROVIDER_CONFIG.replace("listen: 127.0.0.1:0\n", f"listen: 127.0.0.1:{port}\n", 1)
    text = text.replace("routes:\n", f"resource_metadata:\n  public_url: {public_url}\nroutes:\n")
    async with RecordingUpstream() as upstream:
        config = load_config_text(text.format(issuer=provider, resource=RESOURCE,
                                              upstream=upstream.url), "mcp.yaml")  # fmt: skip
        async with (
            RunningGateway.start(config, shutdown_grace=1) as gateway,
            aiohttp.ClientSession() as http,
        ):
            await wait_ready(gateway)
            async with http.get(f"{public_url}/contacts") as first:
                assert first.status == 401
                challenge = first.headers["WWW-Authenticate"]
            [metadata_url] = CHALLENGE_URL.findall(challenge)
            async with http.get(metadata_url) as answer:
                metadata = await answer.json()
            assert metadata["resource"] == RESOURCE
            [server] = metadata["authorization_servers"]
            async with http.get(f"{server}/.well-known/openid-configuration") as answer:
                discovery = json.loads(await answer.text())
            form = {"grant_type": "client_credentials", "resource": metadata["resource"],
                    "scope": " ".join(metadata["scopes_supported"])}  # fmt: skip
            async with http.post(discovery["token_endpoint"], data=form,
                                 headers=_client_auth()) as answer:  # fmt: skip
                grant = await answer.json()
                assert answer.status == 200, grant
            bearer = {"Authorization": f"Bearer {grant['access_token']}"}
            async with http.get(f"{public_url}/contacts", headers=bearer) as retried:
                assert retried.status == 200
    assert [seen.target for seen in upstream.received] == ["/contacts"]
