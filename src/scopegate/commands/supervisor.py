"""`scopegate serve --workers N`: a supervisor and N worker processes sharing one listening socket.

The supervisor binds the public port once and hands the listening socket to every worker (the
pre-fork model gunicorn and nginx use: it works with port 0 and needs no SO_REUSEPORT). It serves
the admin port itself, reading every worker's metrics through prometheus-client's multiprocess
mode, and each worker's readiness from a small file the worker keeps current. Signals go through
it: SIGHUP validates the file once and, only if it is good, tells every worker to reload; SIGTERM
and SIGINT drain every worker, then exit 0. A worker that dies is replaced.

This module must set PROMETHEUS_MULTIPROC_DIR before prometheus-client is imported anywhere, so
the supervisor imports the rest of scopegate only inside its functions.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import shutil
import signal
import socket
import sys
import tempfile
from pathlib import Path
from typing import Any

from scopegate.commands.readiness import forget, workers_not_ready
from scopegate.pipeline.dpop_nonce import NONCE_KEY_ENV

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def _listening_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(1024)
    sock.setblocking(False)
    return sock


class Supervisor:
    def __init__(self, path: Path, count: int, state_dir: Path) -> None:
        self.path = path
        self.count = count
        self.state_dir = state_dir
        self.workers: dict[int, asyncio.subprocess.Process] = {}
        self.stopping = False
        self._socket: socket.socket | None = None
        self.reloads: Any = None
        self._watchers: set[asyncio.Task[None]] = (
            set()
        )  # the config_reloads counter, made once metrics are set up

    async def spawn(self) -> None:
        assert self._socket is not None
        fd = self._socket.fileno()
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "scopegate", "serve", "-c", str(self.path),
            "--worker-fd", str(fd), "--worker-state", str(self.state_dir),
            pass_fds=(fd,),
        )  # fmt: skip
        self.workers[process.pid] = process
        watcher = asyncio.get_running_loop().create_task(self._watch(process))
        self._watchers.add(watcher)  # the loop holds tasks weakly
        watcher.add_done_callback(self._watchers.discard)

    async def _watch(self, process: asyncio.subprocess.Process) -> None:
        from prometheus_client import multiprocess

        from scopegate.telemetry import logs

        code = await process.wait()
        self.workers.pop(process.pid, None)
        multiprocess.mark_process_dead(process.pid)  # type: ignore[no-untyped-call]
        forget(self.state_dir, process.pid)
        if not self.stopping:
            logs.event("worker died; starting another", logging.ERROR, pid=process.pid, code=code)
            await self.spawn()

    def signal_workers(self, signum: int) -> None:
        for process in list(self.workers.values()):
            if process.returncode is None:
                process.send_signal(signum)

    async def run(self) -> int:
        from scopegate.commands.loading import load_complete
        from scopegate.telemetry import logs

        config = load_complete(self.path)
        self._socket = _listening_socket(config.listen.host, config.listen.port)
        admin = await self._serve_admin(config.admin_listen.host, config.admin_listen.port)
        for _ in range(self.count):
            await self.spawn()
        port = self._socket.getsockname()[1]
        logs.event(
            "scopegate listening",
            listen=f"{config.listen.host}:{port}",
            admin=f"{config.admin_listen.host}:{admin.addresses[0][1]}",
            workers=self.count,
        )
        limits = config.rate_limits
        if limits is not None and limits.store is None and self.count > 1:
            logs.event(
                "rate limits counted in memory: each worker counts alone, so a client gets up to "
                f"{self.count} times its limit; use a redis:// store to share one count",
                logging.WARNING,
                workers=self.count,
            )
        await self._until_stopped()
        await admin.cleanup()
        self._socket.close()
        logs.event("scopegate stopped")
        return 0

    async def _until_stopped(self) -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        loop.add_signal_handler(signal.SIGHUP, lambda: loop.create_task(self._reload()))
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGINT, stop.set)
        await stop.wait()
        self.stopping = True
        self.signal_workers(signal.SIGTERM)
        await asyncio.gather(*(p.wait() for p in list(self.workers.values())))

    async def _reload(self) -> None:
        from scopegate.commands.loading import load_complete
        from scopegate.config.errors import ConfigErrors
        from scopegate.telemetry import logs

        try:
            load_complete(self.path)
        except ConfigErrors as errors:
            self.reloads.labels(result="error").inc()
            for error in errors.errors:
                logs.event("configuration rejected", logging.ERROR, error=str(error))
            logs.event("reload failed; the running configuration is unchanged", logging.ERROR)
            return
        self.reloads.labels(result="ok").inc()
        self.signal_workers(signal.SIGHUP)
        logs.event("configuration reloaded", file=str(self.path), workers=len(self.workers))

    async def _serve_admin(self, host: str, port: int) -> Any:
        from aiohttp import web
        from prometheus_client import CollectorRegistry, multiprocess

        from scopegate.telemetry.admin import admin_app
        from scopegate.telemetry.metrics import Metrics

        own = Metrics(CollectorRegistry())  # written to the shared directory like any worker's
        self.reloads = own.config_reloads
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        app = admin_app(registry, lambda: workers_not_ready(self.state_dir, sorted(self.workers)))
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, host, port).start()
        return runner


def supervise(path: Path, count: int) -> int:
    """Run `count` workers under a supervisor until SIGTERM; the exit code of `serve`."""
    state_dir = Path(tempfile.mkdtemp(prefix="scopegate-"))
    os.environ[MULTIPROC_ENV] = str(state_dir)
    # Workers accept each other's DPoP nonces (SPEC §6.4): one key for all, unless given.
    os.environ.setdefault(NONCE_KEY_ENV, secrets.token_hex(32))
    from scopegate.commands.serve import install_event_loop_policy
    from scopegate.config.errors import ConfigErrors
    from scopegate.telemetry import logs

    logs.configure()
    install_event_loop_policy()
    try:
        return asyncio.run(Supervisor(path, count, state_dir).run())
    except ConfigErrors as errors:
        for error in errors.errors:
            logs.event("configuration rejected", logging.ERROR, error=str(error))
        return 1
    finally:
        shutil.rmtree(state_dir, ignore_errors=True)
