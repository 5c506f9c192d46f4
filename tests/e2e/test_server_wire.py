"""The client side of the wire: keep-alive, pipelining, HTTP/1.0, idle connections, upgrades
and broken bodies, spoken byte by byte to a real gateway in front of a recording upstream."""

from __future__ import annotations

import asyncio
import contextlib
import time

from tests.e2e.conftest import BASE_CONFIG, Env, gateway_env
from tests.support.rawhttp import parse, read_raw


def get(target: str, *extra: str, version: str = "HTTP/1.1") -> bytes:
    lines = [f"GET {target} {version}", "Host: gateway.test", *extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def test_pipelined_requests_are_answered_in_order(env: Env) -> None:
    raw = await read_raw(
        env.port,
        get("/public/one") + get("/public/two") + get("/public/three", "Connection: close"),
    )
    answers = parse(raw)
    assert [a.status for a in answers] == [200, 200, 200]
    assert [a.json()["target"] for a in answers] == ["/public/one", "/public/two", "/public/three"]
    assert [r.target for r in env.upstream.received] == [
        "/public/one",
        "/public/two",
        "/public/three",
    ]


async def test_a_denial_in_a_pipeline_does_not_stop_the_requests_after_it(env: Env) -> None:
    raw = await read_raw(env.port, get("/contacts") + get("/public/after", "Connection: close"))
    assert [a.status for a in parse(raw)] == [401, 200]
    assert [r.target for r in env.upstream.received] == ["/public/after"]


async def test_http_1_0_keep_alive_is_honoured_only_when_asked(env: Env) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", env.port)
    try:
        writer.write(get("/public/a", "Connection: keep-alive", version="HTTP/1.0"))
        head = await reader.readuntil(b"\r\n\r\n")
        assert b"Connection: keep-alive" in head
        length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
        await reader.readexactly(length)
        writer.write(get("/public/b", version="HTTP/1.0"))
        async with asyncio.timeout(5):
            rest = await reader.read()  # the server closes after a plain HTTP/1.0 request
        assert rest.startswith(b"HTTP/1.1 200 ")
    finally:
        writer.close()
    assert [r.target for r in env.upstream.received] == ["/public/a", "/public/b"]


async def test_a_streamed_answer_to_http_1_0_ends_with_the_connection(env: Env) -> None:
    raw = await read_raw(env.port, get("/b/download/100000", version="HTTP/1.0"))
    head, _, body = raw.partition(b"\r\n\r\n")
    assert b"Transfer-Encoding" not in head
    assert b"Connection: close" in head
    assert len(body) == 100_000


async def test_idle_connections_are_closed_after_idle_timeout() -> None:
    template = BASE_CONFIG.replace(
        "  max_connections: 64", "  max_connections: 64\n  idle_timeout: 0.5"
    )
    async with gateway_env(template) as env:
        started = time.monotonic()
        silent = await read_raw(env.port, b"", timeout=5)  # connects, says nothing
        assert silent == b""
        assert time.monotonic() - started < 3
        started = time.monotonic()
        raw = await read_raw(env.port, get("/public/x"), timeout=5)  # keep-alive, then idle
        assert parse(raw)[0].status == 200
        assert time.monotonic() - started < 3


async def test_an_upgrade_is_not_passed_on_and_the_connection_ends_after_the_answer(
    env: Env,
) -> None:
    request = get(
        "/public/socket",
        "Connection: Upgrade",
        "Upgrade: websocket",
        "Sec-WebSocket-Version: 13",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
    )
    started = time.monotonic()
    raw = await read_raw(env.port, request + b"\x81\x05hello" + get("/public/smuggled"))
    assert time.monotonic() - started < 3  # closed by the gateway, not by the read timeout
    answers = parse(raw)
    assert [a.status for a in answers] == [200]
    received = env.upstream.received
    assert [r.target for r in received] == ["/public/socket"]
    assert received[0].header("Upgrade") is None


async def test_a_broken_chunk_refuses_the_request_and_the_upstream_never_gets_it_whole(
    env: Env,
) -> None:
    request = (
        b"POST /public/upload HTTP/1.1\r\nHost: gateway.test\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\nZZ-not-a-size\r\n"
    )
    raw = await read_raw(env.port, request)
    answers = parse(raw)
    assert [a.status for a in answers] == [400]
    assert answers[0].header("Connection") == "close"
    await asyncio.sleep(0.1)
    assert env.upstream.received == []  # its handler never saw a complete request


async def test_a_client_that_leaves_mid_upload_leaves_the_gateway_serving(env: Env) -> None:
    _, writer = await asyncio.open_connection("127.0.0.1", env.port)
    writer.write(
        b"POST /public/upload HTTP/1.1\r\nHost: gateway.test\r\nContent-Length: 1000000\r\n\r\n"
        + b"x" * 1000
    )
    await writer.drain()
    await asyncio.sleep(0.1)
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    raw = await read_raw(env.port, get("/public/still-here", "Connection: close"))
    assert parse(raw)[0].status == 200
    async with asyncio.timeout(1):  # the abandoned request let go of its connection
        while env.gateway.open_connections:
            await asyncio.sleep(0.01)


async def test_a_client_that_half_closes_gets_every_answer_and_then_the_end(env: Env) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", env.port)
    try:
        writer.write(get("/public/one") + get("/public/two"))
        writer.write_eof()
        started = time.monotonic()
        async with asyncio.timeout(5):
            raw = await reader.read()  # until the gateway closes
        assert time.monotonic() - started < 3
    finally:
        writer.close()
    assert [a.json()["target"] for a in parse(raw)] == ["/public/one", "/public/two"]


async def test_a_body_that_stops_arriving_is_408_after_the_idle_timeout() -> None:
    """Slowloris on the body: the upstream connection is let go, the client told why."""
    template = BASE_CONFIG.replace(
        "  max_connections: 64", "  max_connections: 64\n  idle_timeout: 0.5"
    )
    async with gateway_env(template) as env:
        reader, writer = await asyncio.open_connection("127.0.0.1", env.port)
        try:
            writer.write(
                b"POST /public/upload HTTP/1.1\r\nHost: gateway.test\r\nContent-Length: 100\r\n\r\n"
                + b"x" * 10
            )
            started = time.monotonic()
            async with asyncio.timeout(5):
                raw = await reader.read()
        finally:
            writer.close()
        answers = parse(raw)
        assert [a.status for a in answers] == [408]
        assert answers[0].header("Connection") == "close"
        assert 0.4 < time.monotonic() - started < 3
        assert env.upstream.received == []
