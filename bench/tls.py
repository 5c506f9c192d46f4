"""TLS on the public port (SPEC §6.1): what HTTPS costs scopegate, against scopegate over plain
HTTP and against nginx terminating TLS in front of the same upstream, in one run.

    .venv/bin/python bench/tls.py [--runs 3] [--seconds 8] [--handshake-seconds 5] [--append FILE]

Run on demand, not in CI; loopback only. It makes throw-away certificates with `cryptography`
in a temporary directory (a P-256 CA, and two leaves for 127.0.0.1 and localhost signed by it:
ECDSA P-256 and RSA-2048; the leaf alone is served, as a CA's root would not be), starts the
upstream (nginx, as `run.py` does) and the token issuer, then in each run, for every case, a
fresh server:

- Keep-alive HTTPS with a valid token (RS256, verified once, then cached), wrk -t1
  `-c --connections` for `--seconds` after a 1-s warm-up: scopegate with `tls:` (ECDSA leaf),
  scopegate over plain HTTP, nginx (one process, `master_process off`) terminating TLS with the
  same certificate and `proxy_pass` to the same upstream over kept-alive connections, and the
  same nginx over plain HTTP. nginx checks no token: it is the price of TLS termination and
  proxying alone. Each wrk connection makes one handshake, then its requests follow on it.
- A new connection for every request: this file's `client` role (uvloop, `--handshake-
  connections` in flight; each connection TCP, a full TLS handshake, since no session is ever
  offered, one request with `Connection: close`, its answer to the end; the certificate is not
  verified, to spare the client's core) against scopegate and nginx with the ECDSA P-256 leaf,
  the RSA-2048 leaf and over plain HTTP; the plain case is subtracted from the TLS ones to give
  the handshake's own CPU. wrk with `Connection: close` resumes each connection's session (it
  keeps it and OpenSSL offers its ticket: nginx's `$ssl_session_reused` showed 5,935 of 5,938
  resumed), so it measures resumed handshakes, reported apart.

Layout as in `run.py`: the server under test pinned to core 0, wrk, the client and the
upstream on core 1. CPU per request (or per connection) is the server's user + system time, its
processes included, over the requests completed; every answer's status is checked. A full
handshake costs the client about as much CPU as the server (OpenSSL 3.0: ~0.7-0.9 ms a
connection, for `openssl s_time -new` as for the Python client), so one client core cannot keep
the server's core busy: the rate a core would give is 1,000,000 ÷ CPU µs per connection, and the
report gives the cores' load beside every figure (the server's, other processes' on core 0
from /proc/stat, core 1's). The machine is shared: a measurement during which other work took
more than `--noisy` of core 0 is made again (`--retries`), and the least disturbed kept.
Scenarios alternate their order from run to run, figures are medians over `--runs`, and the
ratios are given per run too.

`--append FILE` inserts the report's section before the line starting "### Instructions per
request, counted by callgrind" when FILE has exactly one, otherwise adds it at the end.
`--max-seconds` bounds the whole run; every process started here is stopped by its PID. The
internal role `client` is this file run with that word first.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import importlib.metadata
import json
import math
import os
import platform
import re
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import cast

import peers
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from loadgen import LOAD_CORE, run_wrk
from procs import TICKS, cpu_model, cpu_seconds, free_port, pinned, started, wait_port

from scopegate.devtools.certs import LocalAuthority

ROOT = Path(__file__).resolve().parent.parent
SERVER_CORE = "0"
SHARED_CORE = "1"  # the upstream's and the issuer's; wrk and the client run on LOAD_CORE
PATH = "/contacts"
MARKER = "### Instructions per request, counted by callgrind"
KEYS = {"ecdsa": "ECDSA P-256", "rsa": "RSA-2048"}


# --- certificates ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Certificates:
    ca: Path
    chains: dict[str, tuple[Path, Path]]  # key kind -> (certificate chain, private key)


def make_certificates(directory: Path) -> Certificates:
    """A throw-away CA (`scopegate.devtools.certs`) and, signed by it, an ECDSA P-256 and an
    RSA-2048 leaf for localhost and 127.0.0.1, valid for a day, as PEM files in `directory`."""
    authority = LocalAuthority("scopegate bench throw-away CA")
    chains = {}
    for kind in KEYS:
        (directory / kind).mkdir()
        files = authority.issue_server(directory / kind, "localhost", "127.0.0.1",
                                       rsa_key=kind == "rsa")  # fmt: skip
        chains[kind] = (files.cert, files.key)
    return Certificates(authority.write(directory / "ca.pem"), chains)


# --- the servers under test --------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    name: str
    server: str  # scopegate | nginx
    key: str | None  # ecdsa | rsa | None: plain HTTP
    load: str = "wrk"  # wrk (keep-alive) | client (a full handshake per request) | resumed


@dataclass
class World:
    tmp: Path
    certs: Certificates
    upstream_port: int
    issuer: str
    token: str
    args: argparse.Namespace
    repeated: int = 0  # measurements made again because other work took the server's core


def _scopegate(world: World, case: Case, port: int) -> list[str]:
    config = peers.scopegate_config(world.tmp, f"sg-{port}", world.issuer, world.upstream_port,
                                    port)  # fmt: skip
    if case.key is not None:
        cert, key = world.certs.chains[case.key]
        with config.open("a") as out:
            out.write(f"tls: {{cert: '{cert}', key: '{key}', min_version: \"1.2\"}}\n")
    return peers.scopegate_command(config)


def _nginx(world: World, case: Case, port: int) -> list[str]:
    """One nginx process in front of the upstream: TLS (or not) towards the client, kept-alive
    HTTP/1.1 connections towards the upstream."""
    home = world.tmp / f"nginx-{port}"
    home.mkdir()
    tls = ""
    if case.key is not None:
        cert, key = world.certs.chains[case.key]
        tls = (f"    ssl_certificate {cert}; ssl_certificate_key {key};\n"
               "    ssl_protocols TLSv1.2 TLSv1.3;\n")  # fmt: skip
    conf = home / "nginx.conf"
    conf.write_text(
        f"master_process off; worker_processes 1; daemon off; pid {home}/nginx.pid;\n"
        f"error_log {home}/error.log;\n"
        "events { worker_connections 4096; }\n"
        f"http {{ access_log off; client_body_temp_path {home}; proxy_temp_path {home};\n"
        f"  fastcgi_temp_path {home}; uwsgi_temp_path {home}; scgi_temp_path {home};\n"
        "  keepalive_requests 1000000;\n"
        f"  upstream contacts {{ server 127.0.0.1:{world.upstream_port}; keepalive 64;\n"
        "    keepalive_requests 1000000; }\n"
        f"  server {{ listen 127.0.0.1:{port}{' ssl' if case.key else ''};\n{tls}"
        "    location / { proxy_pass http://contacts; proxy_http_version 1.1;\n"
        '      proxy_set_header Connection ""; } } }\n'
    )
    return ["nginx", "-c", str(conf), "-e", str(home / "error.log")]


@contextmanager
def serving(world: World, case: Case) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """`case`'s server, pinned to the server core, once it answers the token with 200."""
    port = free_port()
    command = (_scopegate if case.server == "scopegate" else _nginx)(world, case, port)
    with started(command, SERVER_CORE, cwd=ROOT) as server:
        deadline = time.monotonic() + 60
        while True:
            if server.poll() is not None:
                raise RuntimeError(f"{case.name}: the server exited with {server.returncode}")
            try:
                if probe(port, world.certs.ca if case.key else None, world.token)[0] == 200:
                    break
            except (OSError, ValueError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{case.name}: no 200 from port {port}")
            time.sleep(0.1)
        yield server, port


def probe(port: int, ca: Path | None, token: str) -> tuple[int, str]:
    """One request over a connection of its own: the status, and what TLS was agreed, the
    certificate checked against `ca` for the address 127.0.0.1."""
    request = (f"GET {PATH} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}"
               "\r\nConnection: close\r\n\r\n").encode()  # fmt: skip
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        if ca is None:
            return _status(_exchange(raw, request)), "plain HTTP"
        context = ssl.create_default_context(cafile=str(ca))
        context.set_alpn_protocols(["http/1.1"])
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as secure:
            leaf = x509.load_der_x509_certificate(secure.getpeercert(binary_form=True) or b"")
            public = leaf.public_key()
            key = (f"ECDSA {public.curve.name}" if isinstance(public, ec.EllipticCurvePublicKey)
                   else f"RSA-{getattr(public, 'key_size', '?')}")  # fmt: skip
            cipher = secure.cipher()
            agreed = (f"{secure.version()} {cipher[0] if cipher else '?'}, ALPN "
                      f"{secure.selected_alpn_protocol()}, {key} leaf verified")  # fmt: skip
            return _status(_exchange(secure, request)), agreed


def _exchange(sock: socket.socket, request: bytes) -> bytes:
    sock.sendall(request)
    answer = b""
    while chunk := sock.recv(65536):
        answer += chunk
    return answer


def _status(answer: bytes) -> int:
    parts = answer.split(b" ", 2)
    if len(parts) < 2 or not parts[1].isdigit():
        raise ValueError(f"not an HTTP answer: {answer[:60]!r}")
    return int(parts[1])


# --- a new connection for every request ---------------------------------------------------------


@dataclass
class Measured:
    """One measurement of one case: what the load generator completed, what it cost the server,
    and how busy the two cores were meanwhile (other work on the machine included)."""

    rate: float  # requests per second; with "Connection: close", connections per second
    cpu_us: float  # the server's CPU per request (per connection)
    p50_ms: float
    p99_ms: float
    busy: float  # the server's CPU over the wall time: 1.0 is its core fully used
    others: float  # core 0 used by other processes, or stolen by the hypervisor, over the time
    core1: float  # core 1 used by anything (load generator, upstream, others) over the time
    rss_mib: float = math.nan
    client_us: float = math.nan  # the `client` role's CPU per connection
    failed: int = 0  # `client` connections that failed, or did not answer 200


def _core_ticks() -> dict[str, tuple[int, int]]:
    """Per core: (busy, stolen) clock ticks since boot, from /proc/stat."""
    found = {}
    for line in Path("/proc/stat").read_text().splitlines():
        name, *fields = line.split()
        if name.startswith("cpu") and name[3:].isdigit():
            user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, fields[:8])
            found[name[3:]] = (user + nice + system + irq + softirq, steal)
    return found


