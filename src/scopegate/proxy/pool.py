"""Keep-alive connections to the upstreams, reused most-recent first.

A connection goes back to the pool only when its last answer ended cleanly and both sides keep
it open (`UpstreamConnection.reusable`); anything else is closed. Idle connections past
`idle_seconds`, or closed by the upstream meanwhile, are dropped when next looked at, so no timer
runs per connection. There is no cap on connections in use (as with nginx's proxy): the public
side's `max_connections` already bounds them; at most `max_idle` wait per upstream.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Iterable, Mapping

from scopegate.config.model import Upstream
from scopegate.config.tls_context import client_context
from scopegate.errors import UpstreamUnreachable
from scopegate.proxy.http1 import UpstreamConnection

IDLE_SECONDS = 15.0  # below the usual upstream keep-alive timeouts (nginx 75 s, Node 5 s: retried)
MAX_IDLE = 256


class UpstreamPool:
    def __init__(self, *, idle_seconds: float = IDLE_SECONDS, max_idle: int = MAX_IDLE) -> None:
        self._idle: dict[tuple[str, str, str, int], list[UpstreamConnection]] = {}
        self._idle_seconds = idle_seconds
        self._max_idle = max_idle
        self._tls: ssl.SSLContext | None = None  # the system trust store's, made on first use
        self._tls_by_upstream: Mapping[str, ssl.SSLContext] = {}  # `upstreams.NAME.tls`

    async def acquire(
        self, upstream: Upstream, *, fresh: bool = False
    ) -> tuple[UpstreamConnection, bool]:
        """A connection to `upstream` and whether it was reused (False: just connected)."""
        idle = self._idle.get(_key(upstream))
        if idle and not fresh:
            oldest_usable = time.monotonic() - self._idle_seconds
            while idle:
                connection = idle.pop()
                if not connection.closed and connection.idle_since >= oldest_usable:
                    return connection, True
                connection.close()
        return await self._connect(asyncio.get_running_loop(), upstream), False

    def release(self, upstream: Upstream, connection: UpstreamConnection) -> None:
        """Keep `connection` for the next request if it may carry one, else close it."""
        if not connection.reusable:
            connection.close()
            return
        key = _key(upstream)
        idle = self._idle.setdefault(key, [])
        if len(idle) >= self._max_idle:
            connection.close()
            return
        # The monotonic clock rather than the loop's: on Python 3.11 asking asyncio for the
        # running loop costs a getpid system call, on every request that reuses a connection.
        connection.idle_since = time.monotonic()
        idle.append(connection)

    def close(self) -> None:
        for idle in self._idle.values():
            for connection in idle:
                connection.close()
        self._idle.clear()

    async def _connect(
        self, loop: asyncio.AbstractEventLoop, upstream: Upstream
    ) -> UpstreamConnection:
        tls = self._tls_context(upstream) if upstream.scheme == "https" else None
        server_name = upstream.host
        if upstream.tls is not None and upstream.tls.server_name is not None:
            server_name = upstream.tls.server_name
        try:
            async with asyncio.timeout(upstream.connect_timeout):
                _, connection = await loop.create_connection(
                    lambda: UpstreamConnection(loop),
                    upstream.host,
                    upstream.port,
                    ssl=tls,
                    server_hostname=server_name if tls is not None else None,
                )
        except TimeoutError as error:
            raise UpstreamUnreachable(
                f"no connection within {upstream.connect_timeout:g} s"
            ) from error
        except (OSError, ssl.SSLError) as error:
            raise UpstreamUnreachable(str(error) or type(error).__name__) from error
        return connection

    def use_tls(self, contexts: Mapping[str, ssl.SSLContext]) -> None:
        """The client contexts of the upstreams with `tls:`, by name, read anew at a reload:
        new connections use them, those already open keep their session."""
        self._tls_by_upstream = contexts

    def _tls_context(self, upstream: Upstream) -> ssl.SSLContext:
        configured = self._tls_by_upstream.get(upstream.name)
        if configured is not None:
            return configured
        if self._tls is None:
            self._tls = ssl.create_default_context()  # system CAs, hostname checked
        return self._tls


def upstream_contexts(upstreams: Iterable[Upstream]) -> dict[str, ssl.SSLContext]:
    """A client context for each https:// upstream with `tls:`, its files read now; raises
    `TlsFileError` (the files were checked when the configuration loaded, but may have
    changed since)."""
    return {u.name: client_context(u.tls) for u in upstreams if u.tls is not None}


def _key(upstream: Upstream) -> tuple[str, str, str, int]:
    """Whose idle connections these are: by upstream name too, since two upstreams at one
    address may trust other CAs or present other client certificates (`tls:`)."""
    return (upstream.name, upstream.scheme, upstream.host, upstream.port)
