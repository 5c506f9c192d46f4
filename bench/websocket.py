"""WebSocket relaying (SPEC §6.3): throughput and memory, the upstream called directly and through
scopegate in the same run.

    .venv/bin/python bench/websocket.py [--runs 5] [--seconds 3] [--idle 10000] [--out FILE]

An aiohttp + uvloop WebSocket upstream (echo, sink and source handlers on one path, picked by
`?mode=`) runs in its own process; scopegate relays `/ws` to it on a route that needs a token
(a real RS256 token from `issuer.py`, verified once and then cached). Each run measures, one
after another and alternating which path goes first:

- MB/s of 1 MiB binary messages, client → upstream (the sink answers a final text message with
  the bytes it took) and upstream → client (the source sends batches of 32 on request);
- messages/s of 64-byte echo round trips, a window of `--window` messages kept in flight on one
  connection, and one at a time (window 1), with p50/p99 round-trip latency;
- then scopegate's RSS (/proc/PID/status VmRSS) before and after `--idle` WebSockets are opened
  through a fresh scopegate and left idle, once they closed, and with as many open again; how
  fast they opened and scopegate's CPU per WebSocket opened.

Figures are medians over `--runs`. Layout as in `run.py`: scopegate pinned to core 0; the
clients (one process per measurement, like wrk) and the upstream share core 1
(`--server-cores`, `--shared-cores`: on this 2-core VM, waking scopegate's idle core for each
small message costs more than the relay itself; `--server-cores 1` shows it).

A relayed connection holds two file descriptors in scopegate (client and upstream side). When
`--idle` does not fit under scopegate's RLIMIT_NOFILE (its soft limit; nothing here can raise a
hard limit), the largest number that fits is measured instead and the report says so;
`--idle-workers 2` spreads the connections over two worker processes, each with its own limit.

Loopback only; every process started here is stopped by its PID. The internal roles
(`upstream`, `load`, `idle`) are this file run with that word first.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import math
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import peers
from procs import cpu_model, cpu_seconds, free_port, pinned, started, tree, wait_port

ROOT = Path(__file__).resolve().parent.parent
PATH = "/ws"
BATCH = 32  # messages the source sends per request
IN_FLIGHT = 64  # handshakes each idle client keeps going
PER_CLIENT = 5000  # idle WebSockets an idle client process holds at most
FD_MARGIN = 32  # descriptors kept free in scopegate: admin scrapes, logs, a fresh upstream
MAX_CONNECTIONS = 10_000


# --- the upstream (its own process) ------------------------------------------------------------


def upstream_role(port: int) -> None:
    import uvloop
    from aiohttp import WSMsgType, web

    async def handle(request: web.Request) -> web.WebSocketResponse:
        """`?mode=echo`: every message back as it came. `sink`: binary messages counted, a
        text message answered with the count so far. `source`: a text "COUNT SIZE" answered
        with COUNT binary messages of SIZE bytes, then the text "end"."""
        ws = web.WebSocketResponse(max_msg_size=0, compress=False)
        await ws.prepare(request)
        mode = request.query.get("mode", "echo")
        taken = 0
        blocks: dict[int, bytes] = {}
        async for message in ws:
            binary = message.type == WSMsgType.BINARY
            if mode == "echo":
                await (ws.send_bytes(message.data) if binary else ws.send_str(message.data))
            elif mode == "sink":
                if binary:
                    taken += len(message.data)
                else:
                    await ws.send_str(str(taken))
            elif not binary:
                count, size = map(int, message.data.split())
                block = blocks.setdefault(size, os.urandom(size))
                for _ in range(count):
                    await ws.send_bytes(block)
                await ws.send_str("end")
        return ws

    async def serve() -> None:
        app = web.Application()
        app.router.add_get(PATH, handle)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port, backlog=4096).start()
        await asyncio.Event().wait()

    uvloop.install()
    asyncio.run(serve())


# --- one measurement (a client process, pinned like wrk) --------------------------------------


async def _upload(
    ws: aiohttp.ClientWebSocketResponse, seconds: float, size: int
) -> dict[str, float]:
    """Messages of `size` bytes to the sink for `seconds`; the clock stops once it has all."""
    block = os.urandom(size)
    for _ in range(4):  # warm-up
        await ws.send_bytes(block)
    await ws.send_str("sync")
    before = int(await ws.receive_str())
    start = time.perf_counter()
    deadline = start + seconds
    sent = 0
    while time.perf_counter() < deadline:
        await ws.send_bytes(block)
        sent += size
    await ws.send_str("sync")
    taken = int(await ws.receive_str()) - before
    elapsed = time.perf_counter() - start
    if taken != sent:
        raise RuntimeError(f"the sink took {taken} bytes of {sent}")
    return {"bytes": sent, "seconds": elapsed, "messages": sent // size}


async def _download(
    ws: aiohttp.ClientWebSocketResponse, seconds: float, size: int
) -> dict[str, float]:
    """Batches of `BATCH` messages from the source, two requested ahead, for `seconds`."""
    await ws.send_str(f"4 {size}")  # warm-up
    while (await ws.receive()).data != "end":
        pass
    start = time.perf_counter()
    deadline = start + seconds
    received = messages = 0
    for _ in range(2):
        await ws.send_str(f"{BATCH} {size}")
    outstanding = 2
    while outstanding:
        message = await ws.receive()
        if isinstance(message.data, bytes):
            received += len(message.data)
            messages += 1
        elif message.data == "end":
            outstanding -= 1
            if time.perf_counter() < deadline:
                await ws.send_str(f"{BATCH} {size}")
                outstanding += 1
        else:
            raise RuntimeError(f"unexpected message from the source: {message!r}")
    elapsed = time.perf_counter() - start
    if received != messages * size:
        raise RuntimeError(f"received {received} bytes in {messages} messages of {size}")
    return {"bytes": received, "seconds": elapsed, "messages": messages}


async def _echo(
    ws: aiohttp.ClientWebSocketResponse, seconds: float, size: int, window: int
) -> dict[str, float]:
    """`window` messages in flight, each answered one sent; round-trip times of each."""
    block = os.urandom(size)
    for _ in range(100):  # warm-up
        await ws.send_bytes(block)
        await ws.receive_bytes()
    sent_at: deque[float] = deque()
    times: list[float] = []
    start = time.perf_counter()
    deadline = start + seconds
    for _ in range(window):
        sent_at.append(time.perf_counter())
        await ws.send_bytes(block)
    while sent_at:
        echoed = await ws.receive_bytes()
        now = time.perf_counter()
        times.append(now - sent_at.popleft())
        if len(echoed) != size:
            raise RuntimeError(f"an echo of {len(echoed)} bytes for {size}")
        if now < deadline:
            sent_at.append(now)
            await ws.send_bytes(block)
    elapsed = time.perf_counter() - start
    times.sort()
    return {
        "bytes": size * len(times),
        "seconds": elapsed,
        "messages": len(times),
        "p50_ms": times[len(times) // 2] * 1000,
        "p99_ms": times[min(len(times) - 1, math.ceil(len(times) * 0.99) - 1)] * 1000,
    }


def load_role(kind: str, url: str, seconds: float, size: int, window: int, token: str) -> None:
    import uvloop

    async def measure() -> dict[str, float]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        mode = {"upload": "sink", "download": "source"}.get(kind, "echo")
        async with (
            aiohttp.ClientSession() as session,
            session.ws_connect(f"{url}?mode={mode}", headers=headers, max_msg_size=0,
                               compress=0, autoping=True) as ws,
        ):  # fmt: skip
            if kind == "upload":
                return await _upload(ws, seconds, size)
            if kind == "download":
                return await _download(ws, seconds, size)
            return await _echo(ws, seconds, size, window)

    uvloop.install()
    print(json.dumps(asyncio.run(measure())), flush=True)


# --- idle connections (client processes that hold them) ---------------------------------------


def _handshake(port: int, token: str) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    return (
        f"GET {PATH}?mode=echo HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        f"{auth}\r\n"
    ).encode()


async def _open_one(port: int, token: str) -> asyncio.StreamWriter:
    """A WebSocket opened with a handshake of its own (no client library: a few KiB of client
    memory each), left idle. At most 30 s to connect and be answered."""
    async with asyncio.timeout(30):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(_handshake(port, token))
            head = await reader.readuntil(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 101"):
                raise RuntimeError(head.split(b"\r\n", 1)[0].decode("latin-1"))
        except BaseException:
            writer.close()
            raise
    return writer


def idle_role(port: int, token: str, count: int, concurrency: int) -> None:
    """Open `count` WebSockets, print how many opened, hold them until stdin closes."""
    import uvloop

    async def hold() -> None:
        gate = asyncio.Semaphore(concurrency)
        errors: dict[str, int] = {}

        async def one() -> asyncio.StreamWriter | None:
            async with gate:
                try:
                    return await _open_one(port, token)
                except Exception as error:
                    name = f"{type(error).__name__}: {error}"[:120]
                    errors[name] = errors.get(name, 0) + 1
                    return None

        writers = [w for w in await asyncio.gather(*(one() for _ in range(count))) if w]
        print(json.dumps({"open": len(writers), "errors": errors}), flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        for writer in writers:
            writer.close()

    uvloop.install()
    asyncio.run(hold())


# --- the run -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Kind:
    name: str  # upload | download | echo
    label: str
    unit: str  # MB/s | msg/s
    size: int
    window: int = 1


@dataclass
class Result:
    rate: float  # MB/s or msg/s
    p50_ms: float = math.nan
    p99_ms: float = math.nan
    cpu_pct: float = math.nan  # scopegate's CPU over the measurement, % of one core

    @property
    def cpu_us(self) -> float:
        """scopegate's CPU per MB, or per round trip (two messages relayed)."""
        return self.cpu_pct / 100 / self.rate * 1e6


