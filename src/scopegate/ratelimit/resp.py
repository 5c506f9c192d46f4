"""A pipelined Redis connection, as much client as one script call per request needs.

redis-py's asyncio client was the first choice and was measured (bench/RESULTS.md, "Rate-limit
stores"): its pool, locks and layers cost a request more user-space instructions than the rest
of the gateway together. This keeps what a rate limiter needs and nothing else: one connection
per process, commands written back to back without waiting for replies (pipelining: Redis
answers in order, so a FIFO of futures pairs them), the commands of one loop turn flushed in
one write, and replies parsed by hiredis, Redis's own C parser.

A failure closes the connection and fails every command waiting on it; the next command
connects again, so a Redis that comes back is used again without a restart. A command the
caller stopped waiting for (its timeout) has its reply dropped when it comes; the caller then
`reset`s the connection, so a hung Redis cannot pile up commands.

Usage::

    client = RespClient("redis://:password@127.0.0.1:6379/0", connect_timeout=0.1)
    reply = await client.call(b"EVALSHA", sha, b"1", b"key", b"10", b"60")
    client.reset()                      # after a timeout: the next call reconnects
    await client.close()
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from typing import Any
from urllib.parse import unquote, urlsplit

import hiredis


class RedisError(Exception):
    """Redis answered with an error reply, or the connection failed."""


class RespConnection(asyncio.Protocol):
    """One connection: commands out in order, replies matched to them in order."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._transport: asyncio.Transport | None = None
        self._reader = hiredis.Reader(replyError=RedisError)
        self._waiting: deque[asyncio.Future[Any]] = deque()
        self._outgoing: list[bytes] = []
        self._failure: Exception | None = None

    @property
    def usable(self) -> bool:
        return self._transport is not None and self._failure is None

    def send(self, command: bytes) -> asyncio.Future[Any]:
        """Queue `command` (already RESP-encoded) for this loop turn's write; its reply."""
        reply = self._loop.create_future()
        if self._failure is not None:
            reply.set_exception(self._failure)
            return reply
        if not self._outgoing:
            self._loop.call_soon(self._flush)
        self._outgoing.append(command)
        self._waiting.append(reply)
        return reply

    def _flush(self) -> None:
        outgoing, self._outgoing = self._outgoing, []
        if self._transport is not None and outgoing:
            self._transport.write(b"".join(outgoing))

    def close(self) -> None:
        self._fail(RedisError("the connection to Redis was reset"))
        if self._transport is not None:
            self._transport.abort()

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]  # a stream transport

    def data_received(self, data: bytes) -> None:
        reader = self._reader
        reader.feed(data)
        waiting = self._waiting
        try:
            while (reply := reader.gets()) is not False:
                if not waiting:
                    raise RedisError("Redis sent a reply nobody asked for")
                future = waiting.popleft()
                if future.done():  # its caller stopped waiting (timed out)
                    continue
                if isinstance(reply, RedisError):
                    future.set_exception(reply)
                else:
                    future.set_result(reply)
        except (hiredis.ProtocolError, RedisError) as error:
            self._fail(RedisError(f"Redis spoke no RESP: {error}"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._fail(RedisError(f"the connection to Redis was lost ({exc or 'closed'})"))

    def _fail(self, failure: Exception) -> None:
        if self._failure is None:
            self._failure = failure
        self._outgoing.clear()
        while self._waiting:
            future = self._waiting.popleft()
            if not future.done():
                future.set_exception(self._failure)


def encode(*parts: bytes) -> bytes:
    """A command as a RESP array of bulk strings."""
    out = [b"*%d\r\n" % len(parts)]
    for part in parts:
        out.append(b"$%d\r\n%b\r\n" % (len(part), part))
    return b"".join(out)


class RespClient:
    """Connects on first use and again after any failure; `call` sends one command."""

    def __init__(self, url: str, connect_timeout: float) -> None:
        parts = urlsplit(url)
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or 6379
        self._tls = ssl.create_default_context() if parts.scheme == "rediss" else None
        self._connect_timeout = connect_timeout
        # Sent first on every new connection, pipelined with the command that caused it.
        self._hello: list[bytes] = []
        if parts.password is not None:
            credentials = [unquote(parts.password).encode()]
            if parts.username:
                credentials.insert(0, unquote(parts.username).encode())
            self._hello.append(encode(b"AUTH", *credentials))
        database = parts.path.lstrip("/")
        if database and database != "0":
            self._hello.append(encode(b"SELECT", database.encode()))
        self._connection: RespConnection | None = None
        self._connecting: asyncio.Task[RespConnection] | None = None

    async def call(self, *parts: bytes) -> Any:
        connection = self._connection
        if connection is None or not connection.usable:
            connection = await self._connect()
        return await connection.send(encode(*parts))

    def reset(self) -> None:
        """Drop the connection (the caller gave up on a reply): the next call reconnects."""
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    async def close(self) -> None:
        if self._connecting is not None:
            self._connecting.cancel()
        self.reset()

    async def _connect(self) -> RespConnection:
        """One connection attempt at a time, shared by every caller waiting for it."""
        if self._connecting is None:
            self._connecting = asyncio.ensure_future(self._open())
            self._connecting.add_done_callback(self._connected)
        return await asyncio.shield(self._connecting)

    def _connected(self, task: asyncio.Task[RespConnection]) -> None:
        self._connecting = None
        if not task.cancelled() and task.exception() is None:
            self._connection = task.result()

    async def _open(self) -> RespConnection:
        loop = asyncio.get_running_loop()
        connection: RespConnection | None = None
        try:
            async with asyncio.timeout(self._connect_timeout):
                _, connection = await loop.create_connection(
                    lambda: RespConnection(loop),
                    self._host,
                    self._port,
                    ssl=self._tls,
                    server_hostname=self._host if self._tls is not None else None,
                )
                hellos = [connection.send(hello) for hello in self._hello]
                for reply in hellos:
                    await reply  # an AUTH or SELECT refused raises here
        except BaseException as error:
            if connection is not None:
                connection.close()
            if isinstance(error, OSError | TimeoutError | ssl.SSLError):
                where = f"{self._host}:{self._port}"
                raise RedisError(f"cannot connect to Redis at {where}: {error!r}") from None
            raise
        return connection
