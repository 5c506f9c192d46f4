"""Upstream failures are answered 502 / 504 with a problem+json body and counted."""

from __future__ import annotations

from tests.e2e.conftest import Env
from tests.support.rawhttp import exchange, read_raw, request_bytes


async def test_upstream_that_refuses_connections_is_502(env: Env) -> None:
    answer = await exchange(env.port, request_bytes("GET", "/down"))
    assert answer.status == 502
    assert answer.header("Content-Type") == "application/problem+json"
    assert env.sample("scopegate_upstream_errors_total", upstream="down", reason="connect") == 1


async def test_upstream_that_answers_too_late_is_504(env: Env) -> None:
    """The contacts upstream has a 1 s timeout; /slow/3 answers after 3 s."""
    answer = await exchange(env.port, request_bytes("GET", "/b/slow/3"))
    assert answer.status == 504
    assert answer.json()["status"] == 504
    assert env.sample("scopegate_upstream_errors_total", upstream="contacts", reason="timeout") == 1


async def test_upstream_that_drops_the_connection_is_502(env: Env) -> None:
    answer = await exchange(env.port, request_bytes("GET", "/b/reset"))
    assert answer.status == 502
    assert env.sample("scopegate_upstream_errors_total", upstream="contacts", reason="reset") == 1


async def test_upstream_that_drops_midway_leaves_the_client_a_broken_answer(env: Env) -> None:
    """After the answer has begun, the only honest signal is a connection that is cut: a
    chunked body never gets its final chunk."""
    raw = await read_raw(env.port, request_bytes("GET", "/b/midway-reset"), timeout=3)
    assert raw.startswith(b"HTTP/1.1 200 ")
    assert b"partial answer" in raw
    assert not raw.endswith(b"0\r\n\r\n")
    assert env.sample("scopegate_upstream_errors_total", upstream="contacts", reason="reset") == 1
