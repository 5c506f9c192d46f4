"""SPEC §6.3: an allowed WebSocket upgrade, sent to the upstream on a connection of its own; once
the upstream answers 101, both connections become one `Tunnel`.

The upgrade was checked like any GET before it gets here. The upstream's answer decides the
rest: a 101 accepting a WebSocket is relayed and the tunnel starts; any other answer (a 400 for
a bad `Sec-WebSocket-Key`, a 403, a redirect) is relayed as an ordinary answer, and the client's
connection then closes, since what it sent after its upgrade request was never HTTP.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import time

from scopegate.errors import UpstreamClosed
from scopegate.proxy.exchange import Exchange
from scopegate.proxy.headers import response_headers
from scopegate.proxy.http1 import AnswerHead
from scopegate.proxy.pool import UpstreamPool
from scopegate.proxy.upstream import relay_answer
from scopegate.server.request import Request
from scopegate.wire.tunnel import Tunnel

UPGRADE_LINES = b"Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
HANDSHAKE_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 §1.3


def asks_for_websocket(request: Request) -> bool:
    """A GET of HTTP/1.1 without a body, with `Connection: upgrade`, `Upgrade: websocket` and
    one `Sec-WebSocket-Key` (RFC 6455 §4.1): the upgrade llhttp stops at, to the protocol a
    route may relay. Anything else is an ordinary request, its `Upgrade` not forwarded."""
    if request.method != "GET" or request.version != (1, 1) or request.body_exists:
        return False
    connection = ",".join(request.header_values(b"connection")).lower()
    upgrade = ",".join(request.header_values(b"upgrade")).lower()
    return (
        _has_token(connection, "upgrade")
        and _has_token(upgrade, "websocket")
        and len(request.header_values(b"sec-websocket-key")) == 1
    )


def upgrade_head(head: bytes) -> bytes:
    """A request head as the header policy writes it (hop-by-hop headers dropped, `Upgrade`
    among them), asking the upstream for the WebSocket upgrade again."""
    return head[:-2] + UPGRADE_LINES


async def open_tunnel(
    pool: UpstreamPool, exchange: Exchange, head: bytes, idle_timeout: float
) -> Tunnel | None:
    """Send the upgrade; the tunnel, relaying, once the upstream switched protocols. None when
    it answered otherwise (that answer was relayed). Raises `UpstreamError` as `forward` does."""
    request, upstream = exchange.request, exchange.upstream
    if upstream is None:
        raise RuntimeError("an exchange is forwarded only once its upstream is chosen")
    started = time.perf_counter()
    connection, _ = await pool.acquire(upstream, fresh=True)  # never shared, never kept
    try:
        connection.begin(head_only=False, upgrade=True)
        connection.write(head)
        answer = await connection.read_head(upstream.timeout)
        exchange.upstream_seconds = time.perf_counter() - started
        if answer.status != 101:
            if not await relay_answer(request, connection, upstream.timeout, exchange):
                exchange.upstream_failure = "reset"
            return None
        _check_switched_to_websocket(answer, request.header(b"sec-websocket-key") or "")
        tunnel = Tunnel(asyncio.get_running_loop(), idle_timeout=idle_timeout)
        connection.hand_over(tunnel)
    finally:
        connection.close()  # after a hand-over, the tunnel's to close
    try:
        headers = response_headers(answer.headers, exchange.answer_headers)
        request.switch_protocols(answer.reason, headers, tunnel)
    except BaseException:
        tunnel.upstream.close()  # the client went away meanwhile
        raise
    tunnel.start()
    return tunnel


def _check_switched_to_websocket(answer: AnswerHead, key: str) -> None:
    """A 101 is tunnelled only when it completes this client's handshake: `Upgrade: websocket`
    and the `Sec-WebSocket-Accept` its key calls for (RFC 6455 §4.2.2). An upstream path that
    answers 101 without being a WebSocket server must not open a raw tunnel past the checks
    (the known WebSocket smuggling through proxies that trust the status alone)."""
    upgrade = accept = ""
    for name, value in answer.headers:
        lower = name.lower()
        if lower == b"upgrade":
            upgrade += "," + value.decode("latin-1").lower()
        elif lower == b"sec-websocket-accept":
            accept = value.decode("latin-1").strip()
    if not _has_token(upgrade, "websocket"):
        raise UpstreamClosed("the upstream switched to a protocol other than websocket")
    if accept != accept_for(key):
        raise UpstreamClosed("the upstream's 101 does not answer the client's Sec-WebSocket-Key")


def accept_for(key: str) -> str:
    """RFC 6455 §4.2.2: the `Sec-WebSocket-Accept` that proves a server read `key`."""
    # SHA-1 is what the protocol names; it proves nothing secret, only that the key was read.
    text = (key.strip() + HANDSHAKE_GUID).encode("latin-1")
    digest = hashlib.sha1(text, usedforsecurity=False).digest()
    return base64.b64encode(digest).decode("ascii")


def _has_token(value: str, token: str) -> bool:
    return any(part.strip() == token for part in value.split(","))
