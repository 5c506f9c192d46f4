"""`scopegate demo`: a development issuer, a contacts API and the gateway in front of it, on
loopback, with ready-to-paste `curl` commands for every answer worth seeing.

Needs no network and no file from the user: the configuration is `demo.yaml`, shipped inside the
package, with the issuer and upstream addresses filled in from free loopback ports.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from dataclasses import dataclass
from importlib import resources
from typing import TextIO

from aiohttp import web

from scopegate.app import RunningGateway
from scopegate.config.load import load_config_text
from scopegate.config.model import Config
from scopegate.devtools.contacts import ContactsApi
from scopegate.devtools.issuer import DevIssuer
from scopegate.devtools.keys import generate

AUDIENCE = "https://contacts.example.com"
HOST = "127.0.0.1"


@dataclass(frozen=True)
class Example:
    """One command the demo prints, and the answer it gets."""

    expect: int
    what: str
    method: str
    path: str
    token: str | None

    def curl(self, base: str) -> str:
        parts = ["curl", "-si"]
        if self.method != "GET":
            parts += ["-X", self.method]
        if self.token is not None:
            parts += ["-H", f"'Authorization: Bearer {self.token}'"]
        return " ".join([*parts, f"{base}{self.path}"])


def demo_config(issuer: str, upstream: str, port: int, admin_port: int) -> Config:
    text = resources.files("scopegate.devtools").joinpath("demo.yaml").read_text()
    env = {
        "SCOPEGATE_DEMO_ISSUER": issuer,
        "SCOPEGATE_DEMO_UPSTREAM": upstream,
        "SCOPEGATE_DEMO_PORT": str(port),
        "SCOPEGATE_DEMO_ADMIN_PORT": str(admin_port),
    }
    return load_config_text(text, "demo.yaml", env)


def examples(issuer: DevIssuer) -> list[Example]:
    def token(scopes: tuple[str, ...], **claims: object) -> str:
        options: dict[str, object] = {"audience": AUDIENCE, "subject": "demo-user"}
        options.update(claims)
        return issuer.mint(scopes=scopes, **options)

    reader = token(("read:contacts",))
    return [
        Example(200, "list contacts with read:contacts", "GET", "/contacts", reader),
        Example(401, "no token", "GET", "/contacts", None),
        Example(401, "expired token", "GET", "/contacts",
                token(("read:contacts",), lifetime=-3600)),
        Example(401, "token for another API (wrong audience)", "GET", "/contacts",
                token(("read:contacts",), audience="https://billing.example.com")),
        Example(403, "delete with only read:contacts", "DELETE", "/contacts/1", reader),
        Example(204, "delete with delete:contacts", "DELETE", "/contacts/2",
                token(("delete:contacts",))),
        Example(200, "public route, no token needed", "GET", "/public/hello", None),
    ]  # fmt: skip


def describe(running: RunningGateway, issuer: DevIssuer, out: TextIO) -> None:
    base = f"http://{HOST}:{running.public_port}"
    admin = f"http://{HOST}:{running.admin_port}"
    print(f"scopegate demo: gateway {base}  ->  contacts API; issuer {issuer.url}", file=out)
    print(f"metrics: {admin}/metrics   ready: {admin}/readyz\n", file=out)
    for example in examples(issuer):
        print(f"# {example.expect}: {example.what}", file=out)
        print(example.curl(base), file=out)
        print(file=out)
    print("# denials by reason (PromQL, or read the metrics URL above):", file=out)
    print("#   sum by (reason) (scopegate_denials_total)", file=out)
    print(f"curl -s {admin}/metrics | grep '^scopegate_denials_total'", file=out)
    print("\nPress Ctrl-C to stop.", file=out, flush=True)


async def run_demo(port: int, admin_port: int, out: TextIO = sys.stdout) -> None:
    issuer = DevIssuer(generate("RS256"))
    issuer_runner = await issuer.start(HOST, 0)
    api_runner = web.AppRunner(ContactsApi().app(), access_log=None)
    await api_runner.setup()
    await web.TCPSite(api_runner, HOST, 0).start()
    upstream = f"http://{HOST}:{api_runner.addresses[0][1]}"
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        config = demo_config(issuer.url, upstream, port, admin_port)
        async with RunningGateway.start(config, shutdown_grace=2.0) as running:
            await _until_ready(running)
            describe(running, issuer, out)
            await stop.wait()
        print("scopegate demo stopped.", file=out, flush=True)
    finally:
        await api_runner.cleanup()
        await issuer_runner.cleanup()


async def _until_ready(running: RunningGateway) -> None:
    async with asyncio.timeout(10):
        while running.runtime.not_ready():  # noqa: ASYNC110 - readiness is a state, not an event
            await asyncio.sleep(0.02)
