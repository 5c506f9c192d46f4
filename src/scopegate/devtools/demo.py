"""`scopegate demo`: a development issuer, a contacts API and the gateway in front of it, on
loopback, with ready-to-paste `curl` commands for every answer worth seeing, and a browser app on
an origin of its own that calls the API through the gateway (CORS, scopes, a live WebSocket).

Needs no network and no file from the user: the configuration is `demo.yaml`, shipped inside the
package, with the issuer, upstream and page addresses filled in from free loopback ports.

Usage (tests start the pieces the same way, without signals)::

    async with running_demo(port=0, admin_port=0) as demo:
        print(demo.page, demo.gateway)
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import signal
import socket
import sys
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TextIO

from aiohttp import web
from cryptography.hazmat.primitives.serialization import Encoding

from scopegate.app import RunningGateway
from scopegate.config.load import load_config_text
from scopegate.config.model import Config
from scopegate.devtools.certs import ClientFiles, LocalAuthority, ServerFiles, load_certificate
from scopegate.devtools.contacts import ContactsApi
from scopegate.devtools.issuer import INTROSPECTION_CLIENT_ID, DevIssuer
from scopegate.devtools.keys import generate
from scopegate.devtools.webapp import page_app
from scopegate.pipeline.binding import thumbprint

AUDIENCE = "https://contacts.example.com"
HOST = "127.0.0.1"


@dataclass(frozen=True)
class DemoTls:
    """`scopegate demo --tls`: a throw-away CA's files, the gateway's certificate and a client
    certificate the demo's bound token is tied to (RFC 8705)."""

    server: ServerFiles
    client: ClientFiles

    @classmethod
    def make(cls, directory: Path) -> DemoTls:
        authority = LocalAuthority("scopegate demo CA")
        server = authority.issue_server(directory, "localhost", HOST)
        return cls(server, authority.issue_client(directory, "demo-client"))

    def section(self) -> str:
        """The `tls:` of the demo's configuration: HTTPS, client certificates asked for."""
        s = self.server
        return (f"\ntls:\n  cert: {s.cert}\n  key: {s.key}\n  client_ca: {s.ca}\n"
                "  client_auth: optional\n")  # fmt: skip


@dataclass(frozen=True)
class Example:
    """One command the demo prints, and the answer it gets."""

    expect: int
    what: str
    method: str
    path: str
    token: str | None
    client: ClientFiles | None = None  # the client certificate curl presents

    def curl(self, base: str, ca: Path | None = None) -> str:
        parts = ["curl", "-si"]
        if ca is not None:
            parts += ["--cacert", str(ca)]
        if self.client is not None:
            parts += ["--cert", str(self.client.cert), "--key", str(self.client.key)]
        if self.method != "GET":
            parts += ["-X", self.method]
        if self.token is not None:
            parts += ["-H", f"'Authorization: Bearer {self.token}'"]
        return " ".join([*parts, f"{base}{self.path}"])


def demo_config(issuer: str, upstream: str, port: int, admin_port: int, page_origin: str,
                tls: DemoTls | None = None, *, introspection_secret: str) -> Config:  # fmt: skip
    """`demo.yaml` with its addresses, and the secret the gateway introspects tokens with."""
    text = resources.files("scopegate.devtools").joinpath("demo.yaml").read_text()
    if tls is not None:
        text += tls.section()
    env = {
        "SCOPEGATE_DEMO_ISSUER": issuer,
        "SCOPEGATE_DEMO_UPSTREAM": upstream,
        "SCOPEGATE_DEMO_PORT": str(port),
        "SCOPEGATE_DEMO_ADMIN_PORT": str(admin_port),
        "SCOPEGATE_DEMO_PAGE_ORIGIN": page_origin,
        "SCOPEGATE_DEMO_INTROSPECTION_SECRET": introspection_secret,
    }
    return load_config_text(text, "demo.yaml", env)


def bound_examples(issuer: DevIssuer, tls: DemoTls) -> list[Example]:
    """A certificate-bound token (RFC 8705): with its client certificate, and without."""
    der = load_certificate(tls.client.cert.read_bytes()).public_bytes(Encoding.DER)
    confirmation = {"cnf": {"x5t#S256": thumbprint(der)}}
    bound = issuer.mint(scopes=("read:contacts",), audience=AUDIENCE, subject="demo-user",
                        extra_claims=confirmation)  # fmt: skip
    return [
        Example(200, "a token bound to a client certificate, with it", "GET", "/contacts",
                bound, tls.client),
        Example(401, "the same token without the certificate (stolen)", "GET", "/contacts",
                bound),
    ]  # fmt: skip


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


