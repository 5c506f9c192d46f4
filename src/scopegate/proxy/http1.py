"""One keep-alive HTTP/1.1 connection to an upstream, as an asyncio protocol.

llhttp (through httptools, the parser uvicorn uses) reads the answers; scopegate writes the
requests itself, because it already holds every header as the text that goes on the wire. This
is the whole client: no cookie jar, no redirects, no decompression, no URL object per request,
which is where a general-purpose client spends most of a proxy's time.

Flow control both ways: reading pauses while more than `READ_HIGH_WATER` bytes of an answer wait
for the client, and writers wait in `drain` (a `WriteFlow`, as the server's answers do) while
the transport's buffer is full, so a large body never piles up in memory.

Usage (one exchange; `pool.py` hands out connections)::

    conn.begin(head_only=method == "HEAD")
    conn.write(request_head)            # and body chunks, with `await conn.drain(max_wait)`
    answer = await conn.read_head(max_wait)
    while chunk := await conn.read_body(max_wait):
        ...
    conn.reusable                       # True when the answer ended cleanly and keep-alive holds
"""

from __future__ import annotations

import asyncio
from typing import cast

import httptools

from scopegate.errors import UpstreamClosed, UpstreamTimeout
from scopegate.wire.flow import WriteFlow
from scopegate.wire.inbox import Inbox
from scopegate.wire.tunnel import Tunnel

READ_HIGH_WATER = 256 * 1024  # buffered answer bytes before the socket stops being read
MAX_HEAD_BYTES = 65_536  # an answer's status line and headers (1xx ones included)


class AnswerHead:
    """The status line and headers of the upstream's final (non-1xx) answer."""

    __slots__ = ("chunked", "content_length", "headers", "reason", "status")

    def __init__(
        self, status: int, reason: str, headers: list[tuple[bytes, bytes]], chunked: bool
    ) -> None:
        self.status = status
        self.reason = reason
        self.headers = headers
        self.chunked = chunked
        self.content_length: int | None = None
        if not chunked:
            for name, value in headers:
                if name.lower() == b"content-length":
                    self.content_length = int(value)  # llhttp accepted it: digits only, one value


