"""WebSocket relaying (SPEC §6.3) as a client meets it: a real gateway in front of a real aiohttp
WebSocket upstream, aiohttp's WebSocket client, and raw sockets for what no client would send.
The recording upstream shows what reached it, and how each connection closed."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
import pytest
from prometheus_client import CollectorRegistry

from scopegate.app import RunningGateway
from scopegate.config.load import load_config_text
from scopegate.devtools.keys import generate
from scopegate.proxy.websocket import accept_for
from tests.e2e.conftest import BASE_CONFIG, Env, base_config, gateway_env, wait_ready
from tests.support.access_log import log_lines
from tests.support.jwks_server import JwksServer
from tests.support.rawhttp import exchange
from tests.support.upstream import RecordingUpstream

WEBSOCKET_CONFIG = (
    BASE_CONFIG.replace(
        "    algorithms: [RS256, ES256]\n", "    algorithms: [RS256, ES256]\n    leeway: 0\n"
    )
    .replace(
        "  max_connections: 64\n",
        "  max_connections: {max_connections}\n  websocket_idle_timeout: {idle}\n",
    )
    .replace(
        "routes:\n",
        "cors:\n  allow_origins: [https://app.example.com]\nroutes:\n"
        "  - name: feed\n"
        "    path: /ws/{{rest*}}\n"
        "    upstream: contacts\n"
        "    scopes: [read:contacts]\n"
        "    websocket: true\n"
        "    websocket_token_query: access_token\n",
    )
)
MIB = 1048576
KEY = base64.b64encode(b"0123456789abcdef").decode()  # a Sec-WebSocket-Key: 16 bytes, base64


@asynccontextmanager
async def websocket_env(idle: float = 60, max_connections: int = 64) -> AsyncIterator[Env]:
    async with gateway_env(
        WEBSOCKET_CONFIG, idle=str(idle), max_connections=str(max_connections)
    ) as env:
        yield env


def upgrade(path: str, *headers: str) -> bytes:
    lines = [f"GET {path} HTTP/1.1", "Host: gw", "Connection: Upgrade", "Upgrade: websocket",
             f"Sec-WebSocket-Key: {KEY}", "Sec-WebSocket-Version: 13", *headers]  # fmt: skip
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def closed_with(ws: aiohttp.ClientWebSocketResponse, within: float) -> int | None:
    """Read until the gateway or upstream closes `ws`; the close code."""
    async with asyncio.timeout(within):
        while True:
            message = await ws.receive()
            if message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
                return ws.close_code


async def until(condition: object, within: float = 3.0) -> None:
    """Wait for `condition()` to hold, polling (metrics and the upstream's record have no
    event to wait on)."""
    assert callable(condition)
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "the condition never held"
        await asyncio.sleep(0.02)


async def test_messages_go_both_ways_and_the_close_is_counted_by_who_closed() -> None:
    async with websocket_env() as env:
        labels = {"route": "feed"}
        async with env.http.ws_connect(f"{env.url}/ws/echo", headers=env.bearer()) as ws:
            await ws.send_str("hello")
            assert await ws.receive_str() == "hello"
            await ws.send_bytes(b"\x00\x01binary")
            assert await ws.receive_bytes() == b"\x00\x01binary"
            assert env.sample("scopegate_websocket_connections", **labels) == 1
            arrived = env.upstream.last
            assert arrived.header("Upgrade") == "websocket"
            assert arrived.header("X-Auth-Subject") == "user-1"
            assert arrived.header("Sec-WebSocket-Key") is not None
        await until(lambda: env.sample("scopegate_websocket_connections", **labels) == 0)
        closes = env.sample("scopegate_websocket_closes_total", route="feed", reason="client")
        assert closes == 1
        assert env.upstream.ws_messages == ["hello", b"\x00\x01binary"]
        assert env.sample("scopegate_requests_total", route="feed", method="GET", code="101") == 1


async def test_an_upstream_close_reaches_the_client_with_its_code() -> None:
    async with websocket_env() as env:
        async with env.http.ws_connect(f"{env.url}/ws/echo", headers=env.bearer()) as ws:
            await ws.send_str("close-please")
            assert await closed_with(ws, within=3) == 4001
        labels = {"route": "feed", "reason": "upstream"}
        await until(lambda: env.sample("scopegate_websocket_closes_total", **labels) == 1)


async def test_the_query_token_opens_the_socket_and_is_neither_forwarded_nor_logged(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with websocket_env() as env:
        token = env.token()
        with log_lines(monkeypatch) as lines:
            url = f"{env.url}/ws/echo?x=1&access_token={token}&y=2"
            async with env.http.ws_connect(url) as ws:
                await ws.send_str("via query")
                assert await ws.receive_str() == "via query"
            labels = {"route": "feed", "reason": "client"}
            await until(lambda: env.sample("scopegate_websocket_closes_total", **labels) == 1)
        assert env.upstream.last.target == "/ws/echo?x=1&y=2"
        assert all(token not in repr(line) for line in lines)
        closed = [line for line in lines if line.get("message") == "websocket closed"]
        assert closed and closed[0]["reason"] == "client"
        access = [line for line in lines if line.get("message") == "request"]
        assert access and access[0]["status"] == 101 and access[0]["decision"] == "allow"


async def test_the_query_token_counts_only_for_upgrades_and_never_beside_a_header() -> None:
    async with websocket_env() as env:
        token = env.token()
        plain = await env.http.get(f"{env.url}/ws/echo?access_token={token}")
        assert plain.status == 401  # an ordinary GET: the query is not a place for tokens
        both = await exchange(
            env.port, upgrade(f"/ws/echo?access_token={token}", f"Authorization: Bearer {token}")
        )
        assert both.status == 400 and both.json()["type"].endswith("/invalid_request")
        twice = await exchange(
            env.port, upgrade(f"/ws/echo?access_token={token}&access_token={token}")
        )
        assert twice.status == 400
        assert env.upstream.received == []


@pytest.mark.parametrize(
    ("headers", "status", "reason"),
    [
        ((), 401, "missing_token"),
        (("Authorization: Bearer not.a.jwt",), 401, "malformed_token"),
        (("Origin: https://evil.example.com",), 403, "cors_rejected"),
    ],
)
async def test_a_refused_upgrade_never_reaches_the_upstream(
    headers: tuple[str, ...], status: int, reason: str
) -> None:
    async with websocket_env() as env:
        if reason == "cors_rejected":
            headers = (*headers, f"Authorization: Bearer {env.token()}")
        answer = await exchange(env.port, upgrade("/ws/echo", *headers))
        assert answer.status == status and answer.json()["type"].endswith(f"/{reason}")
        assert answer.header("Upgrade") is None
        assert env.upstream.received == []


async def test_an_upgrade_without_the_scope_is_refused_with_the_challenge() -> None:
    async with websocket_env() as env:
        token = env.token(("create:contacts",))
        answer = await exchange(env.port, upgrade("/ws/echo", f"Authorization: Bearer {token}"))
        assert answer.status == 403
        assert 'error="insufficient_scope"' in (answer.header("WWW-Authenticate") or "")
        assert env.upstream.received == []


async def test_an_allowed_origin_opens_the_socket() -> None:
    async with websocket_env() as env:
        headers = {**env.bearer(), "Origin": "https://app.example.com"}
        async with env.http.ws_connect(f"{env.url}/ws/echo", headers=headers) as ws:
            await ws.send_str("from the app")
            assert await ws.receive_str() == "from the app"


async def test_on_a_route_without_websocket_the_upgrade_is_an_ordinary_request() -> None:
    async with websocket_env() as env:
        answer = await exchange(env.port, upgrade("/b/ws/echo"))
        assert answer.status == 426  # the upstream saw no upgrade, and said so
        assert answer.header("Connection") == "close"
        assert env.upstream.last.header("Upgrade") is None
        assert env.upstream.ws_closes == []


async def test_an_upstream_that_does_not_switch_is_relayed_as_an_ordinary_answer() -> None:
    async with websocket_env() as env:
        answer = await exchange(
            env.port, upgrade("/ws/refuse", f"Authorization: Bearer {env.token()}")
        )
        assert answer.status == 403 and answer.body == b"no WebSocket here"
        assert answer.header("Connection") == "close"
        assert env.sample("scopegate_websocket_connections", route="feed") == 0


async def test_frames_of_16_mib_pass_both_ways_unchanged() -> None:
    async with websocket_env() as env:
        payload = os.urandom(16 * MIB)
        async with env.http.ws_connect(
            f"{env.url}/ws/echo", headers=env.bearer(), max_msg_size=0
        ) as ws:
            await ws.send_bytes(payload)
            echoed = await asyncio.wait_for(ws.receive_bytes(), 20)
        assert hashlib.sha256(echoed).digest() == hashlib.sha256(payload).digest()
        assert len(env.upstream.ws_messages[0]) == 16 * MIB


async def test_a_client_that_stops_reading_stops_the_upstream_too() -> None:
    async with (
        websocket_env() as env,
        env.http.ws_connect(f"{env.url}/ws/flood", headers=env.bearer(), max_msg_size=0) as ws,
    ):
        await asyncio.sleep(1.5)  # reading nothing: the socket buffers fill, then stop
        stalled_at = env.upstream.ws_sent
        await asyncio.sleep(1.0)
        assert env.upstream.ws_sent == stalled_at  # the upstream's sends wait
        assert stalled_at < 64 * MIB  # socket buffers' worth, not a growing heap
        for _ in range(64):  # reading again lets it go on
            await asyncio.wait_for(ws.receive_bytes(), 5)
        assert env.upstream.ws_sent > stalled_at


async def test_a_token_that_expires_closes_both_sides_with_1008() -> None:
    async with websocket_env() as env:
        headers = env.bearer(lifetime=2)
        started = time.monotonic()
        async with env.http.ws_connect(f"{env.url}/ws/echo", headers=headers) as ws:
            await ws.send_str("still valid")
            assert await ws.receive_str() == "still valid"
            assert await closed_with(ws, within=5) == 1008
        assert 0.5 < time.monotonic() - started < 4.5
        await until(lambda: env.upstream.ws_closes == [1008])
        labels = {"route": "feed", "reason": "token_expired"}
        await until(lambda: env.sample("scopegate_websocket_closes_total", **labels) == 1)


async def test_no_byte_either_way_for_the_idle_timeout_closes_the_socket() -> None:
    async with websocket_env(idle=1) as env:
        async with env.http.ws_connect(
            f"{env.url}/ws/echo", headers=env.bearer(), autoping=False, heartbeat=None
        ) as ws:
            started = time.monotonic()
            assert await closed_with(ws, within=4) == 1001
            assert time.monotonic() - started >= 0.9
        labels = {"route": "feed", "reason": "idle"}
        await until(lambda: env.sample("scopegate_websocket_closes_total", **labels) == 1)
        await until(lambda: env.upstream.ws_closes == [1001])


async def test_relayed_sockets_count_toward_max_connections() -> None:
    async with websocket_env(max_connections=2) as env:
        async with (
            env.http.ws_connect(f"{env.url}/ws/echo", headers=env.bearer()),
            env.http.ws_connect(f"{env.url}/ws/echo", headers=env.bearer()),
        ):
            answer = await exchange(env.port, b"GET /public/x HTTP/1.1\r\nHost: gw\r\n\r\n")
            assert answer.status == 503
        await until(lambda: env.sample("scopegate_websocket_connections", route="feed") == 0)
        answer = await exchange(env.port, b"GET /public/x HTTP/1.1\r\nHost: gw\r\n\r\n")
        assert answer.status == 200


async def test_shutdown_closes_relayed_sockets_with_1001_after_the_grace_period() -> None:
    rsa = generate("RS256")
    async with RecordingUpstream() as upstream, JwksServer([rsa]) as jwks:
        text = base_config(jwks, upstream, WEBSOCKET_CONFIG, idle="60", max_connections="64")
        registry = CollectorRegistry()
        running = RunningGateway.start(
            load_config_text(text, "gateway.yaml"), registry=registry, shutdown_grace=1.0
        )
        gateway = await running.__aenter__()
        stopping: asyncio.Task[bool | None] | None = None
        try:
            await wait_ready(gateway)
            env = Env(gateway, upstream, jwks, rsa, rsa, None, registry)  # type: ignore[arg-type]
            async with (
                aiohttp.ClientSession() as http,
                http.ws_connect(f"{env.url}/ws/echo", headers=env.bearer()) as ws,
            ):
                started = time.monotonic()
                stopping = asyncio.create_task(running.__aexit__(None, None, None))
                assert await closed_with(ws, within=6) == 1001
                assert time.monotonic() - started >= 0.9  # at the end of the grace period
            await asyncio.wait_for(stopping, 6)
        finally:
            if stopping is None:
                await running.__aexit__(None, None, None)
        closes = registry.get_sample_value(
            "scopegate_websocket_closes_total", {"route": "feed", "reason": "shutdown"}
        )
        assert closes == 1
        await until(lambda: upstream.ws_closes == [1001])


class SwitchingServer:
    """An upstream that answers every request 101 with `accept` as its Sec-WebSocket-Accept
    (a path that is no WebSocket server but lets its status be chosen), and keeps whatever
    arrives after the request's head."""

    def __init__(self, accept: str) -> None:
        self.accept = accept
        self.after_head = b""
        self.port = 0
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> SwitchingServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._server is not None:
            self._server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        key = next(
            line.split(b":", 1)[1].strip().decode()
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"sec-websocket-key:")
        )
        accept = self.accept or accept_for(key)
        writer.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            + f"Sec-WebSocket-Accept: {accept}\r\n\r\n".encode()
        )
        with contextlib.suppress(ConnectionError, asyncio.TimeoutError):
            async with asyncio.timeout(2):
                while chunk := await reader.read(65536):
                    self.after_head += chunk
        writer.close()


