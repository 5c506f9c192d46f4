"""A real identity provider's key endpoints on 127.0.0.1: OIDC discovery and a JWK Set, which a
test can rotate, slow down, break, stop, or count.

Usage::

    async with JwksServer([key], cache_control="max-age=60") as server:
        Issuer(server.issuer, jwks_uri=server.jwks_uri)  # or jwks_uri=None to go through discovery
        server.keys = [key, new_key]       # rotation: the next fetch sees both
        server.delay = 2.0                 # every answer waits this long first
        server.mode = "down"               # 503 from both paths; also "garbage" (HTML), "empty"
                                           # ({"keys": []}) and "huge" (2 MiB, chunked, no length)
        server.document = {"keys": [...]}  # serve exactly this JWK Set (hand-made keys)
        server.body = b"[[[["              # or exactly these bytes
        server.discovery = {"jwks_uri": "http://10.0.0.1/k"}   # override discovery members
        await server.stop()                # connection refused, until
        await server.start()               # the same port answers again
        server.count("/jwks.json")         # requests served so far, per path

As a pytest fixture::

    @pytest.fixture(name="jwks")
    async def _jwks() -> AsyncIterator[JwksServer]:
        async with JwksServer([KEY]) as server:
            yield server
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from typing import Any, Literal

from aiohttp import web

from scopegate.devtools.keys import SigningKey, jwks
from tests.support.loopback_server import LoopbackServer

Mode = Literal["ok", "down", "garbage", "empty", "huge"]

DISCOVERY_PATH = "/.well-known/openid-configuration"
JWKS_PATH = "/jwks.json"
HUGE_BYTES = 2 << 20


class JwksServer(LoopbackServer):
    def __init__(self, keys: list[SigningKey], *, cache_control: str | None = None) -> None:
        self.keys = list(keys)
        self.cache_control = cache_control
        self.mode: Mode = "ok"
        self.delay = 0.0
        self.document: dict[str, Any] | None = None
        self.body: bytes | None = None
        self.discovery: dict[str, Any] = {}
        self.requests: Counter[str] = Counter()

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    @property
    def jwks_uri(self) -> str:
        return f"http://127.0.0.1:{self.port}{JWKS_PATH}"

    def count(self, path: str = JWKS_PATH) -> int:
        return self.requests[path]

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        self.requests[request.path] += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.mode == "down":
            return web.Response(status=503, text="provider down")
        if request.path == DISCOVERY_PATH:
            return web.json_response(
                {"issuer": self.issuer, "jwks_uri": self.jwks_uri, **self.discovery}
            )
        if self.mode == "huge":
            return await self._huge(request)
        return self._key_set()

    async def _huge(self, request: web.Request) -> web.StreamResponse:
        # Chunked, so that no Content-Length warns the client: only counting while reading helps.
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        await response.write(b'{"keys": [], "pad": "')
        for _ in range(HUGE_BYTES // 65536):
            await response.write(b"x" * 65536)
        await response.write(b'"}')
        return response

    def _key_set(self) -> web.Response:
        if self.mode == "garbage":
            return web.Response(body=b"<html>not json</html>", content_type="text/html")
        if self.body is not None:
            return web.Response(body=self.body, content_type="application/json")
        document = {"keys": []} if self.mode == "empty" else self.document or jwks(*self.keys)
        headers = {"Cache-Control": self.cache_control} if self.cache_control else {}
        return web.Response(
            body=json.dumps(document).encode(), content_type="application/json", headers=headers
        )

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get(DISCOVERY_PATH, self._answer)
        app.router.add_get(JWKS_PATH, self._answer)
