"""Rate-limit stores (SPEC §6.5): scopegate's Redis store (one Lua GCRA script per request, on
Redis's clock) through its own RESP client and through redis-py's asyncio client, against the
`limits` library, and the in-process store for reference.

    .venv/bin/python bench/ratelimit_stores.py [--checks 20000] [--runs 5] [--append FILE]

Run on demand, not in CI. It starts its own `redis-server` on a free loopback port (pinned to
`--redis-cores`; this process is pinned to `--bench-cores`), installs `limits[async-redis]`
with pip into a throw-away directory (`--limits-dir` reuses one), at whatever versions pip
resolves, and puts that directory first on `sys.path` (`limits` is not a dependency of
scopegate). Everything runs on one uvloop event loop, as in the gateway. For each case:

- `--checks` sequential checks of one key, then of as many distinct keys, each under a limit
  that never refuses (1,000,000 per 60 s), so every check takes the path of an allowed
  request; per check: this process's CPU time (`time.process_time`), wall-clock p50 and p99,
  and redis-server's CPU (INFO `used_cpu_user` + `used_cpu_sys`). Medians over `--runs`. The
  cases take turns by slices of `--checks / --slices` (order reversed every other slice), so
  that the load of other work on the machine falls on all alike; Redis is flushed after each
  run's one-key and many-keys parts.
- Round trips per check, counted by Redis itself: with `slowlog-log-slower-than 0` every
  command is logged, and a command a script runs is logged with the client `?:0`, so the
  commands a client sent (round trips) and those its scripts ran are told apart (a separate
  pass of `--count-checks`, since logging costs Redis time).
- Redis memory and key lifetime, in a pass of their own under a limit that is used up
  (`--mem-limit`, 100 per 60 s): `MEMORY USAGE` summed over the keys and their PTTL, after
  one request on each of 1,000 keys, and after `--mem-limit` requests on one key.
- Atomicity: `--procs` processes (4) start together and each makes `--proc-checks` (2,000)
  checks of one key limited to `--limit` per `--race-window` (1,000 per 86,400 s); an atomic
  store lets exactly `--limit` through, a read-modify-write more. A deliberately non-atomic
  store (GET, GCRA in Python, SET) is the control that shows the test can see a race.

scopegate's store is imported from `scopegate.ratelimit.redis_store` as the tree has it (the
report gives a digest of the files measured); "the same Lua GCRA through redis-py" is that
store's script and arguments sent by redis-py's asyncio client with hiredis, as the store was
first written. `limits` is measured with both of its async Redis clients (redis-py, and
coredis, its default), with its moving-window strategy (one timestamp per request in a list,
exact) and its sliding-window counter (two counters, the previous window's weighted by the part
of it left, so after a burst requests come back gradually: the nearest to GCRA's smoothing).
`hit()` answers only allowed or not; the `RateLimit` headers scopegate sends need the remaining
count and the wait too, which `limits` gives through `get_window_stats()`: the "+ stats" cases.

Loopback only; the processes started here are stopped by their PID; `--max-seconds` bounds the
whole run. The internal role `worker` is this file run with that word first.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import hashlib
import importlib
import importlib.metadata
import json
import os
import platform
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import redis
import redis.asyncio
import uvloop
from procs import cpu_model, free_port, started, wait_port

from scopegate.config.model import RateLimitRule
from scopegate.pipeline.rate_limits import Counted, Outcome, gcra, outcome
from scopegate.ratelimit import redis_store
from scopegate.ratelimit.memory import MemoryStore
from scopegate.ratelimit.redis_store import RedisStore

HERE = Path(__file__).resolve().parent
LIMIT, WINDOW = 1_000_000, 60  # the timed checks: never refused
ADMIN = "bench-admin"  # client name of the connection that reads Redis's counters
STORE_TIMEOUT = 5.0  # per call (the gateway's default is 0.1 s): a loaded machine must not fail
SOURCES = (
    "pipeline/rate_limits.py",
    "ratelimit/memory.py",
    "ratelimit/redis_store.py",
    "ratelimit/resp.py",
)  # what is measured of scopegate, hashed in the report


# --- the stores, behind one face ---------------------------------------------------------------


class Checker(Protocol):
    def args(self, keys: Sequence[str]) -> list[Any]:
        """What `check` takes for each key, built before the clock starts."""

    async def check(self, arg: Any) -> bool:
        """One request against one key: allowed or not."""

    async def close(self) -> None: ...


class ScopegateChecker:
    def __init__(self, store: MemoryStore | RedisStore, limit: int, window: int) -> None:
        self.store = store
        self.rule = RateLimitRule("bench", "client", limit, float(window))

    def args(self, keys: Sequence[str]) -> list[Any]:
        return [[Counted(self.rule, key)] for key in keys]

    async def check(self, arg: Any) -> bool:
        outcomes: list[Outcome] = await self.store.spend(arg)
        return bool(outcomes[0].allowed)

    async def close(self) -> None:
        await self.store.close()


class RedispyGcraChecker:
    """scopegate's Lua GCRA script through redis-py's asyncio client (with hiredis): the store
    as it was first written, before its own RESP client (`resp.py`), kept here to compare."""

    def __init__(self, port: int, limit: int, window: int) -> None:
        self.client = redis.asyncio.Redis.from_url(
            f"redis://127.0.0.1:{port}/0", socket_timeout=STORE_TIMEOUT,
            socket_connect_timeout=STORE_TIMEOUT, retry_on_timeout=False,
            health_check_interval=30,
        )  # fmt: skip
        self.script = self.client.register_script(redis_store.GCRA)
        self.rule = RateLimitRule("bench", "client", limit, float(window))

    def args(self, keys: Sequence[str]) -> list[Any]:
        return [[Counted(self.rule, key)] for key in keys]

    async def check(self, arg: Any) -> bool:
        counted: list[Counted] = arg
        keys = [redis_store.PREFIX + entry.key for entry in counted]
        args: list[float] = []
        for entry in counted:
            args += (entry.rule.limit, entry.rule.window)
        reply = await self.script(keys=keys, args=args)
        outcomes = [
            outcome(bool(reply[i]), int(reply[i + 1]), float(reply[i + 2]), 0.0)
            for i in range(0, len(reply), 3)
        ]
        return bool(outcomes[0].allowed)

    async def close(self) -> None:
        await self.client.aclose()


class LimitsChecker:
    def __init__(self, limits: Any, port: int, implementation: str, strategy: str,
                 stats: bool, limit: int, window: int) -> None:  # fmt: skip
        storage_module = importlib.import_module("limits.aio.storage")
        strategies = importlib.import_module("limits.aio.strategies")
        self.storage = storage_module.RedisStorage(
            f"async+redis://127.0.0.1:{port}", implementation=implementation
        )
        self.limiter = strategies.STRATEGIES[strategy](self.storage)
        self.item = limits.RateLimitItemPerSecond(limit, window)
        self.stats = stats

    def args(self, keys: Sequence[str]) -> list[Any]:
        return list(keys)

    async def check(self, arg: Any) -> bool:
        allowed = bool(await self.limiter.hit(self.item, arg))
        if self.stats:  # remaining and reset, for the RateLimit headers
            await self.limiter.get_window_stats(self.item, arg)
        return allowed

    async def close(self) -> None:
        client = self.storage.bridge.storage
        if hasattr(client, "aclose"):  # redis-py; coredis has nothing to close here
            await client.aclose()


class NaiveChecker:
    """The control of the atomicity test: GET the TAT, GCRA in Python, SET. Not atomic."""

    def __init__(self, port: int, limit: int, window: int) -> None:
        self.client = redis.asyncio.Redis(host="127.0.0.1", port=port)
        self.limit, self.window = limit, window

    def args(self, keys: Sequence[str]) -> list[Any]:
        return ["naive:" + key for key in keys]

    async def check(self, arg: Any) -> bool:
        stored = await self.client.get(arg)
        now = time.time()
        verdict = gcra(float(stored) if stored else None, now, self.limit, self.window)
        if verdict.allowed:
            await self.client.set(arg, f"{verdict.tat:.6f}", px=self.window * 1000)
        return bool(verdict.allowed)

    async def close(self) -> None:
        await self.client.aclose()


@dataclass(frozen=True)
class Case:
    name: str
    label: str
    redis: bool = True
    timed: bool = True  # in the per-check table
    concurrent: bool = True  # in the atomicity test


CASES = [
    Case("memory", "scopegate `memory` (in-process GCRA, reference)", redis=False),
    Case("scopegate", "scopegate `redis://` as it is: Lua GCRA, own RESP client, `spend()`"),
    Case("redispy-gcra", "the same Lua GCRA through redis-py's asyncio client"),
    Case("limits-mw-redispy", "`limits` moving window, redis-py, `hit()`"),
    Case("limits-swc-redispy", "`limits` sliding-window counter, redis-py, `hit()`"),
    Case("limits-mw-coredis", "`limits` moving window, coredis, `hit()`"),
    Case("limits-swc-coredis", "`limits` sliding-window counter, coredis, `hit()`"),
    Case("limits-mw-redispy-stats", "`limits` moving window, redis-py, `hit()` + stats",
         concurrent=False),
    Case("limits-swc-redispy-stats", "`limits` sliding-window counter, redis-py, `hit()` + stats",
         concurrent=False),
    Case("naive", "control: GET + GCRA in Python + SET (not atomic)", timed=False),
]  # fmt: skip
BY_NAME = {case.name: case for case in CASES}


def make_checker(name: str, port: int, limit: int, window: int) -> Checker:
    if name == "memory":
        return ScopegateChecker(MemoryStore(), limit, window)
    if name == "scopegate":
        return ScopegateChecker(
            RedisStore(f"redis://127.0.0.1:{port}/0", STORE_TIMEOUT), limit, window
        )
    if name == "redispy-gcra":
        return RedispyGcraChecker(port, limit, window)
    if name == "naive":
        return NaiveChecker(port, limit, window)
    _, strategy, implementation, *rest = name.split("-")
    strategy = {"mw": "moving-window", "swc": "sliding-window-counter"}[strategy]
    limits = importlib.import_module("limits")
    return LimitsChecker(limits, port, implementation, strategy, bool(rest), limit, window)


# --- measuring, in this process ----------------------------------------------------------------


@dataclass
class Timed:
    cpu_us: float  # this process, per check
    p50_us: float
    p99_us: float
    redis_cpu_us: float  # redis-server, per check
    refused: int


@dataclass
class Tally:
    """One case's checks of one run, added up over its slices."""

    cpu: float = 0.0
    redis_cpu: float = 0.0
    refused: int = 0
    latencies: list[int] = field(default_factory=list)

    def timed(self) -> Timed:
        latencies, n = sorted(self.latencies), len(self.latencies)
        return Timed(self.cpu / n * 1e6, latencies[n // 2] / 1e3,
                     latencies[min(n - 1, n * 99 // 100)] / 1e3, self.redis_cpu / n * 1e6,
                     self.refused)  # fmt: skip


async def _timed(checker: Checker, args: list[Any], admin: redis.Redis | None,
                 tally: Tally) -> None:  # fmt: skip
    latencies = [0] * len(args)
    check, clock = checker.check, time.perf_counter_ns
    refused = 0
    gc.collect()
    redis_cpu = _redis_cpu(admin)
    cpu = time.process_time()
    for i, arg in enumerate(args):
        began = clock()
        allowed = await check(arg)
        latencies[i] = clock() - began
        refused += not allowed
    tally.cpu += time.process_time() - cpu
    tally.redis_cpu += _redis_cpu(admin) - redis_cpu
    tally.refused += refused
    tally.latencies += latencies


def _redis_cpu(admin: redis.Redis | None) -> float:
    if admin is None:
        return 0.0
    info = admin.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def _keys(mode: str, tag: str, n: int) -> list[str]:
    return [f"one-{tag}"] * n if mode == "one" else [f"k{tag}-{i}" for i in range(n)]


async def _warm(checker: Checker, admin: redis.Redis | None) -> None:
    """Connections open, scripts loaded, the code paths run once; then an empty Redis."""
    for arg in checker.args([f"warm-{i % 7}" for i in range(300)]):
        await checker.check(arg)
    if admin is not None:
        admin.flushall()


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@dataclass
class Footprint:
    keys: int
    bytes: int
    pttl_ms: int  # the longest-lived key's


def _footprint(admin: redis.Redis) -> Footprint:
    """MEMORY USAGE summed over every key in Redis, and the longest PTTL."""
    keys = list(admin.scan_iter(count=1000))
    pipe = admin.pipeline(transaction=False)
    for key in keys:
        pipe.memory_usage(key, samples=0)
        pipe.pttl(key)
    answers = pipe.execute()
    return Footprint(len(keys), sum(int(size or 0) for size in answers[0::2]),
                     max((int(ttl) for ttl in answers[1::2]), default=0))  # fmt: skip


async def _footprints(checker: Checker, admin: redis.Redis, limit: int) -> tuple[Footprint, Footprint]:  # fmt: skip
    """(one request on each of 1,000 keys, `limit` requests on one key)."""
    await _warm(checker, admin)
    for arg in checker.args([f"mem-{i}" for i in range(1000)]):
        await checker.check(arg)
    spread = _footprint(admin)
    admin.flushall()
    for arg in checker.args(["mem-full"] * limit):
        await checker.check(arg)
    full = _footprint(admin)
    admin.flushall()
    return spread, full


@dataclass
class Commands:
    round_trips: float
    in_scripts: float
    sent: str  # commands the client sent, per check
    scripted: str  # commands its scripts ran, per check


async def _round_trips(checker: Checker, admin: redis.Redis, n: int) -> Commands:
    """Commands per check as Redis's slow log records them with a threshold of 0."""
    await _warm(checker, admin)
    args = checker.args(_keys("one", "count", n))
    admin.config_set("slowlog-max-len", n * 32 + 1000)
    admin.config_set("slowlog-log-slower-than", 0)
    admin.slowlog_reset()
    for arg in args:
        await checker.check(arg)
    entries = admin.slowlog_get(-1)
    admin.config_set("slowlog-log-slower-than", 10_000)
    admin.slowlog_reset()
    sent: Counter[str] = Counter()
    scripted: Counter[str] = Counter()
    for entry in entries:
        if _text(entry.get("client_name")) == ADMIN:
            continue
        name = _text(entry["command"]).split()[0].upper()
        (scripted if _text(entry.get("client_address")) == "?:0" else sent)[name] += 1

    def per_check(counts: Counter[str]) -> str:
        return ", ".join(f"{name} {count / n:g}" for name, count in sorted(counts.items()))

    return Commands(sum(sent.values()) / n, sum(scripted.values()) / n, per_check(sent),
                    per_check(scripted))  # fmt: skip


@dataclass
class Results:
    timed: dict[tuple[str, str], list[Timed]]
    counted: dict[str, Commands]
    memory: dict[str, tuple[Footprint, Footprint]]


async def _measure(args: argparse.Namespace, port: int) -> Results:
    """Every case's checker open at once; each run's checks cut into `--slices` slices, and
    the cases take turns slice by slice (the order reversed every other slice), so that a
    neighbour's load on the machine falls on all of them alike."""
    admin = redis.Redis(host="127.0.0.1", port=port, client_name=ADMIN, decode_responses=True)
    cases = [case for case in CASES if case.timed]
    results = Results({}, {}, {})
    checkers = {case.name: make_checker(case.name, port, LIMIT, WINDOW) for case in cases}
    try:
        for checker in checkers.values():
            await _warm(checker, admin)
        for run in range(args.runs):
            for mode in ("one", "many"):
                prepared = {name: checker.args(_keys(mode, f"{name}-{run}", args.checks))
                            for name, checker in checkers.items()}  # fmt: skip
                tallies = {name: Tally() for name in checkers}
                size = -(-args.checks // args.slices)
                for part in range(args.slices):
                    order = cases if (run + part) % 2 == 0 else cases[::-1]
                    for case in order:
                        part_args = prepared[case.name][part * size : (part + 1) * size]
                        await _timed(checkers[case.name], part_args,
                                     admin if case.redis else None, tallies[case.name])  # fmt: skip
                for name, tally in tallies.items():
                    results.timed.setdefault((name, mode), []).append(tally.timed())
                admin.flushall()
            print(f"run {run + 1}/{args.runs} done", file=sys.stderr, flush=True)
    finally:
        for checker in checkers.values():
            await checker.close()
    for case in cases:
        if case.redis:
            checker = make_checker(case.name, port, LIMIT, WINDOW)
            try:
                results.counted[case.name] = await _round_trips(checker, admin, args.count_checks)
            finally:
                await checker.close()
        if case.redis and not case.name.endswith("-stats"):  # "+ stats" stores the same
            checker = make_checker(case.name, port, args.mem_limit, WINDOW)
            try:
                results.memory[case.name] = await _footprints(checker, admin, args.mem_limit)
            finally:
                await checker.close()
    admin.flushall()
    admin.close()
    return results


# --- atomicity, across processes ---------------------------------------------------------------


def worker_role(name: str, port: int, key: str, limit: int, window: int, checks: int) -> None:
    """One process of the atomicity test: ready, wait for "go" on stdin, `checks` checks."""

    async def run() -> dict[str, float]:
        checker = make_checker(name, port, limit, window)
        for arg in checker.args([f"warm-{os.getpid()}"] * 3):
            await checker.check(arg)
        args = checker.args([key] * checks)
        print("ready", flush=True)
        sys.stdin.readline()  # blocks the loop: nothing else runs on it
        began = time.monotonic()
        allowed = 0
        for arg in args:
            allowed += await checker.check(arg)
        seconds = time.monotonic() - began
        await checker.close()
        return {"allowed": allowed, "seconds": seconds}

    print(json.dumps(uvloop.run(run())), flush=True)


@dataclass
class Race:
    allowed: int
    checks: int
    seconds: float  # the slowest process


def _race(args: argparse.Namespace, name: str, port: int, run: int) -> Race:
    key = f"race-{name}-{run}"
    command = [sys.executable, __file__, "worker", name, str(port), key, str(args.limit),
               str(args.race_window), str(args.proc_checks)]  # fmt: skip
    env = dict(os.environ, PYTHONPATH=str(args.limits_path))  # `limits` first, as here
    workers = [
        subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
            cwd=HERE.parent,
        )
        for _ in range(args.procs)
    ]
    try:
        deadline = time.monotonic() + 180
        for worker in workers:
            assert worker.stdout is not None
            ready, _, _ = select.select(
                [worker.stdout], [], [], max(0, deadline - time.monotonic())
            )
            if not ready or worker.stdout.readline().strip() != "ready":
                raise RuntimeError(f"a worker of {name} did not get ready ({worker.poll()})")
        for worker in workers:
            assert worker.stdin is not None
            worker.stdin.write("go\n")
            worker.stdin.flush()
        answers = [json.loads(worker.communicate(timeout=120)[0]) for worker in workers]
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
    return Race(sum(int(a["allowed"]) for a in answers), args.procs * args.proc_checks,
                max(float(a["seconds"]) for a in answers))  # fmt: skip


# --- the run -----------------------------------------------------------------------------------


@contextlib.contextmanager
def _redis_server(port: int, cores: str | None) -> Iterator[None]:
    if shutil.which("redis-server") is None:
        raise SystemExit("redis-server is needed: apt-get install redis-server")
    command = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
               "--appendonly", "no"]  # fmt: skip
    with started(command, cores):
        wait_port(port)
        yield


def _install_limits(directory: Path) -> list[str]:
    """`limits[async-redis]` into `directory` (unless there already), first on `sys.path`;
    the distributions pip put there, as "name version"."""
    if not (directory / "limits").is_dir():
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
             "--no-input", "--target", str(directory), "limits[async-redis]"],
            check=True, timeout=600,
        )  # fmt: skip
    sys.path.insert(0, str(directory))
    importlib.invalidate_caches()
    found = importlib.metadata.distributions(path=[str(directory)])
    return sorted(f"{d.metadata['Name']} {d.version}" for d in found)


