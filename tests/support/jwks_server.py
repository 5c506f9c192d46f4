"""A real identity provider's key endpoints on 127.0.0.1: OIDC discovery and a JWK Set, which a
test can rotate, slow down, break, or count.

Usage::

    async with JwksServer([key]) as server:
        server.issuer, server.jwks_uri          # http://127.0.0.1:PORT/ and .../jwks.json
        server.keys = [key, new_key]            # rotation
        server.mode = "down"                    # 503; also "garbage", "empty", "huge", "slow"
        server.count("/jwks.json")              # requests served so far
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from types import TracebackType
from typing import Literal

from aiohttp import web

from scopegate.devtools.keys import SigningKey, jwks

Mode = Literal["ok", "down", "garbage", "empty", "huge", "slow"]


class JwksServer:
    def __init__(self, keys: list[SigningKey], *, cache_control: str | None = None) -> None:
        self.keys = list(keys)
        self.cache_control = cache_control
        self.mode: Mode = "ok"
        self.delay = 0.0  # seconds, in "slow" mode
        self.requests: Counter[str] = Counter()
        self.issuer_override: str | None = None
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    @property
    def jwks_uri(self) -> str:
        return f"http://127.0.0.1:{self.port}/jwks.json"

    def count(self, path: str = "/jwks.json") -> int:
        return self.requests[path]

    async def _discovery(self, request: web.Request) -> web.Response:
        self.requests[request.path] += 1
        if self.mode == "down":
            return web.Response(status=503)
        document = {"issuer": self.issuer_override or self.issuer, "jwks_uri": self.jwks_uri}
        return web.json_response(document)

    async def _jwks(self, request: web.Request) -> web.Response:
        self.requests[request.path] += 1
        headers = {"Cache-Control": self.cache_control} if self.cache_control else {}
        if self.mode == "down":
            return web.Response(status=503)
        if self.mode == "garbage":
            return web.Response(body=b"<html>not json</html>", content_type="text/html")
        if self.mode == "empty":
            return web.json_response({"keys": []})
        if self.mode == "huge":
            return web.Response(
                body=b"{" + b" " * (2 << 20) + b"}", content_type="application/json"
            )
        if self.mode == "slow":
            await asyncio.sleep(self.delay)
        body = json.dumps(jwks(*self.keys)).encode()
        return web.Response(body=body, content_type="application/json", headers=headers)

    async def __aenter__(self) -> JwksServer:
        app = web.Application()
        app.router.add_get("/.well-known/openid-configuration", self._discovery)
        app.router.add_get("/jwks.json", self._jwks)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
