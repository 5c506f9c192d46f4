"""scopegate's benchmark: the gateway side by side, in one run, with the upstream called directly,
a bare aiohttp proxy, and Auth0's Node stack (express + express-oauth2-jwt-bearer +
http-proxy-middleware).

    .venv/bin/python bench/run.py [--rounds 3] [--seconds 8] [--only WORDS] [--out FILE]

Layout: the server under test is pinned to core 0 (`--workers 2`: cores 0 and 1); wrk and the
upstream (nginx, or a built-in aiohttp server if nginx is missing) share core 1. Rounds
alternate the order of scenarios; each figure is the median over rounds. CPU per request is the
server's user+system time (its worker processes included) over the requests wrk completed;
every answer's status is checked through wrk's non-2xx count. After the throughput rounds:
latency at half of scopegate's peak rate, latency while SIGHUP reloads 10,000 routes, memory
with 10,000 routes and 100,000 cached tokens (`--memory-routes`, `--cached-tokens`), and 1 GiB
streamed each way. Traffic goes to 127.0.0.1 only; every process started here is stopped by its
PID.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import peers
from loadgen import Sample, paced, rotating_tokens, run_wrk
from procs import cpu_model, free_port, peak_rss_mib, pss_mib, rss_mib, started, wait_port

ROOT = Path(__file__).resolve().parent.parent
SERVER_CORE = "0"
SHARED_CORE = "1"


@dataclass(frozen=True)
class Scenario:
    name: str
    server: str  # direct | bare | node | scopegate
    path: str = "/contacts"
    token: str | None = None  # warm | cold | denied
    routes: int = 10
    workers: int = 1
    rate_limit: str | None = None  # memory | redis: one per-subject rule on every route


DIRECT = Scenario("upstream called directly", "direct")
BARE = Scenario("bare aiohttp proxy, no auth", "bare")
NODE = Scenario("Node: express-oauth2-jwt-bearer + proxy, valid token", "node", token="warm")
PUBLIC = Scenario("scopegate, public route", "scopegate", "/public/x")
WARM = Scenario("scopegate, valid token (warm)", "scopegate", token="warm")
COLD = Scenario("scopegate, every token verified (cache off: cold)", "scopegate", token="cold")
DENIED = Scenario("scopegate, 403 insufficient scope", "scopegate", token="denied")
LARGE = Scenario("scopegate, 10,000 routes, valid token", "scopegate", token="warm", routes=10_000)
TWO = Scenario("scopegate --workers 2, valid token", "scopegate", token="warm", workers=2)
MEMORY_LIMIT = Scenario("scopegate, memory rate limit, valid token", "scopegate", token="warm",
                        rate_limit="memory")  # fmt: skip
REDIS_LIMIT = Scenario("scopegate, redis rate limit, valid token", "scopegate", token="warm",
                       rate_limit="redis")  # fmt: skip
SCENARIOS = [DIRECT, BARE, NODE, PUBLIC, WARM, COLD, DENIED, LARGE, TWO, MEMORY_LIMIT,
             REDIS_LIMIT]  # fmt: skip


@dataclass
class World:
    tmp: Path
    upstream_port: int
    upstream_pid: int
    sink_port: int
    issuer: str
    issuer_port: int
    tokens: Path
    token: str
    denied: str
    args: argparse.Namespace
    redis_port: int = 0  # a redis-server for the redis rate limit scenario
    scenarios: tuple[Scenario, ...] = ()  # those of this run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--only", action="append", default=[], metavar="WORDS",
                        help="throughput scenarios whose name contains WORDS (repeatable); "
                             "the baselines always run")  # fmt: skip
    parser.add_argument("--skip", action="append", default=[],
                        choices=["latency", "reload", "memory", "large"], help="leave out a later part")  # fmt: skip
    parser.add_argument("--cached-tokens", type=int, default=100_000)
    parser.add_argument("--memory-routes", type=int, default=10_000,
                        help="routes of the memory part's server")  # fmt: skip
    parser.add_argument("--big-mib", type=int, default=1024, help="size of the streamed bodies")
    parser.add_argument("--out", type=Path, default=None, help="write the report here too")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is needed: apt-get install wrk", file=sys.stderr)
        return 2
    node_missing = peers.node_ready()
    scenarios = [
        s for s in SCENARIOS
        if s.server in ("direct", "bare") or not args.only or any(w in s.name for w in args.only)
    ]  # fmt: skip
    if node_missing:
        print(f"the Node peer is left out: {node_missing}", file=sys.stderr)
        scenarios.remove(NODE)
    with tempfile.TemporaryDirectory(prefix="scopegate-bench-") as tmp_name:
        tmp = Path(tmp_name)
        big = tmp / "big.bin"
        with big.open("wb") as handle:
            handle.truncate(args.big_mib * 2**20)
        up_port, sink_port, issuer_port, redis_port = (free_port() for _ in range(4))
        upstream_cmd, upstream_name = peers.upstream_command(tmp, up_port, big)
        tokens = tmp / "tokens.txt"
        with (
            started(upstream_cmd, SHARED_CORE) as upstream,
            started(peers.sink_command(sink_port), SHARED_CORE),
            started(peers.issuer_command(issuer_port, tokens, 4000), SHARED_CORE),
            peers.redis_if(REDIS_LIMIT in scenarios, redis_port),
        ):
            wait_port(up_port)
            wait_port(sink_port)
            peers.issued_tokens(tokens, 4000)
            world = World(tmp, up_port, upstream.pid, sink_port, f"http://127.0.0.1:{issuer_port}/",
                          issuer_port, tokens, tokens.read_text().splitlines()[0],
                          peers.mint_one(issuer_port, "other:scope"), args,
                          redis_port, tuple(scenarios))  # fmt: skip
            results = _throughput(world, scenarios)
            report = [_header(args, upstream_name), _table(results, args)]
            if "latency" not in args.skip and WARM in scenarios:
                report.append(_latency(world, statistics.median(s.rps for s in results[WARM])))
            if "reload" not in args.skip:
                report.append(_reloads(world))
            if "memory" not in args.skip:
                report.append(_memory(world))
            if "large" not in args.skip:
                report.append(_large_bodies(world, big))
            report.append(_targets(results))
    text = "\n".join(report)
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0


def _throughput(world: World, scenarios: list[Scenario]) -> dict[Scenario, list[Sample]]:
    results: dict[Scenario, list[Sample]] = {s: [] for s in scenarios}
    for round_ in range(world.args.rounds):
        order = scenarios if round_ % 2 == 0 else list(reversed(scenarios))
        for scenario in order:
            sample = _measure(world, scenario)
            results[scenario].append(sample)
            print(f"round {round_ + 1}: {scenario.name}: {sample.rps:,.0f} req/s, "
                  f"{sample.cpu_us:.0f} µs CPU/req", flush=True)  # fmt: skip
    return results


def _server(world: World, scenario: Scenario, name: str, *, cache: int = 10_000,
            issuer: str | None = None) -> tuple[list[str], int, str | None]:  # fmt: skip
    """The command of a scenario's server, its port and the cores it is pinned to."""
    port = free_port()
    if scenario.server == "bare":
        return peers.bare_proxy_command(port, world.upstream_port), port, SERVER_CORE
    if scenario.server == "node":
        return peers.node_command(port, world.upstream_port, world.issuer), port, SERVER_CORE
    stores = {"memory": "memory", "redis": f"redis://127.0.0.1:{world.redis_port}/0"}
    config = peers.scopegate_config(world.tmp, name, issuer or world.issuer, world.upstream_port,
                                    port, routes=scenario.routes, cache=cache,
                                    rate_limit=stores.get(scenario.rate_limit or ""))  # fmt: skip
    cores = SERVER_CORE if scenario.workers == 1 else f"{SERVER_CORE},{SHARED_CORE}"
    return peers.scopegate_command(config, scenario.workers), port, cores