def _sources() -> str:
    """A digest of the scopegate files measured (the tree may change between two runs)."""
    root = Path(redis_store.__file__).resolve().parent.parent
    digest = hashlib.sha256()
    for name in SOURCES:
        path = root / name
        digest.update(path.read_bytes() if path.exists() else b"")
    return digest.hexdigest()[:12]


def _header(args: argparse.Namespace, port: int, resolved: list[str]) -> str:
    info = redis.Redis(host="127.0.0.1", port=port).info("server")
    cpu = cpu_model()
    shown = list(sys.argv[1:])
    if "--append" in shown:  # the command that gives these figures; where they went is aside
        del shown[shown.index("--append") : shown.index("--append") + 2]
    command = " ".join(["python", "bench/ratelimit_stores.py", *shown])
    return "\n".join([
        "### Rate-limit stores: redis-py + Lua GCRA against `limits`",
        "",
        f"Command: `.venv/bin/{command}` (with `--append bench/RESULTS.md`, which adds this "
        "section there).",
        "",
        f"Date: {datetime.now(UTC):%Y-%m-%d}. Machine: {platform.machine()}, {os.cpu_count()} "
        f"cores ({cpu}), Python {platform.python_version()}, uvloop {importlib.metadata.version('uvloop')}, "
        f"redis-server {info['redis_version']} on loopback (core {args.redis_cores}; this "
        f"process on core {args.bench_cores}). redis-py {importlib.metadata.version('redis')} "
        f"with hiredis {importlib.metadata.version('hiredis')} (scopegate's, from the venv). "
        f"`limits[async-redis]` as pip resolved it into a throw-away directory: "
        f"{', '.join(resolved)}. scopegate's {', '.join(f'`{n}`' for n in SOURCES)} as measured: "
        f"SHA-256 {args.sources} (of the four in that order)"
        + ("" if _sources() == args.sources else f", **changed during the run** (now {_sources()})")
        + ".",
        "",
        f"{args.checks:,} sequential checks per measurement, one rule of {LIMIT:,} per {WINDOW} s "
        f"(never refused); medians over {args.runs} runs, in each of which the cases take turns by "
        f"slices of {-(-args.checks // args.slices):,} checks. CPU µs: this Python process per check "
        "(`time.process_time`); Redis µs: redis-server's CPU per check; round trips and commands "
        f"per check from Redis's slow log at threshold 0 ({args.count_checks:,} checks of one "
        f"key). Load average (1 min): {args.load_began:.2f} when the run began, {_load():.2f} "
        "at its end (other work shares this machine).",
        "",
    ])  # fmt: skip


