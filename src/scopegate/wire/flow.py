"""A transport's write backpressure, for both directions the gateway writes in: answers to the
client (`server/`) and requests to an upstream (`proxy/http1.py`).

asyncio says when a transport's send buffer fills and empties (`pause_writing`,
`resume_writing`); a protocol hands those calls to its `WriteFlow`, and a writer that must not
pile more bytes on awaits `drain`. A peer that takes nothing cannot hold a writer for ever: the
wait is bounded, and ends with the error the writer's side names. When the transport goes,
`fail` wakes a waiting writer with the reason.

Usage::

    flow = WriteFlow(loop)
    # in the protocol: pause_writing -> flow.pause(), resume_writing -> flow.resume(),
    # connection_lost -> flow.fail(error)
    transport.write(data)
    await flow.drain(30.0, UpstreamTimeout)
"""

from __future__ import annotations

import asyncio

from scopegate.wire.inbox import Error, wait_at_most


class WriteFlow:
    __slots__ = ("_loop", "_waiter", "paused")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._waiter: asyncio.Future[None] | None = None
        self.paused = False  # the transport's buffer is past its high-water mark

    def pause(self) -> None:
        self.paused = True

    def resume(self) -> None:
        self.paused = False
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    async def drain(self, max_wait: float | None, error: Error) -> None:
        """Return once the transport takes writes again: at once unless paused, else within
        `max_wait` seconds (None: no limit) or with `error(max_wait)`."""
        if not self.paused:
            return
        waiter = self._waiter = self._loop.create_future()
        await wait_at_most(waiter, max_wait, error)

    def fail(self, failure: Exception) -> None:
        """The transport is gone: a writer waiting in `drain` gets `failure`."""
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_exception(failure)