class UpstreamConnection(asyncio.Protocol):
    """A connection that carries one exchange at a time; `pool.UpstreamPool` reuses it."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._transport: asyncio.Transport | None = None
        self._parser: httptools.HttpResponseParser | None = None
        self._head_only = False
        self._upgrade = False  # the request asked to switch protocols: a 101 is its answer
        self._upgraded = b""  # what followed the 101's head, for the tunnel
        self._status_text = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._head: AnswerHead | None = None
        self._body = self._new_inbox()
        self._flow = WriteFlow(loop)
        self._keep_alive = False
        self._spoiled = False  # bytes after a complete answer, an unsent body: never reuse
        self._failure: Exception | None = None
        self.received_any = False  # a byte of this exchange's answer arrived
        self._head_bytes = 0
        self.closed = False
        self.idle_since = 0.0

    # The exchange, as the forwarding code sees it.

    def begin(self, *, head_only: bool, upgrade: bool = False) -> None:
        """Start a new exchange; a HEAD request's answer ends with its headers, and an `upgrade`
        request's may be a 101, after which the connection is a tunnel's (`hand_over`)."""
        self._parser = httptools.HttpResponseParser(self)
        self._head_only = head_only
        self._upgrade = upgrade
        self._status_text = b""
        self._headers = []
        self._head = None
        self._body = self._new_inbox()
        self._keep_alive = False
        self._head_bytes = 0
        self.received_any = False

    def write(self, data: bytes) -> None:
        if self._transport is None or self.closed:
            raise UpstreamClosed("the upstream connection is closed")
        self._transport.write(data)

    async def drain(self, max_wait: float) -> None:
        """Wait while the socket's send buffer is full (at most `max_wait` seconds at a time)."""
        if self._failure is not None:
            raise self._failure
        await self._flow.drain(max_wait, UpstreamTimeout)

    @property
    def head_arrived(self) -> bool:
        return self._head is not None

    async def read_head(self, max_wait: float) -> AnswerHead:
        while self._head is None:
            if self._failure is not None:
                raise self._failure
            await self._body.wait(max_wait, UpstreamTimeout)
        return self._head

    async def read_body(self, max_wait: float) -> bytes:
        """The next part of the answer's body; b"" once it is complete."""
        return await self._body.get(max_wait, UpstreamTimeout)

    @property
    def reusable(self) -> bool:
        """The answer ended cleanly, both sides keep the connection, nothing else arrived."""
        return (
            self._body.complete
            and self._keep_alive
            and not self._body.pending
            and not self._spoiled
            and not self.closed
            and self._failure is None
        )

    def close_after_answer(self) -> None:
        """The request was not sent whole (the upstream answered early): never reuse this."""
        self._spoiled = True

    def hand_over(self, tunnel: Tunnel) -> None:
        """After a 101: the connection's bytes are `tunnel`'s, those read past the head first.
        It is never reused."""
        transport = self._transport
        if transport is None or self.closed:
            raise UpstreamClosed("the upstream closed the connection after switching protocols")
        self.closed = True
        self._transport = None
        self._parser = None  # nothing more is parsed here; the tunnel may live for hours
        tunnel.take(tunnel.upstream, transport, self._upgraded)
        self._upgraded = b""

    def close(self) -> None:
        if self._transport is not None and not self.closed:
            self._transport.close()
        self.closed = True

    def _new_inbox(self) -> Inbox:
        return Inbox(self._loop, self._pause_reading, self._resume_reading, READ_HIGH_WATER)

    def _pause_reading(self) -> None:
        if self._transport is not None:
            self._transport.pause_reading()

    def _resume_reading(self) -> None:
        if self._transport is not None and not self.closed:
            self._transport.resume_reading()

    def _fail(self, failure: Exception) -> None:
        if self._failure is None:
            self._failure = failure
        self._body.fail(failure)
        self._flow.fail(failure)

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is one, unregistered

    def data_received(self, data: bytes) -> None:
        if self._parser is None or self._body.complete:
            self._spoiled = True  # nobody asked: an answer out of turn
            self.close()
            return
        self.received_any = True
        if self._head is None:
            self._head_bytes += len(data)
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as switched:
            if self._head is not None and self._head.status == 101:
                # Asked for: what follows the head is the new protocol's, kept for the tunnel.
                self._upgraded = data[switched.args[0] :]
                if self._transport is not None:
                    self._transport.pause_reading()
                return
            self._fail(UpstreamClosed("the upstream switched protocols unasked"))
            self.close()
            return
        except httptools.HttpParserError as error:
            self._fail(UpstreamClosed(f"the upstream's answer is not valid HTTP/1.1 ({error})"))
            self.close()
            return
        # llhttp sets no limit of its own: an upstream sending headers without end must not hold
        # the gateway's memory until the timeout (one read's worth is the most kept beyond it).
        if self._head is None and self._head_bytes > MAX_HEAD_BYTES:
            self._head_too_large()

    def _head_too_large(self) -> None:
        self._fail(UpstreamClosed(f"the upstream's answer head exceeds {MAX_HEAD_BYTES} bytes"))
        self.close()

    def eof_received(self) -> bool | None:
        return None  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        head = self._head
        done = self._body.complete
        if not done and head is not None and head.content_length is None and not head.chunked:
            # A body delimited by the connection's end (RFC 9112 §6.3, rule 8) is complete now.
            self._keep_alive = False
            self._body.finish()
        elif not done:
            self._fail(UpstreamClosed("the upstream closed the connection"))
        self._flow.fail(self._failure or UpstreamClosed("the upstream closed"))

    def pause_writing(self) -> None:
        self._flow.pause()

    def resume_writing(self) -> None:
        self._flow.resume()

    # httptools callbacks

    def on_message_begin(self) -> None:
        if self._body.complete:
            self._spoiled = True  # a second answer to one request
            return
        self._status_text = b""
        self._headers = []

    def on_status(self, status: bytes) -> None:
        self._status_text += status

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        assert self._parser is not None
        if self._body.complete:
            return
        status = self._parser.get_status_code()
        if status < 200 and not (status == 101 and self._upgrade):
            return  # 1xx interim answers (103 Early Hints, a stray 100) are not relayed
        if len(self._status_text) + sum(len(n) + len(v) + 4 for n, v in self._headers) > (
            MAX_HEAD_BYTES
        ):
            self._head_too_large()
            return
        chunked = any(
            name.lower() == b"transfer-encoding" and b"chunked" in value.lower()
            for name, value in self._headers
        )
        self._head = AnswerHead(
            status,
            self._status_text.decode("latin-1"),
            self._headers,
            chunked and not self._head_only,
        )
        if self._head_only or status == 101:
            self._keep_alive = self._parser.should_keep_alive() and status != 101
            self._body.finish()
        else:
            self._body.wake()

    def on_body(self, body: bytes) -> None:
        if self._body.complete:
            self._spoiled = True
            return
        self._body.put(body)

    def on_message_complete(self) -> None:
        assert self._parser is not None
        if self._head is None:
            return  # the end of an interim answer
        if self._body.complete:
            return
        self._keep_alive = self._parser.should_keep_alive()
        self._body.finish()
