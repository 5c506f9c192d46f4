"""TLS on the public port (SPEC §6.1, first part): HTTPS with the configured certificate and its
chain, ALPN `http/1.1`, TLS 1.2 and 1.3 only, `X-Forwarded-Proto: https`, client certificates
(optional or required), plain HTTP closed quickly, certificates rotated by a reload without a
restart (a bad file keeps the old ones), the expiry gauge, and positioned configuration errors.

Every client here is real: Python's `ssl`, `curl` and `openssl s_client`, against a gateway in
this process (`gateway_env`) or a `scopegate serve` process reloaded with SIGHUP.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import re
import signal
import ssl
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from scopegate.config.errors import ConfigErrors
from scopegate.config.load import load_config_text
from scopegate.devtools.keys import generate
from scopegate.devtools.tokens import mint
from tests.e2e.conftest import AUDIENCE, BASE_CONFIG, Env, base_config, gateway_env
from tests.support.certs import (
    ClientFiles,
    ServerFiles,
    TestAuthority,
    not_after,
    serial_number,
    write_new_key,
    yaml_path,
)
from tests.support.config_errors import errors_of, line_of
from tests.support.jwks_server import JwksServer
from tests.support.process import Served, serve
from tests.support.rawhttp import Answer
from tests.support.tools import require_tool
from tests.support.upstream import RecordingUpstream

TLS_TEMPLATE = BASE_CONFIG + "{tls}"
EXPIRY = "scopegate_tls_certificate_expiry_timestamp_seconds"
RELOADS = "scopegate_config_reloads_total"
TIMEOUT = 5.0  # every handshake, request and tool run ends within this, or the test fails

# How an attempt that never got an answer ends: the handshake refused (an alert, or the server
# hanging up mid-handshake), or the connection reset or closed before a status line.
REFUSED = (ssl.SSLError, ConnectionError, asyncio.IncompleteReadError)


# --- certificates and configuration ----------------------------------------------------------


@dataclass
class Pki:
    """A CA and the server certificate it issued for the gateway (files under `directory`)."""

    directory: Path
    ca: TestAuthority
    server: ServerFiles

    def rotate(self, valid_for: datetime.timedelta) -> ServerFiles:
        """A new certificate and key for the same names, written over the same files."""
        files = self.ca.issue_server(self.directory, "localhost", "127.0.0.1", valid_for=valid_for)
        assert files == self.server
        return files

    @property
    def serial(self) -> int:
        """The serial number of the certificate the files hold now."""
        return serial_number(self.server.cert.read_bytes())


@dataclass
class Clients:
    """A CA for client certificates, one certificate it issued, and one from a stranger."""

    ca: TestAuthority
    ca_file: Path
    trusted: ClientFiles
    stranger: ClientFiles


@pytest.fixture(name="pki")
def _pki(tmp_path: Path) -> Pki:
    directory = tmp_path / "server"
    directory.mkdir()
    ca = TestAuthority("scopegate test server CA")
    return Pki(directory, ca, ca.issue_server(directory, "localhost", "127.0.0.1"))


@pytest.fixture(name="clients")
def _clients(tmp_path: Path) -> Clients:
    directory = tmp_path / "clients"
    directory.mkdir()
    ca = TestAuthority("scopegate test client CA")
    stranger = TestAuthority("somebody else's CA")
    return Clients(
        ca,
        ca.write(directory / "client-ca.pem"),
        ca.issue_client(directory, "app-1"),
        stranger.issue_client(directory, "intruder"),
    )


def tls_section(
    server: ServerFiles,
    *,
    min_version: str | None = None,
    client_ca: Path | None = None,
    client_auth: str | None = None,
) -> str:
    """The `tls:` block of the configuration file, with only the keys given."""
    lines = ["tls:", f"  cert: {yaml_path(server.cert)}", f"  key: {yaml_path(server.key)}"]
    if min_version is not None:
        lines.append(f'  min_version: "{min_version}"')
    if client_ca is not None:
        lines.append(f"  client_ca: {yaml_path(client_ca)}")
    if client_auth is not None:
        lines.append(f"  client_auth: {client_auth}")
    return "\n".join(lines) + "\n"


@asynccontextmanager
async def tls_gateway(section: str) -> AsyncIterator[Env]:
    """A gateway whose public port speaks TLS as `section` says."""
    async with gateway_env(TLS_TEMPLATE, tls=section) as env:
        yield env


async def reload_in_place(env: Env, section: str) -> None:
    """What SIGHUP does, in process: read the configuration again (certificate files included)
    and swap it in. Raises `ConfigErrors` when the files are bad."""
    text = base_config(env.jwks, env.upstream, TLS_TEMPLATE, tls=section)
    await env.gateway.reload(load_config_text(text, "gateway.yaml"))


# --- clients ---------------------------------------------------------------------------------


def client_context(
    trust: Path,
    *,
    minimum: ssl.TLSVersion | None = None,
    maximum: ssl.TLSVersion | None = None,
    cert: ClientFiles | None = None,
    alpn: tuple[str, ...] = ("h2", "http/1.1"),
) -> ssl.SSLContext:
    """A verifying client context trusting only `trust`, offering `alpn` (as a browser offers h2
    first), pinned to TLS versions when asked, presenting `cert` when given."""
    context = ssl.create_default_context(cafile=str(trust))
    if minimum is not None:
        context.minimum_version = minimum
    if maximum is not None:
        context.maximum_version = maximum
    if cert is not None:
        context.load_cert_chain(cert.cert, cert.key)
    if alpn:
        context.set_alpn_protocols(list(alpn))
    return context


async def read_answer(reader: asyncio.StreamReader) -> Answer:
    """One HTTP/1.1 answer, body included, leaving the connection ready for the next request.
    Raises `asyncio.IncompleteReadError` when the connection ends before a whole head."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head[:-4].decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = tuple(
        (name.strip(), value.strip())
        for name, _, value in (line.partition(":") for line in lines[1:])
    )
    fields = {name.lower(): value for name, value in headers}
    body = bytearray()
    if "chunked" in fields.get("transfer-encoding", "").lower():
        while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
            body.extend(await reader.readexactly(size))
            await reader.readexactly(2)
        await reader.readuntil(b"\r\n")  # the empty trailer section
    elif "content-length" in fields:
        body.extend(await reader.readexactly(int(fields["content-length"])))
    return Answer(status, headers, bytes(body), head)


