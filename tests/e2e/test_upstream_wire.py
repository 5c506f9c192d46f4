"""The upstream side of the wire: answers no framework would send, from an upstream scripted
byte by byte, and what scopegate makes of them. Each test runs a real gateway in front of it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from prometheus_client import CollectorRegistry

from scopegate.app import RunningGateway
from scopegate.config.load import load_config_text
from scopegate.devtools.keys import generate
from tests.e2e.conftest import wait_ready
from tests.support.jwks_server import JwksServer
from tests.support.rawhttp import exchange, exchange_all, parse, read_raw, request_bytes
from tests.support.scripted import ScriptedUpstream

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


@asynccontextmanager
async def gateway_before(upstream: ScriptedUpstream) -> AsyncIterator[RunningGateway]:
    async with JwksServer([generate("RS256")]) as jwks:
        config = load_config_text(
            f"""
listen: 127.0.0.1:0
admin_listen: 127.0.0.1:0
issuers:
  - issuer: {jwks.issuer}
    jwks_uri: {jwks.jwks_uri}
    audiences: [https://api.example.com]
upstreams:
  raw: {{url: "{upstream.url}", timeout: 2, connect_timeout: 1}}
routes:
  - {{path: "/{{rest*}}", upstream: raw, auth: none}}
""",
            "gateway.yaml",
        )
        async with RunningGateway.start(
            config, registry=CollectorRegistry(), shutdown_grace=1.0
        ) as gateway:
            await wait_ready(gateway)
            yield gateway


def errors(gateway: RunningGateway, reason: str) -> float:
    value = gateway.metrics.registry.get_sample_value(
        "scopegate_upstream_errors_total", {"upstream": "raw", "reason": reason}
    )
    return value or 0.0


async def answer_each(
    up: ScriptedUpstream, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, index: int
) -> None:
    while await up.read_request(reader, index):
        writer.write(OK)


async def test_a_get_on_a_kept_alive_connection_the_upstream_dropped_is_retried() -> None:
    """The first connection answers once, then closes on the next request without a word, as
    an upstream does when its keep-alive timeout races the gateway's reuse."""

    async def script(up: ScriptedUpstream, reader: asyncio.StreamReader,
                     writer: asyncio.StreamWriter, index: int) -> None:  # fmt: skip
        if index == 0:
            await up.read_request(reader, index)
            writer.write(OK)
            await up.read_request(reader, index)
            return  # closed, unanswered
        await answer_each(up, reader, writer, index)

    async with ScriptedUpstream(script) as upstream, gateway_before(upstream) as gateway:
        first = await exchange(gateway.public_port, request_bytes("GET", "/one"))
        second = await exchange(gateway.public_port, request_bytes("GET", "/two"))
        assert (first.status, first.body) == (200, b"ok")
        assert (second.status, second.body) == (200, b"ok")
        assert [(s.connection, s.request_line) for s in upstream.seen] == [
            (0, "GET /one HTTP/1.1"),
            (0, "GET /two HTTP/1.1"),
            (1, "GET /two HTTP/1.1"),
        ]
        assert errors(gateway, "reset") == 0


async def test_a_post_on_a_dropped_connection_is_never_replayed() -> None:
    async def script(up: ScriptedUpstream, reader: asyncio.StreamReader,
                     writer: asyncio.StreamWriter, index: int) -> None:  # fmt: skip
        await up.read_request(reader, index)
        writer.write(OK)
        await up.read_request(reader, index)

    async with ScriptedUpstream(script) as upstream, gateway_before(upstream) as gateway:
        await exchange(gateway.public_port, request_bytes("GET", "/warm"))
        answer = await exchange(gateway.public_port, request_bytes("POST", "/pay", body=b"42"))
        assert answer.status == 502
        assert answer.json()["type"].endswith("/upstream_reset")
        assert [s.request_line for s in upstream.seen] == [
            "GET /warm HTTP/1.1",
            "POST /pay HTTP/1.1",
        ]
        assert upstream.connections == 1
        assert errors(gateway, "reset") == 1


async def test_interim_answers_are_not_relayed() -> None:
    sent = b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n" + OK
    async with ScriptedUpstream.answering(sent) as upstream, gateway_before(upstream) as gateway:
        answers = await exchange_all(gateway.public_port, request_bytes("GET", "/hints"))
        assert [(a.status, a.body) for a in answers] == [(200, b"ok")]


async def test_a_body_ended_by_the_upstream_closing_is_relayed_whole() -> None:
    sent = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end"
    async with ScriptedUpstream.answering(sent) as upstream, gateway_before(upstream) as gateway:
        for _ in range(2):
            raw = await read_raw(gateway.public_port, request_bytes("GET", "/eof"))
            assert b"Transfer-Encoding: chunked" in raw
            assert raw.endswith(b"\r\n0\r\n\r\n")  # complete, not cut
            assert parse(raw)[-1].body == b"until the end"
        assert upstream.connections == 2  # such a connection is never reused
        assert errors(gateway, "reset") == 0


async def test_an_answer_that_is_not_http_is_a_502() -> None:
    sent = b"SSH-2.0-OpenSSH_9.2\r\n\r\n"
    async with ScriptedUpstream.answering(sent) as upstream, gateway_before(upstream) as gateway:
        answer = await exchange(gateway.public_port, request_bytes("GET", "/ssh"))
        assert answer.status == 502
        assert errors(gateway, "reset") == 1


async def test_a_second_answer_to_one_request_never_reaches_the_next_client() -> None:
    """Response desync: bytes after a complete answer must not become the answer to whoever
    sends the next request on that upstream connection."""

    async def script(up: ScriptedUpstream, reader: asyncio.StreamReader,
                     writer: asyncio.StreamWriter, index: int) -> None:  # fmt: skip
        if index == 0:
            await up.read_request(reader, index)
            smuggled = b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nsmuggled"
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst" + smuggled)
            await asyncio.sleep(1)
            return
        await answer_each(up, reader, writer, index)

    async with ScriptedUpstream(script) as upstream, gateway_before(upstream) as gateway:
        first = await exchange(gateway.public_port, request_bytes("GET", "/first"))
        second = await exchange(gateway.public_port, request_bytes("GET", "/second"))
        assert first.body == b"first"
        assert (second.status, second.body) == (200, b"ok")
        assert [(s.connection, s.request_line) for s in upstream.seen][-1] == (
            1,
            "GET /second HTTP/1.1",
        )


async def test_a_head_answer_keeps_its_length_and_sends_no_body() -> None:
    async def script(up: ScriptedUpstream, reader: asyncio.StreamReader,
                     writer: asyncio.StreamWriter, index: int) -> None:  # fmt: skip
        while seen := await up.read_request(reader, index):
            if seen.request_line.startswith("HEAD"):
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
            else:
                writer.write(OK)

    async with ScriptedUpstream(script) as upstream, gateway_before(upstream) as gateway:
        raw = await read_raw(gateway.public_port, request_bytes("HEAD", "/doc"))
        assert b"Content-Length: 1000\r\n" in raw
        assert raw.endswith(b"\r\n\r\n")  # the head and nothing after it
        after = await exchange(gateway.public_port, request_bytes("GET", "/next"))
        assert (after.status, after.body) == (200, b"ok")
        assert upstream.connections == 1  # a HEAD answer leaves the connection reusable


async def test_an_early_answer_is_relayed_while_the_body_is_still_on_its_way() -> None:
    """An upstream may refuse a large upload after its head (413) and stop reading."""

    async def script(up: ScriptedUpstream, reader: asyncio.StreamReader,
                     writer: asyncio.StreamWriter, index: int) -> None:  # fmt: skip
        await up.read_request(reader, index, body=False)
        writer.write(
            b"HTTP/1.1 413 Content Too Large\r\nContent-Length: 8\r\nConnection: close\r\n\r\n"
            b"too big\n"
        )
        await writer.drain()
        writer.write_eof()
        with contextlib.suppress(ConnectionError):
            while await reader.read(65536):  # drain, so no reset wipes the answer
                pass

    async with ScriptedUpstream(script) as upstream, gateway_before(upstream) as gateway:
        body = b"x" * 4_000_000
        answer = await exchange(gateway.public_port, request_bytes("POST", "/upload", body=body))
        assert (answer.status, answer.body) == (413, b"too big\n")


async def test_an_answer_head_without_end_is_a_502_not_a_memory_leak() -> None:
    async def script(up: ScriptedUpstream, reader: asyncio.StreamReader,
                     writer: asyncio.StreamWriter, index: int) -> None:  # fmt: skip
        await up.read_request(reader, index)
        writer.write(b"HTTP/1.1 200 OK\r\n")
        with contextlib.suppress(ConnectionError):
            for i in range(2000):  # 2,000 headers of 100 bytes, never ended
                writer.write(b"X-Filler-%04d: %s\r\n" % (i, b"y" * 84))
                await writer.drain()
            await asyncio.sleep(5)  # and the connection held open

    async with ScriptedUpstream(script) as upstream, gateway_before(upstream) as gateway:
        started = asyncio.get_running_loop().time()
        answer = await exchange(gateway.public_port, request_bytes("GET", "/endless"))
        assert answer.status == 502  # at once, not a 504 after the 2 s timeout
        assert asyncio.get_running_loop().time() - started < 1.5
        assert errors(gateway, "reset") == 1


async def test_one_oversized_answer_header_is_a_502() -> None:
    sent = b"HTTP/1.1 200 OK\r\nX-Big: " + b"z" * 70_000 + b"\r\nContent-Length: 2\r\n\r\nok"
    async with ScriptedUpstream.answering(sent) as upstream, gateway_before(upstream) as gateway:
        answer = await exchange(gateway.public_port, request_bytes("GET", "/big-header"))
        assert answer.status == 502
