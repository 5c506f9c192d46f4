"""Bytes arriving on a connection for one reader, with flow control and bounded waits: the
client's request body (`server/request.py`) and an upstream's answer (`proxy/http1.py`) are
both one of these.

Past `high_water` buffered bytes the connection is told to stop reading (`pause`); a read that
takes the buffer lets it read again (`resume`). A reader waits at most `max_wait` seconds for
the next bytes, then gets the error its side names (a stalled body, an upstream timeout).

The loop is handed in, and a waiter's timer is set on the waiter's own loop: on Python 3.11
`asyncio.get_running_loop()` makes a getpid system call each time, and a request waits here
two or three times.

Usage::

    inbox = Inbox(loop, transport.pause_reading, transport.resume_reading, 256 * 1024)
    inbox.put(chunk)          # from the protocol's callbacks; inbox.finish() at the end
    data = await inbox.get(30.0, UpstreamTimeout)   # b"" once finished
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

Error = Callable[[float], Exception]  # called with the seconds waited


def _expire(waiter: asyncio.Future[None], error: Error, seconds: float) -> None:
    if not waiter.done():
        waiter.set_exception(error(seconds))


async def wait_at_most(waiter: asyncio.Future[None], seconds: float | None, error: Error) -> None:
    """Await `waiter`, raising `error(seconds)` if `seconds` (None: no limit) pass first."""
    if seconds is None:
        await waiter
        return
    timer = waiter.get_loop().call_later(seconds, _expire, waiter, error, seconds)
    try:
        await waiter
    finally:
        timer.cancel()


class Inbox:
    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        pause: Callable[[], None],
        resume: Callable[[], None],
        high_water: int,
    ) -> None:
        self._loop = loop
        self._pause = pause
        self._resume = resume
        self._high_water = high_water
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._paused = False
        self._waiter: asyncio.Future[None] | None = None
        self.complete = False
        self.failure: Exception | None = None

    @property
    def pending(self) -> bool:
        """Bytes are buffered that no reader has taken."""
        return bool(self._chunks)

    def put(self, chunk: bytes) -> None:
        self._chunks.append(chunk)
        self._buffered += len(chunk)
        if self._buffered > self._high_water and not self._paused:
            self._paused = True
            self._pause()
        self.wake()

    def finish(self) -> None:
        self.complete = True
        self.wake()

    def fail(self, failure: Exception) -> None:
        """Nothing more will come: readers get `failure` (the first one given stays)."""
        if self.failure is None:
            self.failure = failure
        self.wake()

    async def get(self, max_wait: float | None, stalled: Error) -> bytes:
        """Everything buffered, waiting for it if need be; b"" once the bytes are complete."""
        while not self._chunks:
            if self.complete:
                return b""
            if self.failure is not None:
                raise self.failure
            await self.wait(max_wait, stalled)
        data = self._chunks[0] if len(self._chunks) == 1 else b"".join(self._chunks)
        self._chunks.clear()
        self._buffered = 0
        if self._paused:
            self._paused = False
            self._resume()
        return data

    async def wait(self, max_wait: float | None, stalled: Error) -> None:
        """Until the next `put`, `finish`, `fail` or `wake`, at most `max_wait` seconds."""
        waiter = self._waiter = self._loop.create_future()
        await wait_at_most(waiter, max_wait, stalled)

    def drop(self) -> None:
        """Forget the buffered bytes and the failure: nobody will read them."""
        self._chunks.clear()
        self._buffered = 0
        if self.failure is not None:
            self.failure.__traceback__ = None
            self.failure = None

    def wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)
