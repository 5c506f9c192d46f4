"""A real `redis-server` on a free 127.0.0.1 port, for the tests of the rate limits' shared store.

Nothing is persisted (`--save "" --appendonly no`): a restarted server starts empty. Commands are
spoken in raw RESP over a socket, so no client package is needed.

Usage::

    async with RedisServer() as redis:               # or RedisServer(password="s3cret")
        config = f"rate_limits: {{store: '{redis.url}'}}"   # redis://127.0.0.1:PORT/0
        await redis.command("SET", "k", "v")         # "OK"; bulk strings come back as bytes
        await redis.command("DBSIZE")                # 1
        await redis.stop()                           # SIGTERM by its PID: connection refused...
        await redis.start()                          # ...until the same port answers again, empty
        await redis.kill()                           # SIGKILL, as a crash: no shutdown at all
        await redis.pause()                          # SIGSTOP: connections are accepted by the
        await redis.resume()                         # kernel but never answered (a hung store)

An error reply is raised as `RedisReplyError`; a server that does not answer in `timeout`
seconds raises `TimeoutError`; one that is not running, `ConnectionRefusedError`.

The server is Debian's `redis-server`; without it the test is skipped (failed under `CI=true`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import TypeAlias
from urllib.parse import quote

from tests.support.tools import require_tool

HOST = "127.0.0.1"
# A start on a loaded CI machine takes well under a second; these bound each wait so that a
# wedged server fails the test instead of hanging it.
START_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0
COMMAND_TIMEOUT = 5.0
# A free port is picked, then bound by redis-server: another process may take it in between.
START_ATTEMPTS = 3


class RedisReplyError(Exception):
    """The server answered with an error reply (`-ERR ...`, `-NOAUTH ...`)."""


class RedisStartError(AssertionError):
    """redis-server exited or did not answer in time; the message ends with its log."""


class _PortTaken(RedisStartError):
    """Another process listens on the port that was free a moment before."""


Reply: TypeAlias = "str | bytes | int | list[Reply] | RedisReplyError | None"


def encode(*args: str | bytes | int) -> bytes:
    """One command as a RESP array of bulk strings."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


async def read_reply(reader: asyncio.StreamReader) -> Reply:
    """One RESP2 reply. An error nested in an array (EXEC's) is returned in place, not raised."""
    line = await reader.readuntil(b"\r\n")
    kind, body = line[:1], line[1:-2]
    if kind == b"+":
        return body.decode()
    if kind == b"-":
        return RedisReplyError(body.decode())
    if kind == b":":
        return int(body)
    if kind == b"$":
        length = int(body)
        if length < 0:
            return None
        return (await reader.readexactly(length + 2))[:-2]
    if kind == b"*":
        count = int(body)
        if count < 0:
            return None
        return [await read_reply(reader) for _ in range(count)]
    raise RedisReplyError(f"not a RESP reply: {line!r}")