SWITCHING_CONFIG = WEBSOCKET_CONFIG.replace(
    "upstreams:\n", "upstreams:\n  switching: http://127.0.0.1:{switching_port}\n"
).replace(
    "routes:\n",
    "routes:\n  - name: switching\n    path: /sw\n    upstream: switching\n    auth: none\n"
    "    websocket: true\n",
)


@pytest.mark.parametrize("accept", ["", "bm90IHRoZSByaWdodCBhbnN3ZXI="])
async def test_only_a_101_that_answers_the_client_s_key_opens_a_tunnel(accept: str) -> None:
    """WebSocket smuggling: a 101 that does not prove a WebSocket handshake must not leave the
    client a raw connection to the upstream, past every check."""
    async with (
        SwitchingServer(accept) as upstream,
        gateway_env(
            SWITCHING_CONFIG, idle="60", max_connections="64", switching_port=str(upstream.port)
        ) as env,
    ):
        smuggled = b"GET /admin HTTP/1.1\r\nHost: internal\r\n\r\n"
        reader, writer = await asyncio.open_connection("127.0.0.1", env.port)
        writer.write(upgrade("/sw") + smuggled)
        answer = await asyncio.wait_for(reader.read(65536), 5)
        writer.close()
        await until(lambda: upstream.after_head != b"" or accept != "", within=3)
        if accept:  # a wrong accept: 502, and the bytes after the upgrade go nowhere
            assert answer.startswith(b"HTTP/1.1 502 ")
            await asyncio.sleep(0.3)
            assert upstream.after_head == b""
        else:  # the right accept: the tunnel is open, and carries what followed the head
            assert answer.startswith(b"HTTP/1.1 101 ")
            assert upstream.after_head == smuggled


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param(("Upgrade: h2c", "Connection: Upgrade, HTTP2-Settings"), id="h2c"),
        pytest.param(("Upgrade: websocket", "Connection: Upgrade"), id="no key"),
    ],
)
async def test_an_upgrade_that_is_not_a_websocket_handshake_is_an_ordinary_request(
    headers: tuple[str, ...],
) -> None:
    async with websocket_env() as env:
        lines = ["GET /ws/echo HTTP/1.1", "Host: gw", f"Authorization: Bearer {env.token()}"]
        answer = await exchange(env.port, ("\r\n".join([*lines, *headers]) + "\r\n\r\n").encode())
        assert answer.status == 426  # forwarded as a plain GET: the upstream saw no upgrade
        assert env.upstream.last.header("Upgrade") is None
        assert answer.header("Connection") == "close"


