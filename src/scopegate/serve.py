"""`scopegate serve`: run the gateway until told to stop, reloading on SIGHUP.

Signals: SIGHUP re-reads the file, validates all of it and swaps it in whole (a bad file keeps
the running configuration, logs every error and counts `result="error"`); SIGTERM and SIGINT stop
accepting, let in-flight requests finish within the grace period, and exit 0.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path

from scopegate import __version__, logs
from scopegate.app import SHUTDOWN_GRACE, RunningGateway
from scopegate.config.errors import ConfigErrors
from scopegate.config.load import load_config
from scopegate.config.model import Config
from scopegate.runtime import route_errors


def load_complete(path: Path) -> Config:
    """Load and validate a file whole, route table included; raise `ConfigErrors` otherwise."""
    config = load_config(path)
    errors = route_errors(config)
    if errors:
        raise ConfigErrors(errors)
    return config


def install_event_loop_policy() -> None:
    """uvloop when it is installed: the same asyncio API, a faster loop."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


async def reload_from(path: Path, running: RunningGateway) -> bool:
    try:
        config = load_complete(path)
        await running.reload(config)
    except ConfigErrors as errors:
        running.metrics.config_reloads.labels(result="error").inc()
        for error in errors.errors:
            logs.event("configuration rejected", logging.ERROR, error=str(error))
        logs.event("reload failed; the running configuration is unchanged", logging.ERROR)
        return False
    running.metrics.config_reloads.labels(result="ok").inc()
    logs.event("configuration reloaded", file=str(path), routes=len(config.routes))
    return True


async def serve_forever(path: Path, config: Config, *, grace: float = SHUTDOWN_GRACE) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    reloads: set[asyncio.Task[bool]] = set()
    async with RunningGateway.start(config, shutdown_grace=grace) as running:

        def on_hup() -> None:
            task = loop.create_task(reload_from(path, running))
            reloads.add(task)
            task.add_done_callback(reloads.discard)

        loop.add_signal_handler(signal.SIGHUP, on_hup)
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGINT, stop.set)
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


def run(path: Path) -> int:
    logs.configure()
    try:
        config = load_complete(path)
    except ConfigErrors as errors:
        for error in errors.errors:
            logs.event("configuration rejected", logging.ERROR, error=str(error))
        return 1
    install_event_loop_policy()
    asyncio.run(serve_forever(path, config))
    return 0
