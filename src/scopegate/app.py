"""Composition root: a `Config` becomes a running gateway (public port) and admin app (admin port).

The public port is scopegate's own HTTP/1.1 server (`server/`): llhttp parsing, one task per
connection's run of requests, answers written in one piece; it routes, answers errors and sends
`100 Continue` on its own terms. The admin port is an aiohttp application.

Usage::

    async with RunningGateway.start(config) as running:
        print(running.public_port, running.admin_port)
        ...            # serve until told to stop; running.reload(new_config) swaps atomically
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
from aiohttp import web
from prometheus_client import CollectorRegistry

from scopegate.config.errors import ConfigError, ConfigErrors
from scopegate.config.model import Config, Source
from scopegate.config.tls_context import TlsFileError, expires_at
from scopegate.gateway import Gateway
from scopegate.keys.fetch import new_session
from scopegate.pipeline.routing import compile_routes
from scopegate.proxy.pool import UpstreamPool, upstream_contexts
from scopegate.runtime import Runtime
from scopegate.server.connection import Settings
from scopegate.server.listener import Listener
from scopegate.server.tls import PublicTls
from scopegate.telemetry import logs
from scopegate.telemetry.admin import admin_app
from scopegate.telemetry.metrics import FLUSH_SECONDS, Metrics

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
        public: Listener,
        admin: web.BaseRunner | None,
        session: aiohttp.ClientSession,
        pool: UpstreamPool,
    ) -> None:
        self.gateway = gateway
        self._pool = pool
        self.metrics = metrics
        self._public = public
        self._admin = admin
        self._session = session
        self._reload_lock = asyncio.Lock()

    @property
    def public_port(self) -> int:
        return self._public.port

    @property
    def open_connections(self) -> int:
        """Client connections open on the public port."""
        return self._public.open_connections

    @property
    def admin_port(self) -> int:
        if self._admin is None:
            raise RuntimeError("this gateway serves no admin port (a worker of a supervisor)")
        return _bound_port(self._admin)

    @property
    def runtime(self) -> Runtime:
        return self.gateway.runtime

    async def reload(self, config: Config) -> None:
        """Swap in `config` whole, or raise `ConfigErrors` and change nothing.

        The route table is compiled in a thread: a large table takes long enough that, on the
        event loop, it would hold every request in flight for as long."""
        async with self._reload_lock:
            old = self.gateway.runtime
            compiled = await asyncio.to_thread(compile_routes, config.routes)
            new = Runtime.build(
                config, self._session, self.metrics, previous=old, compiled=compiled
            )
            contexts = _upstream_contexts(config)  # or ConfigErrors: nothing changes
            _reload_tls(self._public, config)
            self._pool.use_tls(contexts)
            _report_certificates(config, self.metrics)
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
        pool.use_tls(_upstream_contexts(config))
        gateway = Gateway(Runtime.build(config, session, metrics), pool, metrics)
        admin = _admin_runner(gateway, metrics) if serve_admin else None
        public: Listener | None = None
        # Under a supervisor this is how a worker's counts reach the files the admin port reads.
        flushing = asyncio.create_task(_flush_every(metrics, FLUSH_SECONDS))
        try:
            await gateway.runtime.start()
            public = await _listen(_settings(gateway, metrics, config), config, public_socket)
            _report_certificates(config, metrics)
            if admin is not None:
                await _open_admin_port(admin, config)
            yield cls(gateway, metrics, public, admin, session, pool)
        finally:
            await _drain(public, flushing, metrics, shutdown_grace)
            await _close(admin, gateway, session, pool)


def _admin_runner(gateway: Gateway, metrics: Metrics) -> web.AppRunner:
    return web.AppRunner(
        admin_app(metrics.registry, lambda: gateway.runtime.not_ready()), access_log=None
    )


async def _open_admin_port(admin: web.AppRunner, config: Config) -> None:
    await admin.setup()
    await web.TCPSite(admin, config.admin_listen.host, config.admin_listen.port).start()


async def _drain(
    public: Listener | None, flushing: asyncio.Task[None], metrics: Metrics, grace: float
) -> None:
    """Stop taking requests, let those in flight end, and record what they did."""
    if public is not None:
        await public.stop(grace)
    flushing.cancel()
    metrics.flush()  # the last requests' counts, before a worker's process ends
    logs.flush()  # and their access lines


async def _close(
    admin: web.AppRunner | None,
    gateway: Gateway,
    session: aiohttp.ClientSession,
    pool: UpstreamPool,
) -> None:
    """Release the admin port, the current generation's key stores, the session that fetches
    keys and the upstream connection pool."""
    if admin is not None:
        await admin.cleanup()
    await gateway.runtime.retire()
    await session.close()
    pool.close()


async def _flush_every(metrics: Metrics, seconds: float) -> None:
    while True:
        await asyncio.sleep(seconds)
        metrics.flush()


def _settings(gateway: Gateway, metrics: Metrics, config: Config) -> Settings:
    limits = config.limits
    return Settings(
        handler=gateway.handle,
        metrics=metrics,
        header_timeout=limits.header_timeout,
        idle_timeout=limits.idle_timeout,
        max_header_bytes=limits.max_header_bytes,
        max_connections=limits.max_connections,
    )


async def _listen(settings: Settings, config: Config, sock: socket.socket | None) -> Listener:
    tls = None if config.tls is None else PublicTls(config.tls)
    if sock is not None:
        return await Listener.start(settings, sock=sock, tls=tls)
    return await Listener.start(settings, host=config.listen.host, port=config.listen.port, tls=tls)


def _reload_tls(public: Listener, config: Config) -> None:
    """Load the certificate files anew (SPEC §6.1); `ConfigErrors` when they cannot be used or
    TLS would be turned on or off, which needs a restart: then the port keeps what it had."""
    where = Source(config.file, 1, 1)
    if (public.tls is None) != (config.tls is None):
        turned = "on" if config.tls is not None else "off"
        raise ConfigErrors([ConfigError(where, f"tls: turning TLS {turned} needs a restart")])
    if public.tls is None or config.tls is None:
        return
    try:
        public.tls.reload(config.tls)
    except TlsFileError as error:
        raise ConfigErrors([ConfigError(where, f"tls.{error.key}: {error}")]) from None


def _upstream_contexts(config: Config) -> dict[str, ssl.SSLContext]:
    """The upstreams' client contexts, their files read now; `ConfigErrors` if one fails."""
    try:
        return upstream_contexts(config.upstreams.values())
    except TlsFileError as error:
        where = Source(config.file, 1, 1)
        raise ConfigErrors([ConfigError(where, f"upstream tls.{error.key}: {error}")]) from None


def _report_certificates(config: Config, metrics: Metrics) -> None:
    """When each certificate file's first certificate expires, for the expiry alert."""
    if config.tls is not None:
        metrics.certificate_expires("listen", expires_at(config.tls.cert))
        if config.tls.client_ca is not None:
            metrics.certificate_expires("client_ca", expires_at(config.tls.client_ca))
    for upstream in config.upstreams.values():
        tls = upstream.tls
        if tls is not None and tls.ca is not None:
            metrics.certificate_expires(f"{upstream.name}:ca", expires_at(tls.ca))
        if tls is not None and tls.cert is not None:
            metrics.certificate_expires(f"{upstream.name}:cert", expires_at(tls.cert))
