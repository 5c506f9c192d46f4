"""Two connections joined after an upgrade: whatever one end sends, the other receives.

Once the client's request was allowed and the upstream answered 101, the gateway has nothing to
read in the bytes (SPEC §6.3); each connection's transport is handed to a `TunnelEnd`, whose
`data_received` writes straight to the other transport. No task and no buffer of its own: the
transports' buffers are the only ones, and backpressure is theirs. When one end's send buffer
fills (`pause_writing`), the other end stops being read until it empties, so a slow reader on
either side slows the writer on the other, and what is held stays at one buffer's worth.

Each direction's frames are followed (`websocket.FrameTracker`), so that the gateway can speak
once, at a frame boundary: `close(code, ...)` sends a close frame to both ends, drops what they
send after it, and ends each connection once its end answers with its own close frame, or after
`CLOSE_GRACE` seconds at the latest.

How a tunnel ended is its `reason`: the end that sent a close frame first or went away first
(`client`, `upstream`), or why the gateway closed it (`idle`, `token_expired`, `shutdown`).
"""

from __future__ import annotations

import asyncio
from typing import Final, cast

from scopegate.wire.websocket import GOING_AWAY, FrameTracker, close_frame

CLOSE_GRACE: Final = 2.0  # for an end to answer the gateway's close frame before it is cut