def _load() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def _median(values: Sequence[float]) -> float:
    return statistics.median(values)


def _report(args: argparse.Namespace, header: str, results: Results,
            races: dict[str, list[Race]]) -> str:  # fmt: skip
    lines = [header]
    for mode, title in (("one", "one key"), ("many", f"{args.checks:,} distinct keys")):
        lines += [
            f"#### {args.checks:,} checks of {title}", "",
            "| case | CPU µs/check | p50 µs | p99 µs | Redis CPU µs/check | round trips/check "
            "| commands run in scripts/check |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]  # fmt: skip
        for case in (c for c in CASES if c.timed):
            samples = results.timed[case.name, mode]
            refused = sum(s.refused for s in samples)
            counted = results.counted.get(case.name)
            lines.append(
                f"| {case.label}{f' ({refused} refused!)' if refused else ''} "
                f"| {_median([s.cpu_us for s in samples]):.1f} "
                f"| {_median([s.p50_us for s in samples]):.0f} "
                f"| {_median([s.p99_us for s in samples]):.0f} "
                f"| {_median([s.redis_cpu_us for s in samples]):.1f} "
                f"| {f'{counted.round_trips:g}' if counted else '0'} "
                f"| {f'{counted.in_scripts:g}' if counted else '–'} |"
            )
        lines.append("")
    lines += ["Commands per check, as Redis's slow log recorded them (one key):", ""]
    for case in (c for c in CASES if c.timed and c.redis):
        counted = results.counted[case.name]
        lines.append(f"- {case.label}: sent {counted.sent}; in the script: {counted.scripted}.")
    m = args.mem_limit
    lines += [
        "",
        f"#### Redis memory and key lifetime, limit {m} per {WINDOW} s",
        "",
        "| store | 1 request on each of 1,000 keys: bytes per key | PTTL s | "
        f"{m} requests on one key: keys | bytes | PTTL s |",
        "|---|---:|---:|---:|---:|---:|",
    ]  # fmt: skip
    for name, (spread, full) in results.memory.items():
        label = BY_NAME[name].label.rsplit(", `", 1)[0]
        lines.append(f"| {label} | {spread.bytes / max(1, spread.keys):,.0f} "
                     f"| {spread.pttl_ms / 1000:.1f} | {full.keys} | {full.bytes:,} "
                     f"| {full.pttl_ms / 1000:.1f} |")  # fmt: skip
    lines += [
        "",
        f"#### Atomicity: {args.procs} processes × {args.proc_checks:,} checks of one key, limit "
        f"{args.limit:,} per {args.race_window:,} s, started together ({args.race_runs} runs)",
        "",
        "| case | allowed, each run | limit | over the limit |",
        "|---|---|---:|---|",
    ]  # fmt: skip
    for name, runs in races.items():
        over = [race.allowed - args.limit for race in runs]
        label = ("scopegate `memory` (each process counts alone, by design)" if name == "memory"
                 else BY_NAME[name].label)  # fmt: skip
        lines.append(f"| {label} | {', '.join(f'{r.allowed:,}' for r in runs)} "
                     f"| {args.limit:,} | {', '.join(f'{o:+,}' for o in over)} |")  # fmt: skip
    slowest = max(race.seconds for runs in races.values() for race in runs)
    lines += ["", f"The slowest process of any run took {slowest:.2f} s, far below one GCRA "
              f"interval ({args.race_window / args.limit:g} s): an exact store allows "
              f"{args.limit:,}.", ""]  # fmt: skip
    return "\n".join(lines)


def _out_of_time(signum: int, frame: object) -> None:
    raise TimeoutError("--max-seconds passed")  # unwinds: redis-server and workers stopped


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checks", type=int, default=20_000, help="per measurement")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--slices", type=int, default=10, help="the cases take turns by slice")
    parser.add_argument("--count-checks", type=int, default=2_000, help="for the round trips")
    parser.add_argument("--procs", type=int, default=4, help="processes of the atomicity test")
    parser.add_argument("--proc-checks", type=int, default=2_000, help="checks per process")
    parser.add_argument("--limit", type=int, default=1_000, help="of the atomicity test")
    parser.add_argument("--race-window", type=int, default=86_400, help="seconds")
    parser.add_argument("--race-runs", type=int, default=3)
    parser.add_argument("--mem-limit", type=int, default=100, help="of the memory pass")
    parser.add_argument("--bench-cores", default="0", help="this process's core(s)")
    parser.add_argument("--redis-cores", default="1", help="redis-server's core(s) (taskset)")
    parser.add_argument("--limits-dir", type=Path, default=None, help="reuse this install")
    parser.add_argument("--max-seconds", type=int, default=3600, help="the whole run at most")
    parser.add_argument("--append", type=Path, default=None, help="append the section here")
    args = parser.parse_args()
    signal.signal(signal.SIGALRM, _out_of_time)
    signal.alarm(args.max_seconds)
    began, args.load_began, args.sources = time.monotonic(), _load(), _sources()
    with contextlib.ExitStack() as stack:
        directory = args.limits_dir or Path(
            stack.enter_context(tempfile.TemporaryDirectory(prefix="scopegate-limits-"))
        )
        resolved = _install_limits(directory)
        args.limits_path = directory
        port = free_port()
        stack.enter_context(_redis_server(port, args.redis_cores))
        if args.bench_cores:
            os.sched_setaffinity(0, {int(core) for core in args.bench_cores.split(",")})
            results = uvloop.run(_measure(args, port))
        os.sched_setaffinity(0, range(os.cpu_count() or 1))  # the workers spread over all cores
        races: dict[str, list[Race]] = {}
        for run in range(args.race_runs):
            for case in (c for c in CASES if c.concurrent):
                races.setdefault(case.name, []).append(_race(args, case.name, port, run))
        report = _report(args, _header(args, port, resolved), results, races)
    report += f"\nWhole run: {time.monotonic() - began:,.0f} s.\n"
    print(report)
    if args.append:
        with args.append.open("a") as out:
            out.write("\n" + report)
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "worker":
        name, port, key, limit, window, checks = sys.argv[2:8]
        worker_role(name, int(port), key, int(limit), int(window), int(checks))
    else:
        sys.exit(main())