@dataclass
class Idle:
    asked: int
    opened: int
    before_kib: int  # RSS after a warm-up of 200 connections, closed again
    after_kib: int  # with `opened` idle WebSockets
    closed_kib: int  # once they closed
    again_kib: int  # with as many opened again: what closing kept is reused, or it grew
    gauge: float  # scopegate_websocket_connections with them open
    gauge_closed: float  # and once they closed
    drained: float  # seconds from the clients closing to scopegate counting none
    fds_before: int
    fds_with: int
    limit: int
    open_rate: float  # WebSockets opened per second
    open_cpu_us: float  # scopegate's CPU per WebSocket opened
    errors: dict[str, int] = field(default_factory=dict)

    @property
    def per_connection(self) -> float:
        return (self.after_kib - self.before_kib) * 1024 / max(self.opened, 1)


@dataclass
class World:
    tmp: Path
    upstream_port: int
    issuer: str
    token: str
    args: argparse.Namespace


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=3.0, help="length of each measurement")
    parser.add_argument("--large-kib", type=int, default=1024, help="size of the large messages")
    parser.add_argument("--small", type=int, default=64, help="size of the echoed messages")
    parser.add_argument("--window", type=int, default=32, help="echoes kept in flight")
    parser.add_argument("--idle", type=int, default=10_000, help="idle WebSockets to hold")
    parser.add_argument("--idle-workers", type=int, default=1, help="scopegate --workers there")
    parser.add_argument("--server-cores", default="0", help="taskset cores of scopegate")
    parser.add_argument("--shared-cores", default="1", help="of the clients and the upstream")
    parser.add_argument("--skip", action="append", default=[], choices=["throughput", "idle"])
    parser.add_argument("--out", type=Path, default=None, help="write the report here too")
    args = parser.parse_args()
    kinds = [
        Kind("upload", f"{args.large_kib:,} KiB binary, client → upstream", "MB/s",
             args.large_kib * 1024),
        Kind("download", f"{args.large_kib:,} KiB binary, upstream → client", "MB/s",
             args.large_kib * 1024),
        Kind("echo", f"{args.small} B echo, {args.window} in flight", "msg/s", args.small,
             args.window),
        Kind("echo", f"{args.small} B echo, one at a time", "msg/s", args.small, 1),
    ]  # fmt: skip
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="scopegate-ws-bench-") as tmp_name:
        tmp = Path(tmp_name)
        up_port, issuer_port = free_port(), free_port()
        tokens = tmp / "tokens.txt"
        with (
            started([sys.executable, __file__, "upstream", str(up_port)], args.shared_cores),
            started(peers.issuer_command(issuer_port, tokens, 1), args.shared_cores),
        ):
            wait_port(up_port)
            token = peers.issued_tokens(tokens, 1)[0]
            world = World(tmp, up_port, f"http://127.0.0.1:{issuer_port}/", token, args)
            report = [_header(args)]
            if "throughput" not in args.skip:
                report.append(_throughput_report(kinds, _throughput(world, kinds)))
            if "idle" not in args.skip:
                report.append(_idle_report(world, [_idle(world, run) for run in range(args.runs)]))
    report.append(f"Whole run: {time.monotonic() - began:,.0f} s.\n")
    text = "\n".join(report)
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0


