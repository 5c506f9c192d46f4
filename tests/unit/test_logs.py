"""Access lines are written in batches, and the output keeps its order."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import sys
from collections.abc import Iterator

import pytest

from scopegate.telemetry import logs


class Stdout:
    """Counts the writes that reach stdout (one per system call with PYTHONUNBUFFERED)."""

    def __init__(self) -> None:
        self.writes: list[str] = []

    def write(self, text: str) -> int:
        self.writes.append(text)
        return len(text)

    def flush(self) -> None:
        pass

    def lines(self) -> list[dict[str, object]]:
        return [json.loads(line) for text in self.writes for line in text.splitlines()]


@contextlib.contextmanager
def counted_stdout(monkeypatch: pytest.MonkeyPatch) -> Iterator[Stdout]:
    """Entered in the test's body: pytest's own capture sets `sys.stdout` between a fixture's
    setup and the test."""
    out = Stdout()
    monkeypatch.setattr(sys, "stdout", out)
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    logs.configure()  # its handler writes to the stdout of the moment: this one
    try:
        yield out
    finally:
        logs.flush()
        root.handlers[:], root.level = handlers, level


async def test_access_lines_are_held_then_written_together_in_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(logs, "ACCESS_FLUSH_SECONDS", 0.02)
    with counted_stdout(monkeypatch) as stdout:
        for number in range(3):
            logs.access(request_id=str(number), status=200)
        assert stdout.writes == []  # held
        await asyncio.sleep(0.1)
        assert len(stdout.writes) == 1  # by the batch's timer, before the context's own flush
        assert [line["request_id"] for line in stdout.lines()] == ["0", "1", "2"]
        logs.access(request_id="3", status=200)
        await asyncio.sleep(0.1)
        assert len(stdout.writes) == 2  # a new batch, a new timer


def test_without_a_running_loop_a_line_is_written_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    with counted_stdout(monkeypatch) as stdout:
        logs.access(request_id="x", status=200)
        assert [line["request_id"] for line in stdout.lines()] == ["x"]


async def test_a_full_batch_is_written_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    with counted_stdout(monkeypatch) as stdout:
        for number in range(logs.MAX_HELD_LINES):
            logs.access(request_id=str(number), status=200)
        assert len(stdout.writes) == 1 and len(stdout.lines()) == logs.MAX_HELD_LINES


async def test_any_other_line_comes_after_the_access_lines_before_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with counted_stdout(monkeypatch) as stdout:
        logs.access(request_id="a", status=200)
        logs.event("reload failed", logging.ERROR)
        logs.access(request_id="b", status=200)
        logging.getLogger("aiohttp.server").error("a library's own record")
        logs.flush()  # a stopping server, once it has drained
    messages = [line["message"] for line in stdout.lines()]
    assert messages == ["request", "reload failed", "request", "a library's own record"]


def test_event_and_access_lines_give_their_time_in_one_shape(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """ISO 8601 in UTC with milliseconds, `+00:00`, whichever kind of line: one parser reads both."""
    with counted_stdout(monkeypatch) as stdout:
        logs.event("an event")
        logs.access(request_id="r", status=200)
    shape = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00")
    times = [str(line["time"]) for line in stdout.lines()]
    assert len(times) == 2 and all(shape.fullmatch(time) for time in times), times
