"""What the bytes arriving on a client connection are, and the limit each kind is held to.

Every question about what a byte means, which limit it counts against and which deadline runs
is answered by the phase alone: `reader.py` holds it, and `connection.py` reads it to decide
when a connection may be closed quietly.
"""

from __future__ import annotations

from typing import Final

from scopegate.reasons import Denied, Reason
from scopegate.wire.framing import head_too_large


class Phase:
    """Plain constants rather than an Enum: an Enum member costs several times a class
    attribute to look up, and these are read several times a request."""

    IDLE: Final = "idle"  # nothing yet of the next request
    HEAD: Final = "head"  # a request line and header section
    BODY: Final = "body"  # body bytes: of a Content-Length body, or of a chunk
    CHUNK_LINE: Final = "chunk line"  # a chunk-size line, extensions included
    # The chunk's data; or, after the last chunk, the trailer section.
    AFTER_CHUNK_LINE: Final = "after chunk line"
    STOPPED: Final = "stopped"  # nothing more is parsed: after an upgrade or a framing error
    LINGERING: Final = "lingering"  # answered and closing: what still arrives is read and dropped
    SWITCHED: Final = "switched"  # upgraded (a WebSocket): the bytes are a tunnel's, not HTTP


def framing_too_large(phase: str, limit: int) -> Denied:
    """The refusal of framing read in `phase` (a head, a chunk-size line, a trailer section)
    that grew past `limit` bytes without the parser making progress."""
    if phase is Phase.HEAD:
        return head_too_large(limit)
    if phase is Phase.CHUNK_LINE:
        return chunk_line_too_long(limit)
    return trailers_too_large(limit)


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
