"""One request as the gateway sees it: the parsed head, the body as a stream, and its answer.

The head is kept as received: `raw_headers` are the bytes llhttp parsed, in order, so headers
are forwarded without being decoded and encoded again. Lookups by name scan that short list.

The request owns its answer, complete (`answer`) or streamed (`start`, `write`, `finish`), and
writes its framing itself. What it needs of the connection it arrived on is a `Channel`: the
few things a request may ask of it, and nothing else reaches the connection from here.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from scopegate.errors import BodyStalled, ClientGone
from scopegate.wire.answer import Answer, Headers
from scopegate.wire.head import (
    BODYLESS_STATUSES,
    UPGRADE_TO_WEBSOCKET,
    answer_head,
    connection_line,
    framing_for,
)
from scopegate.wire.inbox import Inbox
from scopegate.wire.tunnel import Tunnel

BODY_HIGH_WATER = 256 * 1024  # buffered request body bytes before the client stops being read
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class Channel(Protocol):
    """What a request may ask of the connection it arrived on."""

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The loop the connection runs on: the body's reads wait on it."""

    def pause_reading_for_body(self) -> None:
        """The body's buffer is full: read no more until `resume_reading_for_body`."""

    def resume_reading_for_body(self) -> None:
        """The body's buffer was taken: read again, unless something else holds reading."""

    def closes_after(self, request: Request, asked: bool) -> bool:
        """Whether the connection ends once `request` is answered (`asked`: the answer wants
        it to); the connection keeps to what it says."""

    def write(self, data: bytes) -> None:
        """Send `data`, or drop it once the connection is closing."""

    def send(self, *parts: bytes) -> None:
        """Send `parts` of a streamed answer; `ClientGone` once the connection is closing, so
        that the stream stops instead of writing into nothing."""

    async def wait_writable(self) -> None:
        """Return once the client takes what was sent; `ClientGone` if it takes nothing for
        the connection's idle timeout."""

    def abort(self) -> None:
        """Cut the connection: the client must see the answer broken, not complete."""

    def peer_certificate(self) -> bytes | None:
        """The DER of the certificate the client presented in the TLS handshake, if any."""

    def hand_over(self, tunnel: Tunnel) -> None:
        """The request was upgraded: the connection's bytes are `tunnel`'s from now on, those
        read past the request's head first. It still counts as open until the tunnel ends."""


class BodyStream(Inbox):
    """The request body as it arrives; reading it lets the connection read more. A read waits
    at most `max_pause` seconds (0: no limit) for the next bytes: a client trickling its body
    (slowloris on the body) cannot hold an upstream connection longer than that per byte."""

    def __init__(self, channel: Channel, max_pause: float) -> None:
        super().__init__(
            channel.loop,
            channel.pause_reading_for_body,
            channel.resume_reading_for_body,
            BODY_HIGH_WATER,
        )
        self._max_pause = max_pause or None

    def fail(self, failure: Exception | None = None) -> None:
        """The body will not complete: reading raises `failure` (default `ClientGone`)."""
        super().fail(failure or ClientGone("the client closed the connection during the body"))

    async def read(self) -> bytes:
        """The next bytes of the body; b"" once it is complete. Raises `ClientGone`, `Denied`
        when the rest of the body is not valid HTTP/1.1 (a broken chunk), or `BodyStalled`."""
        return await self.get(self._max_pause, BodyStalled)


