"""CORS at the wire (SPEC §6.2): preflights answered by scopegate without a token and never
forwarded, every answer to an allowed origin readable by it, the upstream's own CORS headers
replaced, and nothing for an origin that is not allowed. A real browser: test_cors_browser.py."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest

from tests.e2e.conftest import BASE_CONFIG, Env, gateway_env
from tests.support.rawhttp import Answer, exchange, request_bytes

APP = "https://app.example.com"
EVIL = "https://evil.example.com"
CORS_CONFIG = (
    BASE_CONFIG.replace(
        "routes:\n",
        f"cors:\n  allow_origins: [{APP}]\n  allow_headers: [authorization, content-type]\n"
        "  expose_headers: [x-request-id]\n  max_age: 600\nroutes:\n",
        1,
    )
    + """\
  - name: no-cors
    path: /no-cors
    upstream: contacts
    cors: false
"""
)
PREFLIGHT_VARY = "Origin, Access-Control-Request-Method, Access-Control-Request-Headers"


@pytest.fixture(name="env")
async def _cors_env() -> AsyncIterator[Env]:
    async with gateway_env(CORS_CONFIG) as env:
        yield env


def preflight(path: str, method: str, origin: str = APP, headers: str = "authorization") -> bytes:
    asked = {"Origin": origin, "Access-Control-Request-Method": method}
    if headers:
        asked["Access-Control-Request-Headers"] = headers
    return request_bytes("OPTIONS", path, asked)


def cors_names(answer: Answer) -> set[str]:
    return {
        name.lower() for name, _ in answer.headers if name.lower().startswith("access-control-")
    }


async def test_an_allowed_preflight_is_answered_without_a_token_and_never_forwarded(
    env: Env,
) -> None:
    answer = await exchange(
        env.port, preflight("/contacts/7", "DELETE", headers="Authorization, Content-Type")
    )
    assert answer.status == 204
    assert answer.header("Access-Control-Allow-Origin") == APP
    assert answer.header("Access-Control-Allow-Methods") == "DELETE, GET, HEAD"
    assert answer.header("Access-Control-Allow-Headers") == "authorization, content-type"
    assert answer.header("Access-Control-Max-Age") == "600"
    assert answer.header("Vary") == PREFLIGHT_VARY
    assert answer.header("Access-Control-Allow-Credentials") is None
    assert answer.header("WWW-Authenticate") is None
    assert env.upstream.received == []
    assert (
        env.sample("scopegate_requests_total", route="delete-contact", method="OPTIONS", code="204")
        == 1
    )


@pytest.mark.parametrize(
    ("request_", "why"),
    [
        pytest.param(preflight("/contacts", "GET", origin=EVIL), "origin", id="an origin not allowed"),
        pytest.param(preflight("/contacts", "GET", origin=APP + "/"), "origin", id="an origin with a slash"),
        pytest.param(preflight("/contacts", "PATCH"), "method", id="a method no route on the path allows"),
        pytest.param(preflight("/contacts", "GET", headers="authorization, x-custom"), "header", id="a header not allowed"),
    ],
)  # fmt: skip
async def test_a_preflight_that_is_not_allowed_gets_403_without_cors_headers(
    env: Env, request_: bytes, why: str
) -> None:
    answer = await exchange(env.port, request_)
    assert answer.status == 403
    assert cors_names(answer) == set()
    assert answer.json()["type"].endswith("/cors_rejected")
    assert env.upstream.received == []
    assert sum(env.sample("scopegate_denials_total", route=route, reason="cors_rejected")
               for route in ("list-contacts", "unmatched")) == 1  # fmt: skip


@pytest.mark.parametrize(
    ("request_", "status"),
    [
        pytest.param(lambda env: request_bytes("GET", "/contacts", {"Origin": APP, **env.bearer()}), 200, id="the upstream's 200"),
        pytest.param(lambda env: request_bytes("GET", "/contacts", {"Origin": APP}), 401, id="401 without a token"),
        pytest.param(lambda env: request_bytes("DELETE", "/contacts/7", {"Origin": APP, **env.bearer()}), 403, id="403 insufficient_scope"),
        pytest.param(lambda env: request_bytes("GET", "/nowhere", {"Origin": APP}), 404, id="404"),
        pytest.param(lambda env: request_bytes("GET", "/public/a%2Fb", {"Origin": APP}), 400, id="400 bad_path"),
        pytest.param(lambda env: request_bytes("POST", "/small", {"Origin": APP, **env.bearer(())}, b"x" * 11), 413, id="413"),
        pytest.param(lambda env: request_bytes("GET", "/down", {"Origin": APP}), 502, id="502"),
    ],
)  # fmt: skip
async def test_every_answer_to_an_allowed_origin_is_readable_by_it(
    env: Env, request_: Callable[[Env], bytes], status: int
) -> None:
    answer = await exchange(env.port, request_(env))
    assert answer.status == status
    assert answer.header("Access-Control-Allow-Origin") == APP
    assert answer.header("Access-Control-Expose-Headers") == "WWW-Authenticate, X-Request-Id"
    assert "Origin" in [v.strip() for value in answer.all("Vary") for v in value.split(",")]
    if status in (401, 403):
        assert answer.header("WWW-Authenticate")


async def test_the_upstream_s_own_cors_headers_are_replaced(env: Env) -> None:
    answer = await exchange(env.port, request_bytes("GET", "/b/cors", {"Origin": APP}))
    assert answer.status == 200
    assert answer.all("Access-Control-Allow-Origin") == [APP]
    assert answer.all("Access-Control-Expose-Headers") == ["WWW-Authenticate, X-Request-Id"]
    assert answer.all("Vary") == ["Accept-Encoding", "Origin"]


async def test_an_origin_not_allowed_gets_no_cors_headers_and_is_otherwise_served(env: Env) -> None:
    """CORS is not authentication: the request is handled as usual, the browser will not let
    the page read the answer."""
    answer = await exchange(
        env.port, request_bytes("GET", "/contacts", {"Origin": EVIL, **env.bearer()})
    )
    assert answer.status == 200
    assert cors_names(answer) == set()
    assert len(env.upstream.received) == 1


async def test_a_route_with_cors_false_routes_and_authorises_options_like_any_request(
    env: Env,
) -> None:
    answer = await exchange(env.port, preflight("/no-cors", "GET"))
    assert answer.status == 401
    assert cors_names(answer) == set()
    allowed = await exchange(
        env.port, request_bytes("GET", "/no-cors", {"Origin": APP, **env.bearer()})
    )
    assert allowed.status == 200 and cors_names(allowed) == set()


async def test_without_cors_a_preflight_is_an_ordinary_request() -> None:
    async with gateway_env() as env:
        answer = await exchange(env.port, preflight("/me", "GET"))
        assert answer.status == 401
        assert cors_names(answer) == set()
