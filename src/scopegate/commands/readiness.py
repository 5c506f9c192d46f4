"""What the workers of `serve --workers N` tell their supervisor through a shared directory:
their readiness, one small JSON file each (`[]` when ready, else the reasons)."""

from __future__ import annotations

import json
import os
from pathlib import Path

READY_PREFIX = "ready-"


def _file(state_dir: Path, pid: int) -> Path:
    return state_dir / f"{READY_PREFIX}{pid}.json"


def report_readiness(state_dir: Path, reasons: list[str]) -> None:
    """Written by a worker whenever its readiness changes; replaced atomically."""
    final = _file(state_dir, os.getpid())
    partial = final.with_suffix(".tmp")
    partial.write_text(json.dumps(reasons))
    partial.replace(final)


def forget(state_dir: Path, pid: int) -> None:
    _file(state_dir, pid).unlink(missing_ok=True)


def workers_not_ready(state_dir: Path, pids: list[int]) -> list[str]:
    """Every reason any worker gave; a worker that has not reported yet is `starting`."""
    reasons: list[str] = []
    for pid in pids:
        try:
            worker_reasons = json.loads(_file(state_dir, pid).read_text())
        except (OSError, ValueError):
            worker_reasons = ["starting"]
        reasons += [f"worker {pid}: {reason}" for reason in worker_reasons]
    return reasons