class TunnelEnd(asyncio.Protocol):
    """One connection of a tunnel, as the protocol of its transport once handed over."""

    __slots__ = (
        "_tunnel", "masked", "name", "owed_close", "peer", "rest", "told", "tracker", "transport",
    )  # fmt: skip

    def __init__(self, tunnel: Tunnel, name: str, *, masked: bool) -> None:
        self._tunnel = tunnel
        self.name = name
        self.masked = masked  # frames written to this end must be masked: it is the upstream
        self.transport: asyncio.Transport | None = None
        self.peer: TunnelEnd = self
        self.tracker = FrameTracker()  # of the bytes this end sends
        self.owed_close: bytes | None = None  # the gateway's close frame, due at a boundary
        self.told = False  # the gateway's close frame was sent to this end
        self.rest = b""  # sent before the tunnel started, past the end's HTTP head

    def attach(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is one, unregistered
        transport.set_protocol(self)

    def write(self, data: bytes) -> None:
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.write(data)

    def close(self) -> None:
        """Close once what was written to this end is sent."""
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.close()

    # asyncio.Protocol

    def data_received(self, data: bytes) -> None:
        tunnel = self._tunnel
        tunnel.last_active = tunnel.clock()
        if tunnel.closing:
            tunnel.after_close(self, data)
            return
        self.tracker.feed(data)
        if self.tracker.close_seen and tunnel.reason is None:
            tunnel.reason = self.name  # this end began the close handshake
        self.peer.write(data)

    def eof_received(self) -> bool | None:
        self._tunnel.end_gone(self)
        return None  # closes this transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self._tunnel.end_gone(self)

    def pause_writing(self) -> None:
        transport = self.peer.transport
        if transport is not None and not transport.is_closing():
            transport.pause_reading()

    def resume_writing(self) -> None:
        transport = self.peer.transport
        if transport is not None and not transport.is_closing():
            transport.resume_reading()


class Tunnel:
    """A client connection and an upstream connection joined; `ended` resolves with `reason`.

    Usage::

        tunnel = Tunnel(loop, idle_timeout=300.0)
        tunnel.take(tunnel.upstream, upstream_transport, upstream_rest)
        tunnel.take(tunnel.client, client_transport, client_rest)
        tunnel.start()
        tunnel.close_at(expires_in, 1008, "token expired", "token_expired")
        reason = await tunnel.ended
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, *, idle_timeout: float) -> None:
        self._loop = loop
        self.clock = loop.time
        self.client = TunnelEnd(self, "client", masked=False)
        self.upstream = TunnelEnd(self, "upstream", masked=True)
        self.client.peer, self.upstream.peer = self.upstream, self.client
        self.ended: asyncio.Future[str] = loop.create_future()
        self.reason: str | None = None
        self.closing = False  # the gateway sent, or owes, its close frames
        self.last_active = self.clock()
        self._idle_timeout = idle_timeout
        self._idle_timer: asyncio.TimerHandle | None = None
        self._close_timer: asyncio.TimerHandle | None = None  # `close_at`
        self._cut_timer: asyncio.TimerHandle | None = None  # the end of `CLOSE_GRACE`

    def take(self, end: TunnelEnd, transport: asyncio.BaseTransport, rest: bytes) -> None:
        """Make `end` the protocol of `transport`, whose reading is paused; `rest` is what
        arrived on it past the HTTP head, passed on by `start`."""
        end.attach(transport)
        end.rest = rest

    def start(self) -> None:
        """Relay: what each end sent early first, then whatever arrives."""
        for end in (self.upstream, self.client):
            rest, end.rest = end.rest, b""
            if rest:
                end.data_received(rest)
        for end in (self.client, self.upstream):
            if end.transport is not None and not end.transport.is_closing():
                end.transport.resume_reading()
        if self._idle_timeout > 0:
            self._idle_timer = self._loop.call_later(self._idle_timeout, self._check_idle)

    def close_at(self, delay: float, code: int, text: str, reason: str) -> None:
        """Close the tunnel in `delay` seconds (at once if not positive) with `code`."""
        if self.ended.done():
            return
        if delay <= 0:
            self.close(code, text, reason)
        else:
            self._close_timer = self._loop.call_later(delay, self.close, code, text, reason)

    def close(self, code: int, text: str, reason: str) -> None:
        """Send both ends a close frame with `code` (each at its stream's next frame boundary),
        drop what they send after it, and end each connection once its end answers."""
        if self.closing or self.ended.done():
            return
        self.closing = True
        if self.reason is None:
            self.reason = reason
        for end in (self.client, self.upstream):
            end.owed_close = close_frame(code, text, masked=end.masked)
            if end.peer.tracker.at_boundary:
                self._tell(end)
        self._cut_after_grace()

    def going_away(self) -> None:
        """The gateway is shutting down: 1001 to both ends (RFC 6455 §7.4.1)."""
        self.close(GOING_AWAY, "server shutting down", "shutdown")

    # What the ends report

    def after_close(self, end: TunnelEnd, data: bytes) -> None:
        """`data` from `end` once the gateway is closing: passed on up to the frame boundary
        where the peer's close frame is due, then only followed, for `end`'s own close frame."""
        peer = end.peer
        if not peer.told:
            boundary = end.tracker.until_boundary(data)
            if boundary is None:
                peer.write(data)
                return
            peer.write(data[:boundary])
            self._tell(peer)
            data = data[boundary:]
        end.tracker.feed(data)
        if end.told and end.tracker.close_seen and end.tracker.at_boundary:
            end.close()  # its answer to the gateway's close frame is complete

    def end_gone(self, end: TunnelEnd) -> None:
        """`end` closed its side or its connection: the other side ends as well."""
        if self.reason is None:
            self.reason = end.name
        end.close()
        end.peer.close()  # once what it was sent is taken: at most `CLOSE_GRACE` from now
        self._cut_after_grace()
        if end.transport is None and end.peer.transport is None and not self.ended.done():
            for timer in (self._idle_timer, self._close_timer, self._cut_timer):
                if timer is not None:
                    timer.cancel()
            self._idle_timer = self._close_timer = self._cut_timer = None
            self.ended.set_result(self.reason)

    # Within the tunnel

    def _tell(self, end: TunnelEnd) -> None:
        frame, end.owed_close = end.owed_close, None
        if frame is not None:
            end.write(frame)
            end.told = True

    def _check_idle(self) -> None:
        quiet_for = self.clock() - self.last_active
        if quiet_for >= self._idle_timeout:
            self.close(GOING_AWAY, "idle", "idle")
        else:
            delay = self._idle_timeout - quiet_for
            self._idle_timer = self._loop.call_later(delay, self._check_idle)

    def _cut_after_grace(self) -> None:
        if self._cut_timer is None:
            self._cut_timer = self._loop.call_later(CLOSE_GRACE, self._cut)

    def _cut(self) -> None:
        """The grace for the close handshake is over: end both connections, unsent or not."""
        for end in (self.client, self.upstream):
            if end.transport is not None:
                end.transport.abort()
