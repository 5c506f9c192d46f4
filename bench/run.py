"""scopegate's benchmark: the gateway side by side with the upstream called directly and with a
bare aiohttp proxy, in one run, on this machine.

    .venv/bin/python bench/run.py [--rounds 3] [--seconds 8] [--connections 32] [--out FILE]

Layout: the server under test is pinned to core 0; wrk and the upstream (nginx, or a built-in
aiohttp server if nginx is missing) share core 1. Rounds alternate the order of scenarios; each
figure is the median over rounds. CPU per request is the server's user+system time over the
requests wrk completed; every answer's status is checked through wrk's non-2xx count.
Traffic goes to 127.0.0.1 only; every process started here is stopped by its PID.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PYTHON = sys.executable
AUDIENCE = "https://contacts.example.com"
TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_port(port: int, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


@contextlib.contextmanager
def started(
    args: list[str], core: str | None, **kwargs: object
) -> Iterator[subprocess.Popen[bytes]]:
    command = (["taskset", "-c", core] if core and shutil.which("taskset") else []) + args
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kwargs
    )  # type: ignore[call-overload]
    try:
        yield process
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


@dataclass
class Sample:
    rps: float
    cpu_us: float
    p50_ms: float
    p99_ms: float
    rss_mib: float
    non_2xx: int
    requests: int


def _ms(output: str, percentile: str) -> float:
    """A latency percentile of wrk's --latency table, in milliseconds (NaN if wrk gave none)."""
    match = re.search(rf"{percentile}%\s+([\d.]+)(us|ms|s|m)\b", output)
    if match is None:
        return float("nan")
    value, unit = match.groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}[unit]


def run_wrk(url: str, pid: int, seconds: int, connections: int, script: Path | None,
            headers: dict[str, str]) -> Sample:  # fmt: skip
    args = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency"]
    for name, value in headers.items():
        args += ["-H", f"{name}: {value}"]
    if script is not None:
        args += ["-s", str(script)]
    command = (["taskset", "-c", "1"] if shutil.which("taskset") else []) + args + [url]
    before = cpu_seconds(pid)
    output = subprocess.run(
        command, capture_output=True, text=True, timeout=seconds + 30, check=True
    ).stdout
    used = cpu_seconds(pid) - before
    requests = int(re.search(r"(\d+) requests in", output).group(1))  # type: ignore[union-attr]
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return Sample(
        rps=float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1)),  # type: ignore[union-attr]
        cpu_us=used / max(requests, 1) * 1e6,
        p50_ms=_ms(output, "50"),
        p99_ms=_ms(output, "99"),
        rss_mib=rss_mib(pid),
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        requests=requests,
    )


def nginx_upstream(tmp: Path, port: int) -> list[str]:
    conf = tmp / "nginx.conf"
    conf.write_text(
        f"master_process off; worker_processes 1; daemon off; pid {tmp}/nginx.pid; error_log {tmp}/error.log;\n"
        "events { worker_connections 4096; }\n"
        f"http {{ access_log off; client_body_temp_path {tmp}; proxy_temp_path {tmp};\n"
        f"  fastcgi_temp_path {tmp}; uwsgi_temp_path {tmp}; scgi_temp_path {tmp};\n"
        f'  server {{ listen 127.0.0.1:{port}; location / {{ return 200 "ok\\n"; }} }} }}\n'
    )
    return ["nginx", "-c", str(conf), "-e", str(tmp / "error.log")]


def builtin_upstream(port: int) -> list[str]:
    return [PYTHON, "-c", (
        "import asyncio,uvloop\nfrom aiohttp import web\n"
        "async def h(r): return web.Response(text='ok\\n')\n"
        "async def m():\n r=web.ServerRunner(web.Server(h,access_log=None)); await r.setup()\n"
        f" await web.TCPSite(r,'127.0.0.1',{port}).start(); await asyncio.Event().wait()\n"
        "uvloop.install(); asyncio.run(m())\n"
    )]  # fmt: skip


