"""The buffer both sides of the wire read through: flow control, completion, failure, stalls."""

from __future__ import annotations

import asyncio

import pytest

from scopegate.wire.inbox import Inbox


class Stalled(Exception):
    pass


def inbox(calls: list[str], high_water: int = 10) -> Inbox:
    loop = asyncio.get_running_loop()
    return Inbox(loop, lambda: calls.append("pause"), lambda: calls.append("resume"), high_water)


async def test_reading_past_high_water_pauses_once_and_taking_it_resumes() -> None:
    calls: list[str] = []
    box = inbox(calls)
    for piece in (b"12345", b"67890", b"X", b"Y"):
        box.put(piece)
    assert calls == ["pause"]
    assert await box.get(1, Stalled) == b"1234567890XY"
    assert calls == ["pause", "resume"]
    box.finish()
    assert await box.get(1, Stalled) == b""


async def test_a_reader_waits_for_bytes_and_for_the_end() -> None:
    box = inbox([])
    reader = asyncio.ensure_future(box.get(1, Stalled))
    await asyncio.sleep(0)
    box.put(b"late")
    assert await reader == b"late"
    reader = asyncio.ensure_future(box.get(1, Stalled))
    await asyncio.sleep(0)
    box.finish()
    assert await reader == b""


async def test_a_stalled_read_raises_the_sides_own_error() -> None:
    with pytest.raises(Stalled):
        await inbox([]).get(0.05, Stalled)


async def test_bytes_buffered_before_a_failure_are_still_read_then_the_failure() -> None:
    box = inbox([])
    box.put(b"kept")
    box.fail(ConnectionError("first"))
    box.fail(ConnectionError("second"))
    assert await box.get(1, Stalled) == b"kept"
    with pytest.raises(ConnectionError, match="first"):
        await box.get(1, Stalled)