@dataclass
class Connection:
    """A client's TLS connection to the gateway, on which requests go one after another."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    @property
    def tls(self) -> ssl.SSLObject:
        tls = self.writer.get_extra_info("ssl_object")
        assert isinstance(tls, ssl.SSLObject)
        return tls

    @property
    def peer_serial(self) -> int:
        """The serial number of the certificate the server presented on this connection."""
        der = self.tls.getpeercert(binary_form=True)
        assert der is not None
        return serial_number(der)

    async def get(self, target: str = "/contacts", headers: dict[str, str] | None = None) -> Answer:
        lines = [f"GET {target} HTTP/1.1", "Host: localhost"]
        lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        async with asyncio.timeout(TIMEOUT):
            await self.writer.drain()
            return await read_answer(self.reader)


@asynccontextmanager
async def connect(
    port: int, context: ssl.SSLContext, *, server_hostname: str = "localhost"
) -> AsyncIterator[Connection]:
    """A TLS connection to 127.0.0.1:`port`, verified for `server_hostname` (sent as SNI when it
    is a name); closed at the end, however the exchange went."""
    async with asyncio.timeout(TIMEOUT):
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=context, server_hostname=server_hostname,
            ssl_handshake_timeout=TIMEOUT,
        )  # fmt: skip
    try:
        yield Connection(reader, writer)
    finally:
        writer.close()
        try:
            async with asyncio.timeout(2):
                await writer.wait_closed()
        except TimeoutError:
            writer.transport.abort()
        except (OSError, ssl.SSLError):
            pass


async def attempt(
    port: int,
    context: ssl.SSLContext,
    headers: dict[str, str] | None = None,
    *,
    target: str = "/contacts",
) -> int | BaseException:
    """The status of one request on a new connection, or the error that ended the attempt
    before an answer (see `REFUSED`). A hang fails the test: nothing here may wait forever."""
    try:
        async with connect(port, context) as connection:
            return (await connection.get(target, headers)).status
    except REFUSED as error:
        return error


async def run_tool(*command: str, stdin: bytes = b"", timeout: float = 15.0) -> tuple[int, str]:
    """Run an outside program to its end; its exit status and its stdout and stderr together."""
    process = await asyncio.create_subprocess_exec(
        *command,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        async with asyncio.timeout(timeout):
            output, _ = await process.communicate(stdin)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise AssertionError(f"{command[0]} did not finish within {timeout} s") from None
    assert process.returncode is not None
    return process.returncode, output.decode(errors="replace")


async def s_client(port: int, ca: Path, *options: str, request: bytes = b"") -> tuple[int, str]:
    """`openssl s_client` to the gateway for the name `localhost`, trusting `ca`; `request` is
    sent once connected, and the answer read until the server closes (`-ign_eof`)."""
    openssl = require_tool("openssl", "Debian package openssl")
    return await run_tool(
        openssl, "s_client", "-connect", f"127.0.0.1:{port}", "-servername", "localhost",
        "-CAfile", str(ca), "-verify_hostname", "localhost", "-ign_eof", *options,
        stdin=request,
    )  # fmt: skip


# --- HTTPS on the public port ----------------------------------------------------------------


async def test_https_serves_the_configured_certificate_and_forwards_proto_https(pki: Pki) -> None:
    """The handshake presents the configured certificate, valid for the name and for the
    address; ALPN picks http/1.1 from a client offering h2 first; the upstream is told
    `X-Forwarded-Proto: https`."""
    async with tls_gateway(tls_section(pki.server)) as env:
        for name in ("localhost", "127.0.0.1"):
            async with connect(env.port, client_context(pki.server.ca), server_hostname=name) as c:
                assert c.peer_serial == pki.serial
                assert c.tls.selected_alpn_protocol() == "http/1.1"
                answer = await c.get("/contacts", env.bearer())
                assert answer.status == 200, answer.raw
                assert env.upstream.last.header("X-Forwarded-Proto") == "https"
                assert env.upstream.last.all("X-Forwarded-Proto") == ["https"]


@pytest.mark.parametrize(
    ("offered", "selected"),
    [(("h2", "http/1.1"), "http/1.1"), (("http/1.1",), "http/1.1"), ((), None)],
    ids=["h2 and http/1.1", "http/1.1", "no ALPN"],
)
async def test_alpn_offers_http_1_1_and_a_client_without_alpn_is_served(
    pki: Pki, offered: tuple[str, ...], selected: str | None
) -> None:
    async with (
        tls_gateway(tls_section(pki.server)) as env,
        connect(env.port, client_context(pki.server.ca, alpn=offered)) as connection,
    ):
        assert connection.tls.selected_alpn_protocol() == selected
        assert (await connection.get("/public/x")).status == 200


@pytest.mark.parametrize(
    ("version", "name"),
    [(ssl.TLSVersion.TLSv1_2, "TLSv1.2"), (ssl.TLSVersion.TLSv1_3, "TLSv1.3")],
    ids=["TLS 1.2", "TLS 1.3"],
)
async def test_tls_1_2_and_1_3_clients_are_served(
    pki: Pki, version: ssl.TLSVersion, name: str
) -> None:
    context = client_context(pki.server.ca, minimum=version, maximum=version)
    async with (
        tls_gateway(tls_section(pki.server)) as env,
        connect(env.port, context) as connection,
    ):
        assert connection.tls.version() == name
        assert (await connection.get("/contacts", env.bearer())).status == 200


async def test_min_version_1_3_refuses_a_tls_1_2_client(pki: Pki) -> None:
    only_12 = client_context(
        pki.server.ca, minimum=ssl.TLSVersion.TLSv1_2, maximum=ssl.TLSVersion.TLSv1_2
    )
    only_13 = client_context(pki.server.ca, minimum=ssl.TLSVersion.TLSv1_3)
    async with tls_gateway(tls_section(pki.server, min_version="1.3")) as env:
        refused = await attempt(env.port, only_12, env.bearer())
        assert isinstance(refused, REFUSED), refused
        assert await attempt(env.port, only_13, env.bearer()) == 200
        assert len(env.upstream.received) == 1


@pytest.mark.parametrize("old", ["-tls1", "-tls1_1"], ids=["TLS 1.0", "TLS 1.1"])
async def test_tls_1_0_and_1_1_clients_are_refused(pki: Pki, old: str) -> None:
    """`openssl s_client` pinned to an old version, its own security level lowered so that it
    does send that hello: the server refuses it (a protocol_version alert, or by hanging up on
    the hello). The same command pinned to TLS 1.2 completes: the refusal is about the version."""
    request = b"GET /public/x HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    async with tls_gateway(tls_section(pki.server)) as env:
        status, output = await s_client(
            env.port, pki.server.ca, old, "-cipher", "DEFAULT@SECLEVEL=0", request=request
        )
        control_status, control = await s_client(
            env.port, pki.server.ca, "-tls1_2", request=request
        )
    assert status != 0, output
    assert "no protocols available" not in output, output  # refused by the client itself
    written = re.search(r"handshake has read (\d+) bytes and written (\d+) bytes", output)
    assert written is not None and int(written[2]) > 0, output  # the old hello did go out
    assert "Cipher is (NONE)" in output, output
    assert "HTTP/1.1" not in output, output
    assert re.search(r"alert protocol version|unexpected eof|reset by peer", output), output
    assert control_status == 0, control
    assert "Protocol  : TLSv1.2" in control and "HTTP/1.1 200" in control, control
    assert len(env.upstream.received) == 1  # the control's request only


async def test_curl_gets_an_answer_over_https(pki: Pki) -> None:
    curl = require_tool("curl", "Debian package curl")
    async with tls_gateway(tls_section(pki.server)) as env:
        url = f"https://localhost:{env.port}/contacts"
        status, output = await run_tool(
            curl, "--silent", "--show-error", "--max-time", "10", "--cacert", str(pki.server.ca),
            "--resolve", f"localhost:{env.port}:127.0.0.1",
            "-H", f"Authorization: Bearer {env.token()}",
            "-o", "/dev/null", "-w", "%{http_code} %{http_version} %{ssl_verify_result}", url,
        )  # fmt: skip
    assert status == 0, output
    assert output == "200 1.1 0"  # status, HTTP/1.1 (curl offers h2 too), chain verified
    assert env.upstream.last.header("X-Forwarded-Proto") == "https"


async def test_openssl_s_client_verifies_the_chain_and_gets_http_1_1(pki: Pki) -> None:
    request = b"GET /public/x HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    async with tls_gateway(tls_section(pki.server)) as env:
        status, output = await s_client(
            env.port, pki.server.ca, "-alpn", "h2,http/1.1", request=request
        )
    assert status == 0, output
    assert "Verify return code: 0 (ok)" in output, output
    assert "ALPN protocol: http/1.1" in output, output
    assert "HTTP/1.1 200" in output, output


async def test_the_chain_in_the_cert_file_follows_the_leaf(tmp_path: Path) -> None:
    """`cert` holds the leaf, then the intermediate that issued it: a client that trusts only
    the root verifies the chain. The expiry gauge reads the first certificate, the leaf's."""
    root = TestAuthority("scopegate test root")
    intermediate = root.intermediate("scopegate test intermediate")
    files = intermediate.issue_server(
        tmp_path, "localhost", "127.0.0.1", valid_for=datetime.timedelta(hours=5)
    )
    assert files.cert.read_bytes().count(b"BEGIN CERTIFICATE") == 2
    assert files.ca.read_bytes() == root.pem
    async with (
        tls_gateway(tls_section(files)) as env,
        connect(env.port, client_context(files.ca)) as connection,
    ):
        assert connection.peer_serial == serial_number(files.cert.read_bytes())
        assert (await connection.get("/contacts", env.bearer())).status == 200
        assert env.sample(EXPIRY, certificate="listen") == not_after(files.cert.read_bytes())


