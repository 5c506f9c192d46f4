"""Instructions per request, counted by valgrind's callgrind: a cost the machine's neighbours
cannot move.

    .venv/bin/python bench/instructions.py [--requests 1000] [--rounds 1] [--only WORDS]

`run.py` measures CPU time under wrk, and on a shared machine that moves by ±20–40 % between
rounds. This counts the user-space instructions the server executes per request instead: each
server runs under callgrind, answers a warm-up, has its counters zeroed, then answers
`--requests` requests sent one after another on one keep-alive connection, and the count is
dumped. Two rounds of the same scenario agree to within a fraction of a percent, so ratios of a
few percent can be read. `--workers 2` is counted in every process, supervisor and workers,
against one worker on the same eight connections; the kernel hands each connection to whichever
worker accepts first, and the dumps (one per process) show the split. An idle worker's timers
count too, and under valgrind a request takes some fifty times longer than natively, so they
weigh more here than they do in service.

What it does not see: time in the kernel (system calls, the loopback), cache misses and
branch mispredictions — an instruction of RSA arithmetic is cheaper than one of the
interpreter's dispatch loop. It ranks code changes and compares configurations; `run.py`
remains the measure of requests per second. Needs `valgrind`; uses `nginx` when installed.
The callgrind dumps are kept in `bench/out/` for `callgrind_annotate`.
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import peers
from procs import free_port, started, tree, wait_port

from scopegate.devtools.dpop import make_proof
from scopegate.devtools.keys import load_pem

ROOT = Path(__file__).resolve().parent.parent
MEASURE = "instructions"  # or, with --native, "µs of CPU"
OUT = Path(__file__).resolve().parent / "out"
WARM_UP = 50


@dataclass(frozen=True)
class Case:
    name: str
    server: str  # bare | scopegate
    path: str = "/contacts"
    token: str | None = None  # warm | new | denied | opaque | dpop (SPEC §6.4)
    routes: int = 10
    status: int = 200
    workers: int = 1
    connections: int = 1  # keep-alive connections the requests take turns on
    enforce: str = "enforce"  # report: every route report-only (SPEC §6.6)
    method: str = "GET"
    headers: tuple[tuple[str, str], ...] = ()  # sent with every request
    cors: bool = False  # a `cors:` section allowing ORIGIN (SPEC §6.2)
    rate_limit: str | None = None  # memory | redis: a per-subject rule on every route (§6.5)


PREFLIGHT_HEADERS = (
    ("Origin", peers.ORIGIN),
    ("Access-Control-Request-Method", "GET"),
    ("Access-Control-Request-Headers", "authorization"),
)

CASES = [
    Case("bare aiohttp proxy, no auth", "bare"),
    Case("scopegate, public route", "scopegate", "/public/x"),
    Case("scopegate, valid token (warm)", "scopegate", token="warm"),
    Case("scopegate, a new token every request (cold)", "scopegate", token="new"),
    Case("scopegate, 403 insufficient scope", "scopegate", token="denied", status=403),
    Case(
        "scopegate, cors configured, valid token (warm) from an allowed origin",
        "scopegate",
        token="warm",
        cors=True,
        headers=(("Origin", peers.ORIGIN),),
    ),
    Case(
        "scopegate, cors configured, preflight",
        "scopegate",
        method="OPTIONS",
        cors=True,
        status=204,
        headers=PREFLIGHT_HEADERS,
    ),
    Case(
        "scopegate, no cors, valid token (warm) with the same Origin header",
        "scopegate",
        token="warm",
        headers=(("Origin", peers.ORIGIN),),
    ),
    Case(
        "scopegate, 404 no route with the preflight's headers",
        "scopegate",
        path="/nowhere",
        status=404,
        headers=PREFLIGHT_HEADERS,
    ),
    Case("scopegate, opaque token, introspected once (warm)", "scopegate", token="opaque"),
    Case(
        "scopegate, DPoP-bound token (warm), a new proof every request", "scopegate", token="dpop"
    ),
    Case("scopegate, report-only, valid token (warm)", "scopegate", token="warm", enforce="report"),
    Case(
        "scopegate, memory rate limit, valid token (warm)",
        "scopegate",
        token="warm",
        rate_limit="memory",
    ),
    Case(
        "scopegate, redis rate limit, valid token (warm)",
        "scopegate",
        token="warm",
        rate_limit="redis",
    ),
    Case(
        "scopegate, report-only, insufficient scope forwarded",
        "scopegate",
        token="denied",
        enforce="report",
    ),
    Case("scopegate, 10,000 routes, valid token", "scopegate", token="warm", routes=10_000),
    Case("scopegate, valid token, 8 connections", "scopegate", token="warm", connections=8),
    Case(
        "scopegate --workers 2, valid token, 8 connections",
        "scopegate",
        token="warm",
        workers=2,
        connections=8,
    ),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--only", action="append", default=[], metavar="WORDS",
                        help="only the cases whose name contains WORDS (repeatable)")  # fmt: skip
    parser.add_argument("--native", action="store_true",
                        help="no valgrind: the server's CPU time (user + system, from /proc) per "
                             "request instead, for what valgrind does not emulate (crypto)")  # fmt: skip
    args = parser.parse_args()
    if args.native:
        global MEASURE
        MEASURE = "µs of CPU"
    elif shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        print("valgrind is needed: apt-get install valgrind", file=sys.stderr)
        return 2
    cases = [c for c in CASES if not args.only or any(w in c.name for w in args.only)]
    OUT.mkdir(exist_ok=True)
    counts: dict[Case, list[float]] = {case: [] for case in cases}
    with tempfile.TemporaryDirectory(prefix="scopegate-instructions-") as name:
        tmp = Path(name)
        up_port, issuer_port, redis_port = free_port(), free_port(), free_port()
        upstream_cmd, upstream_name = peers.upstream_command(tmp, up_port, tmp / "big.bin")
        token_file = tmp / "tokens.txt"
        wanted = WARM_UP + args.requests
        with (
            started(upstream_cmd, None),
            started(peers.issuer_command(issuer_port, token_file, wanted), None),
            peers.redis_if(any(case.rate_limit == "redis" for case in cases), redis_port),
        ):
            wait_port(up_port)
            tokens = peers.issued_tokens(token_file, wanted)
            denied = peers.mint_one(issuer_port, "other:scope")
            issuer = f"http://127.0.0.1:{issuer_port}/"
            for round_ in range(args.rounds):
                for case in cases:
                    per_request = _count(tmp, case, issuer, (up_port, redis_port), tokens, denied,
                                         args.requests, native=args.native)  # fmt: skip
                    counts[case].append(per_request)
                    print(f"round {round_ + 1}: {case.name}: {per_request:,.1f} {MEASURE}"
                          " per request", flush=True)  # fmt: skip
    print(_table(counts, args, upstream_name))
    return 0


def _count(tmp: Path, case: Case, issuer: str, ports: tuple[int, int], tokens: list[str],
           denied: str, requests: int, *, native: bool = False) -> float:  # fmt: skip
    """Instructions per request of `case`'s server, counted after its warm-up (`native`: µs of
    CPU instead); `ports`: the upstream's and Redis's."""
    upstream_port, redis_port = ports
    port = free_port()
    store = {"memory": "memory", "redis": f"redis://127.0.0.1:{redis_port}/0"}
    config = None
    if case.server == "bare":
        command = peers.bare_proxy_command(port, upstream_port)
    else:
        config = peers.scopegate_config(tmp, "instructions", issuer, upstream_port, port,
                                        routes=case.routes, enforce=case.enforce,
                                        cors=case.cors,
                                        rate_limit=store.get(case.rate_limit or ""),
                                        introspection=case.token == "opaque",
                                        dpop=case.token == "dpop")  # fmt: skip
        command = peers.scopegate_command(config, case.workers)
    for old in tmp.glob("callgrind.out*"):
        old.unlink()
    # Workers are counted too (`%p`: a file per process); the configuration's loading child runs
    # natively.
    valgrind = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={tmp}/callgrind.out.%p",
                "--trace-children=yes", "--trace-children-skip-by-arg=scopegate.commands.loading"]  # fmt: skip
    if native:
        valgrind = []
    with started([*valgrind, *command], None, cwd=ROOT, grace=300) as server:
        wait_port(port, seconds=600)
        _wait_ready(config)
        if case.token == "new":  # every request of the measured part brings a token never seen
            warm_up, measured = tokens[:WARM_UP], tokens[WARM_UP : WARM_UP + requests]
        else:
            token = {"warm": tokens[0], "denied": denied}.get(case.token or "")
            if case.token in ("opaque", "dpop"):
                token = _other_kind(tmp, case.token)
            warm_up, measured = [token] * WARM_UP, [token] * requests
        proofs = _proofs(tmp, case, port, warm_up[0], WARM_UP + requests)
        _send(port, case, warm_up, proofs[:WARM_UP], wait_for_keys=True)
        processes = [server.pid, *(pid for pid in tree(server.pid) if _is_worker(pid))]
        if len(processes) != 1 + (case.workers if case.workers > 1 else 0):
            raise RuntimeError(f"{case.name}: expected {case.workers} worker(s): {processes}")
        if native:
            before = sum(_cpu_seconds(pid) for pid in processes)
            _send(port, case, measured, proofs[WARM_UP:])
            return (sum(_cpu_seconds(pid) for pid in processes) - before) / requests * 1e6
        _callgrind_control("-z", processes)
        _send(port, case, measured, proofs[WARM_UP:])
        _callgrind_control("-d", processes)
        total = 0
        for pid in processes:  # the dump callgrind_control asked for: callgrind.out.<pid>.1
            dump = tmp / f"callgrind.out.{pid}.1"
            total += _summary(dump)
            suffix = "" if pid == server.pid else f"-worker-{processes.index(pid)}"
            shutil.copy(dump, OUT / f"callgrind-{_slug(case)}{suffix}.out")
    return total / requests


def _other_kind(tmp: Path, kind: str) -> str:
    """The first opaque or DPoP-bound token `bench/issuer.py` wrote."""
    return (tmp / "tokens.txt").with_suffix(f".{kind}").read_text().splitlines()[0]


def _proofs(tmp: Path, case: Case, port: int, token: str | None, count: int) -> list[str | None]:
    """A DPoP proof for each request of a `dpop` case (a proof is good once), made before the
    count starts; None for every other case."""
    if case.token != "dpop" or token is None:
        return [None] * count
    key = load_pem((tmp / "tokens.txt").with_suffix(".dpop.pem"))
    url = f"http://127.0.0.1:{port}{case.path}"
    return [make_proof(key, case.method, url, access_token=token) for _ in range(count)]


def _send(port: int, case: Case, tokens: Sequence[str | None],
          proofs: Sequence[str | None] | None = None, *,
          wait_for_keys: bool = False) -> None:  # fmt: skip
    """One request per token, one after another, taking turns on `case.connections` keep-alive
    connections; each answer's status is checked. Until a server (or worker) has its keys it
    may answer 503: `wait_for_keys` retries such a request for up to two minutes. With
    `proofs`, each request goes with the DPoP scheme and its own proof."""
    connections = [
        http.client.HTTPConnection("127.0.0.1", port, timeout=300) for _ in range(case.connections)
    ]
    deadline = time.monotonic() + 120
    try:
        for index, token in enumerate(tokens):
            connection = connections[index % len(connections)]
            while True:
                headers = dict(case.headers)
                proof = proofs[index] if proofs else None
                if token is not None:
                    headers["Authorization"] = f"{'DPoP' if proof else 'Bearer'} {token}"
                if proof is not None:
                    headers["DPoP"] = proof
                connection.request(case.method, case.path, headers=headers)
                answer = connection.getresponse()
                answer.read()
                retry = wait_for_keys and answer.status == 503
                if retry and time.monotonic() < deadline:
                    time.sleep(0.5)
                    continue
                if answer.status != case.status:
                    raise RuntimeError(f"{case.name}: answered {answer.status}")
                break
    finally:
        for connection in connections:
            connection.close()


def _wait_ready(config: Path | None, seconds: float = 600) -> None:
    """Until the admin port's /readyz says every worker has started and has its keys: a worker
    still starting when the counters are zeroed would count its start-up as requests' work."""
    if config is None:
        return
    url = peers.admin_url(config, "/readyz")
    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(url, timeout=30) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass  # 503 (urllib raises it) or not listening yet
        if time.monotonic() > deadline:
            raise RuntimeError(f"not ready after {seconds:.0f} s: {url}")
        time.sleep(0.5)


