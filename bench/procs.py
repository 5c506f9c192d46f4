"""Processes of a benchmark run: start them pinned to cores, stop them by PID, read their CPU
time and memory from /proc (their child processes included: `--workers` forks)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

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


def pinned(args: list[str], cores: str | None) -> list[str]:
    return (["taskset", "-c", cores] if cores and shutil.which("taskset") else []) + args


@contextlib.contextmanager
def started(
    args: list[str], cores: str | None, *, grace: float = 10, **kwargs: object
) -> Iterator[subprocess.Popen[bytes]]:
    """Run `args` pinned to `cores` until the block ends; then SIGTERM, and SIGKILL after `grace`
    seconds (a supervisor under valgrind needs longer to drain its workers)."""
    process = subprocess.Popen(
        pinned(args, cores), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kwargs
    )  # type: ignore[call-overload]
    try:
        yield process
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def tree(pid: int) -> list[int]:
    """`pid` and its descendants."""
    found, queue = [], [pid]
    while queue:
        current = queue.pop()
        found.append(current)
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{current}/task").iterdir():
                queue += [int(child) for child in (task / "children").read_text().split()]
    return found


def cpu_seconds(pid: int) -> float:
    """User + system CPU of `pid` and its live descendants."""
    total = 0
    for member in tree(pid):
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total / TICKS


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def rss_mib(pid: int) -> float:
    """Resident memory of the largest process of the tree (one worker, or the only process)."""
    return max(_status_kib(member, "VmRSS") for member in tree(pid)) / 1024


def peak_rss_mib(pid: int) -> float:
    return max(_status_kib(member, "VmHWM") for member in tree(pid)) / 1024


def pss_mib(pid: int) -> float:
    """Proportional memory of the largest process: shared library pages split between the
    processes that map them, which is what one more worker really costs."""
    best = 0
    for member in tree(pid):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{member}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    best = max(best, int(line.split()[1]))
    return best / 1024


def cpu_model() -> str:
    """The processor's model name, as /proc/cpuinfo gives it, for the reports' headers."""
    lines = Path("/proc/cpuinfo").read_text().splitlines()
    return next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")),
                "unknown CPU")  # fmt: skip
