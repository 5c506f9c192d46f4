"""Steps 4–5 of SPEC §3, the exchange: stream the request to the upstream and its answer back.

Bodies are never buffered whole: both directions move chunk by chunk through aiohttp's flow
control, so a 1 GiB upload or download passes in constant memory. The request body limit is
enforced while streaming. Upstream failures become 502 (cannot connect, connection reset) or
504 (no answer in time); a failure after the answer has started can only abort the connection.

Timeouts: `connect_timeout` bounds the TCP (and TLS) connect; `timeout` bounds the wait for the
upstream's response headers once the request body is sent, and every pause while its body
streams. A single wall-clock deadline would cut off the long streamed transfers the gateway
must carry.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Literal

import aiohttp
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

from scopegate.config.model import Upstream
from scopegate.proxy.headers import response_headers

FailureKind = Literal["connect", "timeout", "reset"]

# aiohttp's client would otherwise add headers the client never sent.
SKIP_AUTO_HEADERS = ("User-Agent", "Accept", "Accept-Encoding", "Content-Type")


SMALL_BODY = 65536  # answers up to this size (with Content-Length) are sent in one write


def _has_body(request: web.BaseRequest, status: int) -> bool:
    return request.method != "HEAD" and status >= 200 and status not in (204, 304)


class BodyTooLarge(Exception):
    """The client sent more body than the route allows; nothing complete reached the upstream."""


@dataclass(frozen=True, slots=True)
class UpstreamFailure(Exception):
    """The upstream could not be reached or did not answer; `kind` is the metric's `reason`."""

    kind: FailureKind
    detail: str

    @property
    def status(self) -> int:
        return 504 if self.kind == "timeout" else 502


def new_session(*, connection_limit: int = 1024) -> aiohttp.ClientSession:
    """The one client session of a gateway: pooled keep-alive connections, no cookie jar (cookies
    of one client must never ride along with another's request), nothing decompressed."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=connection_limit, enable_cleanup_closed=True),
        cookie_jar=aiohttp.DummyCookieJar(),
        auto_decompress=False,
        skip_auto_headers=SKIP_AUTO_HEADERS,
        timeout=aiohttp.ClientTimeout(total=None),
    )


class _LimitedBody:
    """The client's body as an async iterator that stops the transfer past `limit` bytes."""

    def __init__(self, content: aiohttp.StreamReader, limit: int) -> None:
        self._content = content
        self._limit = limit
        self.exceeded = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        received = 0
        async for chunk in self._content.iter_any():
            received += len(chunk)
            if received > self._limit:
                self.exceeded = True
                raise BodyTooLarge
            yield chunk


def _classify(exc: BaseException) -> UpstreamFailure:
    if isinstance(exc, aiohttp.ClientConnectorError | aiohttp.ConnectionTimeoutError):
        return UpstreamFailure("connect", "the upstream could not be reached")
    if isinstance(exc, asyncio.TimeoutError):
        return UpstreamFailure("timeout", "the upstream did not answer in time")
    return UpstreamFailure("reset", "the upstream closed the connection")


ObserveUpstream = Callable[[str, float], None]
ObserveFailure = Callable[[str, FailureKind], None]


async def forward(
    session: aiohttp.ClientSession,
    request: web.BaseRequest,
    upstream: Upstream,
    target: str,
    headers: CIMultiDict[str],
    *,
    body_limit: int,
    extra_response_headers: dict[str, str],
    observe: ObserveUpstream,
    observe_failure: ObserveFailure,
) -> web.StreamResponse:
    """Send the request to `upstream` at `target` (path and query, already encoded) and stream the
    answer back. Raises `BodyTooLarge` or `UpstreamFailure` while no byte of an answer was sent."""
    body = _LimitedBody(request.content, body_limit) if request.body_exists else None
    if request.content_length is not None:
        headers["Content-Length"] = str(request.content_length)
    timeout = aiohttp.ClientTimeout(
        total=None, sock_connect=upstream.connect_timeout, sock_read=upstream.timeout
    )
    started = time.perf_counter()
    try:
        async with session.request(
            request.method,
            URL(upstream.origin + target, encoded=True),
            headers=headers,
            data=body.__aiter__() if body is not None else None,
            allow_redirects=False,
            timeout=timeout,
            compress=None,
        ) as answer:
            relayed = await _relay(request, answer, extra_response_headers)
            if not relayed.complete:
                observe_failure(upstream.name, "reset")
            return relayed.response
    except BodyTooLarge:
        raise
    except (TimeoutError, aiohttp.ClientError, OSError) as exc:
        if body is not None and body.exceeded:
            raise BodyTooLarge from exc
        raise _classify(exc) from exc
    finally:
        observe(upstream.name, time.perf_counter() - started)


@dataclass(frozen=True, slots=True)
class _Relayed:
    response: web.StreamResponse
    complete: bool


async def _relay(
    request: web.BaseRequest,
    answer: aiohttp.ClientResponse,
    extra_headers: dict[str, str],
) -> _Relayed:
    headers = response_headers(answer.raw_headers)
    for name, value in extra_headers.items():
        headers.setdefault(name, value)
    chunked = "chunked" in answer.headers.get("Transfer-Encoding", "").lower()
    length = None if chunked else answer.content_length
    if length is not None and length <= SMALL_BODY and _has_body(request, answer.status):
        # A small answer of known length is read whole and sent in one write with its head:
        # one system call instead of three, and a failure while reading is still a clean 502.
        body = await answer.read()
        small = web.Response(status=answer.status, reason=answer.reason, body=body, headers=headers)
        return _Relayed(small, complete=True)
    response = web.StreamResponse(status=answer.status, reason=answer.reason, headers=headers)
    if length is not None:
        response.content_length = length
    await response.prepare(request)
    try:
        async for chunk in answer.content.iter_any():
            await response.write(chunk)
    except (TimeoutError, aiohttp.ClientError, OSError):
        # The status line is gone already: the only honest signal left is a broken connection,
        # so the client cannot mistake a truncated body for a complete one.
        if request.transport is not None:
            request.transport.abort()
        return _Relayed(response, complete=False)
    await response.write_eof()
    return _Relayed(response, complete=True)