class _Window:
    """The server's CPU, the cores' load and the wall time from now until `close()`."""

    def __init__(self, server_pid: int) -> None:
        self._pid = server_pid
        self._cpu, self._ticks, self._clock = (
            cpu_seconds(server_pid),
            _core_ticks(),
            time.monotonic(),
        )

    def close(self) -> tuple[float, float, float, float]:
        """(server CPU seconds, wall seconds, others' share of core 0, core 1's load)."""
        used, wall = cpu_seconds(self._pid) - self._cpu, time.monotonic() - self._clock
        now = _core_ticks()

        def delta(core: str, which: int) -> float:
            return (now[core][which] - self._ticks[core][which]) / TICKS

        others = (delta(SERVER_CORE, 0) + delta(SERVER_CORE, 1) - used) / wall
        return used, wall, max(others, 0.0), (delta(LOAD_CORE, 0) + delta(LOAD_CORE, 1)) / wall


def run_client(world: World, case: Case, port: int, server_pid: int) -> Measured:
    """The `client` role, pinned to the load core; the server's CPU is read when the client says
    it has warmed up and when it has finished."""
    args = world.args
    command = [peers.PYTHON, __file__, "client", str(port), "1" if case.key else "0",
               str(world.tmp / "token.txt"), str(args.handshake_connections),
               str(args.handshake_seconds)]  # fmt: skip
    client = subprocess.Popen(pinned(command, LOAD_CORE), stdout=subprocess.PIPE, text=True)
    try:
        assert client.stdout is not None
        if client.stdout.readline().strip() != "go":
            raise RuntimeError(f"{case.name}: the client did not start")
        window = _Window(server_pid)
        result = json.loads(client.stdout.readline())
        used, wall, others, core1 = window.close()
        client.wait(args.handshake_seconds + 60)
    finally:
        if client.poll() is None:
            client.kill()
            client.wait()
    count = result["count"]
    if count == 0:
        raise RuntimeError(f"{case.name}: no connection completed ({result['failed']} failed)")
    return Measured(
        rate=count / result["seconds"],
        cpu_us=used / count * 1e6,
        p50_ms=result["p50"] * 1000,
        p99_ms=result["p99"] * 1000,
        busy=used / wall,
        others=others,
        core1=core1,
        client_us=result["cpu"] / count * 1e6,
        failed=result["failed"],
    )


