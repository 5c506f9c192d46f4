"""Exhaustion without a token: clients that pipeline thousands of requests per write, clients
that never read their answers, a client that stops reading a streamed answer, connections past
the limit. Load on loopback only, bounded in count and time, against `scopegate serve` in a
process of its own so that the memory measured is the gateway's alone.

The bounds asserted here are the ones SECURITY.md states.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from scopegate.devtools.keys import generate
from tests.e2e.conftest import BASE_CONFIG, Env, base_config, gateway_env
from tests.support.jwks_server import JwksServer
from tests.support.process import Served, serve
from tests.support.upstream import RecordingUpstream

# 2,000 requests in one write, each answered by the gateway itself (401: no token).
PIPELINE = b"GET /contacts HTTP/1.1\r\nHost: gateway.test\r\n\r\n" * 2000
POLITE = b"GET /public/polite HTTP/1.1\r\nHost: gateway.test\r\n\r\n"
MIB = 1 << 20

P99_BOUND = 0.25  # seconds: a well-behaved client's p99 while the attack runs
RSS_BOUND = 64 * MIB  # growth of the gateway's resident memory while the attack runs


@pytest.fixture(name="served")
async def _served(tmp_path: Path) -> AsyncIterator[Served]:
    key = generate("RS256")
    async with RecordingUpstream() as upstream, JwksServer([key]) as jwks:
        path = tmp_path / "scopegate.yaml"
        path.write_text(base_config(jwks, upstream))
        async with serve(path) as served:
            yield served


def rss(served: Served) -> int:
    for line in Path(f"/proc/{served.process.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc status")


async def polite_latencies(port: int, seconds: float) -> list[float]:
    """One keep-alive client sending a request at a time, and the time each answer took."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    latencies = []
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            started = time.monotonic()
            writer.write(POLITE)
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
            await reader.readexactly(length)
            latencies.append(time.monotonic() - started)
            await asyncio.sleep(0.005)
    finally:
        writer.close()
    return latencies


def p99(latencies: list[float]) -> float:
    return statistics.quantiles(latencies, n=100)[98]


async def pipeliner(port: int, seconds: float, *, reads: bool) -> None:
    """Write `PIPELINE` over and over for `seconds`, reading the answers or never reading them."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    deadline = time.monotonic() + seconds

    async def drain_answers() -> None:
        while await reader.read(1 << 16):
            pass

    draining = asyncio.create_task(drain_answers()) if reads else None
    try:
        while time.monotonic() < deadline:
            writer.write(PIPELINE)
            with contextlib.suppress(TimeoutError):  # a gateway that stops reading blocks us
                await asyncio.wait_for(writer.drain(), max(0.01, deadline - time.monotonic()))
    except ConnectionError:
        pass
    finally:
        if draining is not None:
            draining.cancel()
        writer.transport.abort()


async def under_attack(served: Served, *, clients: int, reads: bool) -> tuple[list[float], int]:
    """The polite client's latencies and the gateway's RSS growth while `clients` pipeline."""
    before = rss(served)
    attack = [asyncio.create_task(pipeliner(served.port, 3.0, reads=reads)) for _ in range(clients)]
    await asyncio.sleep(0.5)  # let the attack build up
    latencies = await polite_latencies(served.port, 2.0)
    growth = rss(served) - before
    await asyncio.gather(*attack)
    return latencies, growth


@pytest.mark.slow
async def test_pipelining_clients_do_not_starve_a_well_behaved_one(served: Served) -> None:
    latencies, _ = await under_attack(served, clients=4, reads=True)
    assert len(latencies) > 20
    assert p99(latencies) < P99_BOUND


@pytest.mark.slow
async def test_clients_that_never_read_stop_being_read(served: Served) -> None:
    latencies, growth = await under_attack(served, clients=8, reads=False)
    assert len(latencies) > 20
    assert p99(latencies) < P99_BOUND
    assert growth < RSS_BOUND


async def test_a_client_that_stops_reading_a_streamed_answer_is_cut_off() -> None:
    """The send timeout (the idle timeout, 1 s here): the task and the upstream connection are
    let go, instead of being held until the socket dies."""
    template = BASE_CONFIG.replace(
        "  max_connections: 64", "  max_connections: 64\n  idle_timeout: 1"
    )
    async with gateway_env(template) as env:
        reader, writer = await asyncio.open_connection("127.0.0.1", env.port)
        writer.write(b"GET /public/download/500000000 HTTP/1.1\r\nHost: gateway.test\r\n\r\n")
        await _wait_until(lambda: env.gateway.open_connections == 0, 6)
        received = await _read_all_there_is(reader)
        writer.close()
        assert 0 < received < 100 * MIB  # what the socket buffers held, not the answer


async def test_the_503_past_max_connections_is_never_lost_to_a_reset(env: Env) -> None:
    """The refused client's request, body and all, is read and dropped, so closing does not
    reset the connection before the 503 is read: every one of 30 attempts reads it."""
    opened = [await asyncio.open_connection("127.0.0.1", env.port) for _ in range(64)]
    try:
        for _ in range(30):
            reader, writer = await asyncio.open_connection("127.0.0.1", env.port)
            writer.write(b"POST /public/x HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\n\r\n")
            writer.write(b"x" * 100_000)
            await asyncio.sleep(0.02)  # the request is in the gateway's socket before it closes
            async with asyncio.timeout(5):
                answer = await reader.read()
            writer.close()
            assert answer.startswith(b"HTTP/1.1 503 ")
    finally:
        for _, idle in opened:
            idle.close()


async def _wait_until(condition: Callable[[], bool], seconds: float) -> None:
    async with asyncio.timeout(seconds):
        while not condition():
            await asyncio.sleep(0.05)


async def _read_all_there_is(reader: asyncio.StreamReader) -> int:
    total = 0
    with contextlib.suppress(ConnectionError):
        async with asyncio.timeout(5):
            while chunk := await reader.read(1 << 20):
                total += len(chunk)
    return total
