"""One client connection on the public port: aiohttp's HTTP/1 handler, with scopegate's answers for
what goes wrong before a request exists.

- Errors aiohttp's parser raises (bad framing, oversized lines) are answered as problem+json with
  a request id, counted as denials of route `unmatched`, and the connection is closed.
- A request head (request line and headers) must arrive within `header_timeout` of its first
  byte, or the connection gets 408 and is closed: a client trickling headers byte by byte
  (slowloris) holds a connection for that long at most.
- Past `max_connections` open connections, a new one is answered 503 and closed at once.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import LineTooLong
from aiohttp.web_protocol import RequestHandler

from scopegate import logs
from scopegate.metrics import UNMATCHED, Metrics
from scopegate.problems import plain_problem, problem_body, problem_response, request_id
from scopegate.reasons import Denied, Reason


def _parser_denial(exc: BaseException | None) -> Denied:
    if isinstance(exc, LineTooLong):
        return Denied(
            Reason.HEADERS_TOO_LARGE, "a request line or header is too long", challenge=False
        )
    # The parser's own message quotes the offending bytes; the client is told the kind only.
    return Denied(Reason.INVALID_REQUEST, "the request is not valid HTTP/1.1", challenge=False)


def canned_answer(status: int, phrase: str, detail: str, slug: str) -> bytes:
    """A complete problem+json answer, written straight to a connection with no request."""
    body = problem_body(status, phrase, detail, slug)
    head = (
        f"HTTP/1.1 {status} {phrase}\r\n"
        "Content-Type: application/problem+json\r\n"
        f"Content-Length: {len(body)}\r\n"
        f"X-Request-Id: {request_id(None)}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


class GatewayConnection(RequestHandler):
    """aiohttp's connection handler with scopegate's error answers and head timeout."""

    def __init__(self, manager: GatewayServer, *, header_timeout: float, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._server = manager
        self._header_timeout = header_timeout
        self._head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        if len(self._server.connections) > self._server.max_connections:
            # Refused before a byte is read: a flood of idle connections cannot starve the
            # requests already in flight of file descriptors or event-loop time.
            self._refuse(503, "Service Unavailable", "too many connections", "overloaded")

    def data_received(self, data: bytes) -> None:
        idle = not self._request_in_progress and not self._messages
        if idle and self._head_timer is None and self._header_timeout > 0:
            self._head_timer = self._loop.call_later(self._header_timeout, self._head_too_slow)
        parsed = self._request_count
        super().data_received(data)
        if self._request_count != parsed:
            self._cancel_head_timer()

    def connection_lost(self, exc: BaseException | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_too_slow(self) -> None:
        self._head_timer = None
        if not self._request_in_progress:
            self._refuse(
                408, "Request Timeout", "the request head did not arrive in time", "timeout"
            )

    def _refuse(self, status: int, phrase: str, detail: str, slug: str) -> None:
        transport = self.transport
        if transport is None:
            return
        self._server.metrics.answered(UNMATCHED, "OTHER", status, 0.0)
        transport.write(canned_answer(status, phrase, detail, slug))
        self.force_close()
        transport.close()

    def handle_error(
        self,
        request: Any,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if request.writer.output_size > 0:
            raise ConnectionError("the answer has started; the connection can only be closed")
        rid = request_id(None)
        metrics = self._server.metrics
        if status >= 500:
            logs.event("unhandled error", logging.ERROR, request_id=rid, error=repr(exc))
            response = plain_problem(
                status, "Internal error", "the gateway failed", "internal", rid
            )
            response.force_close()
        else:
            denied = _parser_denial(exc)
            response = problem_response(denied, rid, close=True)
            metrics.denied(UNMATCHED, denied.reason)
        metrics.answered(UNMATCHED, "OTHER", response.status, 0.0)
        return response


class GatewayServer(web.Server):
    """aiohttp's low-level server, making `GatewayConnection`s."""

    def __init__(
        self,
        handler: Any,
        metrics: Metrics,
        *,
        header_timeout: float,
        max_connections: int,
        **kwargs: Any,
    ) -> None:
        super().__init__(handler, **kwargs)
        self.metrics = metrics
        self.max_connections = max_connections
        self._header_timeout = header_timeout

    def __call__(self) -> RequestHandler:
        return GatewayConnection(
            self, loop=self._loop, header_timeout=self._header_timeout, **self._kwargs
        )
