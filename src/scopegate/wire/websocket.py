"""RFC 6455 frames, as much as a relay needs: where each frame ends, and a close frame of its own.

A relay passes frames through untouched (payloads, masks, extensions such as permessage-deflate
are the two ends' business), but it must be able to speak once: to close a connection whose
token expired (1008), that went idle, or that the gateway is shutting down (1001). A close frame
may only go between two frames, never inside one, so each direction's bytes are followed by a
`FrameTracker`, which reads frame headers and counts payload bytes without copying them.

Usage::

    tracker = FrameTracker()
    tracker.feed(data)                  # every byte passed on in this direction
    tracker.at_boundary                 # no frame is half-way through
    tracker.until_boundary(data)        # how much of `data` completes the frame under way
    tracker.close_seen                  # a close frame (opcode 8) has begun on this side
    close_frame(1008, "token expired", masked=True)   # as a client sends it; False for a server
"""

from __future__ import annotations

import os
import struct

CLOSE_OPCODE = 0x8
GOING_AWAY = 1001
POLICY_VIOLATION = 1008
MAX_CLOSE_REASON = 123  # a control frame's payload is at most 125 bytes, 2 of them the code


class FrameTracker:
    """Follows one direction of a WebSocket byte stream, frame by frame."""

    __slots__ = ("_header", "_payload_left", "close_seen")

    def __init__(self) -> None:
        self._payload_left = 0  # of the frame whose header was read
        self._header = b""  # the start of a frame header split across reads
        self.close_seen = False

    @property
    def at_boundary(self) -> bool:
        return self._payload_left == 0 and not self._header

    def feed(self, data: bytes) -> None:
        """Follow `data`, all of it."""
        self._follow(data, stop_at_boundary=False)

    def until_boundary(self, data: bytes) -> int | None:
        """Follow `data` up to the first frame boundary in it and return that offset (0 when
        none is half-way through now); None when no frame ends in it (all of it was followed)."""
        if self.at_boundary:
            return 0
        return self._follow(data, stop_at_boundary=True)

    def _follow(self, data: bytes, *, stop_at_boundary: bool) -> int | None:
        position = 0
        end = len(data)
        while position < end:
            left = self._payload_left
            if left:
                step = left if left < end - position else end - position
                self._payload_left = left - step
                position += step
            else:
                position = self._read_header(data, position)
            if stop_at_boundary and self._payload_left == 0 and not self._header:
                return position
        return None

    def _read_header(self, data: bytes, position: int) -> int:
        """Read (the rest of) a frame header starting at `position`; where its payload starts."""
        available = self._header + data[position : position + 14]
        need = header_length(available)
        if need is None or len(available) < need:
            self._header = available
            return len(data)
        consumed = need - len(self._header)
        self._header = b""
        if available[0] & 0x0F == CLOSE_OPCODE:
            self.close_seen = True
        self._payload_left = payload_length(available)
        return position + consumed


def header_length(start: bytes) -> int | None:
    """The length of the frame header that `start` begins, None if two bytes are not there."""
    if len(start) < 2:
        return None
    code = start[1] & 0x7F
    extra = 2 if code == 126 else 8 if code == 127 else 0
    return 2 + extra + (4 if start[1] & 0x80 else 0)


def payload_length(header: bytes) -> int:
    code = header[1] & 0x7F
    if code == 126:
        return int(struct.unpack_from("!H", header, 2)[0])
    if code == 127:
        return int(struct.unpack_from("!Q", header, 2)[0])
    return code


def close_frame(code: int, reason: str, *, masked: bool) -> bytes:
    """A close frame with `code` and `reason` (cut to fit a control frame); `masked` as a
    client must send it (RFC 6455 §5.3), unmasked as a server does."""
    text = reason.encode()[:MAX_CLOSE_REASON].decode("utf-8", "ignore").encode()  # whole chars
    payload = struct.pack("!H", code) + text
    if not masked:
        return bytes((0x80 | CLOSE_OPCODE, len(payload))) + payload
    mask = os.urandom(4)
    hidden = bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))
    return bytes((0x80 | CLOSE_OPCODE, 0x80 | len(payload))) + mask + hidden
