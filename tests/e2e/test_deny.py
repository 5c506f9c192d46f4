"""Every refusal has the exact RFC 6750 / RFC 9457 answer, moves the right metric by one, and
never reaches the upstream."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from tests.e2e.conftest import Env
from tests.support.rawhttp import Answer, exchange, request_bytes


@dataclass(frozen=True)
class Case:
    method: str
    target: str
    headers: Callable[[Env], dict[str, str]]
    status: int
    reason: str
    error: str | None  # RFC 6750 error code in WWW-Authenticate; None: challenge without one
    challenge: bool = True


def _auth(value: str) -> Callable[[Env], dict[str, str]]:
    return lambda env: {"Authorization": value}


def _token(**kwargs: object) -> Callable[[Env], dict[str, str]]:
    scopes = kwargs.pop("scopes", ("read:contacts",))
    return lambda env: env.bearer(scopes, **kwargs)  # type: ignore[arg-type]


NOW = int(time.time())

CASES = [
    pytest.param(
        Case("GET", "/contacts", lambda env: {}, 401, "missing_token", None),
        id="no Authorization header: 401 with a bare challenge",
    ),
    pytest.param(
        Case("GET", "/contacts", _auth("Basic dXNlcjpwYXNz"), 401, "missing_token", None),
        id="Basic scheme: 401 with a bare challenge",
    ),
    pytest.param(
        Case("GET", "/contacts", _auth("Bearer"), 400, "invalid_request", "invalid_request"),
        id="Bearer without a token: 400 invalid_request",
    ),
    pytest.param(
        Case("GET", "/contacts", _auth("Bearer a b"), 400, "invalid_request", "invalid_request"),
        id="token with a space: 400 invalid_request",
    ),
    pytest.param(
        Case(
            "GET", "/contacts", _auth("Bearer not-a-jwt"), 401, "malformed_token", "invalid_token"
        ),
        id="not a JWT: 401 invalid_token",
    ),
    pytest.param(
        Case("GET", "/contacts", _token(lifetime=-3600), 401, "expired_token", "invalid_token"),
        id="expired token: 401 invalid_token",
    ),
    pytest.param(
        Case(
            "GET",
            "/contacts",
            _token(audience="https://other.example.com"),
            401,
            "invalid_audience",
            "invalid_token",
        ),
        id="wrong audience: 401 invalid_token",
    ),
    pytest.param(
        Case(
            "GET",
            "/contacts",
            _token(issuer="https://evil.example.com/"),
            401,
            "invalid_issuer",
            "invalid_token",
        ),
        id="unknown issuer: 401 invalid_token",
    ),
    pytest.param(
        Case(
            "GET",
            "/contacts",
            _token(extra_claims={"nbf": NOW + 3600}),
            401,
            "not_yet_valid",
            "invalid_token",
        ),
        id="not yet valid: 401 invalid_token",
    ),
    pytest.param(
        Case(
            "GET",
            "/contacts",
            _token(scopes=("read:contacts_all", "READ:contacts", "read")),
            403,
            "insufficient_scope",
            "insufficient_scope",
        ),
        id="look-alike scopes never satisfy read:contacts: 403",
    ),
    pytest.param(
        Case(
            "DELETE",
            "/contacts/1",
            _token(scopes=("read:contacts",)),
            403,
            "insufficient_scope",
            "insufficient_scope",
        ),
        id="delete without delete scope: 403",
    ),
    pytest.param(
        Case("GET", "/nowhere", lambda env: {}, 404, "no_route", None, challenge=False),
        id="no route: 404",
    ),
    pytest.param(
        Case("PATCH", "/contacts", _token(), 405, "method_not_allowed", None, challenge=False),
        id="wrong method: 405",
    ),
    pytest.param(
        Case(
            "GET",
            "/public/a%2F..%2F..%2Fcontacts",
            lambda env: {},
            400,
            "bad_path",
            None,
            challenge=False,
        ),
        id="encoded slash: 400 bad_path",
    ),
    pytest.param(
        Case(
            "GET", "http://evil.example/contacts", _token(), 400, "bad_path", None, challenge=False
        ),
        id="absolute-form target: 400 bad_path",
    ),
    pytest.param(
        Case("CONNECT", "evil.example:443", lambda env: {}, 400, "bad_path", None, challenge=False),
        id="authority-form target: 400 bad_path",
    ),
    pytest.param(
        Case("OPTIONS", "*", lambda env: {}, 400, "bad_path", None, challenge=False),
        id="asterisk-form target: 400 bad_path",
    ),
    pytest.param(
        Case("GET", "/public/../contacts", lambda env: {}, 401, "missing_token", None),
        id="dot segments out of a public route land on the protected one",
    ),
    pytest.param(
        Case("GET", "/public/%2e%2e/contacts", lambda env: {}, 401, "missing_token", None),
        id="encoded dot segments are resolved before matching",
    ),
]


def _problem(answer: Answer, status: int) -> None:
    assert answer.header("Content-Type") == "application/problem+json"
    body = answer.json()
    assert body["status"] == status
    assert {"type", "title", "status", "detail"} <= body.keys()
    assert answer.header("X-Request-Id")


@pytest.mark.parametrize("case", CASES)
async def test_denied_request_gets_the_exact_answer_and_never_arrives(env: Env, case: Case) -> None:
    headers = case.headers(env)
    answer = await exchange(env.port, request_bytes(case.method, case.target, headers))
    assert answer.status == case.status
    _problem(answer, case.status)
    challenge = answer.header("WWW-Authenticate")
    if not case.challenge:
        assert challenge is None
    elif case.error is None:
        assert challenge == 'Bearer realm="scopegate"'
    else:
        assert challenge is not None
        assert challenge.startswith(f'Bearer realm="scopegate", error="{case.error}"')
        assert "error_description=" in challenge
    token = headers.get("Authorization", "").removeprefix("Bearer ")
    if len(token) > 20:
        assert token not in answer.raw.decode("latin-1") + answer.body.decode()
    assert env.upstream.received == []
    route = env.gateway.runtime.routes
    assert route is not None
    assert (
        sum(
            env.sample("scopegate_denials_total", route=name, reason=case.reason)
            for name in ("unmatched", "list-contacts", "read-contact", "delete-contact")
        )
        == 1
    )


async def test_insufficient_scope_names_the_required_scopes(env: Env) -> None:
    """The 403 challenge carries `scope` with what the route requires."""
    answer = await exchange(
        env.port, request_bytes("GET", "/contacts", env.bearer(("write:contacts",)))
    )
    assert answer.status == 403
    assert answer.header("WWW-Authenticate") == (
        'Bearer realm="scopegate", error="insufficient_scope", '
        'error_description="the token lacks the scope(s): read:contacts", scope="read:contacts"'
    )


async def test_method_not_allowed_lists_allowed_methods(env: Env) -> None:
    answer = await exchange(env.port, request_bytes("PUT", "/contacts/1", env.bearer()))
    assert answer.status == 405
    assert answer.header("Allow") == "DELETE, GET, HEAD"


async def test_two_authorization_headers_are_refused(env: Env) -> None:
    """More than one Authorization header is 400 invalid_request, even if both are valid."""
    token = env.token()
    request = (
        b"GET /contacts HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        + f"Authorization: Bearer {token}\r\nAuthorization: Bearer {token}\r\n\r\n".encode()
    )
    answer = await exchange(env.port, request)
    assert answer.status == 400
    assert env.upstream.received == []


async def test_token_in_query_or_cookie_is_ignored(env: Env) -> None:
    """RFC 6750 query and cookie tokens are not read: the request is unauthenticated."""
    token = env.token()
    answer = await exchange(
        env.port,
        request_bytes(
            "GET", f"/contacts?access_token={token}", {"Cookie": f"access_token={token}"}
        ),
    )
    assert answer.status == 401
    assert env.upstream.received == []


async def test_unknown_kid_is_an_invalid_token(env: Env) -> None:
    """A token signed by a key the issuer never published is 401, after one refetch at most."""
    from scopegate.devtools.keys import generate

    stranger = generate("RS256")
    answer = await exchange(env.port, request_bytes("GET", "/contacts", env.bearer(key=stranger)))
    assert answer.status == 401
    assert env.sample("scopegate_denials_total", route="list-contacts", reason="unknown_key") == 1
    assert env.upstream.received == []


async def test_token_is_checked_before_body_size(env: Env) -> None:
    """No token and a huge declared body: 401, not 413; nothing is read or forwarded."""
    request = (
        b"POST /small HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 999999999\r\n\r\n"
    )
    answer = await exchange(env.port, request)
    assert answer.status == 401
    assert env.upstream.received == []


async def test_declared_body_over_the_limit_is_413_before_forwarding(env: Env) -> None:
    """An allowed request declaring more than the route's limit gets 413; nothing is forwarded."""
    request = request_bytes("POST", "/small", env.bearer(()), b"x" * 11)
    answer = await exchange(env.port, request)
    assert answer.status == 413
    _problem(answer, 413)
    assert env.upstream.received == []
    assert env.sample("scopegate_denials_total", route="small-body", reason="body_too_large") == 1


async def test_chunked_body_over_the_limit_is_cut_off(env: Env) -> None:
    """A chunked body that grows past the limit is refused with 413 while streaming."""
    chunks = b"".join(b"5\r\nabcde\r\n" for _ in range(5)) + b"0\r\n\r\n"
    request = (
        b"POST /small HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        + f"Authorization: Bearer {env.token(())}\r\n".encode()
        + b"Transfer-Encoding: chunked\r\n\r\n"
        + chunks
    )
    answer = await exchange(env.port, request)
    assert answer.status == 413
    assert all(seen.body_length <= 10 for seen in env.upstream.received)


async def test_expect_continue_is_not_sent_to_a_denied_request(env: Env) -> None:
    """A denied upload gets its 401 directly, never a `100 Continue`."""
    from tests.support.rawhttp import exchange_all

    request = (
        b"POST /contacts HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n"
    )
    answers = await exchange_all(env.port, request, timeout=2)
    assert [a.status for a in answers] == [401]
    assert env.upstream.received == []