async def test_a_client_that_trusts_another_ca_refuses_the_certificate(
    pki: Pki, tmp_path: Path
) -> None:
    other = TestAuthority("a CA the gateway's certificate does not come from")
    context = client_context(other.write(tmp_path / "other-ca.pem"))
    async with tls_gateway(tls_section(pki.server)) as env:
        refused = await attempt(env.port, context, env.bearer())
        assert isinstance(refused, ssl.SSLCertVerificationError), refused
        assert env.upstream.received == []


async def test_a_server_name_the_certificate_does_not_hold_gets_the_certificate_all_the_same(
    pki: Pki,
) -> None:
    """One certificate is served whatever SNI a client sends, as Envoy and HAProxy serve their
    default one: the server neither hangs up nor picks another. A client that verifies the name
    refuses it; one that checks only the chain is answered."""
    async with tls_gateway(tls_section(pki.server)) as env:
        verifying = client_context(pki.server.ca)
        async with asyncio.timeout(TIMEOUT):
            with pytest.raises(ssl.SSLCertVerificationError, match=r"match"):
                await asyncio.open_connection(
                    "127.0.0.1", env.port, ssl=verifying, server_hostname="api.example.org"
                )
        chain_only = client_context(pki.server.ca)
        chain_only.check_hostname = False
        async with connect(env.port, chain_only, server_hostname="api.example.org") as c:
            assert c.peer_serial == pki.serial
            assert (await c.get("/contacts", env.bearer())).status == 200
        assert len(env.upstream.received) == 1