def _measure(world: World, scenario: Scenario) -> Sample:
    args = world.args
    headers: dict[str, str] = {}
    if scenario.token in ("warm", "denied"):
        token = world.denied if scenario.token == "denied" else world.token
        headers["Authorization"] = f"Bearer {token}"
    script = (
        rotating_tokens(world.tmp, world.tokens, scenario.path)
        if scenario.token == "cold" else None
    )  # fmt: skip
    if scenario.server == "direct":
        return run_wrk(f"http://127.0.0.1:{world.upstream_port}{scenario.path}",
                       world.upstream_pid, seconds=args.seconds, connections=args.connections,
                       headers=headers)  # fmt: skip
    command, port, cores = _server(world, scenario, "scenario",
                                   cache=0 if scenario.token == "cold" else 10_000)  # fmt: skip
    url = f"http://127.0.0.1:{port}{scenario.path}"
    with started(command, cores, cwd=ROOT) as server:
        _wait_serving(url, headers, server)
        run_wrk(url, server.pid, seconds=1, connections=args.connections, script=script,
                headers=headers)  # warm-up: keys fetched, caches filled  # fmt: skip
        sample = run_wrk(url, server.pid, seconds=args.seconds, connections=args.connections,
                         script=script, headers=headers)  # fmt: skip
    wrong = sample.requests - sample.non_2xx if scenario.token == "denied" else sample.non_2xx
    if wrong:
        raise RuntimeError(f"{scenario.name}: {wrong} answers with an unexpected status")
    return sample


