"""JSON-lines logging on stdout: lifecycle events, errors, and one access line per request.

Every line is one JSON object with `time`, `level`, `logger` and `message`, plus the event's own
fields. The access line never carries the token, only who it names (`sub`, client id).

Access lines are written in batches, as Envoy and nginx's `access_log ... buffer= flush=` do: held
for at most `ACCESS_FLUSH_SECONDS` (a timer set when the first line of a batch arrives) or
`MAX_HELD_LINES` lines, then written in one call. stdout is unbuffered in the container image,
and a write to the log pipe is a system call: one per request was a cost on every request, and
scheduling a write per turn of the event loop saved nothing when requests come one at a
time. Any other line (an event, a library's record) writes the held access lines first, so the
output keeps its order.
"""

from __future__ import annotations

import asyncio
import atexit
import json
import logging
import sys
import time
from datetime import UTC, datetime
from typing import Any, TextIO

import orjson
from pythonjsonlogger.json import JsonFormatter

ACCESS = logging.getLogger("scopegate.access")
EVENTS = logging.getLogger("scopegate")


def configure(level: int = logging.INFO) -> None:
    """Send every scopegate (and aiohttp) record to stdout as JSON lines."""
    handler = _AfterHeldAccessLines(sys.stdout)
    handler.setFormatter(
        _EventFormatter(
            "{asctime}{levelname}{name}{message}",
            style="{",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # aiohttp's own access log would duplicate ours in another shape.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


class _EventFormatter(JsonFormatter):
    """Event lines' `time` in the access lines' shape: ISO 8601 in UTC, with milliseconds
    (`2026-12-07T00:05:07.720+00:00`), so that one parser reads both."""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")


class _AfterHeldAccessLines(logging.StreamHandler[TextIO]):
    """Writes the held access lines before each record, whichever logger it comes from (ours,
    aiohttp's, asyncio's): the output keeps the order things happened in."""

    def emit(self, record: logging.LogRecord) -> None:
        _ACCESS_LINES.flush()
        super().emit(record)


def event(message: str, level: int = logging.INFO, **fields: Any) -> None:
    EVENTS.log(level, message, extra=fields)


ACCESS_FLUSH_SECONDS = 0.1  # the longest an access line waits to be written
MAX_HELD_LINES = 64  # a batch well within a pipe's 64 KiB buffer, so its write seldom blocks


class _Batch:
    def __init__(self) -> None:
        self._lines: list[str] = []
        self._timer: asyncio.TimerHandle | None = None

    def add(self, line: str) -> None:
        self._lines.append(line)
        if len(self._lines) >= MAX_HELD_LINES:
            self.flush()
        elif len(self._lines) == 1:
            try:  # one timer a batch: an idle server sets none
                loop = asyncio.get_running_loop()
            except RuntimeError:  # no loop runs: nothing would write it later
                self.flush()
                return
            self._timer = loop.call_later(ACCESS_FLUSH_SECONDS, self.flush)

    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._lines:
            text = "".join(self._lines)
            self._lines.clear()
            sys.stdout.write(text)


_ACCESS_LINES = _Batch()
atexit.register(_ACCESS_LINES.flush)


def flush() -> None:
    """Write the access lines still held (a stopping server calls it once it has drained)."""
    _ACCESS_LINES.flush()


class _Clock:
    """ISO 8601 UTC time with milliseconds; the date and time part is formatted once a second."""

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def now(self) -> str:
        now = time.time()
        second = int(now)
        if second != self._second:
            self._second = second
            self._prefix = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        return f"{self._prefix}.{int((now - second) * 1000):03d}+00:00"


_CLOCK = _Clock()


def access(**fields: Any) -> None:
    """One access line, in the same JSON shape as every other line but not through `logging`:
    the logging machinery and the standard JSON encoder cost a noticeable share of a proxied
    request, and this line is on every one."""
    if not ACCESS.isEnabledFor(logging.INFO):
        return
    line = {
        "time": _CLOCK.now(),
        "level": "INFO",
        "logger": ACCESS.name,
        "message": "request",
        **fields,
    }
    encoded = orjson.dumps(line, default=str, option=orjson.OPT_APPEND_NEWLINE)
    if not encoded.isascii():  # a claim in another script: escaped, as every other line is
        encoded = (json.dumps(line, default=str) + "\n").encode()
    _ACCESS_LINES.add(encoded.decode())