async def test_the_token_parameter_is_taken_out_of_every_request_on_the_route() -> None:
    async with websocket_env() as env:
        token = env.token()
        answer = await env.http.get(
            f"{env.url}/ws/echo?access_token={token}&q=1", headers=env.bearer()
        )
        assert answer.status == 426
        assert env.upstream.last.target == "/ws/echo?q=1"


def masked_frame(opcode: int, payload: bytes) -> bytes:
    """A client's frame (RFC 6455 §5.2): FIN, `opcode`, a 16-bit length, masked."""
    mask = os.urandom(4)
    hidden = bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))
    return bytes((0x80 | opcode, 0x80 | 126)) + len(payload).to_bytes(2, "big") + mask + hidden


async def test_a_close_waits_for_the_frame_under_way_in_each_direction() -> None:
    """The token expires while the client is half-way through a frame: the upstream gets the
    whole frame, then the close; a close frame is never cut into another frame."""
    async with websocket_env() as env:
        reader, writer = await asyncio.open_connection("127.0.0.1", env.port)
        token = env.token(lifetime=2)
        writer.write(upgrade("/ws/echo", f"Authorization: Bearer {token}"))
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 101 ")
        payload = b"half and half " * 2000
        frame = masked_frame(0x2, payload)
        writer.write(frame[: len(frame) // 2])
        await writer.drain()
        # The expiry passes mid-frame: the client is told at once (nothing is under way
        # towards it), the upstream only once the frame ends.
        close_to_client = await asyncio.wait_for(reader.readexactly(4), 5)
        assert close_to_client[:2] == b"\x88\x0f"  # a close frame, unmasked, 15 bytes
        assert int.from_bytes(close_to_client[2:4], "big") == 1008
        assert env.upstream.ws_messages == []
        writer.write(frame[len(frame) // 2 :])
        await writer.drain()
        await until(lambda: env.upstream.ws_closes == [1008], within=5)
        assert env.upstream.ws_messages == [payload]
        writer.close()