class RedisConnection:
    """One client connection, for a test that needs several commands on the same one (MULTI,
    CLIENT ...), or a connection that stays open while the server stops."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def command(self, *args: str | bytes | int, timeout: float = COMMAND_TIMEOUT) -> Reply:
        async with asyncio.timeout(timeout):
            self.writer.write(encode(*args))
            await self.writer.drain()
            reply = await read_reply(self.reader)
        if isinstance(reply, RedisReplyError):
            raise reply
        return reply

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """redis-server on `127.0.0.1:port`, started by `start()` (or `async with`)."""

    def __init__(self, *, password: str | None = None, port: int | None = None) -> None:
        self.password = password
        self.port = port or 0
        self.process: subprocess.Popen[bytes] | None = None
        self.paused = False
        self._workdir: tempfile.TemporaryDirectory[str] | None = None
        self._log_offset = 0

    @property
    def url(self) -> str:
        """`redis://[:password@]127.0.0.1:PORT/0`, the `rate_limits.store` that reaches it."""
        auth = f":{quote(self.password, safe='')}@" if self.password is not None else ""
        return f"redis://{auth}{HOST}:{self.port}/0"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.running and self.process is not None else None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def log(self) -> Path:
        assert self._workdir is not None, "never started"
        return Path(self._workdir.name) / "redis.log"

    async def __aenter__(self) -> RedisServer:
        try:
            await self.start()
        except BaseException:
            await self.__aexit__(None, None, None)
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()
        if self._workdir is not None:
            self._workdir.cleanup()
            self._workdir = None

    async def start(self) -> None:
        """Start the server and wait until it answers PING. The first start picks a free port;
        every later one reuses it, so a client configured with `url` reconnects."""
        assert not self.running, "already running"
        binary = require_tool("redis-server", "Debian package redis-server")
        if self._workdir is None:
            self._workdir = tempfile.TemporaryDirectory(prefix="scopegate-redis-")
        fixed = self.port != 0
        for attempt in range(1, START_ATTEMPTS + 1):
            if not fixed:
                self.port = free_port()
            try:
                await self._start_once(binary)
                return
            except _PortTaken:
                if fixed or attempt == START_ATTEMPTS:
                    raise

    async def _start_once(self, binary: str) -> None:
        args = [
            binary,
            "--port", str(self.port),
            "--bind", HOST,
            "--save", "",
            "--appendonly", "no",
            "--daemonize", "no",
            "--dir", str(self.log.parent),
            "--logfile", "",
        ]  # fmt: skip
        if self.password is not None:
            args += ["--requirepass", self.password]
        # A file, not a pipe: nobody reads it while the test runs, and a full pipe would block.
        # Popen rather than asyncio's subprocess: the server is not tied to the event loop that
        # started it, so a fixture of a wider scope than the test's loop can own it.
        with self.log.open("ab") as log_file:
            self._log_offset = log_file.tell()
            self.process = subprocess.Popen(  # noqa: ASYNC220 - returns at once; waits are polled
                args, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT
            )
        self.paused = False
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.process.poll() is not None:
                log = self._log_tail()
                error = _PortTaken if "Address already in use" in log else RedisStartError
                raise error(f"redis-server exited with {self.process.returncode}: {log}")
            try:
                if await self._answers():
                    return
            except _PortTaken:
                await self.kill()
                raise
            if time.monotonic() > deadline:
                await self.kill()
                raise RedisStartError(
                    f"redis-server did not answer PING in {START_TIMEOUT}s: {self._log_tail()}"
                )
            await asyncio.sleep(0.02)

    async def _answers(self) -> bool:
        """True once PING answers PONG, and from this process, not another on the same port."""
        try:
            if await self.command("PING", timeout=1) != "PONG":
                return False
            info = await self.command("INFO", "server", timeout=1)
        except (OSError, TimeoutError, asyncio.IncompleteReadError, RedisReplyError):
            return False
        assert isinstance(info, bytes) and self.process is not None
        if f"process_id:{self.process.pid}\r\n".encode() not in info:
            raise _PortTaken(f"another server answers on port {self.port}")
        return True

    async def stop(self) -> None:
        """SIGTERM by its PID and wait for it to exit (SIGKILL if it does not in time)."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.terminate()
        if self.paused:
            process.send_signal(signal.SIGCONT)  # a stopped process acts on SIGTERM only now
            self.paused = False
        if not await self._wait(process, STOP_TIMEOUT):
            await self.kill()

    async def kill(self) -> None:
        """SIGKILL by its PID, as a crash, and wait for it to be gone."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.kill()
        self.paused = False
        if not await self._wait(process, STOP_TIMEOUT):
            raise AssertionError(f"redis-server {process.pid} survived SIGKILL")

    async def pause(self) -> None:
        """SIGSTOP: the listening socket still accepts connections, but nothing is answered."""
        assert self.process is not None and self.running, "not running"
        os.kill(self.process.pid, signal.SIGSTOP)
        self.paused = True

    async def resume(self) -> None:
        assert self.process is not None and self.running, "not running"
        os.kill(self.process.pid, signal.SIGCONT)
        self.paused = False

    @staticmethod
    async def _wait(process: subprocess.Popen[bytes], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while process.poll() is None:
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.02)
        return True

    async def connect(
        self, *, password: str | bool = True, timeout: float = COMMAND_TIMEOUT
    ) -> RedisConnection:
        """A new connection, authenticated with the server's password (`password=True`), with
        none (`False`) or with another one (a string); close it with `await connection.close()`."""
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(HOST, self.port)
        connection = RedisConnection(reader, writer)
        if isinstance(password, str):
            secret: str | None = password
        else:
            secret = self.password if password else None
        if secret is not None:
            try:
                await connection.command("AUTH", secret, timeout=timeout)
            except BaseException:
                await connection.close()
                raise
        return connection

    async def command(
        self,
        *args: str | bytes | int,
        password: str | bool = True,
        timeout: float = COMMAND_TIMEOUT,
    ) -> Reply:
        """Send one command on a new connection and return its reply: `str` for a status, `bytes`
        for a bulk string, `int`, `None` or a list. Authenticates as `connect` does."""
        connection = await self.connect(password=password, timeout=timeout)
        try:
            return await connection.command(*args, timeout=timeout)
        finally:
            await connection.close()

    def _log_tail(self, lines: int = 20) -> str:
        """The last lines the current process logged (the file holds every start's)."""
        try:
            with self.log.open("rb") as log_file:
                log_file.seek(self._log_offset)
                text = log_file.read().decode(errors="replace")
        except OSError as error:
            return f"(no log: {error})"
        return "\n".join(text.splitlines()[-lines:])
