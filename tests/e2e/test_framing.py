"""Framing the gateway refuses (SPEC §3.1): 400 or 431 as problem+json, the connection closed,
nothing forwarded."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import Env
from tests.support.rawhttp import exchange

BAD = [
    pytest.param(
        b"GET /public/a HTTP/2.0\r\nHost: x\r\n\r\n", 400, id="HTTP/2.0 on the HTTP/1 port"
    ),
    pytest.param(b"GET /public/a HTTP/1.2\r\nHost: x\r\n\r\n", 400, id="HTTP/1.2"),
    pytest.param(
        b"POST /public/a HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
        id="Transfer-Encoding on HTTP/1.0",
    ),
    pytest.param(
        b"POST /public/a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
        id="Content-Length with Transfer-Encoding",
    ),
    pytest.param(
        b"POST /public/a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
        400,
        id="conflicting Content-Length",
    ),
    pytest.param(
        b"POST /public/a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
        400,
        id="repeated Content-Length",
    ),
    pytest.param(b"GET /public/a HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n", 400, id="obs-fold"),
    pytest.param(
        b"POST /public/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\nabc",
        400,
        id="final transfer coding not chunked",
    ),
    pytest.param(
        b"GET /public/a HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n",
        431,
        id="one header line larger than the limit",
    ),
    pytest.param(
        b"GET /public/a HTTP/1.1\r\nHost: x\r\n"
        + b"".join(b"X-H%d: " % i + b"a" * 1000 + b"\r\n" for i in range(20))
        + b"\r\n",
        431,
        id="header section larger than the limit in total",
    ),
]


@pytest.mark.parametrize(("request_bytes", "status"), BAD)
async def test_bad_framing_is_refused_and_closes(
    env: Env, request_bytes: bytes, status: int
) -> None:
    answer = await exchange(env.port, request_bytes, timeout=3)
    assert answer.status == status
    assert answer.header("Content-Type") == "application/problem+json"
    assert answer.json()["status"] == status
    assert answer.header("Connection") == "close"
    assert env.upstream.received == []
