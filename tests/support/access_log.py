"""The JSON lines scopegate writes to standard output, captured as a test runs.

Usage::

    with log_lines(monkeypatch) as lines:
        ...                      # requests
    assert lines[-1]["decision"] == "allow"
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from scopegate.telemetry import logs


@contextmanager
def log_lines(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict[str, object]]]:
    """The log lines (access lines and events) written while inside, as parsed JSON."""

    class Stdout:
        text = ""

        def write(self, text: str) -> int:
            Stdout.text += text
            return len(text)

        def flush(self) -> None:
            pass

    lines: list[dict[str, object]] = []
    monkeypatch.setattr(sys, "stdout", Stdout())
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    logs.configure()
    try:
        yield lines
    finally:
        logs.flush()
        root.handlers[:], root.level = handlers, level
        lines += [json.loads(line) for line in Stdout.text.splitlines()]
