"""External programs some tests need (promtool, prometheus, node, chromium).

On a developer's machine a missing program skips the test with a note on how to get it; in CI
(`CI=true`) it fails the test, because `.ci/run` installs every one of them.
"""

from __future__ import annotations

import os
import shutil

import pytest


def require_tool(name: str, install_hint: str) -> str:
    path = shutil.which(name)
    if path is not None:
        return path
    message = f"{name} is not installed ({install_hint})"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{message}; CI must have it: .ci/run installs it")
    pytest.skip(message)