async def test_an_expired_server_certificate_is_served_and_refused_by_clients(
    pki: Pki, tmp_path: Path
) -> None:
    """An expired certificate still loads (an outage is the operator's call, and the expiry
    gauge and its alerts said so 14 days before), and verifying clients refuse it."""
    directory = tmp_path / "expired"
    directory.mkdir()
    expired = pki.ca.issue_server(
        directory, "localhost", "127.0.0.1", valid_for=-datetime.timedelta(minutes=1)
    )
    async with tls_gateway(tls_section(expired)) as env:
        assert env.sample(EXPIRY, certificate="listen") < time.time()
        refused = await attempt(env.port, client_context(expired.ca), env.bearer())
        assert isinstance(refused, ssl.SSLCertVerificationError), refused
        assert "expired" in str(refused)
        assert env.upstream.received == []


async def test_an_expired_client_certificate_is_refused(
    pki: Pki, clients: Clients, tmp_path: Path
) -> None:
    """A certificate from `client_ca` that has expired is no certificate: with `required` no
    request gets through, and the handshake is counted as failed."""
    expired = clients.ca.issue_client(tmp_path, "app-2", valid_for=-datetime.timedelta(minutes=1))
    section = tls_section(pki.server, client_ca=clients.ca_file, client_auth="required")
    async with tls_gateway(section) as env:
        refused = await attempt(env.port, client_context(pki.server.ca, cert=expired), env.bearer())
        assert isinstance(refused, REFUSED), refused
        assert env.upstream.received == []
        with_valid = client_context(pki.server.ca, cert=clients.trusted)
        assert await attempt(env.port, with_valid, env.bearer()) == 200
        await asyncio.sleep(VERDICT_SECONDS)
        assert env.sample(FAILED_HANDSHAKES) == 1