class Request:
    __slots__ = (
        "_bodyless",
        "_channel",
        "_chunked",
        "answered_status",
        "body",
        "body_exists",
        "content_length",
        "keep_alive",
        "method",
        "raw_headers",
        "raw_path",
        "remote",
        "version",
    )

    def __init__(
        self,
        channel: Channel,
        method: str,
        raw_path: str,
        version: tuple[int, int],
        raw_headers: Headers,
        *,
        content_length: int | None,
        chunked: bool,
        keep_alive: bool,
        remote: str | None,
        max_body_pause: float = 0.0,
    ) -> None:
        self._channel = channel
        self.method = method
        self.raw_path = raw_path
        self.version = version
        self.raw_headers = raw_headers
        self.content_length = content_length
        self.body_exists = chunked or bool(content_length)
        self.keep_alive = keep_alive
        self.remote = remote
        self.body = BodyStream(channel, max_body_pause)
        if not self.body_exists:
            self.body.complete = True
        self.answered_status = 0
        # The streamed answer: its body is chunked, or it has none at all.
        self._chunked = False
        self._bodyless = False

    scheme = "http"

    def header_values(self, name: bytes) -> list[str]:
        """Every value of the header `name` (lower-case), in order."""
        return [v.decode("latin-1") for n, v in self.raw_headers if n.lower() == name]

    def header(self, name: bytes) -> str | None:
        for n, v in self.raw_headers:
            if n.lower() == name:
                return v.decode("latin-1")
        return None

    # Answering: exactly one of `answer` or `start` ... `finish` per request.

    def answer(self, answer: Answer) -> None:
        """Send a complete answer in one write, its head and body together."""
        status = self.answered_status = answer.status
        close = self._channel.closes_after(self, answer.close)
        # A complete answer's framing is its length, unless its status allows no body at all.
        has_body = status not in BODYLESS_STATUSES
        framing = b"Content-Length: %d\r\n" % len(answer.body) if has_body else b""
        parts = answer_head(status, answer.reason, answer.headers, framing,
                            connection_line(self.version, close))  # fmt: skip
        if has_body and self.method != "HEAD":
            parts.append(answer.body)
        self._channel.write(b"".join(parts))

    def send_continue(self) -> None:
        self._channel.write(CONTINUE)

    def start(self, status: int, reason: str, headers: Headers, length: int | None) -> None:
        """Send the head of a streamed answer of `length` bytes (None: unknown, chunked)."""
        self.answered_status = status
        framing = framing_for(status, self.method, length, self.version)
        self._bodyless = framing.bodyless
        self._chunked = framing.chunked
        close = self._channel.closes_after(self, framing.ends_with_close)
        ending = connection_line(self.version, close)
        self._channel.write(b"".join(answer_head(status, reason, headers, framing.line, ending)))

    async def write(self, chunk: bytes) -> None:
        """Send the next part of a streamed answer's body, then wait while the client is not
        taking it. Raises `ClientGone`."""
        if self._bodyless or not chunk:
            return
        if self._chunked:
            self._channel.send(b"%x\r\n" % len(chunk), chunk, b"\r\n")
        else:
            self._channel.send(chunk)
        await self._channel.wait_writable()

    def switch_protocols(self, reason: str, headers: Headers, tunnel: Tunnel) -> None:
        """Send the upstream's 101 and hand the connection to `tunnel` (SPEC §6.3)."""
        self.answered_status = 101
        head = answer_head(101, reason, headers, b"", UPGRADE_TO_WEBSOCKET)
        self._channel.write(b"".join(head))
        self._channel.hand_over(tunnel)

    def finish(self) -> None:
        if self._chunked:
            self._channel.write(b"0\r\n\r\n")

    def abort(self) -> None:
        """Break the connection: a streamed answer that cannot be completed must not look whole."""
        self._channel.abort()

    def peer_certificate(self) -> bytes | None:
        """The client's certificate from the TLS handshake (DER), None on plain HTTP or when
        the client presented none."""
        return self._channel.peer_certificate()

    def release(self) -> None:
        """Called once the request is answered: let go of its body's buffers and failure. A
        raised failure keeps its traceback, whose frames refer back to the request: a cycle
        that only a full garbage collection would otherwise free."""
        self.body.drop()

    @property
    def started(self) -> bool:
        return self.answered_status != 0


class SecureRequest(Request):
    """A request that arrived over TLS: the upstream is told `X-Forwarded-Proto: https`."""

    __slots__ = ()
    scheme = "https"
