"""Composition root: a `Config` becomes a running gateway (public port) and admin app (admin port).

The public port uses aiohttp's low-level `web.Server`: no router, no middleware chain and no
automatic `100 Continue`, because scopegate routes, answers errors and continues on its own terms
(`connection.py` answers what fails before a request exists).

Usage::

    async with RunningGateway.start(config) as running:
        print(running.public_port, running.admin_port)
        ...            # serve until told to stop; running.reload(new_config) swaps atomically
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
from aiohttp import web
from prometheus_client import CollectorRegistry

from scopegate.admin import admin_app
from scopegate.config.model import Address, Config
from scopegate.connection import GatewayServer
from scopegate.gateway import Gateway
from scopegate.metrics import Metrics
from scopegate.proxy.pool import UpstreamPool
from scopegate.proxy.upstream import new_session
from scopegate.runtime import Runtime

SHUTDOWN_GRACE = 30.0


def _bound_port(runner: web.BaseRunner) -> int:
    for address in runner.addresses:
        if isinstance(address, tuple):
            return int(address[1])
    raise RuntimeError("the server has no TCP address")


class RunningGateway:
    """A gateway bound to its ports, with the current configuration generation."""

    def __init__(
        self,
        gateway: Gateway,
        metrics: Metrics,
        public: web.BaseRunner,
        admin: web.BaseRunner | None,
        session: aiohttp.ClientSession,
    ) -> None:
        self.gateway = gateway
        self.metrics = metrics
        self._public = public
        self._admin = admin
        self._session = session
        self._reload_lock = asyncio.Lock()

    @property
    def public_port(self) -> int:
        return _bound_port(self._public)

    @property
    def admin_port(self) -> int:
        if self._admin is None:
            raise RuntimeError("this gateway serves no admin port (a worker of a supervisor)")
        return _bound_port(self._admin)

    @property
    def runtime(self) -> Runtime:
        return self.gateway.runtime

    async def reload(self, config: Config) -> None:
        """Swap in `config` whole, or raise `ConfigErrors` and change nothing."""
        async with self._reload_lock:
            old = self.gateway.runtime
            new = Runtime.build(config, self._session, self.metrics, previous=old)
            await new.start()
            self.gateway.runtime = new
            await old.retire(keep=new)

    @classmethod
    @asynccontextmanager
    async def start(
        cls,
        config: Config,
        *,
        registry: CollectorRegistry | None = None,
        public_socket: socket.socket | None = None,
        serve_admin: bool = True,
        shutdown_grace: float = SHUTDOWN_GRACE,
    ) -> AsyncIterator[RunningGateway]:
        """Bind the ports of `config` (or accept on `public_socket`, a listening socket shared by
        the workers of a supervisor) and serve until the context exits."""
        metrics = Metrics(registry or CollectorRegistry())
        session = new_session()
        pool = UpstreamPool()
        gateway = Gateway(Runtime.build(config, session, metrics), pool, metrics)
        public = web.ServerRunner(
            _public_server(gateway, metrics, config), shutdown_timeout=shutdown_grace
        )
        admin = (
            web.AppRunner(
                admin_app(metrics.registry, lambda: gateway.runtime.not_ready()), access_log=None
            )
            if serve_admin
            else None
        )
        try:
            await gateway.runtime.start()
            await public.setup()
            await _public_site(public, config.listen, public_socket).start()
            if admin is not None:
                await admin.setup()
                await web.TCPSite(admin, config.admin_listen.host, config.admin_listen.port).start()
            yield cls(gateway, metrics, public, admin, session)
        finally:
            await public.cleanup()  # stop accepting, let in-flight requests finish
            if admin is not None:
                await admin.cleanup()
            await gateway.runtime.retire()
            await session.close()
            pool.close()


def _public_server(gateway: Gateway, metrics: Metrics, config: Config) -> GatewayServer:
    limits = config.limits
    return GatewayServer(
        gateway.handle,
        metrics,
        header_timeout=limits.header_timeout,
        max_connections=limits.max_connections,
        keepalive_timeout=limits.idle_timeout,
        max_line_size=limits.max_header_bytes,
        max_field_size=limits.max_header_bytes,
        auto_decompress=False,  # request bodies are forwarded as sent, never decompressed
        lingering_time=2.0,
        access_log=None,  # scopegate writes its own access line
    )


def _public_site(
    runner: web.BaseRunner, address: Address, sock: socket.socket | None
) -> web.BaseSite:
    if sock is not None:
        return web.SockSite(runner, sock)
    return web.TCPSite(runner, address.host, address.port, backlog=1024)