@pytest.mark.parametrize(
    "sent",
    [b"GET /public/x HTTP/1.1\r\nHost: x\r\n\r\n", b"GET"],
    ids=["a whole request", "3 bytes, too few to tell from a hello"],
)
async def test_plain_http_sent_to_the_tls_port_is_closed_within_2_seconds(
    pki: Pki, sent: bytes
) -> None:
    async with tls_gateway(tls_section(pki.server)) as env:
        reader, writer = await asyncio.open_connection("127.0.0.1", env.port)
        started = time.monotonic()
        data = bytearray()
        try:
            writer.write(sent)
            await writer.drain()
            async with asyncio.timeout(5):
                with contextlib.suppress(ConnectionError):
                    while chunk := await reader.read(65536):
                        data.extend(chunk)
        finally:
            elapsed = time.monotonic() - started
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        assert elapsed < 2.5, f"closed after {elapsed:.2f} s"
        assert not data.startswith(b"HTTP/1.1 2") and not data.startswith(b"HTTP/1.0 2"), data
        assert env.upstream.received == []


# --- failed handshakes, counted --------------------------------------------------------------

FAILED_HANDSHAKES = "scopegate_tls_handshake_failures_total"
VERDICT_SECONDS = 2.5  # the handshake deadline (2 s) and the margin after which it is counted


