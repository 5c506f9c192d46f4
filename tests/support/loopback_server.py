"""An aiohttp application served on 127.0.0.1 that a test can stop and start again on the same
port: what the support servers that play an identity provider share.

Usage::

    class KeyServer(LoopbackServer):
        def add_routes(self, app: web.Application) -> None:
            app.router.add_get("/jwks.json", self._answer)

    async with KeyServer() as server:   # a free port; server.port
        await server.stop()             # connection refused, until
        await server.start()            # the same port answers again
"""

from __future__ import annotations

from types import TracebackType
from typing import Self

from aiohttp import web


class LoopbackServer:
    port = 0  # 0 until the first start: a free port, kept across stop and start
    _runner: web.AppRunner | None = None

    def add_routes(self, app: web.Application) -> None:
        raise NotImplementedError

    async def start(self) -> None:
        """Serve on 127.0.0.1: a free port the first time, the same one after `stop()`."""
        app = web.Application()
        self.add_routes(app)
        runner = self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", self.port, reuse_address=True)
        await site.start()
        self.port = int(runner.addresses[0][1])

    async def stop(self) -> None:
        """Close the port: calls now fail with connection refused."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
