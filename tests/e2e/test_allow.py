"""Allowed requests arrive at the upstream exactly as sent: method, path, query, body, headers
minus hop-by-hop plus the gateway's forwarding and identity headers."""

from __future__ import annotations

import json

from tests.e2e.conftest import Env
from tests.support.rawhttp import exchange, request_bytes

ADDED_BY_GATEWAY = {
    "host",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-request-id",
    "x-auth-subject",
    "x-auth-scopes",
}


async def test_rsa_token_with_the_scope_reaches_the_upstream_unchanged(env: Env) -> None:
    """A GET with an RS256 token carrying read:contacts is forwarded byte for byte."""
    token = env.token(("read:contacts", "other"))
    sent = {
        "Authorization": f"Bearer {token}",
        "Accept": "application/json",
        "X-Custom": "kept as is",
    }
    answer = await exchange(env.port, request_bytes("GET", "/contacts?b=2&a=1&x=%20y", sent))
    assert answer.status == 200
    seen = env.upstream.last
    assert (seen.method, seen.target) == ("GET", "/contacts?b=2&a=1&x=%20y")
    client_side = {
        ("Host", "gateway.test"),
        ("Connection", "close"),
    }
    for name, value in sent.items():
        assert (name, value) in seen.headers
    assert not client_side & set(seen.headers)
    assert seen.header("Host") == f"127.0.0.1:{env.upstream.port}"
    assert seen.header("X-Forwarded-Host") == "gateway.test"
    assert seen.header("X-Forwarded-Proto") == "http"
    assert seen.header("X-Forwarded-For") == "127.0.0.1"
    assert seen.header("X-Auth-Subject") == "user-1"
    assert seen.header("X-Auth-Scopes") == "other read:contacts"
    assert seen.header("X-Request-Id") == answer.header("X-Request-Id")
    assert seen.names == {n.lower() for n in sent} | ADDED_BY_GATEWAY
    assert (
        env.sample("scopegate_requests_total", route="list-contacts", method="GET", code="200") == 1
    )


async def test_ec_token_is_accepted(env: Env) -> None:
    """An ES256 token from the same issuer's JWKS is verified with the EC key."""
    async with env.http.get(env.url + "/contacts/42", headers=env.bearer(key=env.ec)) as response:
        assert response.status == 200
    assert env.upstream.last.target == "/contacts/42"


async def test_post_body_arrives_byte_identical(env: Env) -> None:
    """A POST body (with bytes that are not UTF-8) reaches the upstream untouched."""
    body = bytes(range(256)) * 40
    headers = env.bearer(("create:contacts",)) | {"Content-Type": "application/x-thing"}
    async with env.http.post(env.url + "/contacts", data=body, headers=headers) as response:
        assert response.status == 200
    seen = env.upstream.last
    assert seen.body == body
    assert seen.header("Content-Length") == str(len(body))
    assert seen.header("Content-Type") == "application/x-thing"


async def test_chunked_request_body_is_streamed(env: Env) -> None:
    """A chunked upload is forwarded as a stream and arrives whole."""
    request = (
        b"POST /contacts HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        + f"Authorization: Bearer {env.token(('create:contacts',))}\r\n".encode()
        + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    )
    answer = await exchange(env.port, request)
    assert answer.status == 200
    assert env.upstream.last.body == b"hello world"
    assert "content-length" not in env.upstream.last.names


async def test_head_is_allowed_wherever_get_is(env: Env) -> None:
    """HEAD on a GET route is checked like GET and forwarded as HEAD."""
    async with env.http.head(env.url + "/contacts", headers=env.bearer()) as response:
        assert response.status == 200
    assert env.upstream.last.method == "HEAD"


async def test_any_of_rule_accepts_either_scope(env: Env) -> None:
    """`{any: [delete:contacts, admin]}` lets a token with only `admin` delete."""
    async with env.http.delete(env.url + "/contacts/7", headers=env.bearer(("admin",))) as response:
        assert response.status == 200
    assert env.upstream.last.method == "DELETE"


async def test_token_only_route_needs_no_scope(env: Env) -> None:
    """A route with auth required and no scopes accepts any valid token."""
    async with env.http.get(env.url + "/me", headers=env.bearer(())) as response:
        assert response.status == 200
    assert env.upstream.last.header("X-Auth-Scopes") == ""


async def test_public_route_forwards_without_a_token(env: Env) -> None:
    """`auth: none` routes are forwarded with no identity headers at all."""
    async with env.http.get(env.url + "/public/docs/index.html") as response:
        assert response.status == 200
    seen = env.upstream.last
    assert seen.target == "/public/docs/index.html"
    assert not {"x-auth-subject", "x-auth-scopes"} & seen.names


async def test_strip_prefix_and_upstream_base_path(env: Env) -> None:
    """`strip_prefix` removes the route prefix; the upstream's base path is put in front."""
    async with env.http.get(env.url + "/api/v1/items?q=1") as response:
        assert response.status == 200
    assert env.upstream.last.target == "/base/v1/items?q=1"


async def test_normalised_path_is_what_is_forwarded(env: Env) -> None:
    """Dot segments and repeated slashes are resolved once; that path is matched and sent."""
    answer = await exchange(env.port, request_bytes("GET", "/public/a/./b//c/../d?x=/../"))
    assert answer.status == 200
    assert env.upstream.last.target == "/public/a/b/d?x=/../"


async def test_upstream_answer_comes_back_as_is(env: Env) -> None:
    """Status, repeated Set-Cookie headers and a gzip body pass through untouched."""
    async with env.http.get(env.url + "/b/set-cookie") as response:
        assert response.status == 200
        assert response.headers.getall("Set-Cookie") == ["a=1; Path=/", "b=2; Path=/"]
    answer = await exchange(env.port, request_bytes("GET", "/b/gzip"))
    assert answer.header("Content-Encoding") == "gzip"
    import gzip

    assert gzip.decompress(answer.body) == b"compressed hello"
    async with env.http.get(env.url + "/b/status/418") as response:
        assert response.status == 418


async def test_redirects_are_returned_not_followed(env: Env) -> None:
    """A 302 from the upstream goes back to the client; the gateway never follows it."""
    async with env.http.get(env.url + "/b/status/302", allow_redirects=False) as response:
        assert response.status == 302
    assert len(env.upstream.received) == 1


async def test_cookies_from_one_answer_never_reach_another_request(env: Env) -> None:
    """The gateway keeps no cookie jar: upstream cookies are not replayed on later requests."""
    await exchange(env.port, request_bytes("GET", "/b/set-cookie"))
    await exchange(env.port, request_bytes("GET", "/public/next"))
    assert "cookie" not in env.upstream.last.names


async def test_expect_continue_is_answered_after_the_request_is_allowed(env: Env) -> None:
    """An allowed upload gets `100 Continue` and then the upstream's answer."""
    from tests.support.rawhttp import exchange_all

    request = request_bytes(
        "POST",
        "/contacts",
        env.bearer(("create:contacts",)) | {"Expect": "100-continue"},
        b"12345",
    )
    answers = await exchange_all(env.port, request)
    assert [a.status for a in answers] == [100, 200]
    assert env.upstream.last.body == b"12345"
    assert "expect" not in env.upstream.last.names


async def test_upstream_json_answer_is_relayed(env: Env) -> None:
    """The upstream's body reaches the client unchanged."""
    async with env.http.get(env.url + "/contacts", headers=env.bearer()) as response:
        body = await response.read()
    assert json.loads(body) == {"method": "GET", "target": "/contacts", "length": 0}