def gateway_config(
    tmp: Path, name: str, issuer: str, upstream_port: int, port: int, routes: int, cache: bool
) -> Path:
    lines = [
        f"limits: {{token_cache_size: {10_000 if cache else 0}}}",
        f"listen: 127.0.0.1:{port}", f"admin_listen: 127.0.0.1:{free_port()}",
        "issuers:", f"  - issuer: {issuer}", f"    audiences: [{AUDIENCE}]",
        f"upstreams:\n  contacts: http://127.0.0.1:{upstream_port}",
        "routes:",
        "  - {path: /contacts, methods: [GET], upstream: contacts, scopes: [read:contacts]}",
        '  - {path: "/public/{rest*}", upstream: contacts, auth: none}',
    ]  # fmt: skip
    lines += [f'  - {{path: "/tenant{i}/items/{{id}}", upstream: contacts, scopes: [read:items]}}'
              for i in range(routes - 2)]  # fmt: skip
    path = tmp / f"{name}.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def cold_script(tmp: Path, tokens: Path) -> Path:
    script = tmp / "cold.lua"
    script.write_text(
        "local tokens = {}\n"
        f'for line in io.lines("{tokens}") do tokens[#tokens + 1] = line end\n'
        "local i = 0\n"
        "request = function()\n  i = i % #tokens + 1\n"
        '  return wrk.format("GET", "/contacts", {["Authorization"] = "Bearer " .. tokens[i]})\nend\n'
    )
    return script


@dataclass
class Scenario:
    name: str
    server: str  # direct | bare | scopegate | scopegate-10k
    path: str
    token: bool = False
    cold: bool = False
    expect_denied: bool = False


SCENARIOS = [
    Scenario("upstream called directly", "direct", "/contacts"),
    Scenario("bare aiohttp proxy, no auth", "bare", "/contacts"),
    Scenario("scopegate, public route", "scopegate", "/public/x"),
    Scenario("scopegate, valid token (warm)", "scopegate", "/contacts", token=True),
    Scenario(
        "scopegate, every token verified (cache off: cold)", "scopegate", "/contacts", cold=True
    ),
    Scenario(
        "scopegate, 403 insufficient scope",
        "scopegate",
        "/contacts",
        token=True,
        expect_denied=True,
    ),
    Scenario("scopegate, 10,000 routes, valid token", "scopegate-10k", "/contacts", token=True),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--out", type=Path, default=None, help="write the table here too")
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="WORDS",
        help="run only scenarios whose name contains WORDS (repeatable); the baselines always run",
    )
    args = parser.parse_args()
    scenarios = [
        s
        for s in SCENARIOS
        if s.server in ("direct", "bare") or not args.only or any(w in s.name for w in args.only)
    ]
    if shutil.which("wrk") is None:
        print("wrk is needed: apt-get install wrk", file=sys.stderr)
        return 2
    results: dict[str, list[Sample]] = {s.name: [] for s in scenarios}
    with tempfile.TemporaryDirectory(prefix="scopegate-bench-") as tmp_name:
        tmp = Path(tmp_name)
        up_port, issuer_port = free_port(), free_port()
        upstream_cmd = (
            nginx_upstream(tmp, up_port) if shutil.which("nginx") else builtin_upstream(up_port)
        )
        tokens = tmp / "tokens.txt"
        denied_tokens = tmp / "denied.txt"
        issuer_cmd = [
            PYTHON,
            str(HERE / "issuer.py"),
            str(issuer_port),
            str(tokens),
            "4000",
            AUDIENCE,
            "read:contacts",
        ]
        with started(upstream_cmd, "1") as upstream, started(issuer_cmd, "1"):
            wait_port(up_port)
            wait_port(issuer_port, 120)
            while len(tokens.read_text().splitlines()) < 4000 if tokens.exists() else True:
                time.sleep(0.2)
            issuer = f"http://127.0.0.1:{issuer_port}/"
            token = tokens.read_text().splitlines()[0]
            denied_tokens.write_text(_mint_denied(issuer_port))
            for round_ in range(args.rounds):
                order = scenarios if round_ % 2 == 0 else list(reversed(scenarios))
                for scenario in order:
                    sample = _measure(scenario, tmp, issuer, up_port, upstream.pid, token,
                                      denied_tokens.read_text().strip(), tokens, args)  # fmt: skip
                    results[scenario.name].append(sample)
                    print(f"round {round_ + 1}: {scenario.name}: {sample.rps:.0f} req/s, "
                          f"{sample.cpu_us:.0f} us CPU/req", flush=True)  # fmt: skip
    table = render(results, args)
    print(table)
    if args.out:
        args.out.write_text(table)
    return 0