def _config(world: World, name: str, port: int) -> Path:
    path = world.tmp / f"{name}.yaml"
    path.write_text("\n".join([
        f"listen: 127.0.0.1:{port}", f"admin_listen: 127.0.0.1:{free_port()}",
        f"limits: {{websocket_idle_timeout: 300, max_connections: {MAX_CONNECTIONS}}}",
        "issuers:", f"  - issuer: {world.issuer}", f"    audiences: [{peers.AUDIENCE}]",
        "    algorithms: [RS256, ES256]",
        f"upstreams:\n  echo: http://127.0.0.1:{world.upstream_port}",
        "routes:",
        f"  - {{path: {PATH}, upstream: echo, scopes: [read:contacts], websocket: true}}",
        "",
    ]))  # fmt: skip
    return path


@contextlib.contextmanager
def _scopegate(world: World, name: str, workers: int = 1) -> Iterator[tuple[int, int, Path]]:
    """A scopegate relaying `/ws`, serving once a WebSocket opens through it: (port, PID,
    its configuration)."""
    port = free_port()
    config = _config(world, name, port)
    args = world.args
    cores = args.server_cores if workers == 1 else f"{args.server_cores},{args.shared_cores}"
    with started(peers.scopegate_command(config, workers), cores, cwd=ROOT) as server:
        deadline = time.monotonic() + 60
        while True:
            if server.poll() is not None:
                raise RuntimeError(f"scopegate exited with {server.returncode}")
            try:
                asyncio.run(_probe(port, world.token))
                break
            except (OSError, RuntimeError, asyncio.IncompleteReadError, TimeoutError) as error:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"no WebSocket opens through scopegate: {error}") from None
                time.sleep(0.2)
        yield port, server.pid, config


