"""Framing around a chunked body: trailer fields are never merged into the head, never read for
the token, never forwarded, and held to the head's size and time limits; chunk-size lines are
bounded too. Spoken byte by byte to a real gateway in front of a recording upstream."""

from __future__ import annotations

import asyncio
import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.e2e.conftest import Env, gateway_env
from tests.support.rawhttp import parse, read_raw

HEAD = b"POST %s HTTP/1.1\r\nHost: gateway.test\r\nTransfer-Encoding: chunked\r\n%s\r\n"


def chunked(target: str, body: bytes, trailers: list[tuple[str, str]], *extra: str) -> bytes:
    """A chunked request with `trailers` after its last chunk, closing after the answer."""
    head_lines = "".join(f"{line}\r\n" for line in ("Connection: close", *extra))
    head = HEAD % (target.encode(), head_lines.encode())
    chunks = b"%x\r\n%s\r\n" % (len(body), body) if body else b""
    fields = "".join(f"{name}: {value}\r\n" for name, value in trailers).encode("latin-1")
    return head + chunks + b"0\r\n" + fields + b"\r\n"


async def test_a_token_sent_only_as_a_trailer_is_never_read(env: Env) -> None:
    """The whole message arrives in one read, its only Authorization a trailer field: 401."""
    token = env.token(("create:contacts",))
    request = chunked("/contacts", b"{}", [("Authorization", f"Bearer {token}")])
    answers = parse(await read_raw(env.port, request))
    assert [a.status for a in answers] == [401]
    assert answers[0].header("WWW-Authenticate") == 'Bearer realm="scopegate"'
    assert env.upstream.received == []


async def test_trailer_fields_never_reach_the_upstream_as_header_fields(env: Env) -> None:
    trailers = [("X-Auth-Subject", "admin"), ("X-Spoofed", "1"), ("Host", "evil.example")]
    answers = parse(await read_raw(env.port, chunked("/public/t", b"hello", trailers)))
    assert [a.status for a in answers] == [200]
    seen = env.upstream.last
    assert seen.body == b"hello"
    assert "x-spoofed" not in seen.names
    assert "x-auth-subject" not in seen.names
    assert seen.all("Host") != ["evil.example"]


_FIELD_NAME = st.text("abcdefghijklmnopqrstuvwxyz-ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", min_size=1,
                      max_size=24).filter(lambda name: not name.startswith("-"))  # fmt: skip
_FIELD_VALUE = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=64)


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(trailers=st.lists(st.tuples(_FIELD_NAME, _FIELD_VALUE), min_size=1, max_size=6))
async def test_any_trailer_section_leaves_the_forwarded_head_as_it_was(
    env: Env, trailers: list[tuple[str, str]]
) -> None:
    """Whatever the trailer fields, the upstream sees the head it sees without them."""
    without = parse(await read_raw(env.port, chunked("/public/p", b"body", [])))
    plain = env.upstream.last
    with_trailers = parse(await read_raw(env.port, chunked("/public/p", b"body", trailers)))
    seen = env.upstream.last
    assert [a.status for a in without + with_trailers] == [200, 200]
    varying = {"x-forwarded-for", "x-request-id"}
    assert [h for h in seen.headers if h[0].lower() not in varying] == [
        h for h in plain.headers if h[0].lower() not in varying
    ]
    assert seen.body == plain.body == b"body"


async def test_a_trailer_section_over_the_head_limit_is_431_and_closes(env: Env) -> None:
    trailers = [(f"X-T{i}", "a" * 1000) for i in range(20)]  # 20 KB against 16 KiB
    answers = parse(await read_raw(env.port, chunked("/public/big", b"x", trailers)))
    assert [a.status for a in answers] == [431]
    assert answers[0].header("Connection") == "close"
    assert env.sample("scopegate_denials_total", route="public", reason="headers_too_large") == 1


async def test_an_endless_trailer_value_is_cut_off_at_the_head_limit(env: Env) -> None:
    """A trailer value that never ends is refused once it passes the limit: it neither grows
    memory nor holds the loop while the client keeps sending."""
    reader, writer = await asyncio.open_connection("127.0.0.1", env.port)
    started = time.monotonic()
    try:
        writer.write(chunked("/public/endless", b"x", [])[:-2] + b"X-Endless: ")
        async with asyncio.timeout(5):
            answer = b""
            while not answer:
                writer.write(b"a" * 4096)
                await writer.drain()
                answer = await _read_some(reader)
    finally:
        writer.close()
    assert parse(answer + await _rest(reader))[0].status == 431
    assert time.monotonic() - started < 3


async def test_a_slow_trailer_section_gets_408_within_the_header_timeout(env: Env) -> None:
    """Trailer bytes trickled one at a time: the header timeout (1 s here) ends the request."""
    reader, writer = await asyncio.open_connection("127.0.0.1", env.port)
    started = time.monotonic()
    try:
        writer.write(chunked("/public/slow-trailer", b"x", [])[:-2])
        raw = b""
        async with asyncio.timeout(5):
            while not raw:
                writer.write(b"X")
                raw = await _read_some(reader, wait=0.1)
            raw += await _rest(reader)
    finally:
        writer.close()
    elapsed = time.monotonic() - started
    answers = parse(raw)
    assert [a.status for a in answers] == [408]
    assert answers[0].header("Connection") == "close"
    assert 0.9 < elapsed < 3
    assert env.upstream.received == []  # the upstream never had the whole request


async def test_a_chunk_extension_over_the_head_limit_is_400_and_closes(env: Env) -> None:
    request = HEAD % (b"/public/ext", b"Connection: close\r\n") + b"5;ext=" + b"e" * 40000
    answers = parse(await read_raw(env.port, request + b"\r\nhello\r\n0\r\n\r\n"))
    assert [a.status for a in answers] == [400]
    assert "chunk-size line" in answers[0].json()["detail"]
    assert env.upstream.received == []


async def test_short_chunk_extensions_and_trailers_still_pass(env: Env) -> None:
    request = HEAD % (b"/public/fine", b"Connection: close\r\n") + (
        b"5;name=value\r\nhello\r\n6;a;b=c\r\n world\r\n0\r\nX-Checksum: 1\r\n\r\n"
    )
    answers = parse(await read_raw(env.port, request))
    assert [a.status for a in answers] == [200]
    assert env.upstream.last.body == b"hello world"


async def test_a_pipelined_request_after_a_trailer_is_answered_in_turn() -> None:
    async with gateway_env() as env:
        first = chunked("/public/one", b"a", [("X-T", "1")]).replace(b"Connection: close\r\n", b"")
        second = b"GET /public/two HTTP/1.1\r\nHost: gateway.test\r\nConnection: close\r\n\r\n"
        answers = parse(await read_raw(env.port, first + second))
        assert [a.status for a in answers] == [200, 200]
        assert [r.target for r in env.upstream.received] == ["/public/one", "/public/two"]


async def _read_some(reader: asyncio.StreamReader, wait: float = 0.01) -> bytes:
    try:
        return await asyncio.wait_for(reader.read(65536), wait)
    except TimeoutError:
        return b""


async def _rest(reader: asyncio.StreamReader) -> bytes:
    data = b""
    async with asyncio.timeout(3):
        while chunk := await reader.read(65536):
            data += chunk
    return data
