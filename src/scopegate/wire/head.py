"""The head of an answer as the server writes it: status line, headers, `Date`, framing and
`Connection`, joined by the caller into one write with whatever body follows.

Every answer the public port sends goes through `answer_head`, so the rules for framing live
in one place: `framing_for` says how a body of a given status, method, length and HTTP version
is delimited, and `answer_head` writes that decision down.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from email.utils import formatdate

from scopegate.wire.answer import Headers, reason_phrase

# Answers with these statuses never carry a body (RFC 9110 §6.4.1): interim ones, 204 and 304.
# The one statement of the rule, read by every writer of an answer's framing.
BODYLESS_STATUSES = frozenset(range(200)) | {204, 304}
CLOSE = b"Connection: close\r\n\r\n"
UPGRADE_TO_WEBSOCKET = b"Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
KEEP_ALIVE_1_0 = b"Connection: keep-alive\r\n\r\n"
END = b"\r\n"


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


@dataclass(frozen=True, slots=True)
class Framing:
    """How an answer's body is delimited on the wire.

    `line` is the header line that says it (`Content-Length`, `Transfer-Encoding: chunked`, or
    nothing); `bodyless` answers carry no body bytes at all (1xx, 204, 304, and any answer to
    HEAD); `ends_with_close` bodies are delimited by closing the connection (HTTP/1.0, unknown
    length).
    """

    line: bytes = b""
    bodyless: bool = False
    chunked: bool = False
    ends_with_close: bool = False


def framing_for(status: int, method: str, length: int | None, version: tuple[int, int]) -> Framing:
    """The framing of an answer of `length` body bytes (None: not known in advance)."""
    if status in BODYLESS_STATUSES:
        return Framing(bodyless=True)
    if length is not None:
        return Framing(b"Content-Length: %d\r\n" % length, bodyless=method == "HEAD")
    if method == "HEAD":
        return Framing(bodyless=True)  # a HEAD answer of unknown length says nothing of it
    if version >= (1, 1):
        return Framing(b"Transfer-Encoding: chunked\r\n", chunked=True)
    return Framing(ends_with_close=True)  # HTTP/1.0: the body ends with the connection


def answer_head(
    status: int, reason: str, headers: Headers, framing: bytes, ending: bytes
) -> list[bytes]:
    """An answer's head as pieces to join: status line, `headers`, `Date` when they carry none,
    the `framing` line, and `ending` (`Connection` and the blank line)."""
    phrase = reason or reason_phrase(status)
    parts = [b"HTTP/1.1 %d %s\r\n" % (status, phrase.encode("latin-1", "replace"))]
    has_date = False
    for name, value in headers:
        parts += (name, b": ", value, b"\r\n")
        if not has_date and name.lower() == b"date":
            has_date = True
    if not has_date:
        parts.append(_DATE.get())
    parts += (framing, ending)
    return parts


def connection_line(version: tuple[int, int], close: bool) -> bytes:
    """The end of a head: `Connection: close`, HTTP/1.0's explicit keep-alive, or nothing."""
    if close:
        return CLOSE
    if version == (1, 0):
        return KEEP_ALIVE_1_0
    return END