def _is_worker(pid: int) -> bool:
    try:
        return b"--worker-fd" in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far, from /proc (clock ticks)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _callgrind_control(option: str, pids: list[int]) -> None:
    subprocess.run(["callgrind_control", option, *map(str, pids)], check=True,
                   capture_output=True, timeout=300)  # fmt: skip


def _summary(dump: Path) -> int:
    """The instruction count (`Ir`) a callgrind dump holds."""
    for line in dump.read_text().splitlines():
        if line.startswith("summary:"):
            return int(line.split()[1])
    raise RuntimeError(f"no summary in {dump}")


def _slug(case: Case) -> str:
    words = re.sub(r"[^a-z0-9 ]", "", case.name.lower().replace("scopegate, ", "")).split()
    return "-".join(words[:4])


def _table(counts: dict[Case, list[float]], args: argparse.Namespace, upstream: str) -> str:
    by_name = {case.name: statistics.median(values) for case, values in counts.items()}
    bare = by_name.get(CASES[0].name)
    warm = by_name.get(CASES[2].name)
    lines = [
        f"Date: {time.strftime('%Y-%m-%d')}. "
        f"{'CPU time, natively' if args.native else 'valgrind --tool=callgrind'}, "
        f"{args.requests} requests"
        f" per case after {WARM_UP} of warm-up, one keep-alive connection (eight where the case"
        f" says so), {args.rounds} round(s) (median). Upstream: {upstream}.",
        "",
        f"| case | {MEASURE}/request | × bare proxy | × warm token | rounds |",
        "|---|---:|---:|---:|---|",
    ]
    for case, values in counts.items():
        value = by_name[case.name]
        if args.native:
            shown, spread = f"{value:.1f}", " / ".join(f"{v:.1f}" for v in values)
        else:
            shown, spread = f"{value:,.0f}", " / ".join(f"{v / 1000:,.1f} k" for v in values)
        lines.append(
            f"| {case.name} | {shown} | {_ratio(value, bare)} | {_ratio(value, warm)} | {spread} |"
        )
    one = by_name.get("scopegate, valid token, 8 connections")
    two = by_name.get("scopegate --workers 2, valid token, 8 connections")
    if one and two:
        lines += ["", f"--workers 2 ÷ one worker, the same 8 connections: {two / one:.3f}"]
    return "\n".join(lines)


def _ratio(value: float, base: float | None) -> str:
    return "–" if not base else f"{value / base:.3f}"


if __name__ == "__main__":
    sys.exit(main())
