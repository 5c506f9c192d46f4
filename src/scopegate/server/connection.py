"""One client connection on the public port: requests read by a `RequestReader`, handed to the
gateway one at a time, and the connection's end decided.

What happens before a request exists is answered here:
- A head llhttp refuses (bad framing, smuggling attempts) gets 400 problem+json; a head growing
  past `max_header_bytes` gets 431. Both are counted as denials of route `unmatched` and close
  the connection: after a framing doubt, nothing else on it can be trusted.
- A request head must arrive within `header_timeout` of its first byte, or the connection gets
  408 and is closed (slowloris holds a connection that long at most). A connection with no
  request in progress is closed after `idle_timeout`.
- Past `max_connections` open connections, a new one is answered 503 and closed.
Every such answer is followed by a lingering close, so that a reset cannot wipe it from the
client's buffer before it is read.

The connection is each request's `Channel`: the request writes its own answer, and asks here
only whether the connection closes after it, and to wait while the client is not taking what
was sent. One connection cannot starve the others: the event loop takes a turn between two
pipelined answers, and a client that does not read its answers stops being read (the
transport's write backpressure pauses reading) and is cut off when nothing it was sent moves
for `idle_timeout`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import cast

from scopegate.errors import ClientGone
from scopegate.reasons import Denied
from scopegate.server.pauses import FOR_BODY, FOR_WRITES, ReadPauses
from scopegate.server.phase import Phase
from scopegate.server.reader import MAX_PIPELINED, RequestReader
from scopegate.server.request import Request, SecureRequest
from scopegate.telemetry import logs
from scopegate.telemetry.metrics import UNMATCHED, Metrics
from scopegate.wire.answer import Answer, reason_phrase
from scopegate.wire.flow import WriteFlow
from scopegate.wire.head import CLOSE, answer_head
from scopegate.wire.problems import internal_error, plain_problem, problem_answer, request_id
from scopegate.wire.tunnel import Tunnel

LINGER_SECONDS = 2.0  # reading (and dropping) an unwanted body after a final answer

Handler = Callable[[Request], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Settings:
    handler: Handler
    metrics: Metrics
    header_timeout: float
    idle_timeout: float
    max_header_bytes: int
    max_connections: int
    secure: bool = False  # the port speaks TLS: requests say `X-Forwarded-Proto: https`


class HttpConnection(asyncio.Protocol):
    """Ties a connection's parts: the reader puts requests in its queue; this answers them in
    order, each request writing its own answer through this, its `Channel`; and this says when
    the connection ends. The transport's write backpressure goes to a `WriteFlow`, and every
    reason to stop reading to one `ReadPauses`."""

    def __init__(self, settings: Settings, connections: set[HttpConnection]) -> None:
        self._settings = settings
        self._connections = connections
        self.loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._pauses = ReadPauses()
        self._reader = RequestReader(
            self,
            self.loop,
            self._pauses,
            max_header_bytes=settings.max_header_bytes,
            header_timeout=settings.header_timeout,
            max_body_pause=settings.idle_timeout,
        )
        if settings.secure:
            self._reader.request_type = SecureRequest
        self._flow = WriteFlow(self.loop)
        self._send_wait = settings.idle_timeout or None  # for the client to take an answer
        self._task: asyncio.Task[None] | None = None  # answering the reader's queue
        self._shutting_down = False
        self._close_after_answer = False
        self._client_eof = False
        self._tunnel: Tunnel | None = None  # what the connection was handed over to
        self.made = False  # `connection_made` was called: on a TLS port, the handshake completed

    # Connection lifecycle

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.made = True
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is one, unregistered
        self._pauses.transport = self._transport
        self._connections.add(self)
        peer = transport.get_extra_info("peername")
        self._reader.attach(str(peer[0]) if isinstance(peer, tuple) else None)
        if len(self._connections) > self._settings.max_connections:
            # Refused before a byte is parsed: a flood of idle connections cannot starve the
            # requests already in flight of file descriptors or event-loop time.
            self.refuse(503, "too many connections", "overloaded")
            return
        self._arm_idle_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._connections.discard(self)
        self._reader.detach()
        self._flow.fail(ClientGone("the client closed the connection"))
        self._transport = self._pauses.transport = None

    def shutdown(self) -> None:
        """Stop taking requests: close now if idle, else once the current answer is sent."""
        self._shutting_down = True
        if self._task is None and self._reader.phase is not Phase.HEAD:
            self.close()

    @property
    def busy(self) -> bool:
        return self._task is not None

    def going_away(self) -> bool:
        """The shutdown's grace is over: close a relayed connection the way its protocol says
        (a WebSocket close frame, 1001). False when the connection relays nothing."""
        if self._reader.phase is not Phase.SWITCHED or self._tunnel is None:
            return False
        self._tunnel.going_away()
        return True

    def close(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.close()

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    def eof_received(self) -> bool | None:
        # A client that half-closes after its request still gets the answer, and then the end.
        phase = self._reader.phase
        if phase is Phase.LINGERING or (self._task is None and phase is Phase.IDLE):
            return None
        self._client_eof = True  # answer what arrived, then close
        self._reader.cut_body()  # the rest of a body can never come
        return True

    def data_received(self, data: bytes) -> None:
        reader = self._reader
        reader.receive(data)
        if self._task is None and reader.queue:  # the first request of a turn was parsed
            self._task = self.loop.create_task(self._answer_all())

    def pause_writing(self) -> None:
        self._flow.pause()
        self._pauses.pause(FOR_WRITES)

    def resume_writing(self) -> None:
        self._flow.resume()
        self._pauses.resume(FOR_WRITES)

    # Answering, one request at a time

    async def _answer_all(self) -> None:
        # The handler is awaited here rather than through a coroutine of its own: every resume
        # of a request would pass through that one more frame.
        reader = self._reader
        queue = reader.queue
        handler = self._settings.handler
        try:
            while queue:
                request = queue[0]
                try:
                    await handler(request)
                except ClientGone:
                    self._close_after_answer = True
                except Exception as error:  # the gateway's own failure: answered 500, then closed
                    self._failed(request, error)
                else:
                    if not request.started:  # it answered nothing: the client must not wait
                        self.abort()
                        self._close_after_answer = True
                finally:
                    if request.body.failure is not None:
                        request.release()
                queue.popleft()
                if self._close_after_answer or self._transport is None:
                    queue.clear()
                    self._end_after(request)
                    return
                if reader.held and len(queue) <= MAX_PIPELINED // 2:
                    reader.take_held()
                if queue:
                    # Answers written but not taken: wait before answering more. And give the
                    # other connections a turn between two pipelined answers.
                    await self.wait_writable()
                    await asyncio.sleep(0)
        except ClientGone:
            self.abort()
            return
        finally:
            self._task = None
        if self._shutting_down or self._client_eof:
            self.close()
        elif reader.phase is Phase.IDLE:
            self._arm_idle_timer()

    def _failed(self, request: Request, error: Exception) -> None:
        if request.started:
            self.abort()
        else:
            rid = request_id(None)
            logs.event("unhandled error", logging.ERROR, request_id=rid, error=repr(error))
            self._settings.metrics.answered(UNMATCHED, request.method, 500, 0.0)
            request.answer(internal_error(rid))
        self._close_after_answer = True

    def _end_after(self, request: Request) -> None:
        """Close once `request` is answered: at once when nothing more can arrive, else after a
        lingering read, since unread bytes would turn the close into a reset."""
        if self._client_eof or (request.body.complete and self._reader.phase is not Phase.STOPPED):
            self.close()
        else:
            self._linger()

    # What a request may ask (`request.Channel`)

    def closes_after(self, request: Request, asked: bool) -> bool:
        """The one rule for closing after an answer; once it says so, the connection ends when
        that answer is sent (`_end_after`)."""
        close = (
            asked
            or not request.keep_alive
            or not request.body.complete  # an unread body cannot be skipped safely
            or self._shutting_down
            or self._reader.phase is Phase.STOPPED
        )
        if close:
            self._close_after_answer = True
        return close

    def write(self, data: bytes) -> None:
        transport = self._transport
        if transport is not None and not transport.is_closing():
            transport.write(data)

    def send(self, *parts: bytes) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            raise ClientGone("the client closed the connection during the answer")
        if len(parts) == 1:
            transport.write(parts[0])
        else:
            transport.writelines(parts)

    async def wait_writable(self) -> None:
        """Wait while the client is not taking what was written: at most `idle_timeout`, then
        `ClientGone` (a client that stopped reading holds no task and no upstream for ever)."""
        if self._flow.paused:
            await self._flow.drain(self._send_wait, _send_timed_out)

    def peer_certificate(self) -> bytes | None:
        transport = self._transport
        ssl_object = None if transport is None else transport.get_extra_info("ssl_object")
        if ssl_object is None:
            return None
        der: bytes | None = ssl_object.getpeercert(binary_form=True)
        return der

    def hand_over(self, tunnel: Tunnel) -> None:
        transport = self._transport
        if transport is None:
            raise ClientGone("the client closed the connection before the upgrade")
        self._close_after_answer = True
        self._tunnel = tunnel
        rest = self._reader.switch()
        self._pauses.transport = None
        tunnel.take(tunnel.client, transport, rest)
        # This protocol hears no more of the transport: the tunnel's end says when it is gone.
        tunnel.ended.add_done_callback(lambda _: self.connection_lost(None))

    def pause_reading_for_body(self) -> None:
        self._pauses.pause(FOR_BODY)

    def resume_reading_for_body(self) -> None:
        self._pauses.resume(FOR_BODY)

    # What the reader cannot settle alone (`reader.Owner`)

    def framing_refused(self, denied: Denied) -> None:
        if self._task is not None or self._reader.queue:
            self._close_after_answer = True  # answer what came before, then close
            return
        self._settings.metrics.denied(UNMATCHED, denied.reason)
        self._settings.metrics.answered(UNMATCHED, "OTHER", denied.status, 0.0)
        self._send_bare(problem_answer(denied, request_id(None)))

    def refuse(self, status: int, detail: str, slug: str) -> None:
        self._reader.stop()
        self._settings.metrics.answered(UNMATCHED, "OTHER", status, 0.0)
        self._send_bare(
            plain_problem(status, reason_phrase(status), detail, slug, request_id(None))
        )

    def close_after_answer(self) -> None:
        self._close_after_answer = True

    # Closing

    def _send_bare(self, answer: Answer) -> None:
        """An answer to no request (a head that never became one), then a lingering close."""
        framing = b"Content-Length: %d\r\n" % len(answer.body)
        head = answer_head(answer.status, "", answer.headers, framing, CLOSE)
        self.write(b"".join([*head, answer.body]))
        self._linger()

    def _linger(self) -> None:
        """Close after an answer while the client may still be sending: closing at once would
        reset the connection, and a reset can wipe the answer from the client's buffer before
        it is read. So the answer is followed by our end of the stream, and what the client
        still sends is read and dropped for up to `LINGER_SECONDS`."""
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        if self._client_eof:
            self.close()  # the client has said all it will: nothing is left to read
            return
        self._reader.linger()
        if transport.can_write_eof():
            try:
                transport.write_eof()
            except OSError:  # the peer is gone already
                self.abort()
                return
        transport.resume_reading()
        self._reader.set_deadline(LINGER_SECONDS, self._close_or_abort)

    def _close_or_abort(self) -> None:
        """Close; or cut the connection if it still holds bytes the client never took, since
        a close waits until they are sent."""
        transport = self._transport
        if transport is not None and transport.get_write_buffer_size():
            self.abort()
        else:
            self.close()

    def _arm_idle_timer(self) -> None:
        if self._settings.idle_timeout > 0:
            self._reader.set_deadline(self._settings.idle_timeout, self._idle_too_long)

    def _idle_too_long(self) -> None:
        if self._task is None and self._reader.phase is Phase.IDLE:
            self._close_or_abort()


def _send_timed_out(seconds: float) -> Exception:
    return ClientGone(f"the client took none of the answer for {seconds:g} s")