async def send_plain(port: int, sent: bytes) -> None:
    """`sent` on a plain TCP connection, then read until the server closes it."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(sent)
        async with asyncio.timeout(TIMEOUT):
            await writer.drain()
            with contextlib.suppress(ConnectionError):
                while await reader.read(65536):
                    pass
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def test_every_failed_handshake_is_counted_and_no_completed_one(
    pki: Pki, clients: Clients
) -> None:
    """Plain HTTP, silence, a TLS 1.2 client on a 1.3 port, a client that does not trust the
    certificate and one without the required client certificate: five failures, counted once
    each. Six completed handshakes around them add nothing."""
    section = tls_section(
        pki.server, min_version="1.3", client_ca=clients.ca_file, client_auth="required"
    )
    trusted = client_context(pki.server.ca, cert=clients.trusted)
    async with tls_gateway(section) as env:
        assert await attempt(env.port, trusted, env.bearer()) == 200
        await send_plain(env.port, b"GET /public/x HTTP/1.1\r\nHost: x\r\n\r\n")
        await send_plain(env.port, b"")  # connects and says nothing until the deadline
        only_12 = client_context(
            pki.server.ca, minimum=ssl.TLSVersion.TLSv1_2, maximum=ssl.TLSVersion.TLSv1_2,
            cert=clients.trusted,
        )  # fmt: skip
        failures = [
            await attempt(env.port, only_12, env.bearer()),
            await attempt(env.port, client_context(clients.ca_file, cert=clients.trusted)),
            await attempt(env.port, client_context(pki.server.ca), env.bearer()),
        ]
        assert all(isinstance(failure, REFUSED) for failure in failures), failures
        for _ in range(5):
            assert await attempt(env.port, trusted, env.bearer()) == 200
        await asyncio.sleep(VERDICT_SECONDS)
        assert env.sample(FAILED_HANDSHAKES) == 5
        assert len(env.upstream.received) == 6


# --- client certificates ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3], ids=["TLS 1.2", "TLS 1.3"]
)
async def test_client_auth_required_needs_a_certificate_from_client_ca(
    pki: Pki, clients: Clients, version: ssl.TLSVersion
) -> None:
    """No certificate, or one from another CA: no request gets through (with TLS 1.3 the
    refusal may come after the client thinks the handshake is done, on the first read). A
    certificate from `client_ca`: 200."""
    section = tls_section(pki.server, client_ca=clients.ca_file, client_auth="required")

    def context(cert: ClientFiles | None) -> ssl.SSLContext:
        return client_context(pki.server.ca, minimum=version, maximum=version, cert=cert)

    async with tls_gateway(section) as env:
        without = await attempt(env.port, context(None), env.bearer())
        assert isinstance(without, REFUSED), without
        stranger = await attempt(env.port, context(clients.stranger), env.bearer())
        assert isinstance(stranger, REFUSED), stranger
        assert env.upstream.received == []
        assert await attempt(env.port, context(clients.trusted), env.bearer()) == 200
        assert len(env.upstream.received) == 1


async def test_client_auth_optional_serves_clients_with_and_without_a_certificate(
    pki: Pki, clients: Clients
) -> None:
    section = tls_section(pki.server, client_ca=clients.ca_file, client_auth="optional")
    async with tls_gateway(section) as env:
        assert await attempt(env.port, client_context(pki.server.ca), env.bearer()) == 200
        with_cert = client_context(pki.server.ca, cert=clients.trusted)
        assert await attempt(env.port, with_cert, env.bearer()) == 200


async def test_client_auth_defaults_to_optional(pki: Pki, clients: Clients) -> None:
    async with tls_gateway(tls_section(pki.server, client_ca=clients.ca_file)) as env:
        assert await attempt(env.port, client_context(pki.server.ca), env.bearer()) == 200


async def test_the_expiry_gauge_has_one_series_per_certificate_file(
    pki: Pki, clients: Clients
) -> None:
    section = tls_section(pki.server, client_ca=clients.ca_file, client_auth="required")
    async with tls_gateway(section) as env:
        assert env.sample(EXPIRY, certificate="listen") == not_after(pki.server.cert.read_bytes())
        assert env.sample(EXPIRY, certificate="client_ca") == not_after(clients.ca.pem)
        assert env.registry.get_sample_value(EXPIRY, {"certificate": "client_ca"}) is not None


# --- rotation without a restart --------------------------------------------------------------


async def test_a_reload_serves_new_certificate_files_to_new_connections(pki: Pki) -> None:
    """New files at the same paths and a reload: a new connection gets the new certificate, a
    keep-alive connection opened before goes on working, and the gauge follows."""
    section = tls_section(pki.server)
    context = client_context(pki.server.ca)
    async with tls_gateway(section) as env, connect(env.port, context) as before:
        old = pki.serial
        assert before.peer_serial == old
        assert (await before.get("/contacts", env.bearer())).status == 200
        pki.rotate(datetime.timedelta(days=2))
        new = pki.serial
        assert new != old
        await reload_in_place(env, section)
        async with connect(env.port, context) as after:
            assert after.peer_serial == new
            assert (await after.get("/contacts", env.bearer())).status == 200
        assert (await before.get("/contacts", env.bearer())).status == 200
        assert before.peer_serial == old
        assert env.sample(EXPIRY, certificate="listen") == not_after(pki.server.cert.read_bytes())


def _garbage(pki: Pki) -> None:
    pki.server.cert.write_bytes(
        b"-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n"
    )


def _key_of_nothing(pki: Pki) -> None:
    write_new_key(pki.server.key)


def _key_missing(pki: Pki) -> None:
    pki.server.key.unlink()


@pytest.mark.parametrize(
    "spoil",
    [_garbage, _key_of_nothing, _key_missing],
    ids=["garbage certificate PEM", "key that does not match the certificate", "key file gone"],
)
@pytest.mark.parametrize(
    "loaded_first",
    [False, True],
    ids=["spoiled before the reload reads the file", "spoiled once the file was read"],
)
async def test_a_bad_certificate_file_fails_the_reload_and_keeps_the_old_certificate(
    pki: Pki, spoil: Callable[[Pki], None], loaded_first: bool
) -> None:
    """Whether the reload's loading sees the bad file, or the file goes bad between loading and
    swapping in (`reload()` must then check it again): `ConfigErrors`, and every connection,
    new or open, goes on with the old certificate."""
    section = tls_section(pki.server)
    context = client_context(pki.server.ca)
    old = pki.serial
    expiry = not_after(pki.server.cert.read_bytes())
    async with tls_gateway(section) as env, connect(env.port, context) as before:
        assert (await before.get("/contacts", env.bearer())).status == 200
        text = base_config(env.jwks, env.upstream, TLS_TEMPLATE, tls=section)
        loaded = load_config_text(text, "gateway.yaml") if loaded_first else None
        spoil(pki)
        with pytest.raises(ConfigErrors) as caught:
            await env.gateway.reload(loaded or load_config_text(text, "gateway.yaml"))
        assert "tls." in str(caught.value), caught.value
        async with connect(env.port, context) as after:
            assert after.peer_serial == old
            assert (await after.get("/contacts", env.bearer())).status == 200
        assert (await before.get("/contacts", env.bearer())).status == 200
        assert env.sample(EXPIRY, certificate="listen") == expiry


async def test_a_reload_applies_min_version_and_client_auth_to_new_connections(
    pki: Pki, clients: Clients
) -> None:
    only_12 = client_context(pki.server.ca, maximum=ssl.TLSVersion.TLSv1_2)
    only_13 = client_context(pki.server.ca, minimum=ssl.TLSVersion.TLSv1_3)
    with_cert = client_context(pki.server.ca, minimum=ssl.TLSVersion.TLSv1_3, cert=clients.trusted)
    async with tls_gateway(tls_section(pki.server)) as env:
        assert await attempt(env.port, only_12, env.bearer()) == 200
        assert await attempt(env.port, only_13, env.bearer()) == 200
        tightened = tls_section(
            pki.server, min_version="1.3", client_ca=clients.ca_file, client_auth="required"
        )
        await reload_in_place(env, tightened)
        refused = await attempt(env.port, only_12, env.bearer())
        assert isinstance(refused, REFUSED), refused
        refused = await attempt(env.port, only_13, env.bearer())
        assert isinstance(refused, REFUSED), refused
        assert await attempt(env.port, with_cert, env.bearer()) == 200
        assert env.sample(EXPIRY, certificate="client_ca") == not_after(clients.ca.pem)


async def test_a_reload_of_client_ca_trusts_exactly_the_new_bundle(
    pki: Pki, clients: Clients, tmp_path: Path
) -> None:
    """SIGHUP re-reads every certificate file: a CA taken out of the `client_ca` bundle (say,
    compromised) is no longer trusted, and the one put in is."""
    section = tls_section(pki.server, client_ca=clients.ca_file, client_auth="required")
    successor = TestAuthority(
        "the client CA that replaces it", valid_for=datetime.timedelta(days=60)
    )
    newcomer = successor.issue_client(tmp_path, "app-2")

    def context(cert: ClientFiles) -> ssl.SSLContext:
        return client_context(pki.server.ca, cert=cert)

    async with tls_gateway(section) as env:
        assert await attempt(env.port, context(clients.trusted), env.bearer()) == 200
        assert isinstance(await attempt(env.port, context(newcomer), env.bearer()), REFUSED)
        successor.write(clients.ca_file)
        await reload_in_place(env, section)
        assert await attempt(env.port, context(newcomer), env.bearer()) == 200
        assert env.sample(EXPIRY, certificate="client_ca") == not_after(successor.pem)
        removed = await attempt(env.port, context(clients.trusted), env.bearer())
        assert isinstance(removed, REFUSED), f"a client of the removed CA got {removed}"


# --- `scopegate serve` and SIGHUP ------------------------------------------------------------


def _metric(text: str, name: str, **labels: str) -> float | None:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return None


async def _admin_metrics(served: Served) -> str:
    async with (
        aiohttp.ClientSession() as http,
        http.get(
            served.admin_url + "/metrics", timeout=aiohttp.ClientTimeout(total=TIMEOUT)
        ) as answer,
    ):
        assert answer.status == 200
        return await answer.text()


async def _until(condition: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    try:
        async with asyncio.timeout(timeout):
            while not condition():
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"not within {timeout} s: {what}") from None


async def _serials(port: int, context: ssl.SSLContext, count: int) -> set[int]:
    """The certificates presented to `count` new connections (with workers, any may answer)."""
    serials = set()
    for _ in range(count):
        async with connect(port, context) as connection:
            serials.add(connection.peer_serial)
    return serials


@pytest.mark.slow
@pytest.mark.parametrize("workers", [[], ["--workers", "2"]], ids=["one process", "two workers"])
async def test_serve_rotates_certificates_on_sighup_and_keeps_them_on_a_bad_file(
    pki: Pki, tmp_path: Path, workers: list[str]
) -> None:
    """The operator's path: `scopegate serve` over HTTPS; new files and SIGHUP, and new
    connections get the new certificate; a key that does not match and SIGHUP, and the reload
    fails (counted `result="error"`) while the last good certificate goes on being served.
    Plain HTTP sent once is counted as a failed handshake."""
    key = generate("RS256")
    context = client_context(pki.server.ca)
    async with RecordingUpstream() as upstream, JwksServer([key]) as jwks:
        path = tmp_path / "scopegate.yaml"
        path.write_text(base_config(jwks, upstream, TLS_TEMPLATE, tls=tls_section(pki.server)))
        token = mint(key, issuer=jwks.issuer, audience=AUDIENCE, scopes=("read:contacts",))
        headers = {"Authorization": f"Bearer {token}"}
        async with serve(path, *workers) as served:
            await served.until_ready()
            first = pki.serial
            assert await _serials(served.port, context, 4) == {first}
            assert await attempt(served.port, context, headers) == 200
            assert upstream.last.header("X-Forwarded-Proto") == "https"
            await send_plain(served.port, b"GET /public/x HTTP/1.1\r\nHost: x\r\n\r\n")
            plain_sent = time.monotonic()

            def said(message: str) -> int:
                return sum(1 for line in served.lines if line.get("message") == message)

            pki.rotate(datetime.timedelta(days=3))
            second = pki.serial
            served.process.send_signal(signal.SIGHUP)
            # Every serving process says so (with workers, each worker; the kernel may hand a
            # handful of new connections all to one of them, so their serials alone prove
            # nothing about the other).
            processes = 2 if workers else 1

            def reloaded() -> int:
                return sum(
                    1
                    for line in served.lines
                    if line.get("message") == "configuration reloaded" and "routes" in line
                )

            await _until(lambda: reloaded() >= processes, "the reload of every process")
            async with asyncio.timeout(15):
                while await _serials(served.port, context, 4) != {second}:
                    await asyncio.sleep(0.1)  # workers reload just after the supervisor says so

            write_new_key(pki.server.key)
            served.process.send_signal(signal.SIGHUP)
            failed = "reload failed; the running configuration is unchanged"
            await _until(lambda: said(failed) >= 1, "the failed reload")
            await asyncio.sleep(0.5)  # a worker that (wrongly) reloaded would have done so now
            assert await _serials(served.port, context, 6) == {second}
            assert await attempt(served.port, context, headers) == 200
            metrics = await _admin_metrics(served)
            assert _metric(metrics, RELOADS, result="error") == 1, metrics
            assert _metric(metrics, RELOADS, result="ok") == 1, metrics
            listen = _metric(metrics, EXPIRY, certificate="listen")
            assert listen == not_after(pki.server.cert.read_bytes()), metrics
            # The plain HTTP sent at the start is the one failed handshake, counted under
            # uvloop as under asyncio.
            await asyncio.sleep(max(0.0, plain_sent + VERDICT_SECONDS - time.monotonic()))
            metrics = await _admin_metrics(served)
            assert _metric(metrics, FAILED_HANDSHAKES) == 1, metrics


# --- configuration errors --------------------------------------------------------------------

CHECKED = """\
issuers:
  - issuer: https://id.example.com/
    audiences: [api]