async def _probe(port: int, token: str) -> None:
    writer = await _open_one(port, token)
    writer.close()


def _load(world: World, kind: Kind, port: int) -> dict[str, float]:
    args = world.args
    command = [sys.executable, __file__, "load", kind.name, f"ws://127.0.0.1:{port}{PATH}",
               str(args.seconds), str(kind.size), str(kind.window), world.token]  # fmt: skip
    output = subprocess.run(pinned(command, world.args.shared_cores), capture_output=True, text=True,
                            timeout=args.seconds + 120, check=False)  # fmt: skip
    if output.returncode != 0:
        raise RuntimeError(f"{kind.label} on port {port}: {output.stderr.strip()[-2000:]}")
    return dict(json.loads(output.stdout))


def _result(kind: Kind, figures: dict[str, float], cpu: float = math.nan) -> Result:
    seconds = figures["seconds"]
    rate = (
        figures["bytes"] / seconds / 1e6 if kind.unit == "MB/s" else figures["messages"] / seconds
    )
    return Result(rate, figures.get("p50_ms", math.nan), figures.get("p99_ms", math.nan),
                  cpu / seconds * 100)  # fmt: skip


def _throughput(world: World, kinds: list[Kind]) -> dict[tuple[Kind, str], list[Result]]:
    results: dict[tuple[Kind, str], list[Result]] = {}
    for run in range(world.args.runs):
        with _scopegate(world, f"relay-{run}") as (port, pid, _):
            for kind in kinds:
                _load(world, kind, port)  # warm-up, not counted (the code paths, the buffers)
                ways = ["direct", "through"] if run % 2 == 0 else ["through", "direct"]
                for way in ways:
                    if way == "direct":
                        sample = _result(kind, _load(world, kind, world.upstream_port))
                    else:
                        before = cpu_seconds(pid)
                        figures = _load(world, kind, port)
                        sample = _result(kind, figures, cpu_seconds(pid) - before)
                    results.setdefault((kind, way), []).append(sample)
                    print(f"run {run + 1}: {kind.label}, {way}: {sample.rate:,.0f} {kind.unit}"
                          + (f", p50 {sample.p50_ms:.2f} ms, p99 {sample.p99_ms:.2f} ms"
                             if kind.unit == "msg/s" else ""), file=sys.stderr, flush=True)  # fmt: skip
    return results


