"""Framing the gateway refuses (SPEC §3.1): 400, 431 or 501 as problem+json, the connection
closed, nothing forwarded."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import Env
from tests.support.rawhttp import exchange, parse, read_raw

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
    pytest.param(b"GET /public/a HTTP/1.1\r\n\r\n", 400, id="HTTP/1.1 without Host"),
    pytest.param(b"GET /public/a HTTP/1.1\r\nHost: a,b\r\n\r\n", 400, id="Host as a list"),
    pytest.param(b"GET /public/a HTTP/1.1\r\nHost: user@a\r\n\r\n", 400, id="Host with userinfo"),
    pytest.param(
        b"GET /public/a HTTP/1.1\r\nHost: [::g]:80\r\n\r\n", 400, id="Host with a bad IPv6 literal"
    ),
    pytest.param(
        b"POST /public/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
        501,
        id="a transfer coding before chunked",
    ),
    pytest.param(
        b"POST /public/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        501,
        id="a transfer coding and chunked in two headers",
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


async def test_an_unimplemented_transfer_coding_is_counted_as_invalid_request(env: Env) -> None:
    """501 for `gzip, chunked`, counted under `invalid_request`, and nothing after it on the
    same connection is read: a request pipelined behind it gets no answer."""
    pipelined = (
        b"POST /public/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"
        b"GET /public/b HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    answers = parse(await read_raw(env.port, pipelined, timeout=3))
    assert [answer.status for answer in answers] == [501]
    assert answers[0].header("WWW-Authenticate") is None
    assert env.sample("scopegate_denials_total", route="unmatched", reason="invalid_request") == 1
    assert env.sample("scopegate_requests_total", route="unmatched", method="POST", code="501") == 1
    assert env.upstream.received == []
