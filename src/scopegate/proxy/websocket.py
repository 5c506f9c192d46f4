"""SPEC §6.3: an allowed WebSocket upgrade, sent to the upstream on a connection of its own; once
the upstream answers 101, both connections become one `Tunnel`.

The upgrade was checked like any GET before it gets here. The upstream's answer decides the
rest: a 101 accepting a WebSocket is relayed and the tunnel starts; any other answer (a 400 for
a bad `Sec-WebSocket-Key`, a 403, a redirect) is relayed as an ordinary answer, and the client's
connection then closes, since what it sent after its upgrade request was never HTTP.
"""

from __future__ import annotations

import asyncio
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


def asks_for_websocket(request: Request) -> bool:
    """A GET of HTTP/1.1 without a body, with `Connection: upgrade` and `Upgrade: websocket`
    (RFC 6455 §4.1): the upgrade llhttp stops at, to the protocol a route may relay."""
    if request.method != "GET" or request.version != (1, 1) or request.body_exists:
        return False
    connection = ",".join(request.header_values(b"connection")).lower()
    upgrade = ",".join(request.header_values(b"upgrade")).lower()
    return _has_token(connection, "upgrade") and _has_token(upgrade, "websocket")


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
        _check_switched_to_websocket(answer)
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


def _check_switched_to_websocket(answer: AnswerHead) -> None:
    upgrade = ",".join(v.decode("latin-1") for n, v in answer.headers if n.lower() == b"upgrade")
    if not _has_token(upgrade.lower(), "websocket"):
        raise UpstreamClosed("the upstream switched to a protocol other than websocket")


def _has_token(value: str, token: str) -> bool:
    return any(part.strip() == token for part in value.split(","))