def _rss_kib(pid: int) -> int:
    """VmRSS of `pid` and its descendants (a supervisor's workers), summed."""
    total = 0
    for member in tree(pid):
        with contextlib.suppress(OSError):
            found = re.search(r"^VmRSS:\s+(\d+)", Path(f"/proc/{member}/status").read_text(), re.M)
            total += int(found[1]) if found else 0
    return total


def _fd_room(pid: int) -> tuple[int, int]:
    """(descriptors open, soft RLIMIT_NOFILE) of the fullest process of the tree."""
    worst = (0, 0)
    for member in tree(pid):
        with contextlib.suppress(OSError):
            open_now = len(os.listdir(f"/proc/{member}/fd"))
            limits = Path(f"/proc/{member}/limits").read_text()
            found = re.search(r"^Max open files\s+(\d+)", limits, re.M)
            limit = int(found[1]) if found else 0
            if open_now > worst[0]:
                worst = (open_now, limit)
    return worst


def _gauge(config: Path) -> float:
    url = peers.admin_url(config, "/metrics")
    with urllib.request.urlopen(url, timeout=10) as answer:
        text = answer.read().decode()
    return sum(float(v) for v in re.findall(r"^scopegate_websocket_connections\{[^}]*\} (\S+)",
                                            text, re.M))  # fmt: skip


def _wait_gauge(config: Path, wanted: float, seconds: float = 30) -> tuple[float, float]:
    """Until scopegate counts `wanted` relayed WebSockets: (the count, seconds waited)."""
    began = time.monotonic()
    while True:
        count = _gauge(config)
        waited = time.monotonic() - began
        if count == wanted or waited > seconds:
            return count, waited
        time.sleep(0.2)


def _hold(world: World, port: int, count: int) -> tuple[list[subprocess.Popen[str]], int, dict[str, int]]:  # fmt: skip
    """Client processes holding `count` idle WebSockets through `port`, `PER_CLIENT` at most
    each."""
    share = math.ceil(count / max(1, math.ceil(count / PER_CLIENT))) if count else 0
    clients: list[subprocess.Popen[str]] = []
    opened, errors = 0, dict[str, int]()
    left = count
    while left > 0:
        take = min(share, left)
        left -= take
        command = [
            sys.executable,
            __file__,
            "idle",
            str(port),
            world.token,
            str(take),
            str(IN_FLIGHT),
        ]
        clients.append(subprocess.Popen(pinned(command, world.args.shared_cores), stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, text=True))  # fmt: skip
    for client in clients:
        assert client.stdout is not None
        line = client.stdout.readline()
        if not line:
            raise RuntimeError("an idle client exited before reporting")
        report = json.loads(line)
        opened += report["open"]
        for name, times in report["errors"].items():
            errors[name] = errors.get(name, 0) + times
    return clients, opened, errors


def _release(clients: list[subprocess.Popen[str]]) -> None:
    for client in clients:
        assert client.stdin is not None
        client.stdin.close()
    for client in clients:
        try:
            client.wait(60)
        except subprocess.TimeoutExpired:
            client.kill()
            client.wait()