@dataclass(frozen=True)
class RunningDemo:
    """What `running_demo` started: where each piece answers, and the pieces themselves."""

    page: str  # the browser app, on an origin of its own: http://localhost:PORT/
    gateway: str  # http://127.0.0.1:PORT (https:// with --tls), no trailing slash
    admin: str
    issuer: DevIssuer
    contacts: ContactsApi
    running: RunningGateway
    tls: DemoTls | None = None


def describe(demo: RunningDemo, out: TextIO) -> None:
    print(f"open {demo.page} in a browser: a web app on its own origin, using the API", file=out)
    gateway, issuer = demo.gateway, demo.issuer.url
    print(f"scopegate demo: gateway {gateway}  ->  contacts API; issuer {issuer}", file=out)
    print(f"metrics: {demo.admin}/metrics   ready: {demo.admin}/readyz\n", file=out)
    shown = examples(demo.issuer)
    ca = None
    if demo.tls is not None:
        ca = demo.tls.server.ca
        print(f"# HTTPS with a throw-away CA ({ca}); a browser must trust it for the page to call"
              " the gateway\n", file=out)  # fmt: skip
        shown += bound_examples(demo.issuer, demo.tls)
    for example in shown:
        print(f"# {example.expect}: {example.what}", file=out)
        print(example.curl(demo.gateway, ca), file=out)
        print(file=out)
    print("# denials by reason (PromQL, or read the metrics URL above):", file=out)
    print("#   sum by (reason) (scopegate_denials_total)", file=out)
    print(f"curl -s {demo.admin}/metrics | grep '^scopegate_denials_total'", file=out)
    print("\nPress Ctrl-C to stop.", file=out, flush=True)


@asynccontextmanager
async def running_demo(
    port: int, admin_port: int, *, page_port: int = 0, tls_dir: Path | None = None
) -> AsyncIterator[RunningDemo]:
    """Start the issuer, the contacts API, the gateway and the browser app's page server on
    loopback (port 0: a free one); stop them all when the context exits."""
    issuer = DevIssuer(generate("RS256"), client_id=INTROSPECTION_CLIENT_ID,
                       client_secret=secrets.token_urlsafe(32))  # fmt: skip
    contacts = ContactsApi()
    async with contextlib.AsyncExitStack() as stack:
        stack.push_async_callback((await issuer.start(HOST, 0)).cleanup)
        upstream = await _serve(stack, contacts.app(), _listen(stack, 0))
        # The page's origin, port included, goes into the gateway's `cors:`, and the gateway's
        # address into the page: the page's port is taken first, and served once both are known.
        page_socket = _listen(stack, page_port)
        page = f"http://localhost:{page_socket.getsockname()[1]}"
        tls = None if tls_dir is None else DemoTls.make(tls_dir)
        config = demo_config(issuer.url, upstream, port, admin_port, page, tls,
                             introspection_secret=issuer.client_secret)  # fmt: skip
        running = await stack.enter_async_context(RunningGateway.start(config, shutdown_grace=2.0))
        await _until_ready(running)
        gateway = f"{'http' if tls is None else 'https'}://{HOST}:{running.public_port}"
        await _serve(stack, page_app(issuer, gateway, AUDIENCE), page_socket)
        yield RunningDemo(
            page=page + "/",
            gateway=gateway,
            admin=f"http://{HOST}:{running.admin_port}",
            issuer=issuer,
            contacts=contacts,
            running=running,
            tls=tls,
        )


async def run_demo(
    port: int, admin_port: int, out: TextIO = sys.stdout, *, page_port: int = 0,
    tls: bool = False,
) -> None:  # fmt: skip
    """`scopegate demo`: run everything until SIGINT or SIGTERM; with `tls`, over HTTPS with a
    throw-away CA whose files live in a temporary directory for as long as the demo runs."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    with contextlib.ExitStack() as files:
        tls_dir = Path(files.enter_context(tempfile.TemporaryDirectory())) if tls else None
        async with running_demo(port, admin_port, page_port=page_port, tls_dir=tls_dir) as demo:
            describe(demo, out)
            await stop.wait()
    print("scopegate demo stopped.", file=out, flush=True)


def _listen(stack: contextlib.AsyncExitStack, port: int) -> socket.socket:
    """A socket listening on loopback `port` (0: a free one), closed when `stack` closes."""
    return stack.enter_context(socket.create_server((HOST, port)))


async def _serve(
    stack: contextlib.AsyncExitStack, app: web.Application, sock: socket.socket
) -> str:
    """Serve `app` on the listening `sock` until `stack` closes; its `http://host:port`."""
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    stack.push_async_callback(runner.cleanup)
    await web.SockSite(runner, sock).start()
    host, port = sock.getsockname()[:2]
    return f"http://{host}:{port}"


async def _until_ready(running: RunningGateway) -> None:
    async with asyncio.timeout(10):
        while running.runtime.not_ready():  # noqa: ASYNC110 - readiness is a state, not an event
            await asyncio.sleep(0.02)
