"""Where scopegate's CPU goes under load: py-spy samples one scenario and this prints the
functions and files with the most samples.

    .venv/bin/python bench/profile.py [public|warm|cold|denied] [--seconds 10]

Needs `py-spy` (`pip install py-spy`, in any environment: it attaches to the running process),
`wrk` and, preferably, `nginx`. The layout is the benchmark's: scopegate on core 0, wrk and the
upstream on core 1. "self" is time in the function's own code (and the C calls it makes, such
as a socket write); "inclusive" is time anywhere below it.
"""

from __future__ import annotations

import argparse
import collections
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import peers
from loadgen import rotating_tokens
from procs import free_port, pinned, started, wait_port

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("scenario", choices=["public", "warm", "cold", "denied"], nargs="?",
                        default="warm")  # fmt: skip
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--py-spy", default=shutil.which("py-spy"), help="the py-spy to use")
    parser.add_argument("--top", type=int, default=30)
    args = parser.parse_args()
    if not args.py_spy or shutil.which("wrk") is None:
        print("py-spy and wrk are needed (pip install py-spy; apt-get install wrk)",
              file=sys.stderr)  # fmt: skip
        return 2
    with tempfile.TemporaryDirectory(prefix="scopegate-profile-") as name:
        tmp = Path(name)
        raw = _record(tmp, args)
        _report(raw, args.top)
    return 0


def _record(tmp: Path, args: argparse.Namespace) -> Path:
    up, issuer_port, port = free_port(), free_port(), free_port()
    tokens = tmp / "tokens.txt"
    big = tmp / "big.bin"
    big.write_bytes(b"")
    upstream_cmd, _ = peers.upstream_command(tmp, up, big)
    with (
        started(upstream_cmd, "1"),
        started(peers.issuer_command(issuer_port, tokens, 2000), "1"),
    ):
        wait_port(up)
        token = peers.issued_tokens(tokens, 2000)[0]
        issuer = f"http://127.0.0.1:{issuer_port}/"
        if args.scenario == "denied":
            token = peers.mint_one(issuer_port, "other:scope")
        config = peers.scopegate_config(tmp, "profile", issuer, up, port,
                                        cache=0 if args.scenario == "cold" else 10_000)  # fmt: skip
        path = "/public/x" if args.scenario == "public" else "/contacts"
        load = ["wrk", "-t1", "-c32", f"-d{args.seconds + 4}s", f"http://127.0.0.1:{port}{path}"]
        if args.scenario == "cold":
            load[1:1] = ["-s", str(rotating_tokens(tmp, tokens, path))]
        elif args.scenario != "public":
            load[1:1] = ["-H", f"Authorization: Bearer {token}"]
        with started(peers.scopegate_command(config), "0", cwd=ROOT) as server:
            wait_port(port, 60)
            time.sleep(1.0)
            wrk = subprocess.Popen(pinned(load, "1"), stdout=subprocess.PIPE, text=True)
            time.sleep(1.0)
            raw = tmp / "samples.txt"
            subprocess.run([args.py_spy, "record", "-p", str(server.pid), "-d", str(args.seconds),
                            "-r", "500", "-f", "raw", "-o", str(raw), "--nonblocking"],
                           check=True, capture_output=True)  # fmt: skip
            print(wrk.communicate()[0].strip().splitlines()[-2])
        kept = ROOT / "bench" / "out"
        kept.mkdir(exist_ok=True)
        shutil.copy(raw, kept / f"profile-{args.scenario}.txt")
        return kept / f"profile-{args.scenario}.txt"


def _report(raw: Path, top: int) -> None:
    own: collections.Counter[str] = collections.Counter()
    below: collections.Counter[str] = collections.Counter()
    files: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        count = int(count_text)
        total += count
        frames = stack.split(";")
        own[frames[-1]] += count
        for frame in set(frames):
            below[frame] += count
        match = re.search(r"\(([^:)]*)", frames[-1])
        where = match.group(1) if match else frames[-1]
        files[where if "scopegate" in where else where.split("/")[0]] += count
    for title, counter in (("self", own), ("inclusive", below), ("self, by file", files)):
        print(f"\n{title} ({total} samples)")
        for frame, count in counter.most_common(top):
            print(f"{count / total * 100:5.1f}%  {frame}")
    print(f"\nraw samples: {raw}")


if __name__ == "__main__":
    raise SystemExit(main())
