"""Spoofed identity and forwarding headers never pass; hop-by-hop headers go no further."""

from __future__ import annotations

from tests.e2e.conftest import Env
from tests.support.rawhttp import exchange, request_bytes

SPOOFED = {
    "X-Auth-Subject": "admin",
    "X_Auth_Subject": "admin",
    "x-auth-client": "trusted-client",
    "X-Auth-Scopes": "admin delete:contacts",
    "X_AUTH_SCOPES": "admin",
    "X-Auth-Tenant": "other-tenant",
    "Forwarded": "for=10.0.0.1;host=internal",
    "X-Real-IP": "10.0.0.1",
    "X-Forwarded-Host": "internal.example",
    "X-Forwarded-Proto": "https",
    "X-Forwarded-Port": "443",
    "X-Forwarded-Prefix": "/admin",
    "X-Original-URL": "/admin",
    "X-Rewrite-URL": "/admin",
    "X-HTTP-Method-Override": "DELETE",
    "X-HTTP-Method": "DELETE",
    "X-Method-Override": "DELETE",
}

NEVER_FORWARDED = {name.lower() for name in SPOOFED} - {
    "x-auth-subject", "x-auth-scopes", "x-forwarded-host", "x-forwarded-proto",
}  # fmt: skip


async def test_spoofed_identity_headers_are_replaced_on_protected_routes(env: Env) -> None:
    """Every client copy of an identity header is removed, in any spelling, before the token's
    own values are set."""
    headers = env.bearer(("read:contacts",), extra_claims={"azp": "app-1", "meta": {"tenant": 7}})
    answer = await exchange(env.port, request_bytes("GET", "/contacts", SPOOFED | headers))
    assert answer.status == 200
    seen = env.upstream.last
    assert seen.all("X-Auth-Subject") == ["user-1"]
    assert seen.all("X-Auth-Client") == ["app-1"]
    assert seen.all("X-Auth-Tenant") == ["7"]
    assert seen.all("X-Auth-Scopes") == ["read:contacts"]
    assert seen.all("X-Forwarded-Host") == ["gateway.test"]
    assert seen.all("X-Forwarded-Proto") == ["http"]
    assert not NEVER_FORWARDED & seen.names - {"x-auth-client", "x-auth-tenant"}


async def test_spoofed_identity_headers_are_removed_on_public_routes(env: Env) -> None:
    """On `auth: none` routes identity headers are stripped and none are set."""
    answer = await exchange(env.port, request_bytes("GET", "/public/x", SPOOFED))
    assert answer.status == 200
    seen = env.upstream.last
    assert not NEVER_FORWARDED & seen.names
    assert not {"x-auth-subject", "x-auth-scopes", "x-auth-client", "x-auth-tenant"} & seen.names


async def test_connection_cannot_remove_the_identity_the_gateway_sets(env: Env) -> None:
    """`Connection: X-Auth-Subject` removes the client's copy, never the gateway's own."""
    headers = env.bearer() | {"Connection": "close, X-Auth-Subject, X-Auth-Scopes, X-Secret"}
    headers["X-Secret"] = "hop-by-hop by nomination"
    answer = await exchange(env.port, request_bytes("GET", "/contacts", headers))
    assert answer.status == 200
    seen = env.upstream.last
    assert seen.all("X-Auth-Subject") == ["user-1"]
    assert seen.all("X-Auth-Scopes") == ["read:contacts"]
    assert "x-secret" not in seen.names


async def test_hop_by_hop_request_headers_are_removed(env: Env) -> None:
    headers = {
        "Keep-Alive": "timeout=5",
        "Proxy-Authorization": "Basic eDp5",
        "TE": "trailers",
        "Trailer": "X-Checksum",
        "Upgrade": "websocket",
        "Proxy-Connection": "keep-alive",
    }
    answer = await exchange(env.port, request_bytes("GET", "/public/hop", headers))
    assert answer.status == 200
    assert not {name.lower() for name in headers} & env.upstream.last.names


async def test_x_forwarded_for_is_appended_to(env: Env) -> None:
    """The client's X-Forwarded-For chain is kept and the peer address appended."""
    headers = {"X-Forwarded-For": "203.0.113.9, 198.51.100.2"}
    await exchange(env.port, request_bytes("GET", "/public/xff", headers))
    assert env.upstream.last.all("X-Forwarded-For") == ["203.0.113.9, 198.51.100.2, 127.0.0.1"]


async def test_claims_that_are_not_plain_strings_are_sent_as_json(env: Env) -> None:
    """A subject with a newline is JSON-encoded with ASCII escapes, never split into headers."""
    headers = env.bearer(subject="a\nb", extra_claims={"azp": "caf\u00e9"})
    answer = await exchange(env.port, request_bytes("GET", "/contacts", headers))
    assert answer.status == 200
    seen = env.upstream.last
    assert seen.all("X-Auth-Subject") == ['"a\\nb"']
    assert seen.all("X-Auth-Client") == ['"caf\\u00e9"']


async def test_request_id_is_kept_when_sane_and_replaced_otherwise(env: Env) -> None:
    answer = await exchange(
        env.port, request_bytes("GET", "/public/id", {"X-Request-Id": "abc-123"})
    )
    assert answer.header("X-Request-Id") == "abc-123"
    assert env.upstream.last.all("X-Request-Id") == ["abc-123"]
    answer = await exchange(
        env.port, request_bytes("GET", "/public/id", {"X-Request-Id": "bad id\twith spaces"})
    )
    assert answer.header("X-Request-Id") not in (None, "bad id\twith spaces")


async def test_hop_by_hop_response_headers_are_removed(env: Env) -> None:
    """What the upstream marks hop-by-hop does not reach the client."""
    answer = await exchange(env.port, request_bytes("GET", "/public/plain"))
    assert answer.status == 200
    assert answer.header("Keep-Alive") is None
