"""`scopegate serve`: run the gateway until told to stop, reloading on SIGHUP.

Signals: SIGHUP re-reads the file, validates all of it and swaps it in whole (a bad file keeps
the running configuration, logs every error and counts `result="error"`); SIGTERM and SIGINT stop
accepting, let in-flight requests finish within the grace period, and exit 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import socket
from pathlib import Path

from scopegate import __version__
from scopegate.app import SHUTDOWN_GRACE, RunningGateway
from scopegate.commands.loading import load_compact, load_compact_async
from scopegate.commands.readiness import report_readiness
from scopegate.config.errors import ConfigErrors
from scopegate.config.model import Config
from scopegate.config.reading import read_config_bytes
from scopegate.telemetry import logs


def install_event_loop_policy() -> None:
    """uvloop when it is installed: the same asyncio API, a faster loop."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def settle_heap() -> None:
    """Move everything alive now (the configuration, route table, imported modules) out of the
    garbage collector's sight. A full collection otherwise walks every object of a large route
    table, and the request that triggers it waits: with many routes, that wait was the tail
    latency. Called once
    serving and after each reload (unfrozen and collected first, so an old configuration's
    cycles are not kept forever)."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()


async def reload_from(
    path: Path,
    running: RunningGateway,
    raw: bytes | None = None,
    *,
    count: bool = True,
    one_at_a_time: asyncio.Lock | None = None,
) -> bool:
    """Reload `path` (as the bytes `raw`, when read at the signal) into `running`;
    `count=False` in a worker, whose supervisor counts. Reloads sharing `one_at_a_time` apply
    in the order they were asked for (asyncio's lock is first come, first served)."""
    try:
        async with one_at_a_time or asyncio.Lock():
            if raw is None:
                raw = read_config_bytes(path)
            config = await load_compact_async(path, raw)
            await running.reload(config)
    except ConfigErrors as errors:
        if count:
            running.metrics.config_reloads.labels(result="error").inc()
        for error in errors.errors:
            logs.event("configuration rejected", logging.ERROR, error=str(error))
        logs.event("reload failed; the running configuration is unchanged", logging.ERROR)
        return False
    settle_heap()
    if count:
        running.metrics.config_reloads.labels(result="ok").inc()
    logs.event("configuration reloaded", file=str(path), routes=len(config.routes))
    return True


def _on_signals(running: RunningGateway, path: Path, stop: asyncio.Event, *, count: bool) -> None:
    loop = asyncio.get_running_loop()
    reloads: set[asyncio.Task[bool]] = set()
    in_order = asyncio.Lock()

    def on_hup() -> None:
        try:
            raw: bytes | None = read_config_bytes(path)  # the file as it is when asked
        except ConfigErrors:
            raw = None  # reported by the reload itself
        task = loop.create_task(
            reload_from(path, running, raw, count=count, one_at_a_time=in_order)
        )
        reloads.add(task)  # held until done: the loop keeps only weak references to tasks
        task.add_done_callback(reloads.discard)

    loop.add_signal_handler(signal.SIGHUP, on_hup)
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)


async def serve_forever(path: Path, config: Config, *, grace: float = SHUTDOWN_GRACE) -> None:
    stop = asyncio.Event()
    async with RunningGateway.start(config, shutdown_grace=grace) as running:
        _on_signals(running, path, stop, count=True)
        settle_heap()
        logs.event(
            "scopegate listening",
            version=__version__,
            listen=f"{config.listen.host}:{running.public_port}",
            admin=f"{config.admin_listen.host}:{running.admin_port}",
            routes=len(config.routes),
        )
        await stop.wait()
        logs.event("stopping: no new connections, finishing requests in flight", grace=grace)
    logs.event("scopegate stopped")


async def serve_as_worker(path: Path, config: Config, fd: int, state_dir: Path) -> None:
    """A worker of `scopegate serve --workers N`: accept on the supervisor's socket, report
    readiness to it, and stop when told to or when the supervisor is gone."""
    stop = asyncio.Event()
    supervisor = os.getppid()
    sock = socket.socket(fileno=fd)
    async with RunningGateway.start(config, public_socket=sock, serve_admin=False) as running:
        _on_signals(running, path, stop, count=False)
        settle_heap()
        reported: list[str] | None = None
        while not stop.is_set():
            reasons = running.runtime.not_ready()
            if reasons != reported:
                report_readiness(state_dir, reasons)
                reported = reasons
            if os.getppid() != supervisor:
                break  # orphaned: the supervisor died without telling us
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.25)


def run(path: Path, *, worker_fd: int | None = None, worker_state: Path | None = None) -> int:
    logs.configure()
    try:
        config = load_compact(path)
    except ConfigErrors as errors:
        for error in errors.errors:
            logs.event("configuration rejected", logging.ERROR, error=str(error))
        return 1
    install_event_loop_policy()
    if worker_fd is not None and worker_state is not None:
        asyncio.run(serve_as_worker(path, config, worker_fd, worker_state))
    else:
        asyncio.run(serve_forever(path, config))
    return 0
