"""The reading half of a client connection: bytes in, requests out, parsed by llhttp
(httptools).

What the connection is reading is one `Phase` (`phase.py`), held here, and with it the
connection's one deadline, whoever sets it: the phase says which deadline runs.

Framing that is not body (a request head, a chunk-size line with its extensions, a trailer
section) is held to the head's limits: at most `max_header_bytes` each, and a head or trailer
section must arrive within `header_timeout`. Trailer fields are dropped: never merged into the
head, never read for the token or any other check, never forwarded.

One connection cannot starve the others: bytes are parsed a slice at a time, and once
`MAX_PIPELINED` requests wait to be answered the rest of a read is held, and reading paused
(one of the reasons in `pauses.py`), until the answers catch up.

What the reader cannot settle alone (a refused head, framing that broke, a deadline missed) it
hands to its `Owner`, the connection, which answers.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Protocol

import httptools

from scopegate.errors import BodyStalled, ScopegateError
from scopegate.reasons import Denied, Reason
from scopegate.server.pauses import FOR_QUEUE, STOPPED, ReadPauses
from scopegate.server.phase import Phase, framing_too_large, trailers_too_large
from scopegate.server.request import Channel, Request

MAX_PIPELINED = 16  # request heads parsed ahead of the one being answered
SLICE = 4096  # bytes parsed at a time outside a body: bounds the requests one read can queue
CHUNKED_SLICE = 16 * SLICE  # within a chunked body, whose end is not known in advance


class Owner(Channel, Protocol):
    """What the reader asks of the connection it reads for, besides being the requests'
    channel."""

    def framing_refused(self, denied: Denied) -> None:
        """Parsing stopped on `denied` framing: answer it, or close after the answers due."""

    def refuse(self, status: int, detail: str, slug: str) -> None:
        """Answer `status` to no request, and close."""

    def close_after_answer(self) -> None:
        """End the connection once the request being answered is."""


class _Refused(ScopegateError):
    """Raised in a parser callback to stop parsing; the reason is in `_refusal`."""


_NOT_HTTP = Denied(Reason.INVALID_REQUEST, "the request is not valid HTTP/1.1", challenge=False)
_PARSER_STOPS = (httptools.HttpParserError, httptools.HttpParserUpgrade)


class RequestReader:
    """Parses one connection's bytes into `queue`; llhttp calls its `on_*` methods."""

    def __init__(
        self,
        owner: Owner,
        loop: asyncio.AbstractEventLoop,
        pauses: ReadPauses,
        *,
        max_header_bytes: int,
        header_timeout: float,
        max_body_pause: float,
    ) -> None:
        self._owner: Owner | None = owner  # None once the connection is gone
        self._loop = loop
        self._max_header_bytes = max_header_bytes
        self._header_timeout = header_timeout
        self._max_body_pause = max_body_pause
        self._parser: httptools.HttpRequestParser | None = httptools.HttpRequestParser(self)
        self._pauses = pauses
        self._remote: str | None = None
        self.phase: str = Phase.IDLE
        self._deadline: asyncio.TimerHandle | None = None  # of the phase, or of idleness
        # Framing bytes (head, chunk line, trailer) fed since the parser last made progress.
        self._framing_bytes = 0
        self._progressed = False
        self._trailer_bytes = 0  # trailer fields parsed whole, of the message being read
        self._refusal: Denied | None = None  # why a callback stopped the parser
        self._body_left = 0  # of the Content-Length body being parsed; -1 for a chunked one
        self.held = b""  # read but not yet parsed: the queue was full
        self.request_type: type[Request] = Request  # `SecureRequest` on a TLS port
        self.upgraded = b""  # read past the head of an upgrade request: the tunnel's first bytes
        # The head being parsed.
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        # Requests parsed, the first of them being answered.
        self._current: Request | None = None  # the one whose body is arriving
        self.queue: deque[Request] = deque()

    def attach(self, remote: str | None) -> None:
        self._remote = remote

    def detach(self) -> None:
        """The connection is gone: no body will complete, no deadline runs. The parser and the
        reader refer to each other, the reader and its owner too, and so do the requests and
        their body streams: let go of them now, so that the memory they hold (a refused head
        can be as large as a read) comes back at once instead of at the next full collection."""
        self.cancel_deadline()
        for request in self.queue:
            request.body.fail()
        if self._current is not None:
            self._current.body.fail()
        self._parser = None
        self._owner = None
        self._current = None
        self.held = self.upgraded = b""
        self._headers = []

    # Feeding the parser

    def receive(self, data: bytes) -> None:
        """Bytes read from the client: parsed now, or held while the queue is full."""
        phase = self.phase
        if phase is Phase.STOPPED or phase is Phase.LINGERING:
            return
        if self.held:
            self.held += data  # a read that was under way when reading paused
            return
        parser = self._parser
        if len(data) > SLICE or phase is not Phase.IDLE or self.queue or parser is None:
            self._feed(data)
            return
        # The common case, parsed in line: one small read starting a request, nothing waiting.
        try:
            parser.feed_data(data)
        except _PARSER_STOPS as error:
            self._parser_stopped(error, data)

    def take_held(self) -> None:
        """Parse what was held back once the queue has room, then read again."""
        held, self.held = self.held, b""
        if held and self.phase is not Phase.STOPPED and self.phase is not Phase.LINGERING:
            self._feed(held)
        if not self.held:
            self._pauses.resume(FOR_QUEUE)

    def _feed(self, data: bytes) -> None:
        """Parse `data` a slice at a time, holding what is left once the queue is full."""
        parser = self._parser
        while data and parser is not None:
            if len(self.queue) > MAX_PIPELINED:
                self.held = data
                self._pauses.pause(FOR_QUEUE)
                return
            piece, data = self._next_piece(data)
            if not self._feed_piece(piece, self.phase):
                if self.phase is Phase.STOPPED:
                    self.upgraded += data  # nothing when parsing stopped on an error
                return

    def _feed_piece(self, piece: bytes, phase: str) -> bool:
        """Parse one piece read in `phase`; False once the connection stopped reading."""
        parser = self._parser
        if parser is None:
            return False
        self._progressed = False
        try:
            parser.feed_data(piece)
        except _PARSER_STOPS as error:
            self._parser_stopped(error, piece)
            return False
        return self._progressed or not self._count_framing(phase, len(piece))

    def _parser_stopped(self, error: Exception, piece: bytes) -> None:
        if isinstance(error, httptools.HttpParserUpgrade):
            # Upgrade and CONNECT: nothing after the head is parsed. The request is answered
            # as any other (the Upgrade header is not forwarded), unless its route relays
            # WebSockets: then what was read past the head goes to the tunnel.
            self.stop()
            self.upgraded = piece[error.args[0] :]
        else:
            self._parse_failed(self._refusal or _NOT_HTTP)

    def _next_piece(self, data: bytes) -> tuple[bytes, bytes]:
        phase = self.phase
        if phase is Phase.IDLE:
            size = SLICE
        elif phase is Phase.BODY:
            if self._body_left > SLICE:
                size = self._body_left  # the rest of a declared body goes in one piece
            else:
                size = CHUNKED_SLICE if self._body_left < 0 else SLICE
        else:
            # Framing: never parse past the element's limit unseen, however large the read.
            budget = self._max_header_bytes - self._framing_bytes + 1
            size = max(1, min(CHUNKED_SLICE if self._body_left < 0 else SLICE, budget))
        if len(data) <= size:
            return data, b""
        return data[:size], data[size:]

    def _count_framing(self, phase: str, size: int) -> bool:
        """Count bytes that made no progress against the phase's limit; True when refused."""
        if phase is Phase.IDLE or phase is Phase.BODY:
            return False
        self._framing_bytes += size
        limit = self._max_header_bytes
        if self._framing_bytes <= limit:
            return False
        self._parse_failed(framing_too_large(phase, limit))
        return True

    def _parse_failed(self, denied: Denied) -> None:
        self.stop()
        if self._current is not None:
            self._current.body.fail(denied)  # the request whose body broke is refused too
        if self._owner is not None:
            self._owner.framing_refused(denied)

    # The parser's callbacks. Each one that marks progress enters its phase in line (phase,
    # progress, framing count) rather than through a helper: they run several times a request.

    def on_message_begin(self) -> None:
        self.phase = Phase.HEAD
        self._progressed = True
        self._framing_bytes = 0
        self._url = b""
        self._headers = []
        if self._deadline is not None:
            self._deadline.cancel()  # the idle deadline
        self._deadline = (
            self._loop.call_later(self._header_timeout, self._head_too_slow)
            if self._header_timeout > 0
            else None
        )

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.phase is Phase.HEAD:
            self._headers.append((name, value))
            return
        # A trailer field: dropped unread (SPEC §3.1), but its size counts like a header's.
        self._trailer_bytes += len(name) + len(value) + 4
        if self._trailer_bytes > self._max_header_bytes:
            self._refusal = trailers_too_large(self._max_header_bytes)
            raise _Refused  # stops the parser before the message can complete

    def on_headers_complete(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        parser = self._parser
        owner = self._owner
        if parser is None or owner is None:
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
        self.phase = Phase.CHUNK_LINE if chunked else Phase.BODY
        self._progressed = True
        self._framing_bytes = 0
        self._body_left = -1 if chunked else content_length or 0
        request = self.request_type(
            owner,
            parser.get_method().decode("ascii"),
            self._url.decode("utf-8", "surrogateescape"),
            (int(major), int(minor)),
            self._headers,
            content_length=None if chunked else content_length,
            chunked=chunked,
            keep_alive=parser.should_keep_alive(),
            remote=self._remote,
            max_body_pause=self._max_body_pause,
        )
        self._headers = []
        self._current = request
        self.queue.append(request)

    def on_body(self, body: bytes) -> None:
        self._enter_body_phase(Phase.BODY)
        if self._body_left > 0:
            self._body_left -= len(body)
        if self._current is not None:
            self._current.body.put(body)

    def on_chunk_header(self) -> None:
        self._enter_body_phase(Phase.AFTER_CHUNK_LINE)
        # The chunk's data, or after the last chunk its trailer section, must follow in time.
        if self._header_timeout > 0:
            self.set_deadline(self._header_timeout, self._trailer_too_slow)

    def on_chunk_complete(self) -> None:
        self._enter_body_phase(Phase.CHUNK_LINE)

    def _enter_body_phase(self, phase: str) -> None:
        """Progress within a body: the deadline for a chunk's data or trailer is met."""
        if self.phase is Phase.AFTER_CHUNK_LINE:
            self.cancel_deadline()
        self.phase = phase
        self._progressed = True
        self._framing_bytes = 0

    def on_message_complete(self) -> None:
        if self.phase is Phase.AFTER_CHUNK_LINE:
            self.cancel_deadline()
        self.phase = Phase.IDLE
        self._progressed = True
        self._framing_bytes = 0
        self._body_left = 0
        self._trailer_bytes = 0
        if self._current is not None:
            self._current.body.finish()
            self._current = None

    # Stopping

    def stop(self) -> None:
        """Parse nothing more: reading stays paused until the connection ends or lingers."""
        self.phase = Phase.STOPPED
        self.held = b""
        self._pauses.pause(STOPPED)

    def switch(self) -> bytes:
        """The upgrade was accepted: nothing more is parsed or timed here. Returns what was read
        past the upgrade request's head, the tunnel's first bytes."""
        self.cancel_deadline()
        self.phase = Phase.SWITCHED
        self._pauses.forget()  # the tunnel reads from now on
        self._parser = None  # a relayed connection may live for hours: hold no parser meanwhile
        rest, self.upgraded = self.upgraded, b""
        return rest

    def linger(self) -> None:
        """Answered and closing: whatever arrives from now on is dropped unparsed. The owner
        resumes reading on the transport itself, once its end of the stream is written."""
        self.phase = Phase.LINGERING
        self.held = b""
        self._pauses.forget()

    def cut_body(self) -> None:
        """The client ended its side: the body arriving, if unfinished, never will be."""
        if self._current is not None and not self._current.body.complete:
            self._current.body.fail()

    # The deadline

    def set_deadline(self, seconds: float, callback: Callable[[], None]) -> None:
        """Run `callback` in `seconds` unless a phase's deadline replaces it first."""
        if self._deadline is not None:
            self._deadline.cancel()
        self._deadline = self._loop.call_later(seconds, callback)

    def cancel_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _head_too_slow(self) -> None:
        self._deadline = None
        if self.phase is Phase.HEAD and self._owner is not None:
            self._owner.refuse(408, "the request head did not arrive in time", "timeout")

    def _trailer_too_slow(self) -> None:
        self._deadline = None
        current = self._current
        if self.phase is Phase.AFTER_CHUNK_LINE and current is not None:
            self.stop()
            if self._owner is not None:
                self._owner.close_after_answer()
            current.body.fail(BodyStalled(self._header_timeout, "the request's trailer section"))
