"""wrk as the load generator: one run, parsed into a `Sample`, with Lua scripts for rotating
tokens and for a paced (fixed-rate) load."""

from __future__ import annotations

import math
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from procs import cpu_seconds, pinned, rss_mib

LOAD_CORE = "1"


@dataclass
class Sample:
    rps: float
    cpu_us: float
    p50_ms: float
    p99_ms: float
    rss_mib: float
    non_2xx: int
    requests: int
    max_ms: float = math.nan


def _ms(output: str, percentile: str) -> float:
    """A latency percentile of wrk's --latency table, in milliseconds (NaN if wrk gave none)."""
    return _duration_ms(re.search(rf"{percentile}%\s+([\d.]+)(us|ms|s|m)\b", output))


def _max_ms(output: str) -> float:
    """The slowest request, from wrk's `Latency avg stdev max` line, in milliseconds."""
    return _duration_ms(re.search(r"Latency\s+\S+\s+\S+\s+([\d.]+)(us|ms|s|m)\b", output))


def _duration_ms(match: re.Match[str] | None) -> float:
    """A wrk duration (`850.00us`, `1.20ms`, `2.01s`) matched as (number, unit), in ms."""
    if match is None:
        return math.nan
    value, unit = match.groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}[unit]


def _number(pattern: str, output: str) -> float:
    match = re.search(pattern, output)
    if match is None:
        raise RuntimeError(f"wrk printed no {pattern!r}:\n{output}")
    return float(match.group(1))


def run_wrk(url: str, server_pid: int, *, seconds: int, connections: int,
            script: Path | None = None, headers: dict[str, str] | None = None) -> Sample:  # fmt: skip
    """Load `url` for `seconds`; CPU per request is the server tree's CPU over wrk's count."""
    args = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency"]
    for name, value in (headers or {}).items():
        args += ["-H", f"{name}: {value}"]
    if script is not None:
        args += ["-s", str(script)]
    before = cpu_seconds(server_pid)
    output = subprocess.run(
        pinned([*args, url], LOAD_CORE),
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=True,
    ).stdout
    used = cpu_seconds(server_pid) - before
    requests = int(_number(r"(\d+) requests in", output))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return Sample(
        rps=_number(r"Requests/sec:\s+([\d.]+)", output),
        cpu_us=used / max(requests, 1) * 1e6,
        p50_ms=_ms(output, "50"),
        p99_ms=_ms(output, "99"),
        rss_mib=rss_mib(server_pid),
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        requests=requests,
        max_ms=_max_ms(output),
    )


def rotating_tokens(tmp: Path, tokens: Path, path: str) -> Path:
    """Each request carries the next token of `tokens` (one per line), round and round."""
    script = tmp / f"rotate-{tokens.stem}.lua"
    script.write_text(
        "local tokens = {}\n"
        f'for line in io.lines("{tokens}") do tokens[#tokens + 1] = line end\n'
        "local i = 0\n"
        "request = function()\n  i = i % #tokens + 1\n"
        f'  return wrk.format("GET", "{path}", {{["Authorization"] = "Bearer " .. tokens[i]}})\n'
        "end\n"
    )
    return script


def paced(tmp: Path, rate: float, connections: int) -> Path:
    """About `rate` requests/s in all, as Poisson arrivals: before each request a connection
    waits an exponentially distributed time (wrk's `delay`) whose mean is its share. A fixed
    delay would keep the connections in lockstep, and every request would queue behind the
    burst of the others."""
    script = tmp / f"paced-{int(rate)}.lua"
    mean_ms = connections / rate * 1000
    script.write_text(
        "math.randomseed(os.time())\n"
        f"function delay()\n  return -{mean_ms:.4f} * math.log(1 - math.random())\nend\n"
    )
    return script