def _settled_rss(pid: int, seconds: float = 1.0) -> int:
    time.sleep(seconds)
    return _rss_kib(pid)


def _idle(world: World, run: int) -> Idle:
    """A fresh scopegate: RSS before, with the idle WebSockets open, once they closed, and with
    as many open again."""
    args = world.args
    with _scopegate(world, f"idle-{run}", args.idle_workers) as (port, pid, config):
        clients, _, _ = _hold(world, port, 200)  # warm-up: the relay's code and first buffers
        _release(clients)
        before = _settled_rss(pid)
        fds_before, limit = _fd_room(pid)
        room = (limit - fds_before - FD_MARGIN) // 2 * args.idle_workers
        asked = min(args.idle, room, (MAX_CONNECTIONS - 8) * args.idle_workers)
        cpu, began = cpu_seconds(pid), time.monotonic()
        clients, opened, errors = _hold(world, port, asked)
        open_rate = opened / (time.monotonic() - began)
        open_cpu_us = (cpu_seconds(pid) - cpu) / max(opened, 1) * 1e6
        try:
            gauge, _ = _wait_gauge(config, opened)
            after = _settled_rss(pid)
            fds_with, _ = _fd_room(pid)
        finally:
            _release(clients)
        gauge_closed, drained = _wait_gauge(config, 0)
        closed = _settled_rss(pid)
        clients, _, _ = _hold(world, port, asked)
        try:
            _wait_gauge(config, asked)
            again = _settled_rss(pid)
        finally:
            _release(clients)
    sample = Idle(asked, opened, before, after, closed, again, gauge, gauge_closed, drained,
                  fds_before, fds_with, limit, open_rate, open_cpu_us, errors)  # fmt: skip
    print(f"run {run + 1}: {opened:,} idle WebSockets of {asked:,} ({gauge:,.0f} relayed), "
          f"RSS {before / 1024:.1f} → {after / 1024:.1f} MiB ({sample.per_connection:,.0f} "
          f"B each), {closed / 1024:.1f} MiB once closed ({gauge_closed:.0f} relayed after "
          f"{drained:.1f} s), "
          f"{again / 1024:.1f} MiB with as many again; {fds_with:,} fds of {limit:,}; opened "
          f"{open_rate:,.0f}/s, {open_cpu_us:,.0f} µs of scopegate CPU each"
          + (f"; errors {errors}" if errors else ""), file=sys.stderr, flush=True)  # fmt: skip
    return sample


# --- the report --------------------------------------------------------------------------------


def _header(args: argparse.Namespace) -> str:
    cpu = cpu_model()
    return (
        f"Date: {datetime.now(UTC):%Y-%m-%d}. Machine: {platform.machine()}, {os.cpu_count()} "
        f"cores ({cpu}), Python {platform.python_version()}, aiohttp {aiohttp.__version__} "
        f"(upstream and clients, uvloop). Median of {args.runs} runs of {args.seconds:g} s each; "
        f"scopegate on core {args.server_cores}, the clients and the upstream on core "
        f"{args.shared_cores}. "
        "One WebSocket per measurement, a token-checked route.\n"
    )


def _median(values: list[float]) -> float:
    kept = [v for v in values if not math.isnan(v)]
    return statistics.median(kept) if kept else math.nan


