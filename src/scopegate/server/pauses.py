"""Why a client connection is not being read. Several reasons can hold at once, each with its
own end: reading goes on only when none is left, and the transport is told once each way.
"""

from __future__ import annotations

import asyncio
from typing import Final

FOR_BODY: Final = 1  # a request body is buffered past its high-water mark
FOR_QUEUE: Final = 2  # `MAX_PIPELINED` requests wait to be answered
FOR_WRITES: Final = 4  # the client is not taking the answers already sent
STOPPED: Final = 8  # nothing more will be parsed: never resumed, only cleared by `forget`


class ReadPauses:
    __slots__ = ("_reasons", "transport")

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None  # None until connected, and once gone
        self._reasons = 0

    def pause(self, reason: int) -> None:
        if not self._reasons:
            transport = self.transport
            if transport is not None and not transport.is_closing():
                transport.pause_reading()
        self._reasons |= reason

    def resume(self, reason: int) -> None:
        if not self._reasons & reason:
            return
        self._reasons &= ~reason
        transport = self.transport
        if not self._reasons and transport is not None and not transport.is_closing():
            transport.resume_reading()

    def forget(self) -> None:
        """Drop every reason without resuming: whoever calls this resumes reading itself."""
        self._reasons = 0
