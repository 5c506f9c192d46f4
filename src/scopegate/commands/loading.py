"""Loading a configuration file for every command: the file validated whole, route table
included, so that `check` accepts exactly what `serve` will run. A server parses it in a
short-lived child process.

Parsing a large file allocates and frees many times the memory of what it builds, in small
pieces around the pieces that stay; the allocator cannot hand that memory back, so a server
that parsed the file itself would carry it for good. The child parses and pickles the
result; the server only unpickles the compact configuration. A reload's child runs while the
server goes on serving, on the bytes the file held when the reload was asked for. Should the
child fail to run at all, the file is parsed in-process instead. The parser and its libraries
(YAML, JSON schema) are imported only then: a server that never needs them never holds them.

    config = load_compact(path)                 # at start, before the event loop
    config = await load_compact_async(path, raw)  # on SIGHUP, raw read at the signal
    config, compiled = load_with_routes(path)   # check and explain, which show the table
"""

from __future__ import annotations

import asyncio
import logging
import pickle
import subprocess
import sys
from pathlib import Path
from typing import cast

from scopegate.config.errors import ConfigErrors
from scopegate.config.model import Config
from scopegate.config.reading import read_config_bytes
from scopegate.pipeline.routing import CompiledRoutes, compile_routes, raise_route_errors
from scopegate.telemetry import logs

_CHILD = [sys.executable, "-m", "scopegate.commands.loading"]


def load_complete(path: Path, raw: bytes | None = None) -> Config:
    """Load and validate a file whole (its bytes `raw`, if already read), route table included;
    raise `ConfigErrors` otherwise."""
    config, _ = load_with_routes(path, raw)
    return config


def load_with_routes(path: Path, raw: bytes | None = None) -> tuple[Config, CompiledRoutes]:
    """`load_complete`, and the route table it compiled to check the file: for the commands
    that print or consult the table (`check`, `explain`)."""
    from scopegate.config.load import load_config_bytes  # imported here: see the docstring

    config = load_config_bytes(read_config_bytes(path) if raw is None else raw, str(path))
    compiled = compile_routes(config.routes)
    raise_route_errors(compiled)
    return config, compiled


def load_compact(path: Path) -> Config:
    """`load_complete` in a child process (see the module's docstring)."""
    raw = read_config_bytes(path)
    child = subprocess.run(  # noqa: S603 - this interpreter and module; the file on stdin
        [*_CHILD, str(path)], input=raw, capture_output=True, check=False
    )
    return _outcome(path, raw, child.returncode, child.stdout, child.stderr)


async def load_compact_async(path: Path, raw: bytes) -> Config:
    """`load_complete` of `raw` in a child process, without blocking the event loop."""
    child = await asyncio.create_subprocess_exec(
        *_CHILD,
        str(path),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await child.communicate(raw)
    # Unpickling a large table takes long enough to stall requests: in a thread, the loop goes
    # on serving.
    return await asyncio.to_thread(_outcome, path, raw, child.returncode, out, err)


def _outcome(path: Path, raw: bytes, returncode: int | None, out: bytes, err: bytes) -> Config:
    if returncode != 0 or not out:
        logs.event("loading in a child process failed; loading in the server", logging.WARNING,
                   error=err.decode(errors="replace")[-500:])  # fmt: skip
        return load_complete(path, raw)
    kind, value = pickle.loads(out)  # noqa: S301 - the output of our own child process
    if kind == "errors":
        raise ConfigErrors(value)
    return cast(Config, value)


def _child(path: str) -> None:
    """The child's side: the file's bytes on stdin, the pickled outcome on stdout."""
    raw = sys.stdin.buffer.read()
    try:
        outcome: tuple[str, object] = ("config", load_complete(Path(path), raw))
    except ConfigErrors as errors:
        outcome = ("errors", errors.errors)
    sys.stdout.buffer.write(pickle.dumps(outcome, protocol=pickle.HIGHEST_PROTOCOL))


if __name__ == "__main__":
    _child(sys.argv[1])