def _throughput_report(kinds: list[Kind], results: dict[tuple[Kind, str], list[Result]]) -> str:
    lines = [
        "| measurement | direct | through scopegate | ratio | goal ≥ 0.50 | scopegate CPU % "
        "| scopegate CPU µs per MB or round trip |",
        "|---|---:|---:|---:|---|---:|---:|",
    ]
    latency = [
        "| echo round trips | direct p50 ms | direct p99 ms | through p50 ms "
        "| through p99 ms | p99 added ms |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for kind in kinds:
        direct, through = results[(kind, "direct")], results[(kind, "through")]
        rate_d = _median([r.rate for r in direct])
        rate_t = _median([r.rate for r in through])
        ratio = rate_t / rate_d
        lines.append(f"| {kind.label}, {kind.unit} | {rate_d:,.0f} | {rate_t:,.0f} "
                     f"| {ratio:.2f} | {'met' if ratio >= 0.5 else 'missed'} "
                     f"| {_median([r.cpu_pct for r in through]):.0f} "
                     f"| {_median([r.cpu_us for r in through]):,.0f} |")  # fmt: skip
        if kind.unit == "msg/s":
            p50_d, p99_d = _median([r.p50_ms for r in direct]), _median([r.p99_ms for r in direct])
            p50_t = _median([r.p50_ms for r in through])
            p99_t = _median([r.p99_ms for r in through])
            latency.append(f"| {kind.label.split(', ', 1)[1]} | {p50_d:.3f} | {p99_d:.3f} "
                           f"| {p50_t:.3f} | {p99_t:.3f} | {p99_t - p99_d:.3f} |")  # fmt: skip
    return "\n".join(["### Relay throughput", "", *lines, "", *latency, ""])


def _idle_report(world: World, samples: list[Idle]) -> str:
    args = world.args
    first = samples[0]

    def mib(field: str) -> str:
        return f"{_median([getattr(s, field) / 1024 for s in samples]):.1f}"

    lines = [
        f"### Memory: idle WebSockets relayed (scopegate --workers {args.idle_workers})", "",
        "| idle WebSockets held | RSS before MiB | RSS with them MiB | per connection, bytes "
        "| RSS once closed MiB | RSS with as many again MiB | fds in scopegate |",
        "|---:|---:|---:|---:|---:|---:|---:|",
        f"| {_median([float(s.opened) for s in samples]):,.0f} | {mib('before_kib')} "
        f"| {mib('after_kib')} | {_median([s.per_connection for s in samples]):,.0f} "
        f"| {mib('closed_kib')} | {mib('again_kib')} "
        f"| {_median([float(s.fds_with) for s in samples]):,.0f} of {first.limit:,} |",
        "",
        "Per connection, each run: " + ", ".join(f"{s.per_connection:,.0f}" for s in samples)
        + " bytes. RSS before: after 200 WebSockets were opened and closed (warm-up). "
        f"Opening them (each a token check and a new upstream connection; {IN_FLIGHT} "
        f"handshakes in flight per client process, {PER_CLIENT:,} WebSockets each): {_median([s.open_rate for s in samples]):,.0f} per second, "
        f"{_median([s.open_cpu_us for s in samples]):,.0f} µs of scopegate CPU each. Once the "
        f"clients closed them, scopegate counted none after "
        f"{_median([s.drained for s in samples]):.1f} s.",
    ]  # fmt: skip
    if args.idle_workers > 1:
        lines.append("\nRSS summed over the supervisor and its workers.")
    if first.asked < args.idle and first.asked < (MAX_CONNECTIONS - 8) * args.idle_workers:
        lines.append(
            f"\n{args.idle:,} asked, {first.asked:,} measured: a relayed WebSocket holds two "
            f"file descriptors in scopegate (client and upstream), a process may open "
            f"{first.limit:,} (RLIMIT_NOFILE; the hard limit too, which cannot be raised here), "
            f"and scopegate had {first.fds_before:,} open before the connections."
            + ("" if args.idle_workers > 1 else " `--idle-workers 2` spreads them over two "
               "processes.")
        )  # fmt: skip
    for s in samples:
        if s.opened < s.asked or s.gauge < s.opened or s.gauge_closed:
            lines.append(f"\nA run opened {s.opened:,} of {s.asked:,}; scopegate counted "
                         f"{s.gauge:,.0f} relayed, {s.gauge_closed:,.0f} once closed: "
                         f"{s.errors}")  # fmt: skip
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    role = sys.argv[1] if len(sys.argv) > 1 else ""
    if role == "upstream":
        upstream_role(int(sys.argv[2]))
    elif role == "load":
        kind, url, seconds, size, window, token = sys.argv[2:8]
        load_role(kind, url, float(seconds), int(size), int(window), token)
    elif role == "idle":
        port, token, count, concurrency = sys.argv[2:6]
        idle_role(int(port), token, int(count), int(concurrency))
    else:
        raise SystemExit(main())
