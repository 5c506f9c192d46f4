"""The public port: accept connections, and stop gracefully.

Stopping closes the listening socket first, then idle connections at once; connections with a
request in flight finish their answer and close. At the end of the grace period, relayed
WebSockets get a close frame (1001) and a moment to answer it; whatever is still open is cut.

Usage::

    listener = await Listener.start(settings, host="0.0.0.0", port=8080)   # or sock=...
    ...
    await listener.stop(grace=30.0)
"""

from __future__ import annotations

import asyncio
import dataclasses
import socket
from collections.abc import Callable

from scopegate.server.connection import HttpConnection, Settings
from scopegate.server.tls import PublicTls
from scopegate.wire.tunnel import CLOSE_GRACE

BACKLOG = 1024
HANDSHAKE_SECONDS = 2.0
# After the handshake deadline, how long before a connection not yet made counts as failed: the
# deadline's own timer comes first on the same loop, so any margin is enough; this one is ample.
HANDSHAKE_VERDICT_MARGIN = 0.5


class Listener:
    def __init__(self, server: asyncio.Server, connections: set[HttpConnection]) -> None:
        self._server = server
        self._connections = connections
        self.tls: PublicTls | None = None  # the port's TLS, which a reload may load anew

    @classmethod
    async def start(
        cls,
        settings: Settings,
        *,
        host: str | None = None,
        port: int = 0,
        sock: socket.socket | None = None,
        tls: PublicTls | None = None,
    ) -> Listener:
        loop = asyncio.get_running_loop()
        connections: set[HttpConnection] = set()
        if tls is not None:
            settings = dataclasses.replace(settings, secure=True)

        def connection() -> HttpConnection:
            return HttpConnection(settings, connections)

        factory = connection if tls is None else _counting_failed_handshakes(connection, settings)

        # A handshake must end within `HANDSHAKE_SECONDS`: plain HTTP sent to a TLS port, or a
        # client that stalls mid-handshake, is closed by then (SPEC §6.1).
        context = None if tls is None else tls.context
        handshake = None if tls is None else HANDSHAKE_SECONDS
        if sock is not None:
            server = await loop.create_server(factory, sock=sock, backlog=BACKLOG, ssl=context,
                                              ssl_handshake_timeout=handshake)  # fmt: skip
        else:
            server = await loop.create_server(factory, host, port, backlog=BACKLOG,
                                              reuse_address=True, ssl=context,
                                              ssl_handshake_timeout=handshake)  # fmt: skip
        listener = cls(server, connections)
        listener.tls = tls
        return listener

    @property
    def port(self) -> int:
        for sock in self._server.sockets:
            address = sock.getsockname()
            if isinstance(address, tuple):
                return int(address[1])
        raise RuntimeError("the server has no TCP address")

    @property
    def open_connections(self) -> int:
        return len(self._connections)

    async def stop(self, grace: float) -> None:
        self._server.close()
        for connection in list(self._connections):
            connection.shutdown()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        while self._connections and loop.time() < deadline:
            for connection in list(self._connections):
                if not connection.busy:
                    connection.close()  # flushes what was written, then closes
            await asyncio.sleep(0.02)
        # Relayed connections (WebSockets) are told the server is going away, and given the
        # close handshake's grace to answer, rather than cut.
        if [connection for connection in list(self._connections) if connection.going_away()]:
            deadline = loop.time() + CLOSE_GRACE
            while self._connections and loop.time() < deadline:  # noqa: ASYNC110 - a count
                await asyncio.sleep(0.02)
        for connection in list(self._connections):
            connection.abort()
        await asyncio.sleep(0)  # let the transports report their end


def _counting_failed_handshakes(
    make: Callable[[], HttpConnection], settings: Settings
) -> Callable[[], HttpConnection]:
    """`make`, counting the connections whose TLS handshake fails.

    asyncio and uvloop both call the protocol factory when a connection is accepted, and the
    protocol's `connection_made` only once the handshake has completed; a failed handshake is
    dropped without a word to the protocol (its `ssl.SSLError` is an `OSError`, which they log
    only in debug mode). So a connection not made when the handshake's deadline has passed
    failed: plain HTTP, a refused version or certificate, or silence. One timer per accepted
    connection, against a handshake that costs hundreds of microseconds."""
    loop = asyncio.get_running_loop()
    metrics = settings.metrics

    def verdict(connection: HttpConnection) -> None:
        if not connection.made:
            metrics.tls_handshake_failed()

    def accepted() -> HttpConnection:
        connection = make()
        loop.call_later(HANDSHAKE_SECONDS + HANDSHAKE_VERDICT_MARGIN, verdict, connection)
        return connection

    return accepted
