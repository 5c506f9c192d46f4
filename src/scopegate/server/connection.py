"""One client connection on the public port: HTTP/1.1 parsed by llhttp (httptools), requests
handed to the gateway one at a time, answers written with their framing.

What happens before a request exists is answered here:
- A head llhttp refuses (bad framing, smuggling attempts) gets 400 problem+json; a head growing
  past `max_header_bytes` gets 431. Both are counted as denials of route `unmatched` and close
  the connection: after a framing doubt, nothing else on it can be trusted.
- A request head must arrive within `header_timeout` of its first byte, or the connection gets
  408 and is closed (slowloris holds a connection that long at most). A connection with no
  request in progress is closed after `idle_timeout`.
- Past `max_connections` open connections, a new one is answered 503 and closed at once.

Pipelined requests are parsed as they arrive and answered in order; reading pauses while a
request body waits unread past `BODY_HIGH_WATER` bytes, or while `MAX_PIPELINED` heads wait.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from email.utils import formatdate
from typing import cast

import httptools

from scopegate import logs
from scopegate.answer import Answer, Headers, reason_phrase
from scopegate.metrics import UNMATCHED, Metrics
from scopegate.pipeline.framing import head_too_large
from scopegate.problems import internal_error, plain_problem, problem_answer, request_id
from scopegate.reasons import Denied, Reason
from scopegate.server.request import ClientGone, Request

MAX_PIPELINED = 16  # request heads parsed ahead of the one being answered
LINGER_SECONDS = 2.0  # reading (and dropping) an unwanted body after a final answer
_NO_BODY_STATUSES = frozenset({204, 304})

Handler = Callable[[Request], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Settings:
    handler: Handler
    metrics: Metrics
    header_timeout: float
    idle_timeout: float
    max_header_bytes: int
    max_connections: int


class _DateLine:
    """`Date: <IMF-fixdate>` for answers that carry none, formatted once a second."""

    def __init__(self) -> None:
        self._second = -1
        self._line = b""

    def get(self) -> bytes:
        second = int(time.time())
        if second != self._second:
            self._second = second
            self._line = b"Date: " + formatdate(second, usegmt=True).encode("ascii") + b"\r\n"
        return self._line


_DATE = _DateLine()


def _has_header(headers: Headers, name: bytes) -> bool:
    return any(n.lower() == name for n, _ in headers)


def _head(status: int, reason: str, headers: Headers, framing: bytes, ending: bytes) -> list[bytes]:
    """An answer's head as pieces to join: status line, `headers`, `Date` when they carry none,
    the `framing` line (length or chunked, or nothing), and `ending` (`Connection` and the
    blank line)."""
    phrase = reason or reason_phrase(status)
    parts = [b"HTTP/1.1 %d %s\r\n" % (status, phrase.encode("latin-1", "replace"))]
    for name, value in headers:
        parts += (name, b": ", value, b"\r\n")
    if not _has_header(headers, b"date"):
        parts.append(_DATE.get())
    parts += (framing, ending)
    return parts


class HttpConnection(asyncio.Protocol):
    def __init__(self, settings: Settings, connections: set[HttpConnection]) -> None:
        self._settings = settings
        self._connections = connections
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpRequestParser(self)
        self._remote: str | None = None
        # The head being parsed.
        self._url = b""
        self._headers: Headers = []
        self._head_bytes = 0
        self._in_head = False
        self._head_timer: asyncio.TimerHandle | None = None
        self._idle_timer: asyncio.TimerHandle | None = None
        # Requests parsed, the first of them being answered.
        self._current: Request | None = None  # the one whose body is arriving
        self._queue: deque[Request] = deque()
        self._task: asyncio.Task[None] | None = None
        self._no_more_requests = False  # after an upgrade or a parse error
        self._shutting_down = False
        self._paused_for_body = False
        self._paused_for_queue = False
        self._writing_paused = False
        self._drain_waiter: asyncio.Future[None] | None = None
        # The streamed answer in progress.
        self._stream_chunked = False
        self._stream_bodyless = False
        self._close_after_answer = False
        self._lingering = False
        self._client_eof = False

    # Connection lifecycle

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is one, unregistered
        self._connections.add(self)
        peer = transport.get_extra_info("peername")
        self._remote = str(peer[0]) if isinstance(peer, tuple) else None
        if len(self._connections) > self._settings.max_connections:
            # Refused before a byte is read: a flood of idle connections cannot starve the
            # requests already in flight of file descriptors or event-loop time.
            self._refuse(503, "too many connections", "overloaded")
            return
        self._arm_idle_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._connections.discard(self)
        self._cancel_timers()
        for request in self._queue:
            request.body.fail()
        if self._current is not None:
            self._current.body.fail()
        drain = self._drain_waiter
        if drain is not None and not drain.done():
            drain.set_exception(ClientGone("the client closed the connection"))
        self._transport = None

    def shutdown(self) -> None:
        """Stop taking requests: close now if idle, else once the current answer is sent."""
        self._shutting_down = True
        if self._task is None and not self._in_head:
            self.close()

    @property
    def busy(self) -> bool:
        return self._task is not None

    def close(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.close()

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    def eof_received(self) -> bool | None:
        # A client that half-closes after its request still gets the answer, and then the end.
        if self._lingering or (self._task is None and not self._in_head):
            return None
        self._client_eof = True  # answer what arrived, then close
        if self._current is not None and not self._current.body.complete:
            self._current.body.fail()  # the rest of this body can never come
        return True

    # Reading

    def data_received(self, data: bytes) -> None:
        if self._no_more_requests or self._lingering:
            return
        if self._in_head:
            self._head_bytes += len(data)
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # Upgrade and CONNECT: scopegate speaks HTTP/1.1 only. The request is answered as
            # any other (the Upgrade header is never forwarded); nothing after it is read.
            self._stop_reading()
        except httptools.HttpParserError:
            self._parse_failed(
                Denied(Reason.INVALID_REQUEST, "the request is not valid HTTP/1.1", challenge=False)
            )
            return
        if self._in_head and self._head_bytes > self._settings.max_header_bytes:
            self._parse_failed(head_too_large(self._settings.max_header_bytes))

    def on_message_begin(self) -> None:
        self._in_head = True
        self._head_bytes = 0  # the chunk that began it is not counted: at most one read more
        self._url = b""
        self._headers = []
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        if self._settings.header_timeout > 0:
            self._head_timer = self._loop.call_later(
                self._settings.header_timeout, self._head_too_slow
            )

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        self._in_head = False
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        parser = self._parser
        major, _, minor = parser.get_http_version().partition(".")
        content_length: int | None = None
        chunked = False
        for name, value in self._headers:
            lower = name.lower()
            if lower == b"content-length":
                content_length = int(value)  # llhttp allows digits only, and one value
            elif lower == b"transfer-encoding":
                chunked = True  # llhttp refuses a request whose final coding is not chunked
        request = Request(
            self,
            parser.get_method().decode("ascii"),
            self._url.decode("utf-8", "surrogateescape"),
            (int(major), int(minor)),
            self._headers,
            content_length=None if chunked else content_length,
            chunked=chunked,
            keep_alive=parser.should_keep_alive(),
            remote=self._remote,
            max_body_pause=self._settings.idle_timeout,
        )
        self._current = request
        self._queue.append(request)
        if len(self._queue) > MAX_PIPELINED and not self._paused_for_queue:
            self._paused_for_queue = True
            self._pause_reading()
        if self._task is None:
            self._task = self._loop.create_task(self._answer_all())

    def on_body(self, body: bytes) -> None:
        if self._current is not None:
            self._current.body.put(body)

    def on_message_complete(self) -> None:
        if self._current is not None:
            self._current.body.finish()
            self._current = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The loop this connection runs on (its request bodies wait on it)."""
        return self._loop

    def pause_reading_for_body(self) -> None:
        if not self._paused_for_body:
            self._paused_for_body = True
            self._pause_reading()

    def resume_reading_for_body(self) -> None:
        if self._paused_for_body:
            self._paused_for_body = False
            self._maybe_resume_reading()

    def _pause_reading(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.pause_reading()

    def _maybe_resume_reading(self) -> None:
        if (
            not self._paused_for_body
            and not self._paused_for_queue
            and not self._no_more_requests
            and self._transport is not None
            and not self._transport.is_closing()
        ):
            self._transport.resume_reading()

    def _stop_reading(self) -> None:
        self._no_more_requests = True
        self._pause_reading()

    # Answering, one request at a time

    async def _answer_all(self) -> None:
        try:
            while self._queue:
                request = self._queue[0]
                await self._answer_one(request)
                self._queue.popleft()
                if self._paused_for_queue and len(self._queue) <= MAX_PIPELINED // 2:
                    self._paused_for_queue = False
                    self._maybe_resume_reading()
                if self._close_after_answer or self._transport is None:
                    self._queue.clear()
                    if request.body.complete or self._no_more_requests or self._client_eof:
                        self.close()
                    else:
                        self._linger()
                    return
        finally:
            self._task = None
        if self._shutting_down or self._client_eof:
            self.close()
        elif not self._in_head:
            self._arm_idle_timer()

    async def _answer_one(self, request: Request) -> None:
        try:
            await self._settings.handler(request)
        except ClientGone:
            self._close_after_answer = True
            return
        except Exception as error:  # the gateway's own failure: answered 500, then closed
            if request.started:
                self.abort()
            else:
                rid = request_id(None)
                logs.event("unhandled error", logging.ERROR, request_id=rid, error=repr(error))
                self._settings.metrics.answered(UNMATCHED, request.method, 500, 0.0)
                request.answer(internal_error(rid))
            self._close_after_answer = True
            return
        if not request.started:
            self.abort()  # a handler that answered nothing: the client must not wait forever
            self._close_after_answer = True

    def _must_close(self, request: Request, asked: bool) -> bool:
        close = (
            asked
            or not request.keep_alive
            or not request.body.complete  # an unread body cannot be skipped safely
            or self._shutting_down
            or self._no_more_requests
        )
        if close:
            self._close_after_answer = True
        return close

    def send_answer(self, request: Request, answer: Answer) -> None:
        close = self._must_close(request, answer.close)
        bodyless = answer.status in _NO_BODY_STATUSES or answer.status < 200
        framing = b"" if bodyless else b"Content-Length: %d\r\n" % len(answer.body)
        parts = _head(answer.status, answer.reason, answer.headers, framing,
                      self._connection_line(request, close))  # fmt: skip
        if not bodyless and request.method != "HEAD":
            parts.append(answer.body)
        self.write(b"".join(parts))

    def start_stream(
        self, request: Request, status: int, reason: str, headers: Headers, length: int | None
    ) -> None:
        bodyless = status in _NO_BODY_STATUSES or status < 200
        self._stream_bodyless = bodyless or request.method == "HEAD"
        self._stream_chunked = False
        close_when_done = False
        framing = b""
        if not bodyless:
            if length is not None:
                framing = b"Content-Length: %d\r\n" % length
            elif request.method == "HEAD":
                pass  # a HEAD answer of unknown length says nothing of it
            elif request.version >= (1, 1):
                framing = b"Transfer-Encoding: chunked\r\n"
                self._stream_chunked = True
            else:
                close_when_done = True  # HTTP/1.0: the body ends with the connection
        close = self._must_close(request, close_when_done)
        ending = self._connection_line(request, close)
        self.write(b"".join(_head(status, reason, headers, framing, ending)))

    async def write_stream(self, chunk: bytes) -> None:
        if self._stream_bodyless or not chunk:
            return
        transport = self._transport
        if transport is None or transport.is_closing():
            raise ClientGone("the client closed the connection during the answer")
        if self._stream_chunked:
            transport.writelines((b"%x\r\n" % len(chunk), chunk, b"\r\n"))
        else:
            transport.write(chunk)
        if self._writing_paused:
            waiter = self._loop.create_future()
            self._drain_waiter = waiter
            await waiter

    def finish_stream(self) -> None:
        if self._stream_chunked:
            self.write(b"0\r\n\r\n")

    def write(self, data: bytes) -> None:
        transport = self._transport
        if transport is not None and not transport.is_closing():
            transport.write(data)

    def _connection_line(self, request: Request, close: bool) -> bytes:
        if close:
            return b"Connection: close\r\n\r\n"
        if request.version == (1, 0):
            return b"Connection: keep-alive\r\n\r\n"
        return b"\r\n"

    def pause_writing(self) -> None:
        self._writing_paused = True

    def resume_writing(self) -> None:
        self._writing_paused = False
        waiter = self._drain_waiter
        if waiter is not None:
            self._drain_waiter = None
            if not waiter.done():
                waiter.set_result(None)

    # What fails before a request exists

    def _parse_failed(self, denied: Denied) -> None:
        self._stop_reading()
        if self._current is not None:
            self._current.body.fail(denied)  # the request whose body broke is refused too
        if self._task is not None or self._queue:
            self._close_after_answer = True  # answer what came before, then close
            return
        self._settings.metrics.denied(UNMATCHED, denied.reason)
        self._settings.metrics.answered(UNMATCHED, "OTHER", denied.reason.status, 0.0)
        answer = problem_answer(denied, request_id(None))
        self.write(self._bare_answer(answer))
        self.close()

    def _head_too_slow(self) -> None:
        self._head_timer = None
        if self._in_head:
            self._refuse(408, "the request head did not arrive in time", "timeout")

    def _idle_too_long(self) -> None:
        self._idle_timer = None
        if self._task is None and not self._in_head:
            self.close()

    def _refuse(self, status: int, detail: str, slug: str) -> None:
        self._stop_reading()
        self._settings.metrics.answered(UNMATCHED, "OTHER", status, 0.0)
        answer = plain_problem(status, reason_phrase(status), detail, slug, request_id(None))
        self.write(self._bare_answer(answer))
        self.close()

    @staticmethod
    def _bare_answer(answer: Answer) -> bytes:
        """An answer to no request (a head that never became one), closing the connection."""
        framing = b"Content-Length: %d\r\n" % len(answer.body)
        head = _head(answer.status, "", answer.headers, framing, b"Connection: close\r\n\r\n")
        return b"".join([*head, answer.body])

    def _linger(self) -> None:
        """Close after an answer sent while the client is still sending its body: closing at
        once would reset the connection, and a reset can wipe the answer from the client's
        buffer before it is read. So the answer is followed by our end of the stream, and what
        the client still sends is read and dropped for up to `LINGER_SECONDS`."""
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        self._lingering = True
        self._paused_for_body = self._paused_for_queue = False
        if transport.can_write_eof():
            transport.write_eof()
        transport.resume_reading()
        self._loop.call_later(LINGER_SECONDS, self.close)

    def _arm_idle_timer(self) -> None:
        if self._settings.idle_timeout > 0:
            self._idle_timer = self._loop.call_later(
                self._settings.idle_timeout, self._idle_too_long
            )

    def _cancel_timers(self) -> None:
        for timer in (self._head_timer, self._idle_timer):
            if timer is not None:
                timer.cancel()
        self._head_timer = self._idle_timer = None
