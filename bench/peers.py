"""What scopegate is measured with and against: the upstream (nginx, or a built-in aiohttp
server when nginx is missing), the token issuer, a bare aiohttp proxy, Auth0's Node stack,
and scopegate's own configuration for each scenario."""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from issuer import INTROSPECTION_CLIENT, INTROSPECTION_SECRET
from procs import free_port, started, wait_port

HERE = Path(__file__).resolve().parent
PYTHON = sys.executable
AUDIENCE = "https://contacts.example.com"
NODE_DIR = HERE / "node"


def nginx_upstream(tmp: Path, port: int, big_file: Path) -> list[str]:
    """One nginx process: a tiny answer on every path and a large file at /public/big."""
    conf = tmp / "nginx.conf"
    conf.write_text(
        f"master_process off; worker_processes 1; daemon off; pid {tmp}/nginx.pid;\n"
        f"error_log {tmp}/error.log;\n"
        "events { worker_connections 4096; }\n"
        f"http {{ access_log off; client_body_temp_path {tmp}; proxy_temp_path {tmp};\n"
        f"  fastcgi_temp_path {tmp}; uwsgi_temp_path {tmp}; scgi_temp_path {tmp};\n"
        "  keepalive_requests 1000000; client_max_body_size 0;\n"
        f"  server {{ listen 127.0.0.1:{port};\n"
        f"    location = /public/big {{ alias {big_file}; }}\n"
        '    location / { return 200 "ok\\n"; } } }\n'
    )
    return ["nginx", "-c", str(conf), "-e", str(tmp / "error.log")]


def builtin_upstream(port: int, big_file: Path) -> list[str]:
    return [PYTHON, "-c", (
        "import asyncio,uvloop\nfrom aiohttp import web\n"
        "async def h(r):\n"
        "  if r.path == '/public/big': return web.FileResponse(" + repr(str(big_file)) + ")\n"
        "  return web.Response(text='ok\\n')\n"
        "async def m():\n r=web.ServerRunner(web.Server(h,access_log=None)); await r.setup()\n"
        f" await web.TCPSite(r,'127.0.0.1',{port}).start(); await asyncio.Event().wait()\n"
        "uvloop.install(); asyncio.run(m())\n"
    )]  # fmt: skip


def upstream_command(tmp: Path, port: int, big_file: Path) -> tuple[list[str], str]:
    if shutil.which("nginx"):
        version = subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr.strip()
        return nginx_upstream(tmp, port, big_file), version.split(":")[-1].strip()
    return builtin_upstream(port, big_file), "built-in aiohttp server (nginx missing)"


def sink_command(port: int) -> list[str]:
    """An upstream that reads whole request bodies before answering: where uploads go."""
    return [PYTHON, str(HERE / "sink.py"), str(port)]


def issuer_command(port: int, tokens: Path, count: int, alg: str = "RS256") -> list[str]:
    return [PYTHON, str(HERE / "issuer.py"), str(port), str(tokens), str(count), AUDIENCE,
            "read:contacts", alg]  # fmt: skip


def issued_tokens(path: Path, count: int, seconds: float = 600) -> list[str]:
    """The first `count` tokens the issuer of `issuer_command` writes to `path`, once written."""
    deadline = time.monotonic() + seconds
    while not path.exists() or len(path.read_text().splitlines()) < count:
        if time.monotonic() > deadline:
            raise RuntimeError("the issuer wrote no tokens")
        time.sleep(0.2)
    return path.read_text().splitlines()[:count]


def mint_one(issuer_port: int, scope: str) -> str:
    """A token with `scope` from the issuer's development endpoint."""
    body = json.dumps({"audience": AUDIENCE, "scope": scope, "lifetime": 3600}).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{issuer_port}/dev/token", data=body,
        headers={"Content-Type": "application/json"},
    )  # fmt: skip
    with urllib.request.urlopen(request, timeout=10) as answer:
        return str(json.load(answer)["access_token"])


def bare_proxy_command(port: int, upstream_port: int) -> list[str]:
    return [PYTHON, str(HERE / "bare_proxy.py"), str(port), f"http://127.0.0.1:{upstream_port}"]


def node_ready() -> str | None:
    """Why the Node peer cannot run here, or None once its locked packages are installed."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        return "node and npm are not installed"
    installed = NODE_DIR / "node_modules" / "express-oauth2-jwt-bearer" / "package.json"
    if not installed.exists():
        subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund", "--prefix", str(NODE_DIR)],
            check=True,
            capture_output=True,
            timeout=600,
        )
    return None


def node_command(port: int, upstream_port: int, issuer: str) -> list[str]:
    return ["node", str(NODE_DIR / "server.js"), str(port), f"http://127.0.0.1:{upstream_port}",
            issuer, AUDIENCE]  # fmt: skip


ORIGIN = "https://app.example.com"  # the web origin the CORS cases allow


def scopegate_config(tmp: Path, name: str, issuer: str, upstream_port: int, port: int, *,
                     routes: int = 10, cache: int = 10_000, enforce: str = "enforce",
                     cors: bool = False, rate_limit: str | None = None,
                     introspection: bool = False, dpop: bool = False) -> Path:  # fmt: skip
    """A configuration for the benches; `rate_limit`: a store for one per-subject rule on every
    route, generous enough never to refuse a bench's requests; `introspection`: the issuer's
    opaque tokens introspected at its endpoint (`bench/issuer.py`); `dpop`: DPoP accepted."""
    extra = []
    if introspection:
        extra += ["    introspection:", f"      client_id: {INTROSPECTION_CLIENT}",
                  f"      client_secret: {INTROSPECTION_SECRET}"]  # fmt: skip
    if dpop:
        extra.append("    dpop: allowed")
    lines = [
        f"enforce: {enforce}",
        f"cors: {{allow_origins: [{ORIGIN}]}}" if cors else "",
        (f"rate_limits: {{store: '{rate_limit}', rules: [{{name: per-subject, key: subject, "
         "limit: 1000000, window: 60}]}") if rate_limit else "",
        f"limits: {{token_cache_size: {cache}, max_body_bytes: 4294967296}}",
        f"listen: 127.0.0.1:{port}", f"admin_listen: 127.0.0.1:{free_port()}",
        "issuers:", f"  - issuer: {issuer}", f"    audiences: [{AUDIENCE}]",
        "    algorithms: [RS256, ES256]", *extra,
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


def redis_if(wanted: bool, port: int) -> contextlib.AbstractContextManager[object]:
    """A `redis-server` on `port` for the length of the block when `wanted` (and installed)."""
    if not wanted:
        return contextlib.nullcontext()
    if shutil.which("redis-server") is None:
        raise SystemExit("redis-server is needed for the redis cases: apt-get install redis-server")
    command = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
               "--appendonly", "no"]  # fmt: skip
    return _waited(started(command, None), port)


@contextlib.contextmanager
def _waited(server: contextlib.AbstractContextManager[object], port: int) -> Iterator[object]:
    with server as process:
        wait_port(port)
        yield process


def admin_url(config: Path, path: str) -> str:
    """`path` on the admin port a `scopegate_config` file names."""
    found = re.search(r"^admin_listen: (\S+)$", config.read_text(), re.MULTILINE)
    if found is None:
        raise ValueError(f"{config} names no admin port")
    return f"http://{found[1]}{path}"


def scopegate_command(config: Path, workers: int = 1) -> list[str]:
    return [PYTHON, "-m", "scopegate", "serve", "-c", str(config), "--workers", str(workers)]
