"""The attack suite: every hostile request gets its exact answer, and none that is refused
reaches the recording upstream. Cases are in tests/attacks/cases.py, by family."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import pytest

from tests.attacks.cases import ALL, Attack
from tests.e2e.conftest import Env
from tests.support.rawhttp import exchange, read_raw

SPOOFABLE = {"x-auth-subject", "x-auth-scopes", "x-http-method-override", "x-original-url",
             "x-rewrite-url", "x-original-uri", "x-forwarded-path", "x-forwarded-uri",
             "x-override-url", "x-envoy-original-path"}  # fmt: skip


@pytest.mark.parametrize("attack", [pytest.param(a, id=f"{a.family}: {a.name}") for a in ALL])
async def test_attack_gets_its_exact_answer(env: Env, attack: Attack) -> None:
    answer = await exchange(env.port, attack.build(env), timeout=5)
    assert answer.status == attack.status
    if answer.status >= 400:
        assert answer.header("Content-Type") == "application/problem+json"
        assert answer.json()["status"] == attack.status
    challenge = answer.header("WWW-Authenticate")
    if attack.error is None:
        assert challenge is None
    elif attack.error == "":
        assert challenge == 'Bearer realm="scopegate"'
    else:
        assert challenge is not None
        assert f'error="{attack.error}"' in challenge
    if attack.forwarded is None:
        assert env.upstream.received == []
        return
    seen = env.upstream.last
    assert seen.target == attack.forwarded
    assert seen.method == "GET"
    leaked = {name.replace("_", "-") for name in seen.names} & SPOOFABLE  # in either spelling
    if "x-auth-subject" in leaked:
        assert seen.all("X-Auth-Subject") == ["user-1"]  # the token's own, never the client's
        leaked -= {"x-auth-subject", "x-auth-scopes"}
    assert not leaked


def test_the_suite_covers_every_family() -> None:
    families = Counter(attack.family for attack in ALL)
    assert len(ALL) >= 80
    assert set(families) == {"forgery", "claims", "header", "paths", "headers", "smuggling", "size"}


async def test_slow_headers_get_408_and_the_connection_closed(env: Env) -> None:
    """A head trickled byte by byte is cut off after limits.header_timeout (1 s here)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", env.port)
    started = time.monotonic()
    data = b""
    try:
        writer.write(b"GET /public/x HTTP/1.1\r\nHost: a\r\n")
        for _ in range(30):
            writer.write(b"X-Slow: a\r\n")
            await writer.drain()
            try:  # read between writes, so the answer is taken before any reset
                data = await asyncio.wait_for(reader.read(4096), 0.1)
            except TimeoutError:
                continue
            break
    except ConnectionError:
        pass
    finally:
        writer.close()
    assert data.startswith(b"HTTP/1.1 408 ")
    assert time.monotonic() - started < 3
    assert env.upstream.received == []


async def test_connections_past_the_limit_are_refused_and_the_rest_still_served(env: Env) -> None:
    """64 idle connections are allowed here; the 65th and later get 503 and are closed."""
    opened = [await asyncio.open_connection("127.0.0.1", env.port) for _ in range(70)]
    try:
        refused = await read_raw(env.port, b"GET /public/x HTTP/1.1\r\nHost: a\r\n\r\n", timeout=2)
        assert refused.startswith(b"HTTP/1.1 503 ")
    finally:
        for _, writer in opened:
            writer.close()
    await asyncio.sleep(0.2)
    served = await exchange(
        env.port, b"GET /public/x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
    )
    assert served.status == 200


async def test_a_slow_body_on_a_denied_request_is_answered_at_once(env: Env) -> None:
    """The token is checked before the body is read: a client trickling a body it has no right
    to send gets its 401 without the gateway waiting for a single body byte."""
    reader, writer = await asyncio.open_connection("127.0.0.1", env.port)
    started = time.monotonic()
    try:
        writer.write(b"POST /contacts HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\n\r\nx")
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 3)
    finally:
        writer.close()
    assert head.startswith(b"HTTP/1.1 401 ")
    assert time.monotonic() - started < 1
    assert env.upstream.received == []
