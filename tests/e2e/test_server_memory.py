"""Memory held for a request or a connection comes back when it ends, by reference counting
alone: no reference cycle keeps a refused head, a closed connection or a finished request alive
until the next full garbage collection (which would return it only with a latency spike)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import Iterator

from scopegate.server.connection import HttpConnection
from scopegate.server.request import Request
from tests.e2e.conftest import Env
from tests.support.rawhttp import parse, read_raw

BIG_HEAD = b"GET /public/x HTTP/1.1\r\nHost: gateway.test\r\nX-Big: " + b"a" * 600_000 + b"\r\n\r\n"


@contextlib.contextmanager
def no_collection() -> Iterator[None]:
    """Run with the cyclic garbage collector off: what is freed is freed by reference counts."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def alive() -> list[object]:
    """Connections and requests still in memory, garbage cycles included (gc.get_objects
    lists every tracked object, reachable or not)."""
    return [obj for obj in gc.get_objects() if isinstance(obj, HttpConnection | Request)]


async def wait_closed(env: Env) -> None:
    async with asyncio.timeout(5):
        while env.gateway.open_connections:
            await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)  # let the transports report their end


async def test_refused_heads_are_freed_without_a_collection(env: Env) -> None:
    with no_collection():
        for _ in range(20):
            answers = parse(await read_raw(env.port, BIG_HEAD))
            assert [a.status for a in answers] == [431]
        await wait_closed(env)
        assert alive() == []


async def test_every_way_a_connection_ends_frees_it_without_a_collection(env: Env) -> None:
    """Answered, denied, refused mid-body, cut off mid-head and mid-body by the client."""
    get = b"GET /public/a HTTP/1.1\r\nHost: gateway.test\r\n\r\n"
    denied = b"GET /contacts HTTP/1.1\r\nHost: gateway.test\r\n\r\n"
    broken = (b"POST /public/u HTTP/1.1\r\nHost: gateway.test\r\nTransfer-Encoding: chunked\r\n\r\n"
              b"5\r\nhello\r\nZZ\r\n")  # fmt: skip
    with no_collection():
        for request in (get + denied + get.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n"),
                        broken):  # fmt: skip
            assert parse(await read_raw(env.port, request))
        for partial in (b"GET /public/a HTTP/1.1\r\nHost: gate",
                        b"POST /public/u HTTP/1.1\r\nHost: g\r\nContent-Length: 100\r\n\r\nabc"):  # fmt: skip
            _, writer = await asyncio.open_connection("127.0.0.1", env.port)
            writer.write(partial)
            await writer.drain()
            await asyncio.sleep(0.05)
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        await wait_closed(env)
        assert alive() == []