class _OneRequest(asyncio.Protocol):
    """Sends the request once connected (after the handshake, over TLS) and keeps the answer
    until the server closes the connection."""

    def __init__(self, request: bytes, done: asyncio.Future[bytes]) -> None:
        self._request, self._done, self._chunks = request, done, [b""]

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        cast(asyncio.Transport, transport).write(self._request)

    def data_received(self, data: bytes) -> None:
        self._chunks.append(data)

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._done.done():
            self._done.set_result(b"".join(self._chunks))


async def client_role(port: int, secure: bool, token: str, connections: int,
                      seconds: float) -> None:  # fmt: skip
    """`connections` loops, each opening a connection (TCP, then a full TLS handshake: no
    session is offered), sending one request with `Connection: close` and reading the answer to
    the end. After a 1-s warm-up prints "go", after `seconds` more (and the connections under
    way) one line of JSON."""
    context = None
    if secure:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE  # the probe verified it; here the client's CPU counts
        context.set_alpn_protocols(["http/1.1"])
    request = (f"GET {PATH} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}"
               "\r\nConnection: close\r\n\r\n").encode()  # fmt: skip
    loop = asyncio.get_running_loop()
    state = {"recording": False, "stop": False}
    latencies: list[float] = []
    failed = [0]

    async def one() -> None:
        began = time.perf_counter()
        done: asyncio.Future[bytes] = loop.create_future()
        try:
            async with asyncio.timeout(10):
                transport, _ = await loop.create_connection(
                    lambda: _OneRequest(request, done), "127.0.0.1", port, ssl=context,
                    server_hostname="localhost" if secure else None,
                )  # fmt: skip
                answer = await done
                transport.close()
            ok = answer.startswith(b"HTTP/1.1 200 ")
        except (OSError, ssl.SSLError, TimeoutError):
            ok = False
        if state["recording"]:
            if ok:
                latencies.append(time.perf_counter() - began)
            else:
                failed[0] += 1

    async def worker() -> None:
        while not state["stop"]:
            await one()

    tasks = [asyncio.create_task(worker()) for _ in range(connections)]
    await asyncio.sleep(1.0)
    print("go", flush=True)
    state["recording"] = True
    began, cpu = time.perf_counter(), time.process_time()
    await asyncio.sleep(seconds)
    state["stop"] = True
    await asyncio.gather(*tasks)
    elapsed, cpu = time.perf_counter() - began, time.process_time() - cpu
    latencies.sort()

    def at(fraction: float) -> float:
        return (
            latencies[min(len(latencies) - 1, int(fraction * len(latencies)))]
            if latencies
            else math.nan
        )

    print(json.dumps({"count": len(latencies), "failed": failed[0], "seconds": elapsed,
                      "cpu": cpu, "p50": at(0.5), "p99": at(0.99)}), flush=True)  # fmt: skip