def _wait_serving(
    url: str, headers: dict[str, str], server: subprocess.Popen[bytes], seconds: float = 60
) -> None:
    """Until the server answers anything at all (its keys may still be on their way)."""
    deadline = time.monotonic() + seconds
    while True:
        if server.poll() is not None:
            raise RuntimeError(f"the server for {url} exited with {server.returncode}")
        try:
            with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=2):
                return
        except urllib.error.HTTPError as error:
            if error.code != 503:
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"nothing answers at {url}")
        time.sleep(0.1)


def _latency(world: World, peak: float) -> str:
    """p50/p99 at half of scopegate's peak rate, against the upstream called at the same rate."""
    rate, connections, seconds = peak / 2, 16, max(world.args.seconds, 5)
    script = paced(world.tmp, rate, connections)
    headers = {"Authorization": f"Bearer {world.token}"}
    rows = []
    direct = run_wrk(f"http://127.0.0.1:{world.upstream_port}/contacts", world.upstream_pid,
                     seconds=seconds, connections=connections, script=script)  # fmt: skip
    rows.append(("upstream called directly", direct))
    for scenario in (WARM, LARGE, MEMORY_LIMIT, REDIS_LIMIT):
        if scenario in (MEMORY_LIMIT, REDIS_LIMIT) and scenario not in world.scenarios:
            continue
        command, port, cores = _server(world, scenario, "latency")
        url = f"http://127.0.0.1:{port}/contacts"
        with started(command, cores, cwd=ROOT) as server:
            _wait_serving(url, headers, server)
            run_wrk(url, server.pid, seconds=1, connections=connections, headers=headers)
            rows.append((scenario.name, run_wrk(url, server.pid, seconds=seconds,
                         connections=connections, script=script, headers=headers)))  # fmt: skip
    lines = [
        f"### Latency at half of the warm-token peak ({rate:,.0f} req/s offered, "
        f"{connections} connections, wrk `delay()` pacing)", "",
        "| scenario | req/s | p50 ms | p99 ms | p99 added over direct, ms |",
        "|---|---:|---:|---:|---:|",
    ]  # fmt: skip
    for name, sample in rows:
        added = sample.p99_ms - direct.p99_ms
        lines.append(f"| {name} | {sample.rps:,.0f} | {sample.p50_ms:.2f} | "
                     f"{sample.p99_ms:.2f} | {added:.2f} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def _reloads(world: World) -> str:
    """The warm-token path with 10,000 routes at full load for 20 s, as it is and with a SIGHUP
    every 6 s: what applying a reload costs the requests in flight. The child process parses
    for several seconds (on the server's core), so the count of reloads applied while wrk ran
    is read from the server's own metric."""
    scenario = Scenario("reload", "scopegate", token="warm", routes=10_000)
    headers = {"Authorization": f"Bearer {world.token}"}
    lines = [
        "### Reloading 10,000 routes under load (valid token, 16 connections, full load, 20 s)",
        "",
        "| SIGHUP | reloads applied | req/s | p50 ms | p99 ms | max ms |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for every in (None, 6.0):
        command, port, cores = _server(world, scenario, f"reload-{every}")
        url = f"http://127.0.0.1:{port}{scenario.path}"
        with started(command, cores, cwd=ROOT) as server:
            _wait_serving(url, headers, server)
            stop = threading.Event()
            sender = threading.Thread(target=_hup_every, args=(server.pid, every or 0, stop))
            if every is not None:
                sender.start()
            sample = run_wrk(url, server.pid, seconds=20, connections=16, headers=headers)
            applied = _reloads_applied(command)
            stop.set()
            if every is not None:
                sender.join()
        label = "none" if every is None else f"every {every:.0f} s"
        lines.append(f"| {label} | {applied:.0f} | {sample.rps:,.0f} | {sample.p50_ms:.2f} "
                     f"| {sample.p99_ms:.2f} | {sample.max_ms:.1f} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def _hup_every(pid: int, seconds: float, stop: threading.Event) -> None:
    while not stop.wait(seconds):
        os.kill(pid, signal.SIGHUP)


def _reloads_applied(command: list[str]) -> float:
    """`scopegate_config_reloads_total{result="ok"}` from the admin port its config names."""
    url = peers.admin_url(Path(command[command.index("-c") + 1]), "/metrics")
    with urllib.request.urlopen(url, timeout=5) as answer:
        metrics = answer.read().decode()
    found = re.search(r'scopegate_config_reloads_total\{result="ok"\} ([\d.]+)', metrics)
    return float(found.group(1)) if found else 0.0


def _memory(world: World) -> str:
    """One scopegate with `--memory-routes` routes and a cache of `--cached-tokens`, each token
    used once (verified and remembered), then the same tokens again: memory under load."""
    count, routes = world.args.cached_tokens, world.args.memory_routes
    tokens = world.tmp / "many.txt"
    port_issuer = free_port()
    with started(peers.issuer_command(port_issuer, tokens, count, "ES256"), SHARED_CORE):
        peers.issued_tokens(tokens, count)
        issuer = f"http://127.0.0.1:{port_issuer}/"
        scenario = Scenario("memory", "scopegate", token="cold", routes=routes)
        command, port, cores = _server(world, scenario, "memory", cache=count, issuer=issuer)
        url = f"http://127.0.0.1:{port}/contacts"
        script = rotating_tokens(world.tmp, tokens, "/contacts")
        with started(command, cores, cwd=ROOT) as server:
            first = tokens.read_text().split("\n", 1)[0]
            _wait_serving(url, {"Authorization": f"Bearer {first}"}, server)
            idle_rss, idle_pss = rss_mib(server.pid), pss_mib(server.pid)
            probe = run_wrk(url, server.pid, seconds=3, connections=32, script=script)
            seconds = math.ceil(count / max(probe.rps, 1) * 1.3) + 2
            fill = run_wrk(url, server.pid, seconds=seconds, connections=32, script=script)
            hits = run_wrk(url, server.pid, seconds=world.args.seconds, connections=32,
                           script=script)  # fmt: skip
            rss, pss = rss_mib(server.pid), pss_mib(server.pid)
    return "\n".join([
        f"### Memory: {routes:,} routes, {count:,} tokens verified and cached (ES256), under load",
        "",
        "| when | requests | req/s | RSS MiB | PSS MiB |",
        "|---|---:|---:|---:|---:|",
        f"| started, keys fetched | – | – | {idle_rss:.0f} | {idle_pss:.0f} |",
        f"| filling the cache (each token verified once) | {fill.requests:,} | {fill.rps:,.0f} "
        f"| {fill.rss_mib:.0f} | – |",
        f"| every token a cache hit | {hits.requests:,} | {hits.rps:,.0f} | {rss:.0f} "
        f"| {pss:.0f} |",
        "",
    ])  # fmt: skip


def _large_bodies(world: World, big: Path) -> str:
    """`--big-mib` streamed down (nginx serving a file) and up (to a sink reading it all), with
    curl, directly and through a fresh scopegate each time: MB/s and scopegate's peak RSS."""
    if shutil.which("curl") is None:
        return "### Large bodies\n\ncurl is not installed: left out.\n"
    rows = []
    for direction, upstream_port in (("download", world.upstream_port),
                                     ("upload", world.sink_port)):  # fmt: skip
        target = "/public/big" if direction == "download" else "/public/upload"
        direct = _curl(direction, f"http://127.0.0.1:{upstream_port}{target}", big)
        port = free_port()
        config = peers.scopegate_config(world.tmp, f"large-{direction}", world.issuer,
                                        upstream_port, port)  # fmt: skip
        with started(peers.scopegate_command(config), SERVER_CORE, cwd=ROOT) as server:
            wait_port(port, 60)
            through = _curl(direction, f"http://127.0.0.1:{port}{target}", big)
            peak = peak_rss_mib(server.pid)
        rows.append(f"| {direction} | {direct:,.0f} | {through:,.0f} | {through / direct:.2f} "
                    f"| {peak:.0f} |")  # fmt: skip
    return "\n".join(
        [
            f"### Large bodies: {big.stat().st_size / 2**20:,.0f} MiB streamed, curl",
            "",
            "| direction | direct MB/s | through scopegate MB/s | ratio | scopegate peak RSS MiB |",
            "|---|---:|---:|---:|---:|",
            *rows,
            "",
        ]
    )


def _curl(direction: str, url: str, big: Path) -> float:
    args = ["curl", "-sS", "-o", os.devnull, "-w", "%{http_code} %{size_download} "
            "%{size_upload} %{time_total}"]  # fmt: skip
    if direction == "upload":
        args += ["-T", str(big), "-H", "Expect:"]
    output = subprocess.run([*args, url], capture_output=True, text=True, check=True, timeout=600)
    code, down, up, seconds = output.stdout.split()
    moved = float(up if direction == "upload" else down)
    if code != "200" or moved != big.stat().st_size:
        raise RuntimeError(f"{direction} through {url}: status {code}, {moved:.0f} bytes")
    return moved / float(seconds) / 1e6


def _med(samples: list[Sample], field: str) -> float:
    return statistics.median(getattr(s, field) for s in samples)


def _header(args: argparse.Namespace, upstream: str) -> str:
    cpu = cpu_model()
    return (
        f"Date: {datetime.now(UTC):%Y-%m-%d}. Machine: {platform.machine()}, {os.cpu_count()} "
        f"cores ({cpu}), Python {platform.python_version()}. Upstream: {upstream}. wrk -t1 "
        f"-c{args.connections} -d{args.seconds}s, median of {args.rounds} rounds; server on core "
        f"{SERVER_CORE} (two workers: cores 0-1), wrk and upstream on core {SHARED_CORE}.\n"
    )


def _table(results: dict[Scenario, list[Sample]], args: argparse.Namespace) -> str:
    base = _med(results[BARE], "rps")
    lines = [
        "| scenario | req/s | × bare proxy | CPU µs/req | p50 ms | p99 ms | RSS MiB |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for scenario, samples in results.items():
        rps = _med(samples, "rps")
        lines.append(
            f"| {scenario.name} | {rps:,.0f} | {rps / base:.2f} | {_med(samples, 'cpu_us'):.0f} "
            f"| {_med(samples, 'p50_ms'):.2f} | {_med(samples, 'p99_ms'):.2f} "
            f"| {_med(samples, 'rss_mib'):.0f} |"
        )
    return "\n".join(lines) + "\n"


def _targets(results: dict[Scenario, list[Sample]]) -> str:
    """The speed issue's targets that the throughput rounds measure, as ratios."""

    def rps(s: Scenario) -> float:
        return _med(results[s], "rps") if s in results else math.nan

    def cpu(s: Scenario) -> float:
        return _med(results[s], "cpu_us") if s in results else math.nan

    rows = [
        ("warm token ÷ bare proxy, req/s", rps(WARM) / rps(BARE), "≥ 1.0"),
        ("public route ÷ bare proxy, req/s", rps(PUBLIC) / rps(BARE), "≥ 1.5"),
        ("warm token ÷ Node stack, req/s", rps(WARM) / rps(NODE), "≥ 3"),
        ("cold ÷ warm, CPU µs/req", cpu(COLD) / cpu(WARM), "≤ 1.5"),
        ("10,000 routes ÷ 10 routes, req/s", rps(LARGE) / rps(WARM), "≥ 0.95"),
        ("two workers ÷ one, CPU µs/req", cpu(TWO) / cpu(WARM), "≤ 1.0"),
    ]
    lines = ["### Targets", "", "| target | measured | wanted |", "|---|---:|---:|"]
    lines += [f"| {name} | {value:.2f} | {wanted} |" for name, value, wanted in rows]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
