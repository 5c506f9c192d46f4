"""Composition root: a `Config` becomes a running gateway (public port) and admin app (admin port).

The public port uses aiohttp's low-level `web.Server`: no router, no middleware chain and no
automatic `100 Continue`, because scopegate routes, answers errors and continues on its own terms.
Errors aiohttp's HTTP parser raises before a request exists are answered as problem+json too.

Usage::

    async with RunningGateway.start(config) as running:
        print(running.public_port, running.admin_port)
        ...            # serve until told to stop; running.reload(new_config) swaps atomically
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.http_exceptions import LineTooLong
from aiohttp.web_protocol import RequestHandler
from prometheus_client import CollectorRegistry

from scopegate import logs
from scopegate.admin import admin_app
from scopegate.config.model import Address, Config
from scopegate.gateway import Gateway
from scopegate.metrics import UNMATCHED, Metrics
from scopegate.problems import plain_problem, problem_response, request_id
from scopegate.proxy.upstream import new_session
from scopegate.reasons import Denied, Reason
from scopegate.runtime import Runtime

SHUTDOWN_GRACE = 30.0


class _ProblemRequestHandler(RequestHandler):  # type: ignore[type-arg]
    """aiohttp's connection handler, answering its own errors as problem+json with a request id."""

    def handle_error(
        self,
        request: Any,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if request.writer.output_size > 0:
            raise ConnectionError("the answer has started; the connection can only be closed")
        rid = request_id(None)
        metrics: Metrics | None = getattr(self._manager, "metrics", None)
        if status >= 500:
            logs.event("unhandled error", 40, request_id=rid, error=repr(exc))
            response = plain_problem(status, "Internal error", "the gateway failed", "internal", rid)
            response.force_close()
        else:
            denied = _parser_denial(exc)
            response = problem_response(denied, rid, close=True)
            if metrics is not None:
                metrics.denied(UNMATCHED, denied.reason)
        if metrics is not None:
            metrics.answered(UNMATCHED, "OTHER", response.status, 0.0)
        return response


def _parser_denial(exc: BaseException | None) -> Denied:
    if isinstance(exc, LineTooLong):
        return Denied(
            Reason.HEADERS_TOO_LARGE, "a request line or header is too long", challenge=False
        )
    # The parser's own message quotes the offending bytes; a client is told the kind only.
    return Denied(Reason.INVALID_REQUEST, "the request is not valid HTTP/1.1", challenge=False)


class _GatewayServer(web.Server):
    def __init__(self, gateway: Gateway, metrics: Metrics, **kwargs: Any) -> None:
        super().__init__(gateway.handle, **kwargs)
        self.metrics = metrics

    def __call__(self) -> RequestHandler:  # type: ignore[type-arg]
        return _ProblemRequestHandler(self, loop=self._loop, **self._kwargs)


def _bound_port(runner: web.BaseRunner[Any]) -> int:
    for address in runner.addresses:
        if isinstance(address, tuple):
            return int(address[1])
    raise RuntimeError("the server has no TCP address")


class RunningGateway:
    """A gateway bound to its ports, with the current configuration generation."""

    def __init__(
        self, gateway: Gateway, metrics: Metrics, public: web.BaseRunner[Any],
        admin: web.BaseRunner[Any], session: aiohttp.ClientSession,
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
        reuse_port: bool = False,
        shutdown_grace: float = SHUTDOWN_GRACE,
    ) -> AsyncIterator[RunningGateway]:
        metrics = Metrics(registry or CollectorRegistry())
        session = new_session()
        gateway = Gateway(Runtime.build(config, session, metrics), session, metrics)
        public = web.ServerRunner(_public_server(gateway, metrics, config), shutdown_timeout=shutdown_grace)
        admin = web.AppRunner(
            admin_app(metrics.registry, lambda: gateway.runtime.not_ready()), access_log=None
        )
        try:
            await gateway.runtime.start()
            await public.setup()
            await admin.setup()
            await _site(public, config.listen, reuse_port).start()
            await _site(admin, config.admin_listen, reuse_port=False).start()
            yield cls(gateway, metrics, public, admin, session)
        finally:
            await public.cleanup()  # stop accepting, let in-flight requests finish
            await admin.cleanup()
            await gateway.runtime.retire()
            await session.close()


def _public_server(gateway: Gateway, metrics: Metrics, config: Config) -> _GatewayServer:
    limits = config.limits
    return _GatewayServer(
        gateway,
        metrics,
        keepalive_timeout=limits.idle_timeout,
        max_line_size=limits.max_header_bytes,
        max_field_size=limits.max_header_bytes,
        auto_decompress=False,  # request bodies are forwarded as sent, never decompressed
        lingering_time=2.0,
        access_log=None,  # scopegate writes its own access line
    )


def _site(runner: web.BaseRunner[Any], address: Address, reuse_port: bool) -> web.TCPSite:
    return web.TCPSite(runner, address.host, address.port, reuse_port=reuse_port or None, backlog=1024)
