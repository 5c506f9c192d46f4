"""Write backpressure, shared by the server's answers and the upstream client's requests: a
writer waits while the peer takes nothing, for a bounded time, and is woken by the transport."""

from __future__ import annotations

import asyncio

import pytest

from scopegate.wire.flow import WriteFlow


class NoProgress(Exception):
    def __init__(self, seconds: float) -> None:
        super().__init__(seconds)
        self.seconds = seconds


class Gone(Exception):
    pass


async def test_a_writer_is_not_held_while_the_transport_takes_writes() -> None:
    flow = WriteFlow(asyncio.get_running_loop())
    await asyncio.wait_for(flow.drain(None, NoProgress), 0.5)


async def test_a_paused_writer_waits_until_the_transport_resumes() -> None:
    flow = WriteFlow(asyncio.get_running_loop())
    flow.pause()
    waiting = asyncio.ensure_future(flow.drain(5.0, NoProgress))
    await asyncio.sleep(0.02)
    assert not waiting.done()
    flow.resume()
    await asyncio.wait_for(waiting, 0.5)
    assert not flow.paused


async def test_a_peer_that_takes_nothing_holds_a_writer_only_for_max_wait() -> None:
    flow = WriteFlow(asyncio.get_running_loop())
    flow.pause()
    with pytest.raises(NoProgress) as caught:
        await asyncio.wait_for(flow.drain(0.05, NoProgress), 2.0)
    assert caught.value.seconds == 0.05


async def test_a_transport_that_goes_wakes_the_waiting_writer_with_its_reason() -> None:
    flow = WriteFlow(asyncio.get_running_loop())
    flow.pause()
    waiting = asyncio.ensure_future(flow.drain(5.0, NoProgress))
    await asyncio.sleep(0.02)
    flow.fail(Gone("the peer closed"))
    with pytest.raises(Gone, match="the peer closed"):
        await asyncio.wait_for(waiting, 0.5)


class _Writer(asyncio.Protocol):
    def __init__(self, flow: WriteFlow) -> None:
        self.flow = flow

    def pause_writing(self) -> None:
        self.flow.pause()

    def resume_writing(self) -> None:
        self.flow.resume()

    def connection_lost(self, exc: Exception | None) -> None:
        self.flow.fail(Gone("connection lost"))


async def test_a_real_socket_whose_reader_stops_pauses_the_writer_until_it_reads_again() -> None:
    """Over loopback TCP: a peer that does not read fills the buffers and the writer waits;
    once the peer reads, the writer goes on. Nothing is buffered without bound meanwhile."""
    loop = asyncio.get_running_loop()
    reading = asyncio.Event()
    peer_done = asyncio.Event()
    received = 0

    async def peer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal received
        try:
            await reading.wait()
            while chunk := await reader.read(1 << 20):
                received += len(chunk)
        finally:
            writer.close()
            peer_done.set()

    server = await asyncio.start_server(peer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    flow = WriteFlow(loop)
    transport, _ = await loop.create_connection(lambda: _Writer(flow), "127.0.0.1", port)
    piece = b"x" * 65536
    sent = 0
    stalled = None
    try:
        # The kernel's buffers take a few megabytes before the transport's own fills and stays
        # full: write until a drain waits out its bound.
        while stalled is None and sent < 256 << 20:
            transport.write(piece)
            sent += len(piece)
            if flow.paused:
                try:
                    await flow.drain(0.1, NoProgress)
                except NoProgress as error:
                    stalled = error
        assert stalled is not None, "the peer's buffers never filled"
        assert stalled.seconds == 0.1
        reading.set()
        await asyncio.wait_for(flow.drain(5.0, NoProgress), 10.0)
        assert transport.get_write_buffer_size() < sent
    finally:
        transport.close()
        server.close()
        # The peer's side is closed before the loop ends, not left to the garbage collector.
        reading.set()
        await asyncio.wait_for(peer_done.wait(), 10.0)
        await server.wait_closed()