upstreams:
  api: http://127.0.0.1:8001
routes:
  - path: /contacts
    upstream: api
    scopes: [read:contacts]
"""


def test_a_complete_tls_section_loads(pki: Pki, clients: Clients) -> None:
    section = tls_section(
        pki.server, min_version="1.3", client_ca=clients.ca_file, client_auth="required"
    )
    load_config_text(CHECKED + section, "gateway.yaml", {})
    load_config_text(CHECKED + tls_section(pki.server, min_version="1.2"), "gateway.yaml", {})


def _missing_cert(pki: Pki, clients: Clients, tmp_path: Path) -> tuple[str, str]:
    absent = ServerFiles(tmp_path / "absent.pem", pki.server.key, pki.server.ca)
    return tls_section(absent), "cert"


def _missing_key(pki: Pki, clients: Clients, tmp_path: Path) -> tuple[str, str]:
    absent = ServerFiles(pki.server.cert, tmp_path / "absent.key", pki.server.ca)
    return tls_section(absent), "key"


def _garbage_cert(pki: Pki, clients: Clients, tmp_path: Path) -> tuple[str, str]:
    _garbage(pki)
    return tls_section(pki.server), "cert"


def _mismatched_key(pki: Pki, clients: Clients, tmp_path: Path) -> tuple[str, str]:
    write_new_key(pki.server.key)
    return tls_section(pki.server), "key"


def _required_without_client_ca(pki: Pki, clients: Clients, tmp_path: Path) -> tuple[str, str]:
    return tls_section(pki.server, client_auth="required"), "client_auth"


def _unknown_client_auth(pki: Pki, clients: Clients, tmp_path: Path) -> tuple[str, str]:
    return tls_section(
        pki.server, client_ca=clients.ca_file, client_auth="sometimes"
    ), "client_auth"


def _min_version_1_1(pki: Pki, clients: Clients, tmp_path: Path) -> tuple[str, str]:
    return tls_section(pki.server, min_version="1.1"), "min_version"


def _missing_client_ca(pki: Pki, clients: Clients, tmp_path: Path) -> tuple[str, str]:
    return tls_section(pki.server, client_ca=tmp_path / "absent-ca.pem"), "client_ca"


def _garbage_client_ca(pki: Pki, clients: Clients, tmp_path: Path) -> tuple[str, str]:
    clients.ca_file.write_text("not a certificate\n")
    return tls_section(pki.server, client_ca=clients.ca_file), "client_ca"


@pytest.mark.parametrize(
    "case",
    [
        _missing_cert, _missing_key, _garbage_cert, _mismatched_key,
        _required_without_client_ca, _unknown_client_auth, _min_version_1_1,
        _missing_client_ca, _garbage_client_ca,
    ],
    ids=[
        "missing cert file", "missing key file", "garbage cert PEM", "key does not match cert",
        "client_auth required without client_ca", "client_auth neither optional nor required",
        "min_version 1.1", "missing client_ca file", "garbage client_ca PEM",
    ],
)  # fmt: skip
def test_a_bad_tls_section_is_one_positioned_error(
    pki: Pki,
    clients: Clients,
    tmp_path: Path,
    case: Callable[[Pki, Clients, Path], tuple[str, str]],
) -> None:
    """Each mistake is said once, as `FILE:LINE:COL: tls.KEY: ...` at the key's line (a key
    that does not match its certificate may be reported at either one)."""
    section, key = case(pki, clients, tmp_path)
    text = CHECKED + section
    errors = errors_of(text)
    assert len(errors) == 1, errors
    error = errors[0]
    keys = {key, "cert"} if key == "key" and case is _mismatched_key else {key}
    assert any(f": tls.{name}: " in error for name in keys), error
    lines = {line_of(text, name) for name in keys}
    position = re.match(r"gateway\.yaml:(\d+):(\d+): ", error)
    assert position is not None, error
    assert int(position[1]) in lines, error
