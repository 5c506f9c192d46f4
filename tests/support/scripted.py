"""An upstream that answers with exact bytes, for answers no server framework would send.

Each accepted connection runs `script(upstream, reader, writer, index)` (index counts
connections from 0); `read_request` records what arrived, so a test can say what the upstream
saw and on which connection.

Usage::

    async def script(up, reader, writer, index):
        await up.read_request(reader, index)
        writer.write(b"HTTP/1.1 103 Early Hints\\r\\n\\r\\nHTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\n\\r\\nok")

    async with ScriptedUpstream(script) as upstream:
        ...  # a gateway route pointed at upstream.url

    async with ScriptedUpstream.answering(b"HTTP/1.1 200 OK\\r\\n...") as upstream:
        ...  # each connection: one request read, those bytes written
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType


@dataclass(frozen=True)
class Seen:
    connection: int
    head: bytes
    body: bytes

    @property
    def request_line(self) -> str:
        return self.head.split(b"\r\n", 1)[0].decode("latin-1")


Script = Callable[
    ["ScriptedUpstream", asyncio.StreamReader, asyncio.StreamWriter, int], Awaitable[None]
]


class ScriptedUpstream:
    @classmethod
    def answering(cls, answer: bytes) -> ScriptedUpstream:
        """The commonest script: on each connection, read one request and write `answer`."""

        async def script(
            up: ScriptedUpstream,
            reader: asyncio.StreamReader,
            writer: asyncio.StreamWriter,
            index: int,
        ) -> None:
            await up.read_request(reader, index)
            writer.write(answer)

        return cls(script)

    def __init__(self, script: Script) -> None:
        self._script = script
        self.seen: list[Seen] = []
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def read_request(
        self, reader: asyncio.StreamReader, index: int, *, body: bool = True
    ) -> Seen | None:
        """One request head (and its Content-Length body unless `body` is False); None at EOF."""
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return None
        length = 0
        for line in head.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        data = await reader.readexactly(length) if body and length else b""
        seen = Seen(index, head, data)
        self.seen.append(seen)
        return seen

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        index = self.connections
        self.connections += 1
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._script(self, reader, writer, index)
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._tasks.discard(task)
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def __aenter__(self) -> ScriptedUpstream:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await self._server.wait_closed()