# --- the runs ----------------------------------------------------------------------------------

KEEP_ALIVE = [
    Case("scopegate, plain HTTP", "scopegate", None),
    Case("scopegate, TLS (ECDSA P-256)", "scopegate", "ecdsa"),
    Case("nginx, plain HTTP (no token check)", "nginx", None),
    Case("nginx, TLS (ECDSA P-256, no token check)", "nginx", "ecdsa"),
]
NEW_CONNECTIONS = [
    Case("scopegate, plain HTTP", "scopegate", None, "client"),
    Case("scopegate, ECDSA P-256, full handshake", "scopegate", "ecdsa", "client"),
    Case("scopegate, RSA-2048, full handshake", "scopegate", "rsa", "client"),
    Case("scopegate, ECDSA P-256, resumed (wrk)", "scopegate", "ecdsa", "resumed"),
    Case("nginx, plain HTTP", "nginx", None, "client"),
    Case("nginx, ECDSA P-256, full handshake", "nginx", "ecdsa", "client"),
    Case("nginx, RSA-2048, full handshake", "nginx", "rsa", "client"),
    Case("nginx, ECDSA P-256, resumed (wrk)", "nginx", "ecdsa", "resumed"),
]


def measure(world: World, case: Case, agreed: dict[str, str]) -> Measured:
    args = world.args
    with serving(world, case) as (server, port):
        if case.key and case.server + case.key not in agreed:
            agreed[case.server + case.key] = probe(port, world.certs.ca, world.token)[1]
        if case.load == "client":
            return run_client(world, case, port, server.pid)
        url = f"{'https' if case.key else 'http'}://127.0.0.1:{port}{PATH}"
        headers = {"Authorization": f"Bearer {world.token}"}
        if case.load == "resumed":
            headers["Connection"] = "close"
        connections = args.connections if case.load == "wrk" else args.handshake_connections
        seconds = args.seconds if case.load == "wrk" else args.handshake_seconds
        run_wrk(url, server.pid, seconds=1, connections=connections, headers=headers)
        window = _Window(server.pid)
        sample = run_wrk(url, server.pid, seconds=seconds, connections=connections,
                         headers=headers)  # fmt: skip
        used, wall, others, core1 = window.close()
    if sample.non_2xx or sample.requests == 0:
        raise RuntimeError(f"{case.name}: {sample.non_2xx} of {sample.requests} answers not 2xx")
    return Measured(rate=sample.rps, cpu_us=sample.cpu_us, p50_ms=sample.p50_ms,
                    p99_ms=sample.p99_ms, busy=used / wall, others=others, core1=core1,
                    rss_mib=sample.rss_mib)  # fmt: skip


