"""One client connection on the public port: HTTP/1.1 parsed by llhttp (httptools), requests
handed to the gateway one at a time, answers written with their framing.

What the connection is reading is one `Phase`; every question about what a byte means, which
limit it counts against and which deadline runs is answered by that phase alone.

What happens before a request exists is answered here:
- A head llhttp refuses (bad framing, smuggling attempts) gets 400 problem+json; a head growing
  past `max_header_bytes` gets 431. Both are counted as denials of route `unmatched` and close
  the connection: after a framing doubt, nothing else on it can be trusted.
- A request head must arrive within `header_timeout` of its first byte, or the connection gets
  408 and is closed (slowloris holds a connection that long at most). A connection with no
  request in progress is closed after `idle_timeout`.
- Past `max_connections` open connections, a new one is answered 503 and closed.
Every such answer is followed by a lingering close, so that a reset cannot wipe it from the
client's buffer before it is read.

Framing that is not body (a chunk-size line with its extensions, a trailer section) is held to
the head's limits: at most `max_header_bytes` each, and a trailer section must arrive within
`header_timeout`. Trailer fields are dropped: never merged into the head, never read for the
token or any other check, never forwarded.

One connection cannot starve the others: pipelined requests are parsed a slice at a time, at
most `MAX_PIPELINED` wait, and the event loop takes a turn between two answers. A client that
does not read its answers stops being read (the transport's write backpressure pauses reading)
and is cut off when nothing it was sent moves for `idle_timeout`.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final, cast

import httptools

from scopegate.errors import BodyStalled, ClientGone
from scopegate.reasons import Denied, Reason
from scopegate.server.request import Request
from scopegate.telemetry import logs
from scopegate.telemetry.metrics import UNMATCHED, Metrics
from scopegate.wire.answer import Answer, Headers, reason_phrase
from scopegate.wire.framing import head_too_large
from scopegate.wire.head import (
    BODYLESS_STATUSES,
    CLOSE,
    answer_head,
    connection_line,
    framing_for,
)
from scopegate.wire.inbox import wait_at_most
from scopegate.wire.problems import internal_error, plain_problem, problem_answer, request_id

MAX_PIPELINED = 16  # request heads parsed ahead of the one being answered
SLICE = 4096  # bytes parsed at a time outside a body: bounds the requests one read can queue
CHUNKED_SLICE = 16 * SLICE  # within a chunked body, whose end is not known in advance
LINGER_SECONDS = 2.0  # reading (and dropping) an unwanted body after a final answer

Handler = Callable[[Request], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Settings:
    handler: Handler
    metrics: Metrics
    header_timeout: float
    idle_timeout: float
    max_header_bytes: int
    max_connections: int


class Phase:
    """What the bytes arriving on the connection are. Plain constants rather than an Enum: an
    Enum member costs several times a class attribute to look up, and these are read several
    times a request."""

    IDLE: Final = "idle"  # nothing yet of the next request
    HEAD: Final = "head"  # a request line and header section
    BODY: Final = "body"  # body bytes: of a Content-Length body, or of a chunk
    CHUNK_LINE: Final = "chunk line"  # a chunk-size line, extensions included
    # The chunk's data; or, after the last chunk, the trailer section.
    AFTER_CHUNK_LINE: Final = "after chunk line"
    STOPPED: Final = "stopped"  # nothing more is parsed: after an upgrade or a framing error
    LINGERING: Final = "lingering"  # answered and closing: what still arrives is read and dropped


# Why reading is paused; reading goes on only when no reason is left.
_FOR_BODY = 1  # a request body is buffered past its high-water mark
_FOR_QUEUE = 2  # `MAX_PIPELINED` requests wait to be answered
_FOR_WRITES = 4  # the client is not taking the answers already sent
_STOPPED = 8  # nothing more will be parsed


class _Refused(Exception):
    """Raised in a parser callback to stop parsing; the reason is in `_refusal`."""


_NOT_HTTP = Denied(Reason.INVALID_REQUEST, "the request is not valid HTTP/1.1", challenge=False)


class HttpConnection(asyncio.Protocol):
    def __init__(self, settings: Settings, connections: set[HttpConnection]) -> None:
        self._settings = settings
        self._connections = connections
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._parser: httptools.HttpRequestParser | None = httptools.HttpRequestParser(self)
        self._remote: str | None = None
        self._phase: str = Phase.IDLE
        self._deadline: asyncio.TimerHandle | None = None  # of the phase, or of idleness
        # Framing bytes (head, chunk line, trailer) fed since the parser last made progress.
        self._framing_bytes = 0
        self._progressed = False
        self._trailer_bytes = 0  # trailer fields parsed whole, of the message being read
        self._refusal: Denied | None = None  # why a callback stopped the parser
        self._body_left = 0  # of the Content-Length body being parsed; -1 for a chunked one
        self._held = b""  # read but not yet parsed: the queue was full
        self._paused = 0  # the `_FOR_*` reasons
        # The head being parsed.
        self._url = b""
        self._headers: Headers = []
        # Requests parsed, the first of them being answered.
        self._current: Request | None = None  # the one whose body is arriving
        self._queue: deque[Request] = deque()
        self._task: asyncio.Task[None] | None = None
        self._shutting_down = False
        self._writing_paused = False
        self._drain_waiter: asyncio.Future[None] | None = None
        # The streamed answer in progress.
        self._stream_chunked = False
        self._stream_bodyless = False
        self._close_after_answer = False
        self._client_eof = False

    # Connection lifecycle

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is one, unregistered
        self._connections.add(self)
        peer = transport.get_extra_info("peername")
        self._remote = str(peer[0]) if isinstance(peer, tuple) else None
        if len(self._connections) > self._settings.max_connections:
            # Refused before a byte is parsed: a flood of idle connections cannot starve the
            # requests already in flight of file descriptors or event-loop time.
            self._refuse(503, "too many connections", "overloaded")
            return
        self._arm_idle_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._connections.discard(self)
        self._cancel_deadline()
        for request in self._queue:
            request.body.fail()
        if self._current is not None:
            self._current.body.fail()
        drain = self._drain_waiter
        if drain is not None and not drain.done():
            drain.set_exception(ClientGone("the client closed the connection"))
        # The parser and this protocol refer to each other, and so do the requests and their
        # body streams: let go of them now, so that the memory they hold (a refused head can be
        # as large as a read) comes back at once instead of at the next full collection.
        self._parser = None
        self._current = None
        self._held = b""
        self._headers = []
        self._transport = None

    def shutdown(self) -> None:
        """Stop taking requests: close now if idle, else once the current answer is sent."""
        self._shutting_down = True
        if self._task is None and self._phase is not Phase.HEAD:
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
        if self._phase is Phase.LINGERING or (self._task is None and self._phase is Phase.IDLE):
            return None
        self._client_eof = True  # answer what arrived, then close
        if self._current is not None and not self._current.body.complete:
            self._current.body.fail()  # the rest of this body can never come
        return True

    # Reading

    def data_received(self, data: bytes) -> None:
        phase = self._phase
        if phase is Phase.STOPPED or phase is Phase.LINGERING:
            return
        if self._held:
            self._held += data  # a read that was under way when reading paused
            return
        parser = self._parser
        if len(data) > SLICE or phase is not Phase.IDLE or self._queue or parser is None:
            self._feed(data)
            return
        # The common case, parsed in line: one small read starting a request, nothing waiting.
        try:
            parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as error:
            self._parser_stopped(error)

    def _feed(self, data: bytes) -> None:
        """Parse `data` a slice at a time, holding what is left once the queue is full."""
        parser = self._parser
        while data and parser is not None:
            if len(self._queue) > MAX_PIPELINED:
                self._held = data
                self._pause(_FOR_QUEUE)
                return
            piece, data = self._next_piece(data)
            if not self._feed_piece(piece, self._phase):
                return

    def _feed_piece(self, piece: bytes, phase: str) -> bool:
        """Parse one piece read in `phase`; False once the connection stopped reading."""
        parser = self._parser
        if parser is None:
            return False
        self._progressed = False
        try:
            parser.feed_data(piece)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as error:
            self._parser_stopped(error)
            return False
        return self._progressed or not self._count_framing(phase, len(piece))

    def _parser_stopped(self, error: Exception) -> None:
        if isinstance(error, httptools.HttpParserUpgrade):
            # Upgrade and CONNECT: scopegate speaks HTTP/1.1 only. The request is answered
            # as any other (the Upgrade header is never forwarded); nothing after it is read.
            self._stop_reading()
        else:
            self._parse_failed(self._refusal or _NOT_HTTP)

    def _next_piece(self, data: bytes) -> tuple[bytes, bytes]:
        phase = self._phase
        if phase is Phase.IDLE:
            size = SLICE
        elif phase is Phase.BODY:
            if self._body_left > SLICE:
                size = self._body_left  # the rest of a declared body goes in one piece
            else:
                size = CHUNKED_SLICE if self._body_left < 0 else SLICE
        else:
            # Framing: never parse past the element's limit unseen, however large the read.
            budget = self._settings.max_header_bytes - self._framing_bytes + 1
            size = max(1, min(CHUNKED_SLICE if self._body_left < 0 else SLICE, budget))
        if len(data) <= size:
            return data, b""
        return data[:size], data[size:]

    def _count_framing(self, phase: str, size: int) -> bool:
        """Count bytes that made no progress against the phase's limit; True when refused."""
        if phase is Phase.IDLE or phase is Phase.BODY:
            return False
        self._framing_bytes += size
        limit = self._settings.max_header_bytes
        if self._framing_bytes <= limit:
            return False
        if phase is Phase.HEAD:
            self._parse_failed(head_too_large(limit))
        elif phase is Phase.CHUNK_LINE:
            self._parse_failed(chunk_line_too_long(limit))
        else:
            self._parse_failed(trailers_too_large(limit))
        return True

    # The parser's callbacks. Each one that marks progress enters its phase in line (phase,
    # progress, framing count) rather than through a helper: they run several times a request.

    def on_message_begin(self) -> None:
        self._phase = Phase.HEAD
        self._progressed = True
        self._framing_bytes = 0
        self._url = b""
        self._headers = []
        if self._deadline is not None:
            self._deadline.cancel()  # the idle deadline
        self._deadline = (
            self._loop.call_later(self._settings.header_timeout, self._head_too_slow)
            if self._settings.header_timeout > 0
            else None
        )

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._phase is Phase.HEAD:
            self._headers.append((name, value))
            return
        # A trailer field: dropped unread (SPEC §3.1), but its size counts like a header's.
        self._trailer_bytes += len(name) + len(value) + 4
        if self._trailer_bytes > self._settings.max_header_bytes:
            self._refusal = trailers_too_large(self._settings.max_header_bytes)
            raise _Refused  # stops the parser before the message can complete

    def on_headers_complete(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        parser = self._parser
        if parser is None:
            return
        major, _, minor = parser.get_http_version().partition(".")
        content_length: int | None = None
        chunked = False
        for name, value in self._headers:
            lower = name.lower()
            if lower == b"content-length":
                content_length = int(value)  # llhttp allows digits only, and one value
            elif lower == b"transfer-encoding":
                chunked = True  # llhttp refuses a request whose final coding is not chunked
        self._phase = Phase.CHUNK_LINE if chunked else Phase.BODY
        self._progressed = True
        self._framing_bytes = 0
        self._body_left = -1 if chunked else content_length or 0
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
        self._headers = []
        self._current = request
        self._queue.append(request)
        if self._task is None:
            self._task = self._loop.create_task(self._answer_all())

    def on_body(self, body: bytes) -> None:
        self._enter_body_phase(Phase.BODY)
        if self._body_left > 0:
            self._body_left -= len(body)
        if self._current is not None:
            self._current.body.put(body)

    def on_chunk_header(self) -> None:
        self._enter_body_phase(Phase.AFTER_CHUNK_LINE)
        # The chunk's data, or after the last chunk its trailer section, must follow in time.
        if self._settings.header_timeout > 0:
            self._set_deadline(self._settings.header_timeout, self._trailer_too_slow)

    def on_chunk_complete(self) -> None:
        self._enter_body_phase(Phase.CHUNK_LINE)

    def _enter_body_phase(self, phase: str) -> None:
        """Progress within a body: the deadline for a chunk's data or trailer is met."""
        if self._phase is Phase.AFTER_CHUNK_LINE:
            self._cancel_deadline()
        self._phase = phase
        self._progressed = True
        self._framing_bytes = 0

    def on_message_complete(self) -> None:
        if self._phase is Phase.AFTER_CHUNK_LINE:
            self._cancel_deadline()
        self._phase = Phase.IDLE
        self._progressed = True
        self._framing_bytes = 0
        self._body_left = 0
        self._trailer_bytes = 0
        if self._current is not None:
            self._current.body.finish()
            self._current = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The loop this connection runs on (its request bodies wait on it)."""
        return self._loop

    def pause_reading_for_body(self) -> None:
        self._pause(_FOR_BODY)

    def resume_reading_for_body(self) -> None:
        self._resume(_FOR_BODY)

    def _pause(self, reason: int) -> None:
        if not self._paused:
            transport = self._transport
            if transport is not None and not transport.is_closing():
                transport.pause_reading()
        self._paused |= reason

    def _resume(self, reason: int) -> None:
        if not self._paused & reason:
            return
        self._paused &= ~reason
        transport = self._transport
        if (
            not self._paused
            and self._phase is not Phase.STOPPED
            and transport is not None
            and not transport.is_closing()
        ):
            transport.resume_reading()

    def _stop_reading(self) -> None:
        self._phase = Phase.STOPPED
        self._held = b""
        self._pause(_STOPPED)

    def _take_held(self) -> None:
        """Parse what was held back once the queue has room, then read again."""
        held, self._held = self._held, b""
        if held and self._phase is not Phase.STOPPED and self._phase is not Phase.LINGERING:
            self._feed(held)
        if not self._held:
            self._resume(_FOR_QUEUE)

    # Answering, one request at a time

    async def _answer_all(self) -> None:
        try:
            while self._queue:
                request = self._queue[0]
                await self._answer_one(request)
                self._queue.popleft()
                if self._close_after_answer or self._transport is None:
                    self._queue.clear()
                    self._end_after(request)
                    return
                if self._held and len(self._queue) <= MAX_PIPELINED // 2:
                    self._take_held()
                if self._queue:
                    # Answers written but not taken: wait before answering more. And give the
                    # other connections a turn between two pipelined answers.
                    await self._wait_writable()
                    await asyncio.sleep(0)
        except ClientGone:
            self.abort()
            return
        finally:
            self._task = None
        if self._shutting_down or self._client_eof:
            self.close()
        elif self._phase is Phase.IDLE:
            self._arm_idle_timer()

    def _end_after(self, request: Request) -> None:
        """Close once `request` is answered: at once when nothing more can arrive, else after a
        lingering read, since unread bytes would turn the close into a reset."""
        if self._client_eof or (request.body.complete and self._phase is not Phase.STOPPED):
            self.close()
        else:
            self._linger()

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
        finally:
            if request.body.failure is not None:
                request.release()
        if not request.started:
            self.abort()  # a handler that answered nothing: the client must not wait forever
            self._close_after_answer = True

    def _must_close(self, request: Request, asked: bool) -> bool:
        close = (
            asked
            or not request.keep_alive
            or not request.body.complete  # an unread body cannot be skipped safely
            or self._shutting_down
            or self._phase is Phase.STOPPED
        )
        if close:
            self._close_after_answer = True
        return close

    def send_answer(self, request: Request, answer: Answer) -> None:
        close = self._must_close(request, answer.close)
        status = answer.status
        # A complete answer's framing is its length, unless its status allows no body at all.
        has_body = status not in BODYLESS_STATUSES
        framing = b"Content-Length: %d\r\n" % len(answer.body) if has_body else b""
        parts = answer_head(status, answer.reason, answer.headers, framing,
                            connection_line(request.version, close))  # fmt: skip
        if has_body and request.method != "HEAD":
            parts.append(answer.body)
        self.write(b"".join(parts))

    def start_stream(
        self, request: Request, status: int, reason: str, headers: Headers, length: int | None
    ) -> None:
        framing = framing_for(status, request.method, length, request.version)
        self._stream_bodyless = framing.bodyless
        self._stream_chunked = framing.chunked
        close = self._must_close(request, framing.ends_with_close)
        ending = connection_line(request.version, close)
        self.write(b"".join(answer_head(status, reason, headers, framing.line, ending)))

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
        await self._wait_writable()

    async def _wait_writable(self) -> None:
        """Wait while the client is not taking what was written: at most `idle_timeout`, then
        `ClientGone` (a client that stopped reading holds no task and no upstream for ever)."""
        if not self._writing_paused:
            return
        waiter = self._drain_waiter = self._loop.create_future()
        await wait_at_most(waiter, self._settings.idle_timeout or None, _send_timed_out)

    def finish_stream(self) -> None:
        if self._stream_chunked:
            self.write(b"0\r\n\r\n")

    def write(self, data: bytes) -> None:
        transport = self._transport
        if transport is not None and not transport.is_closing():
            transport.write(data)

    def pause_writing(self) -> None:
        self._writing_paused = True
        self._pause(_FOR_WRITES)

    def resume_writing(self) -> None:
        self._writing_paused = False
        waiter = self._drain_waiter
        if waiter is not None:
            self._drain_waiter = None
            if not waiter.done():
                waiter.set_result(None)
        self._resume(_FOR_WRITES)

    # What fails before a request exists, or in the framing around its body

    def _parse_failed(self, denied: Denied) -> None:
        self._stop_reading()
        if self._current is not None:
            self._current.body.fail(denied)  # the request whose body broke is refused too
        if self._task is not None or self._queue:
            self._close_after_answer = True  # answer what came before, then close
            return
        self._settings.metrics.denied(UNMATCHED, denied.reason)
        self._settings.metrics.answered(UNMATCHED, "OTHER", denied.status, 0.0)
        self._send_bare(problem_answer(denied, request_id(None)))

    def _head_too_slow(self) -> None:
        self._deadline = None
        if self._phase is Phase.HEAD:
            self._refuse(408, "the request head did not arrive in time", "timeout")

    def _trailer_too_slow(self) -> None:
        self._deadline = None
        if self._phase is Phase.AFTER_CHUNK_LINE and self._current is not None:
            self._stop_reading()
            self._close_after_answer = True
            self._current.body.fail(
                BodyStalled(self._settings.header_timeout, "the request's trailer section")
            )

    def _idle_too_long(self) -> None:
        self._deadline = None
        if self._task is None and self._phase is Phase.IDLE:
            self._close_or_abort()

    def _refuse(self, status: int, detail: str, slug: str) -> None:
        self._stop_reading()
        self._settings.metrics.answered(UNMATCHED, "OTHER", status, 0.0)
        self._send_bare(
            plain_problem(status, reason_phrase(status), detail, slug, request_id(None))
        )

    def _send_bare(self, answer: Answer) -> None:
        """An answer to no request (a head that never became one), then a lingering close."""
        framing = b"Content-Length: %d\r\n" % len(answer.body)
        head = answer_head(answer.status, "", answer.headers, framing, CLOSE)
        self.write(b"".join([*head, answer.body]))
        self._linger()

    def _linger(self) -> None:
        """Close after an answer while the client may still be sending: closing at once would
        reset the connection, and a reset can wipe the answer from the client's buffer before
        it is read. So the answer is followed by our end of the stream, and what the client
        still sends is read and dropped for up to `LINGER_SECONDS`."""
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        if self._client_eof:
            self.close()  # the client has said all it will: nothing is left to read
            return
        self._phase = Phase.LINGERING
        self._held = b""
        self._paused = 0
        if transport.can_write_eof():
            try:
                transport.write_eof()
            except OSError:  # the peer is gone already
                self.abort()
                return
        transport.resume_reading()
        self._set_deadline(LINGER_SECONDS, self._close_or_abort)

    def _close_or_abort(self) -> None:
        """Close; or cut the connection if it still holds bytes the client never took, since
        a close waits until they are sent."""
        transport = self._transport
        if transport is not None and transport.get_write_buffer_size():
            self.abort()
        else:
            self.close()

    def _arm_idle_timer(self) -> None:
        if self._settings.idle_timeout > 0:
            if self._deadline is not None:
                self._deadline.cancel()
            self._deadline = self._loop.call_later(self._settings.idle_timeout, self._idle_too_long)

    def _set_deadline(self, seconds: float, callback: Callable[[], None]) -> None:
        self._cancel_deadline()
        self._deadline = self._loop.call_later(seconds, callback)

    def _cancel_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None


def chunk_line_too_long(limit: int) -> Denied:
    return Denied(
        Reason.INVALID_REQUEST,
        f"a chunk-size line, extensions included, exceeds {limit} bytes",
        challenge=False,
    )


def trailers_too_large(limit: int) -> Denied:
    return Denied(
        Reason.HEADERS_TOO_LARGE,
        f"the request's trailer section exceeds {limit} bytes",
        challenge=False,
    )


def _send_timed_out(seconds: float) -> Exception:
    return ClientGone(f"the client took none of the answer for {seconds:g} s")
