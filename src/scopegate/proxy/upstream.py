"""Steps 4–5 of SPEC §3, the exchange: stream the request to the upstream and its answer back.

Bodies are never buffered whole: both directions move chunk by chunk under flow control, so a
1 GiB upload or download passes in constant memory. The request body limit is enforced while
streaming. Upstream failures become 502 (cannot connect, connection reset) or
504 (no answer in time); a failure after the answer has started can only abort the connection.

Timeouts: `connect_timeout` bounds the TCP (and TLS) connect; `timeout` bounds the wait for the
upstream's response headers once the request body is sent, and every pause while its body
streams. A single wall-clock deadline would cut off the long streamed transfers the gateway
must carry.
"""

from __future__ import annotations

import time

from scopegate.config.model import Upstream
from scopegate.errors import BodyTooLarge, ClientGone, UpstreamClosed, UpstreamTimeout
from scopegate.proxy.exchange import Exchange
from scopegate.proxy.headers import response_headers
from scopegate.proxy.http1 import AnswerHead, UpstreamConnection
from scopegate.proxy.pool import UpstreamPool
from scopegate.server.request import Request
from scopegate.wire.answer import Answer
from scopegate.wire.head import BODYLESS_STATUSES

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
SMALL_BODY = 65536  # answers up to this size (with Content-Length) are sent in one write


def _has_body(request: Request, status: int) -> bool:
    return request.method != "HEAD" and status not in BODYLESS_STATUSES


async def forward(pool: UpstreamPool, exchange: Exchange, head: bytes) -> None:
    """Send `head` and the request's body to the exchange's upstream and stream the answer back
    to the client, recording in `exchange` how long the upstream took and whether it broke off
    midway. Raises `BodyTooLarge` or an `UpstreamError` while no byte of an answer was sent."""
    request, upstream = exchange.request, exchange.upstream
    if upstream is None:
        raise RuntimeError("an exchange is forwarded only once its upstream is chosen")
    started = time.perf_counter()
    try:
        connection = await _send(pool, request, upstream, head, exchange.body_limit)
        try:
            relayed = await relay_answer(request, connection, upstream.timeout, exchange)
        finally:
            pool.release(upstream, connection)
        if not relayed:
            exchange.upstream_failure = "reset"
    finally:
        exchange.upstream_seconds = time.perf_counter() - started


async def _send(
    pool: UpstreamPool,
    request: Request,
    upstream: Upstream,
    head: bytes,
    body_limit: int,
) -> UpstreamConnection:
    """A connection whose answer's head has arrived. A request the upstream closed a kept-alive
    connection under (its keep-alive timeout racing our reuse) goes once more on a new one when
    repeating it is safe (RFC 9110 §9.2.2); anything else is a 502, as nginx does."""
    fresh = False
    while True:
        connection, reused = await pool.acquire(upstream, fresh=fresh)  # or UpstreamUnreachable
        try:
            connection.begin(head_only=request.method == "HEAD")
            connection.write(head)
            if request.body_exists:
                await _send_body(request, connection, body_limit, upstream.timeout)
            await connection.read_head(upstream.timeout)
            return connection
        except UpstreamClosed:
            if connection.head_arrived:
                connection.close_after_answer()
                return connection  # it answered before it stopped reading: relay that answer
            connection.close()
            if not (reused and _safe_to_repeat(request, connection)):
                raise
            fresh = True
        except BaseException:
            connection.close()
            raise


def _safe_to_repeat(request: Request, connection: UpstreamConnection) -> bool:
    """Whether a request the upstream closed on may go again on a new connection: no body was
    sent, the upstream sent nothing back, and the method is idempotent."""
    return (
        not request.body_exists
        and not connection.received_any
        and request.method in IDEMPOTENT_METHODS
    )


async def _send_body(
    request: Request, connection: UpstreamConnection, limit: int, max_wait: float
) -> None:
    """Stream the client's body (chunked when it came without a length), stopping past `limit`
    bytes or once the upstream has answered (an early 413 or 401 is relayed; the connection is
    then closed, not reused)."""
    chunked = request.content_length is None
    received = 0
    while chunk := await request.body.read():
        received += len(chunk)
        if received > limit:
            raise BodyTooLarge(limit)
        if connection.head_arrived:
            connection.close_after_answer()
            return
        connection.write(b"%x\r\n%b\r\n" % (len(chunk), chunk) if chunked else chunk)
        await connection.drain(max_wait)
    if chunked:
        connection.write(b"0\r\n\r\n")


async def relay_answer(
    request: Request,
    connection: UpstreamConnection,
    max_wait: float,
    exchange: Exchange,
) -> bool:
    """Relay the answer; False when it broke off midway (the client's connection is then cut)."""
    answer: AnswerHead = await connection.read_head(max_wait)
    headers = response_headers(answer.headers, exchange.answer_headers, exchange.cors_headers)
    length = answer.content_length
    if length is not None and length <= SMALL_BODY and _has_body(request, answer.status):
        # A small answer of known length is read whole and sent in one write with its head:
        # one system call instead of three, and a failure while reading is still a clean 502.
        body = await _read_all(connection, max_wait)
        request.answer(Answer(answer.status, headers, body, answer.reason))
        return True
    request.start(answer.status, answer.reason, headers, length)
    try:
        while chunk := await connection.read_body(max_wait):
            await request.write(chunk)
    except (UpstreamClosed, UpstreamTimeout, ClientGone):
        # The status line is gone already: the only honest signal left is a broken connection,
        # so the client cannot mistake a truncated body for a complete one.
        request.abort()
        return False
    request.finish()
    return True


async def _read_all(connection: UpstreamConnection, max_wait: float) -> bytes:
    parts = []
    while chunk := await connection.read_body(max_wait):
        parts.append(chunk)
    return parts[0] if len(parts) == 1 else b"".join(parts)