def measure_quietly(world: World, case: Case, agreed: dict[str, str]) -> Measured:
    """`measure`, again (`--retries` times at most) while other work took more than `--noisy`
    of the server's core; the least disturbed measurement is kept."""
    best = measure(world, case, agreed)
    for _ in range(world.args.retries):
        if best.others <= world.args.noisy:
            break
        print(f"  {case.name}: others took {best.others:.0%} of core 0; once more", flush=True)
        world.repeated += 1
        again = measure(world, case, agreed)
        best = again if again.others < best.others else best
    return best


def _med(samples: list[Measured], field: str) -> float:
    return float(statistics.median(getattr(s, field) for s in samples))


def _cores(samples: list[Measured]) -> str:
    """Core 0's use by the server and by others, and core 1's, as medians in percent."""
    return (f"{_med(samples, 'busy') * 100:.0f} / {_med(samples, 'others') * 100:.0f} "
            f"/ {_med(samples, 'core1') * 100:.0f}")  # fmt: skip


def _digest() -> str:
    """SHA-256 of scopegate's sources as measured (the working tree may change between runs)."""
    digest = hashlib.sha256()
    for path in sorted((ROOT / "src" / "scopegate").rglob("*.py")):
        digest.update(path.relative_to(ROOT).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def _load() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def _versions() -> str:
    nginx = subprocess.run(["nginx", "-V"], capture_output=True, text=True).stderr
    version = re.search(r"nginx version: (\S+)", nginx)
    built = re.search(r"built with (.+)", nginx)
    wrk = subprocess.run(["wrk", "-v"], capture_output=True, text=True)
    wrk_version = re.search(r"wrk (\S+)", wrk.stdout + wrk.stderr)
    return (
        f"Python {platform.python_version()} with {ssl.OPENSSL_VERSION} (`ssl.OPENSSL_VERSION`), "
        f"uvloop {importlib.metadata.version('uvloop')}, cryptography "
        f"{importlib.metadata.version('cryptography')} (for the certificates); "
        f"{version.group(1) if version else 'nginx ?'} "
        f"({built.group(1).strip() if built else 'OpenSSL ?'}); "
        f"wrk {wrk_version.group(1) if wrk_version else '?'}"
    )


def _header(world: World, agreed: dict[str, str], began: dict[str, str | float]) -> list[str]:
    shown = list(sys.argv[1:])
    for aside in ("--append", "--out"):  # the command that gives these figures, not where to
        if aside in shown:
            del shown[shown.index(aside) : shown.index(aside) + 2]
    command = " ".join([".venv/bin/python", "bench/tls.py", *shown])
    digest = _digest()
    changed = "" if digest == began["digest"] else f", **changed during the run** (now {digest})"
    probes = "; ".join(
        f"{server} {KEYS[key]}: {agreed.get(server + key, 'not probed')}"
        for server in ("scopegate", "nginx") for key in KEYS
    )  # fmt: skip
    return [
        "### TLS on the public port (SPEC §6.1, `bench/tls.py`)",
        "",
        f"Command: `{command}` (with `--append bench/RESULTS.md`, which adds this section here).",
        "",
        f"Date: {datetime.now(UTC):%Y-%m-%d}. Machine: {platform.machine()}, {os.cpu_count()} "
        f"cores ({cpu_model()}). {_versions()}. Upstream: {began['upstream']}. scopegate's "
        f"sources (`src/scopegate/**/*.py`) as measured: SHA-256 {began['digest']}{changed}. "
        f"Load average (1 min): {began['load']:.2f} when the run began, {_load():.2f} at its "
        "end; the machine is shared, and other work moves single figures: a measurement during "
        f"which others took more than {world.args.noisy:.0%} of core 0 was made again, up to "
        f"{world.args.retries} times, and the least disturbed kept ({world.repeated} made again "
        f"in this run). Whole run: {time.monotonic() - float(began['clock']):,.0f} s.",
        "",
        "Certificates: a throw-away CA and two leaves it signed for 127.0.0.1 and localhost, the "
        'leaf alone served. scopegate: `tls: {cert, key, min_version: "1.2"}`; nginx: the same '
        "files, `ssl_protocols TLSv1.2 TLSv1.3`, its other TLS settings left at their defaults. "
        "Agreed with a Python client's defaults (one probe per server and key, the chain "
        f"verified against the CA for 127.0.0.1): {probes}.",
        "",
    ]


CORES = (
    "core 0 % server / others / core 1 %: the server's CPU over the wall time, what other "
    "processes or the hypervisor took of core 0, and all of core 1's use (load generator, "
    "upstream and anything else)"
)


def _keep_alive(world: World, keep: dict[Case, list[Measured]]) -> list[str]:
    args = world.args
    lines = [
        f"#### Keep-alive, valid token: wrk -t1 -c{args.connections} -d{args.seconds}s, median "
        f"of {args.runs} runs",
        "",
        "The server on core 0, wrk and the upstream on core 1; each wrk connection makes one "
        "handshake, its requests follow on it. nginx (one process) only terminates TLS and "
        "proxies, to the same upstream over kept-alive connections: it checks no token. "
        f"{CORES[0].upper()}{CORES[1:]}.",
        "",
        "| server | req/s | CPU µs/req | p50 ms | p99 ms | RSS MiB | core 0 % server / others / core 1 % |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for case, samples in keep.items():
        lines.append(
            f"| {case.name} | {_med(samples, 'rate'):,.0f} | {_med(samples, 'cpu_us'):.1f} "
            f"| {_med(samples, 'p50_ms'):.2f} | {_med(samples, 'p99_ms'):.2f} "
            f"| {_med(samples, 'rss_mib'):.0f} | {_cores(samples)} |"
        )
    sg_plain, sg_tls, ng_plain, ng_tls = (keep[c] for c in KEEP_ALIVE)

    def ratio(a: list[Measured], b: list[Measured], field: str) -> tuple[list[float], float]:
        runs = [getattr(x, field) / getattr(y, field) for x, y in zip(a, b, strict=True)]
        return runs, _med(a, field) / _med(b, field)

    rows = [
        ("scopegate TLS ÷ scopegate plain, CPU µs/req", *ratio(sg_tls, sg_plain, "cpu_us"), 1.3),
        ("scopegate TLS ÷ scopegate plain, req/s", *ratio(sg_tls, sg_plain, "rate"), None),
        ("scopegate TLS ÷ nginx TLS, req/s", *ratio(sg_tls, ng_tls, "rate"), None),
        ("scopegate TLS ÷ nginx TLS, CPU µs/req", *ratio(sg_tls, ng_tls, "cpu_us"), None),
        ("nginx TLS ÷ nginx plain, CPU µs/req", *ratio(ng_tls, ng_plain, "cpu_us"), None),
    ]
    lines += ["", "| ratio | per run | of the medians | goal |", "|---|---|---:|---|"]
    for name, runs, value, goal in rows:
        verdict = "" if goal is None else f"≤ {goal}: {'met' if value <= goal else 'missed'}"
        lines.append(f"| {name} | {', '.join(f'{r:.2f}' for r in runs)} | {value:.2f} "
                     f"| {verdict} |")  # fmt: skip
    added_sg = _med(sg_tls, "cpu_us") - _med(sg_plain, "cpu_us")
    added_ng = _med(ng_tls, "cpu_us") - _med(ng_plain, "cpu_us")
    lines += [
        "",
        f"TLS adds {added_sg:.1f} µs of CPU per kept-alive request to scopegate and "
        f"{added_ng:.1f} µs to nginx (differences of the medians).",
        "",
    ]
    return lines


def _new_connections(world: World, fresh: dict[Case, list[Measured]]) -> list[str]:
    args = world.args
    lines = [
        f"#### A new connection for every request: {args.handshake_connections} in flight, "
        f"{args.handshake_seconds} s, median of {args.runs} runs",
        "",
        "Each connection: TCP, the handshake, one request with a valid token and `Connection: "
        'close`, its answer. "full handshake": this file\'s `client` role (uvloop; no session '
        "offered, so every handshake is full: TLS 1.3, X25519, the leaf's signature); "
        '"resumed": wrk, which offers each new connection the session ticket of the one '
        "before. The server alone on core 0 (one process), the client or wrk and the upstream on "
        "core 1. CPU µs/conn is the server's; \"TLS part\" subtracts the same server's "
        'plain-HTTP figure (new connections too); "per core" is 1,000,000 ÷ CPU µs, the rate '
        f"a fully used core would give. {CORES[0].upper()}{CORES[1:]}.",
        "",
        "| server, certificate | conn/s | CPU µs/conn | conn/s per core | TLS part µs "
        "| TLS part per core, /s | client CPU µs/conn | p50 ms | p99 ms | failed "
        "| core 0 % server / others / core 1 % |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    plain = {case.server: fresh[case] for case in fresh if case.key is None}
    for case, samples in fresh.items():
        cpu = _med(samples, "cpu_us")
        tls_part = math.nan
        if case.key and case.server in plain:
            tls_part = cpu - _med(plain[case.server], "cpu_us")
        part = "–" if math.isnan(tls_part) else f"{tls_part:.0f}"
        alone = f"{1e6 / tls_part:,.0f}" if tls_part > 0 else "–"
        client = "–" if case.load == "resumed" else f"{_med(samples, 'client_us'):.0f}"
        failed = "–" if case.load == "resumed" else f"{sum(s.failed for s in samples):,}"
        lines.append(
            f"| {case.name} | {_med(samples, 'rate'):,.0f} | {cpu:.0f} | {1e6 / cpu:,.0f} "
            f"| {part} | {alone} | {client} | {_med(samples, 'p50_ms'):.2f} "
            f"| {_med(samples, 'p99_ms'):.2f} | {failed} | {_cores(samples)} |"
        )
    lines += ["", "Server CPU µs/conn, per run:", ""]
    lines += [f"- {case.name}: {', '.join(f'{s.cpu_us:.0f}' for s in samples)}"
              for case, samples in fresh.items()]  # fmt: skip
    return [*lines, ""]


def report(world: World, keep: dict[Case, list[Measured]], fresh: dict[Case, list[Measured]],
           agreed: dict[str, str], began: dict[str, str | float]) -> str:  # fmt: skip
    lines = _header(world, agreed, began)
    if keep:
        lines += _keep_alive(world, keep)
    if fresh:
        lines += _new_connections(world, fresh)
    return "\n".join(lines)


def _append(path: Path, section: str) -> str:
    """`section` before the callgrind section's heading when `path` has exactly one, else at
    the end; where it went."""
    text = path.read_text()
    starts = [m.start() for m in re.finditer(rf"^{re.escape(MARKER)}", text, re.MULTILINE)]
    if len(starts) == 1:
        updated = text[: starts[0]] + section + "\n" + text[starts[0] :]
        path.write_text(updated)
        return f"inserted into {path} before the line starting {MARKER!r}"
    with path.open("a") as out:
        out.write("\n" + section)
    return f"appended at the end of {path} ({len(starts)} lines start {MARKER!r})"


def _out_of_time(signum: int, frame: object) -> None:
    raise TimeoutError("--max-seconds passed")  # unwinds: every server stopped by its PID


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=8, help="of each keep-alive measurement")
    parser.add_argument("--connections", type=int, default=32, help="wrk's, kept alive")
    parser.add_argument("--handshake-seconds", type=int, default=5)
    parser.add_argument("--handshake-connections", type=int, default=16, help="in flight")
    parser.add_argument("--skip", action="append", default=[], choices=["keep-alive", "handshakes"])
    parser.add_argument("--noisy", type=float, default=0.2,
                        help="measure again when other work took more of core 0 than this")  # fmt: skip
    parser.add_argument("--retries", type=int, default=2, help="measurements again at most")
    parser.add_argument("--max-seconds", type=int, default=1800, help="the whole run at most")
    parser.add_argument("--out", type=Path, default=None, help="write the section here too")
    parser.add_argument("--append", type=Path, default=None,
                        help="insert the section into this file (bench/RESULTS.md)")  # fmt: skip
    args = parser.parse_args()
    for tool in ("wrk", "nginx"):
        if shutil.which(tool) is None:
            print(f"{tool} is needed: apt-get install {tool}", file=sys.stderr)
            return 2
    signal.signal(signal.SIGALRM, _out_of_time)
    signal.alarm(args.max_seconds)
    began: dict[str, str | float] = {
        "digest": _digest(),
        "load": _load(),
        "clock": time.monotonic(),
    }
    keep_cases = [] if "keep-alive" in args.skip else KEEP_ALIVE
    new_cases = [] if "handshakes" in args.skip else NEW_CONNECTIONS
    with tempfile.TemporaryDirectory(prefix="scopegate-tls-") as tmp_name:
        tmp = Path(tmp_name)
        certs = make_certificates(tmp)
        (tmp / "empty.bin").write_bytes(b"")
        up_port, issuer_port = free_port(), free_port()
        upstream_cmd, began["upstream"] = peers.upstream_command(tmp, up_port, tmp / "empty.bin")
        tokens = tmp / "tokens.txt"
        with (
            started(upstream_cmd, SHARED_CORE),
            started(peers.issuer_command(issuer_port, tokens, 1), SHARED_CORE),
        ):
            wait_port(up_port)
            token = peers.issued_tokens(tokens, 1)[0]
            (tmp / "token.txt").write_text(token)
            world = World(tmp, certs, up_port, f"http://127.0.0.1:{issuer_port}/", token, args)
            agreed: dict[str, str] = {}
            keep: dict[Case, list[Measured]] = {c: [] for c in keep_cases}
            fresh: dict[Case, list[Measured]] = {c: [] for c in new_cases}
            for run in range(args.runs):
                flip = run % 2 == 1
                for part, cases, unit in (("keep-alive", keep_cases, "req"),
                                          ("new connections", new_cases, "conn")):  # fmt: skip
                    for case in reversed(cases) if flip else cases:
                        measured = measure_quietly(world, case, agreed)
                        (keep if part == "keep-alive" else fresh)[case].append(measured)
                        print(f"run {run + 1}: {part}, {case.name}: {measured.rate:,.0f} "
                              f"{unit}/s, {measured.cpu_us:.1f} µs CPU/{unit}, core 0 "
                              f"{measured.busy:.0%} server + {measured.others:.0%} others, core 1 "
                              f"{measured.core1:.0%}", flush=True)  # fmt: skip
    section = report(world, keep, fresh, agreed, began)
    print(section)
    if args.out:
        args.out.write_text(section)
    if args.append:
        print(_append(args.append, section), file=sys.stderr)
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "client":
        import uvloop

        port, secure, token_file, connections, seconds = sys.argv[2:7]
        uvloop.run(client_role(int(port), secure == "1", Path(token_file).read_text().strip(),
                               int(connections), float(seconds)))  # fmt: skip
    else:
        sys.exit(main())
