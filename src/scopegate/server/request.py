"""One request as the gateway sees it: the parsed head, the body as a stream, and the ways to
answer it (a complete `Answer`, or a streamed one).

The head is kept as received: `raw_headers` are the bytes llhttp parsed, in order, so headers
are forwarded without being decoded and encoded again. Lookups by name scan that short list.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from scopegate.errors import BodyStalled, ClientGone
from scopegate.wire.answer import Answer, Headers
from scopegate.wire.inbox import Inbox

if TYPE_CHECKING:
    from scopegate.server.connection import HttpConnection

BODY_HIGH_WATER = 256 * 1024  # buffered request body bytes before the client stops being read


class BodyStream(Inbox):
    """The request body as it arrives; reading it lets the connection read more. A read waits
    at most `max_pause` seconds (0: no limit) for the next bytes: a client trickling its body
    (slowloris on the body) cannot hold an upstream connection longer than that per byte."""

    def __init__(self, connection: HttpConnection, max_pause: float) -> None:
        super().__init__(
            connection.loop,
            connection.pause_reading_for_body,
            connection.resume_reading_for_body,
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
        "_connection",
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
        connection: HttpConnection,
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
        self._connection = connection
        self.method = method
        self.raw_path = raw_path
        self.version = version
        self.raw_headers = raw_headers
        self.content_length = content_length
        self.body_exists = chunked or bool(content_length)
        self.keep_alive = keep_alive
        self.remote = remote
        self.body = BodyStream(connection, max_body_pause)
        if not self.body_exists:
            self.body.complete = True
        self.answered_status = 0

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
        self.answered_status = answer.status
        self._connection.send_answer(self, answer)

    def send_continue(self) -> None:
        self._connection.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def start(self, status: int, reason: str, headers: Headers, length: int | None) -> None:
        """Send the head of a streamed answer of `length` bytes (None: unknown, chunked)."""
        self.answered_status = status
        self._connection.start_stream(self, status, reason, headers, length)

    async def write(self, chunk: bytes) -> None:
        await self._connection.write_stream(chunk)

    def finish(self) -> None:
        self._connection.finish_stream()

    def abort(self) -> None:
        """Break the connection: a streamed answer that cannot be completed must not look whole."""
        self._connection.abort()

    def release(self) -> None:
        """Called once the request is answered: let go of its body's buffers and failure. A
        raised failure keeps its traceback, whose frames refer back to the request: a cycle
        that only a full garbage collection would otherwise free."""
        self.body.drop()

    @property
    def started(self) -> bool:
        return self.answered_status != 0
