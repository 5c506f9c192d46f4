"""A real upstream HTTP server on 127.0.0.1 that records every request that reaches it.

It is how the tests prove that a denied request never arrives, and that an allowed one arrives
exactly as sent (method, path, query, headers minus hop-by-hop plus identity, body).

Usage::

    async with RecordingUpstream() as upstream:
        ...  # point a gateway at upstream.url
        assert upstream.received == []          # nothing got through
        seen = upstream.last                     # the one request that did

    async with RecordingUpstream(ssl_context=context) as upstream:
        ...  # HTTPS: upstream.url is https://127.0.0.1:PORT; seen.peercert is the client's

Paths with behaviour (everything else answers 200 with a small JSON body):

    /status/NNN          answers status NNN
    /slow/SECONDS        waits, then answers 200
    /download/BYTES      streams BYTES bytes (chunked; ?length=1 sends Content-Length)
    /upload              counts the body without keeping it (for huge uploads)
    /reset               closes the connection without answering
    /midway-reset        starts a chunked answer, then drops the connection
    /set-cookie          answers with two Set-Cookie headers
    /gzip                answers a gzip-encoded body with Content-Encoding: gzip
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import ssl
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from aiohttp import web

CHUNK = b"x" * 65536


@dataclass(frozen=True)
class Received:
    """One request as the upstream saw it."""

    method: str
    target: str
    headers: tuple[tuple[str, str], ...]
    body: bytes
    body_length: int
    # Over HTTPS, the client certificate the upstream verified (`SSLSocket.getpeercert()`).
    peercert: dict[str, Any] | None = field(default=None, compare=False)

    def header(self, name: str) -> str | None:
        values = self.all(name)
        return values[0] if values else None

    def all(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key.lower() == name.lower()]

    @property
    def names(self) -> set[str]:
        return {key.lower() for key, _ in self.headers}

    @property
    def peer_common_name(self) -> str | None:
        """The commonName of the client certificate's subject, if one was verified."""
        for rdn in (self.peercert or {}).get("subject", ()):
            for key, value in rdn:
                if key == "commonName":
                    return str(value)
        return None


class RecordingUpstream:
    def __init__(self, *, ssl_context: ssl.SSLContext | None = None) -> None:
        """With `ssl_context` (a server context), it serves HTTPS instead of HTTP."""
        self.ssl_context = ssl_context
        self.received: list[Received] = []
        # WebSockets (`/ws/...`): what each side's messages were, and how each one closed.
        self.ws_messages: list[str | bytes] = []
        self.ws_closes: list[int | None] = []
        self.ws_sent = 0  # bytes `/ws/flood` managed to hand to its socket
        self._runner: web.ServerRunner | None = None
        self.port = 0

    @property
    def url(self) -> str:
        scheme = "http" if self.ssl_context is None else "https"
        return f"{scheme}://127.0.0.1:{self.port}"

    @property
    def last(self) -> Received:
        assert self.received, "no request reached the upstream"
        return self.received[-1]

    async def __aenter__(self) -> RecordingUpstream:
        server = web.Server(self._handle, auto_decompress=False, access_log=None)
        self._runner = web.ServerRunner(server, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=self.ssl_context)
        await site.start()
        address = self._runner.addresses[0]
        self.port = int(address[1])
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _record(self, request: web.BaseRequest) -> Received:
        keep = not request.path.startswith("/upload")
        body = bytearray()
        length = 0
        async for chunk in request.content.iter_any():
            length += len(chunk)
            if keep:
                body.extend(chunk)
        headers = tuple((k.decode("latin-1"), v.decode("latin-1")) for k, v in request.raw_headers)
        peercert = (
            None if request.transport is None else request.transport.get_extra_info("peercert")
        )
        received = Received(request.method, request.raw_path, headers, bytes(body), length,
                            peercert or None)  # fmt: skip
        self.received.append(received)
        return received

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        received = await self._record(request)
        parts = request.path.strip("/").split("/")
        head, arg = parts[0], (parts[1] if len(parts) > 1 else "")
        if head == "status":
            return web.Response(status=int(arg), text=f"status {arg}")
        if head == "slow":
            await asyncio.sleep(float(arg))
        if head == "download":
            return await _download(request, int(arg), with_length="length" in request.query)
        if head in ("reset", "midway-reset"):
            return await _reset(request, midway=head == "midway-reset")
        if head == "set-cookie":
            response = web.Response(text="cookies")
            response.headers.add("Set-Cookie", "a=1; Path=/")
            response.headers.add("Set-Cookie", "b=2; Path=/")
            return response
        if head == "cors":  # an upstream with CORS headers of its own, which scopegate replaces
            headers = {"Access-Control-Allow-Origin": "*", "Access-Control-Expose-Headers": "X-Up",
                       "Vary": "Accept-Encoding"}  # fmt: skip
            return web.Response(text="cors", headers=headers)
        if head == "ws":
            return await self._websocket(request, arg)
        if head == "gzip":
            body = gzip.compress(b"compressed hello")
            return web.Response(body=body, headers={"Content-Encoding": "gzip"})
        payload = {
            "method": request.method,
            "target": request.raw_path,
            "length": received.body_length,
        }
        return web.Response(body=json.dumps(payload).encode(), content_type="application/json")

    async def _websocket(self, request: web.BaseRequest, mode: str) -> web.StreamResponse:
        """`/ws/echo` sends every message back (and closes with 4001 on "close-please");
        `/ws/flood` sends 1 MiB messages until the client closes (or stops reading: then its
        sends wait); `/ws/refuse` answers 403. Not an upgrade: 426."""
        if mode == "refuse":
            return web.Response(status=403, text="no WebSocket here")
        ws = web.WebSocketResponse(max_msg_size=0, autoping=True)
        if not ws.can_prepare(request).ok:
            return web.Response(status=426, text="upgrade required")
        await ws.prepare(request)
        if mode == "flood":
            await self._flood(ws)
            return ws
        async for message in ws:
            if message.type in (web.WSMsgType.TEXT, web.WSMsgType.BINARY):
                self.ws_messages.append(message.data)
                if message.data == "close-please":
                    await ws.close(code=4001, message=b"asked to")
                elif message.type is web.WSMsgType.TEXT:
                    await ws.send_str(message.data)
                else:
                    await ws.send_bytes(message.data)
        self.ws_closes.append(ws.close_code)
        return ws

    async def _flood(self, ws: web.WebSocketResponse) -> None:
        block = b"x" * 1048576
        closing = asyncio.create_task(ws.receive())  # the client's close, or its going away
        with contextlib.suppress(ConnectionError):
            while not closing.done():
                await ws.send_bytes(block)
                self.ws_sent += len(block)
        self.ws_closes.append((await closing).data)


async def _download(
    request: web.BaseRequest, size: int, *, with_length: bool
) -> web.StreamResponse:
    response = web.StreamResponse()
    response.content_type = "application/octet-stream"
    if with_length:
        response.content_length = size
    await response.prepare(request)
    remaining = size
    while remaining > 0:
        piece = CHUNK[: min(len(CHUNK), remaining)]
        await response.write(piece)
        remaining -= len(piece)
    await response.write_eof()
    return response


async def _reset(request: web.BaseRequest, *, midway: bool) -> web.StreamResponse:
    response = web.StreamResponse()
    if midway:
        await response.prepare(request)
        await response.write(b"partial answer")
        await asyncio.sleep(0.05)
    assert request.transport is not None
    request.transport.abort()
    return response