def _mint_denied(issuer_port: int) -> str:
    import json
    import urllib.request

    body = json.dumps({"audience": AUDIENCE, "scope": "other:scope", "lifetime": 3600}).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{issuer_port}/dev/token", data=body,
        headers={"Content-Type": "application/json"},
    )  # fmt: skip
    with urllib.request.urlopen(request, timeout=10) as answer:
        return str(json.load(answer)["access_token"])


def _measure(scenario: Scenario, tmp: Path, issuer: str, up_port: int, upstream_pid: int, token: str,
             denied: str, tokens: Path, args: argparse.Namespace) -> Sample:  # fmt: skip
    headers = {}
    if scenario.token:
        headers["Authorization"] = f"Bearer {denied if scenario.expect_denied else token}"
    script = cold_script(tmp, tokens) if scenario.cold else None
    if scenario.server == "direct":
        return run_wrk(f"http://127.0.0.1:{up_port}{scenario.path}", upstream_pid, args.seconds,
                       args.connections, script, headers)  # fmt: skip
    port = free_port()
    if scenario.server == "bare":
        command = [PYTHON, str(HERE / "bare_proxy.py"), str(port), f"http://127.0.0.1:{up_port}"]
    else:
        routes = 10_000 if scenario.server == "scopegate-10k" else 10
        config = gateway_config(
            tmp, scenario.server, issuer, up_port, port, routes, cache=not scenario.cold
        )
        command = [PYTHON, "-m", "scopegate", "serve", "-c", str(config)]
    with started(command, "0", cwd=ROOT) as server:
        wait_port(port, 60)
        time.sleep(1.0)  # keys fetched, first requests warm the process
        run_wrk(
            f"http://127.0.0.1:{port}{scenario.path}",
            server.pid,
            1,
            args.connections,
            script,
            headers,
        )
        sample = run_wrk(f"http://127.0.0.1:{port}{scenario.path}", server.pid, args.seconds,
                         args.connections, script, headers)  # fmt: skip
        wrong = sample.requests - sample.non_2xx if scenario.expect_denied else sample.non_2xx
        if wrong:
            raise RuntimeError(
                f"{scenario.name}: {wrong} answers with an unexpected status; one of them: "
                + _probe(f"http://127.0.0.1:{port}{scenario.path}", headers)
            )
    return sample


def _probe(url: str, headers: dict[str, str]) -> str:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(
            urllib.request.Request(url, headers=headers), timeout=5
        ) as answer:
            return f"{answer.status} {answer.read()[:300]!r}"
    except urllib.error.HTTPError as error:
        return f"{error.code} {error.read()[:300]!r}"


def render(results: dict[str, list[Sample]], args: argparse.Namespace) -> str:
    def med(samples: list[Sample], field: str) -> float:
        return statistics.median(getattr(s, field) for s in samples)

    bare = results["bare aiohttp proxy, no auth"]
    base_rps = med(bare, "rps")
    lines = [
        f"Machine: {platform.machine()}, {os.cpu_count()} cores ({_cpu_model()}), "
        f"Python {platform.python_version()}; wrk -t1 -c{args.connections} -d{args.seconds}s, "
        f"median of {args.rounds} rounds; server on core 0, wrk and upstream on core 1.",
        "",
        "| scenario | req/s | × bare proxy | CPU µs/req | p50 ms | p99 ms | RSS MiB |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, samples in results.items():
        lines.append(
            f"| {name} | {med(samples, 'rps'):,.0f} | {med(samples, 'rps') / base_rps:.2f} | "
            f"{med(samples, 'cpu_us'):.0f} | {med(samples, 'p50_ms'):.2f} | "
            f"{med(samples, 'p99_ms'):.2f} | {med(samples, 'rss_mib'):.0f} |"
        )
    return "\n".join(lines) + "\n"


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"


if __name__ == "__main__":
    raise SystemExit(main())
