"""What panva/oidc-provider, run by tests/support/oidc_provider.py, really issues: opaque and JWT
access tokens, DPoP-bound or not, by client credentials and by authorization code with a chosen
acr and auth time, and what its introspection and revocation endpoints answer. Real provider,
real HTTP; no gateway. The gateway's own tests rely on every promise checked here."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import jwt
import pytest

from scopegate.devtools.dpop import confirmation, make_proof
from scopegate.devtools.keys import generate
from tests.support.oidc_provider import (
    ACCOUNT,
    INTROSPECTION_CLIENT,
    INTROSPECTION_POST_CLIENT,
    INTROSPECTION_SECRET,
    JWT_KID,
    JWT_RESOURCE,
    MACHINE_CLIENT,
    OPAQUE_RESOURCE,
    TOKEN_TTL,
    WEB_CLIENT,
    Client,
    IssuedToken,
    OidcProvider,
    ProviderError,
    running_provider,
)

WITHIN = 30  # seconds any one test may take


@pytest.fixture(name="op")
async def _op() -> AsyncIterator[OidcProvider]:
    async with running_provider() as provider:
        yield provider


async def claims_of(op: OidcProvider, token: IssuedToken, resource: str) -> dict[str, Any]:
    """What a resource server learns of `token`: the verified JWT payload, or the provider's
    introspection answer for an opaque token."""
    if resource == OPAQUE_RESOURCE:
        return await op.introspect(token)
    return await op.jwt_claims(token, audience=resource)


async def test_discovery_names_the_endpoints_a_gateway_needs(op: OidcProvider) -> None:
    async with asyncio.timeout(WITHIN):
        assert op.issuer.startswith("http://127.0.0.1:")
        assert op.discovery["issuer"] == op.issuer
        assert op.introspection_endpoint == f"{op.issuer}/token/introspection"
        assert op.revocation_endpoint == f"{op.issuer}/token/revocation"
        assert op.jwks_uri == f"{op.issuer}/jwks"
        assert (op.introspection_client_id, op.introspection_client_secret) == (
            "scopegate",
            "loopback-only-introspection-secret",
        )
        keys = (await op.jwks())["keys"]
        assert [(key["kid"], key["alg"], key["kty"]) for key in keys] == [(JWT_KID, "RS256", "RSA")]
        assert "ES256" in op.discovery["dpop_signing_alg_values_supported"]


async def test_an_opaque_token_is_no_jwt_and_introspects_active(op: OidcProvider) -> None:
    async with asyncio.timeout(WITHIN):
        token = await op.client_credentials(
            "read:contacts create:contacts", resource=OPAQUE_RESOURCE
        )
        assert "." not in token
        assert len(token) >= 32
        assert (token.token_type, token.scope, token.expires_in) == (
            "Bearer",
            "read:contacts create:contacts",
            TOKEN_TTL,
        )

        answer = await op.introspect(token)
        assert answer == {
            "active": True,
            "client_id": MACHINE_CLIENT.client_id,
            "exp": answer["iat"] + TOKEN_TTL,
            "iat": answer["iat"],
            "iss": op.issuer,
            "aud": OPAQUE_RESOURCE,
            "scope": "read:contacts create:contacts",
            "token_type": "Bearer",
        }
        assert abs(answer["iat"] - time.time()) < 10


async def test_a_revoked_opaque_token_introspects_inactive(op: OidcProvider) -> None:
    async with asyncio.timeout(WITHIN):
        token = await op.client_credentials("read:contacts", resource=OPAQUE_RESOURCE)
        assert (await op.introspect(token))["active"] is True
        await op.revoke(token)
        assert await op.introspect(token) == {"active": False}
        assert await op.introspect(token, client=INTROSPECTION_POST_CLIENT) == {"active": False}


async def test_an_unknown_opaque_token_introspects_inactive(op: OidcProvider) -> None:
    async with asyncio.timeout(WITHIN):
        assert await op.introspect("x" * 43) == {"active": False}


async def test_a_token_for_the_jwt_resource_is_an_at_jwt(op: OidcProvider) -> None:
    async with asyncio.timeout(WITHIN):
        token = await op.client_credentials("read:contacts", resource=JWT_RESOURCE)
        assert token.count(".") == 2
        assert token.token_type == "Bearer"
        assert jwt.get_unverified_header(token) == {"alg": "RS256", "typ": "at+jwt", "kid": JWT_KID}
        claims = await op.jwt_claims(token)
        assert claims["aud"] == JWT_RESOURCE
        assert claims["sub"] == claims["client_id"] == MACHINE_CLIENT.client_id
        assert claims["scope"] == "read:contacts"
        assert claims["exp"] - claims["iat"] == TOKEN_TTL
        assert {"jti", "iss"} <= claims.keys()
        assert not {"cnf", "acr", "amr", "auth_time"} & claims.keys()

        with pytest.raises(ProviderError) as refused:
            await op.introspect(token)
        assert refused.value.status == 400
        assert refused.value.body["error"] == "unsupported_token_type"


@pytest.mark.parametrize("alg", ["ES256", "EdDSA", "RS256"])
async def test_a_dpop_bound_jwt_carries_the_proof_key_thumbprint(
    op: OidcProvider, alg: str
) -> None:
    async with asyncio.timeout(WITHIN):
        key = generate(alg)
        token = await op.client_credentials("read:contacts", resource=JWT_RESOURCE, dpop_key=key)
        assert token.token_type == "DPoP"
        claims = await op.jwt_claims(token)
        assert claims["cnf"] == {"jkt": confirmation(key)["jkt"]}


async def test_a_dpop_bound_opaque_token_introspects_with_the_thumbprint(op: OidcProvider) -> None:
    async with asyncio.timeout(WITHIN):
        key = generate("ES256")
        token = await op.client_credentials("read:contacts", resource=OPAQUE_RESOURCE, dpop_key=key)
        assert token.token_type == "DPoP"
        answer = await op.introspect(token)
        assert answer["active"] is True
        assert answer["token_type"] == "DPoP"
        assert answer["cnf"] == confirmation(key)
        assert answer["aud"] == OPAQUE_RESOURCE


async def test_dpop_proofs_need_no_nonce_and_may_not_carry_one(op: OidcProvider) -> None:
    key = generate("ES256")
    form = {"grant_type": "client_credentials", "scope": "read:contacts", "resource": JWT_RESOURCE}
    basic = aiohttp.encode_basic_auth(MACHINE_CLIENT.client_id, MACHINE_CLIENT.secret or "")

    async def token_request(proof: str) -> tuple[int, dict[str, Any], str | None]:
        headers = {"Authorization": basic, "DPoP": proof}
        async with (
            aiohttp.ClientSession() as http,
            http.post(op.token_endpoint, data=form, headers=headers) as response,
        ):
            return response.status, await response.json(), response.headers.get("DPoP-Nonce")

    async with asyncio.timeout(WITHIN):
        status, body, nonce = await token_request(make_proof(key, "POST", op.token_endpoint))
        assert (status, body["token_type"], nonce) == (200, "DPoP", None)

        with_nonce = make_proof(key, "POST", op.token_endpoint, nonce="n-1")
        status, body, nonce = await token_request(with_nonce)
        assert (status, body["error"], nonce) == (400, "invalid_dpop_proof", None)

        stale = make_proof(key, "POST", op.token_endpoint, iat=time.time() - 600)
        status, body, _ = await token_request(stale)
        assert (status, body["error"]) == (400, "invalid_dpop_proof")


@pytest.mark.parametrize("resource", [JWT_RESOURCE, OPAQUE_RESOURCE])
async def test_a_step_up_login_gives_its_acr_and_auth_time(op: OidcProvider, resource: str) -> None:
    async with asyncio.timeout(WITHIN):
        logged_in = int(time.time()) - 3600
        token = await op.authorization_code(
            "read:contacts delete:contacts", resource=resource, acr="mfa", auth_time=logged_in
        )
        assert token.token_type == "Bearer"
        assert token.scope == "read:contacts delete:contacts"  # without `openid`
        claims = await claims_of(op, token, resource)
        assert claims["acr"] == "mfa"
        assert claims["amr"] == ["pwd", "otp"]
        assert claims["auth_time"] == logged_in
        assert claims["sub"] == ACCOUNT
        assert claims["client_id"] == WEB_CLIENT.client_id
        assert claims["aud"] == resource
        assert claims["scope"] == "read:contacts delete:contacts"
        assert abs(claims["iat"] - time.time()) < 10


@pytest.mark.parametrize("resource", [JWT_RESOURCE, OPAQUE_RESOURCE])
async def test_a_plain_login_is_pwd_and_now(op: OidcProvider, resource: str) -> None:
    async with asyncio.timeout(WITHIN):
        before = int(time.time())
        token = await op.authorization_code("read:contacts", resource=resource)
        claims = await claims_of(op, token, resource)
        assert (claims["acr"], claims["amr"]) == ("pwd", ["pwd"])
        assert before <= claims["auth_time"] <= time.time() + 1
        assert "cnf" not in claims


async def test_each_authorization_is_a_login_of_its_own(op: OidcProvider) -> None:
    async with asyncio.timeout(WITHIN):
        first = await op.authorization_code("read:contacts", resource=JWT_RESOURCE, acr="mfa")
        second = await op.authorization_code("read:contacts", resource=JWT_RESOURCE, acr="pwd")
        assert (await op.jwt_claims(first))["acr"] == "mfa"
        assert (await op.jwt_claims(second))["acr"] == "pwd"


@pytest.mark.parametrize("resource", [JWT_RESOURCE, OPAQUE_RESOURCE])
async def test_a_code_exchanged_with_a_dpop_proof_gives_a_bound_token(
    op: OidcProvider, resource: str
) -> None:
    async with asyncio.timeout(WITHIN):
        key = generate("ES256")
        token = await op.authorization_code(
            "read:contacts", resource=resource, acr="mfa", dpop_key=key
        )
        assert token.token_type == "DPoP"
        claims = await claims_of(op, token, resource)
        assert claims["cnf"] == confirmation(key)
        assert claims["acr"] == "mfa"


async def test_client_secret_post_introspection_sees_the_same(op: OidcProvider) -> None:
    async with asyncio.timeout(WITHIN):
        machine = await op.client_credentials("read:contacts", resource=OPAQUE_RESOURCE)
        web = await op.authorization_code("read:contacts", resource=OPAQUE_RESOURCE, acr="mfa")
        for token in (machine, web):
            by_post = await op.introspect(token, client=INTROSPECTION_POST_CLIENT)
            assert by_post["active"] is True
            assert by_post == await op.introspect(token, client=INTROSPECTION_CLIENT)
        assert (await op.introspect(web, client=INTROSPECTION_POST_CLIENT))["acr"] == "mfa"


@pytest.mark.parametrize(
    "client",
    [
        Client(INTROSPECTION_CLIENT.client_id, "wrong-secret", "client_secret_basic"),
        Client(INTROSPECTION_POST_CLIENT.client_id, "wrong-secret", "client_secret_post"),
        Client("scopegate-unknown", INTROSPECTION_SECRET, "client_secret_basic"),
    ],
    ids=["basic", "post", "unknown-client"],
)
async def test_wrong_introspection_credentials_are_refused(
    op: OidcProvider, client: Client
) -> None:
    async with asyncio.timeout(WITHIN):
        token = await op.client_credentials("read:contacts", resource=OPAQUE_RESOURCE)
        with pytest.raises(ProviderError) as refused:
            await op.introspect(token, client=client)
        assert refused.value.status == 401
        assert refused.value.body["error"] == "invalid_client"


async def test_either_secret_method_serves_either_gateway_client(op: OidcProvider) -> None:
    """oidc-provider takes client_secret_basic and client_secret_post alike from a client
    registered with either one: it cannot tell a gateway that sends the wrong one."""
    async with asyncio.timeout(WITHIN):
        token = await op.client_credentials("read:contacts", resource=OPAQUE_RESOURCE)
        for registered in (INTROSPECTION_CLIENT, INTROSPECTION_POST_CLIENT):
            for method in ("client_secret_basic", "client_secret_post"):
                client = Client(registered.client_id, INTROSPECTION_SECRET, method)
                assert (await op.introspect(token, client=client))["active"] is True


async def test_only_the_gateway_clients_see_other_clients_tokens(op: OidcProvider) -> None:
    async with asyncio.timeout(WITHIN):
        web = await op.authorization_code("read:contacts", resource=OPAQUE_RESOURCE)
        machine = await op.client_credentials("read:contacts", resource=OPAQUE_RESOURCE)
        assert await op.introspect(web, client=MACHINE_CLIENT) == {"active": False}
        assert (await op.introspect(machine, client=MACHINE_CLIENT))["active"] is True


async def test_the_provider_prints_nothing_but_its_first_line(op: OidcProvider) -> None:
    async with asyncio.timeout(WITHIN):
        key = generate("ES256")
        machine = await op.client_credentials(
            "read:contacts", resource=OPAQUE_RESOURCE, dpop_key=key
        )
        await op.authorization_code("read:contacts", resource=JWT_RESOURCE, acr="mfa", dpop_key=key)
        await op.introspect(machine)
        await op.revoke(machine)
        with pytest.raises(ProviderError):
            await op.authorization_code("read:contacts", resource="not a url")
        await asyncio.sleep(0.2)  # let anything it printed arrive
        assert op.stdout == []
