"""TLS towards the upstreams (SPEC §6.1, upstream side): `upstreams.NAME.tls` with `ca` (the
trust bundle; the system trust store without it), `cert` and `key` (a client certificate, for
upstreams that require one) and `server_name` (the SNI sent and the name verified). Verification
is always on: an upstream whose certificate does not verify is a 502 `upstream_connect`, counted
as `scopegate_upstream_errors_total{reason="connect"}`, and nothing reaches it. A reload reads
the files again, the expiry gauge has a `NAME:ca` and a `NAME:cert` series, and every mistake in
the section is one positioned error at `upstreams.NAME.tls...`.

The upstreams are real HTTPS servers (`RecordingUpstream(ssl_context=...)`) with certificates
from throw-away CAs (`tests.support.certs`); the gateway runs in this process (`gateway_env`),
its `contacts` upstream pointed at them.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import re
import ssl
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from scopegate.config.errors import ConfigErrors
from scopegate.config.load import load_config_text
from tests.e2e.conftest import BASE_CONFIG, Env, base_config, gateway_env
from tests.support.certs import (
    ClientFiles,
    ServerFiles,
    TestAuthority,
    not_after,
    serial_number,
    server_context,
    write_new_key,
    yaml_path,
)
from tests.support.config_errors import errors_of, line_of
from tests.support.upstream import RecordingUpstream

EXPIRY = "scopegate_tls_certificate_expiry_timestamp_seconds"
ERRORS = "scopegate_upstream_errors_total"
TIMEOUT = 5.0  # every request through the gateway ends within this, or the test fails
CLIENT_NAME = "scopegate-gateway"  # the subject of the gateway's client certificate

# BASE_CONFIG with its `contacts` upstream at `{secure}` (an HTTPS test upstream) and a `tls:`
# block of this test's making (`{tls}`, empty for none) after its url.
_CONTACTS = "  contacts:\n    url: {upstream}\n"
assert BASE_CONFIG.count(_CONTACTS) == 1
TEMPLATE = BASE_CONFIG.replace(_CONTACTS, "  contacts:\n    url: {secure}\n{tls}")

# The same, plus an upstream `twin` at the very same URL with a `tls:` of its own, and a route
# `/twin/...` to it (routes are the last section of BASE_CONFIG).
TWIN_TEMPLATE = (
    TEMPLATE.replace("upstreams:\n", "upstreams:\n  twin:\n    url: {secure}\n{twin_tls}", 1)
    + "  - name: twin\n    path: /twin/{{rest*}}\n    upstream: twin\n"
    + "    auth: none\n    strip_prefix: /twin\n"
)


# --- certificates and configuration ----------------------------------------------------------


def upstream_tls(
    *,
    ca: Path | None = None,
    client: ClientFiles | None = None,
    cert: Path | None = None,
    key: Path | None = None,
    server_name: str | None = None,
    null_server_name: bool = False,
    indent: int = 4,
) -> str:
    """The `tls:` block of an upstream (at `indent`), with only the keys given; "" for none.
    `client` sets both `cert` and `key`; `cert` and `key` set one each."""
    pad = " " * (indent + 2)
    lines = []
    if ca is not None:
        lines.append(f"{pad}ca: {yaml_path(ca)}")
    if client is not None:
        cert, key = client.cert, client.key
    if cert is not None:
        lines.append(f"{pad}cert: {yaml_path(cert)}")
    if key is not None:
        lines.append(f"{pad}key: {yaml_path(key)}")
    if server_name is not None:
        lines.append(f"{pad}server_name: {server_name}")
    if null_server_name:
        lines.append(f"{pad}server_name: null")
    if not lines:
        return ""
    return "\n".join([" " * indent + "tls:", *lines]) + "\n"


@asynccontextmanager
async def secure_gateway(secure: str, tls: str) -> AsyncIterator[Env]:
    """A gateway whose `contacts` upstream is `secure` (an https:// URL) with `tls` (a block)."""
    async with gateway_env(TEMPLATE, secure=secure, tls=tls) as env:
        yield env


async def reload_in_place(env: Env, secure: str, tls: str) -> None:
    """What SIGHUP does, in process: load the configuration again (the files it names read
    anew) and swap it in. Raises `ConfigErrors` when it does not load."""
    text = base_config(env.jwks, env.upstream, TEMPLATE, secure=secure, tls=tls)
    await env.gateway.reload(load_config_text(text, "gateway.yaml"))


@dataclass
class Pki:
    """A CA for the upstream's server certificate, and one for the gateway's client one."""

    directory: Path
    ca: TestAuthority
    server: ServerFiles  # for 127.0.0.1 and localhost; `server.ca` is the CA's file
    client_ca: TestAuthority
    client_ca_file: Path
    client: ClientFiles  # CN=scopegate-gateway, from `client_ca`


@pytest.fixture(name="pki")
def _pki(tmp_path: Path) -> Pki:
    ca = TestAuthority("upstream server CA")
    client_ca = TestAuthority("upstream client CA")
    return Pki(
        tmp_path,
        ca,
        ca.issue_server(tmp_path, "127.0.0.1", "localhost"),
        client_ca,
        client_ca.write(tmp_path / "client-ca.pem"),
        client_ca.issue_client(tmp_path, CLIENT_NAME),
    )


# --- requests --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    status: int
    content_type: str
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


async def get(env: Env, target: str = "/contacts") -> Reply:
    """GET `target` through the gateway with a token that may read contacts."""
    async with (
        asyncio.timeout(TIMEOUT),
        env.http.get(f"{env.url}{target}", headers=env.bearer()) as response,
    ):
        body = await response.read()
        return Reply(response.status, response.headers.get("Content-Type", ""), body)


def assert_ok(reply: Reply, upstream: RecordingUpstream, target: str = "/contacts") -> None:
    assert reply.status == 200, reply
    assert upstream.last.target == target


def assert_refused_at_connect(env: Env, reply: Reply, upstream: RecordingUpstream) -> None:
    """A 502 `upstream_connect` problem, counted once with reason connect; nothing arrived."""
    assert reply.status == 502, reply
    assert reply.content_type == "application/problem+json", reply
    assert reply.json()["type"].endswith("/upstream_connect"), reply
    assert env.sample(ERRORS, upstream="contacts", reason="connect") == 1
    assert upstream.received == []


def failures(env: Env, upstream: str = "contacts") -> float:
    """Upstream errors counted for `upstream`, whatever the reason."""
    return sum(env.sample(ERRORS, upstream=upstream, reason=r) for r in ("connect", "reset"))


async def drop_pooled_connection(env: Env) -> None:
    """Make the next request to `contacts` open a new connection: `/b/reset` makes the upstream
    abort the keep-alive connection the gateway would otherwise reuse."""
    assert (await get(env, "/b/reset")).status == 502


# --- trust: tls.ca, or the system trust store ------------------------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_an_upstream_signed_by_the_configured_ca_is_reached(pki: Pki, host: str) -> None:
    """The URL's host is the name verified: an IP address (a SAN IP) or a DNS name."""
    async with RecordingUpstream(ssl_context=server_context(pki.server)) as upstream:
        secure = f"https://{host}:{upstream.port}"
        async with secure_gateway(secure, upstream_tls(ca=pki.server.ca)) as env:
            assert_ok(await get(env), upstream)
            assert upstream.last.header("X-Auth-Subject") is not None
            assert failures(env) == 0


async def test_a_chain_through_an_intermediate_verifies_against_the_root(
    pki: Pki, tmp_path: Path
) -> None:
    """The upstream sends its leaf and the intermediate; `tls.ca` holds only the root."""
    directory = tmp_path / "chained"
    directory.mkdir()
    files = pki.ca.intermediate("upstream sub CA").issue_server(directory, "127.0.0.1")
    async with (
        RecordingUpstream(ssl_context=server_context(files)) as upstream,
        secure_gateway(upstream.url, upstream_tls(ca=files.ca)) as env,
    ):
        assert_ok(await get(env), upstream)


@pytest.mark.parametrize("null_server_name", [False, True], ids=["no tls", "tls without ca"])
async def test_without_tls_ca_the_system_trust_store_refuses_a_test_ca(
    pki: Pki, null_server_name: bool
) -> None:
    tls = upstream_tls(null_server_name=null_server_name)
    async with (
        RecordingUpstream(ssl_context=server_context(pki.server)) as upstream,
        secure_gateway(upstream.url, tls) as env,
    ):
        assert_refused_at_connect(env, await get(env), upstream)


async def test_a_ca_that_did_not_sign_the_upstream_is_refused(pki: Pki, tmp_path: Path) -> None:
    other = TestAuthority("somebody else's CA").write(tmp_path / "other-ca.pem")
    async with (
        RecordingUpstream(ssl_context=server_context(pki.server)) as upstream,
        secure_gateway(upstream.url, upstream_tls(ca=other)) as env,
    ):
        assert_refused_at_connect(env, await get(env), upstream)


async def test_an_expired_upstream_certificate_is_refused(pki: Pki, tmp_path: Path) -> None:
    directory = tmp_path / "expired"
    directory.mkdir()
    expired = pki.ca.issue_server(directory, "127.0.0.1", valid_for=-datetime.timedelta(minutes=1))
    async with (
        RecordingUpstream(ssl_context=server_context(expired)) as upstream,
        secure_gateway(upstream.url, upstream_tls(ca=expired.ca)) as env,
    ):
        assert_refused_at_connect(env, await get(env), upstream)


async def test_the_expiry_gauge_has_a_ca_series_per_upstream(pki: Pki) -> None:
    async with (
        RecordingUpstream(ssl_context=server_context(pki.server)) as upstream,
        secure_gateway(upstream.url, upstream_tls(ca=pki.server.ca)) as env,
    ):
        assert env.sample(EXPIRY, certificate="contacts:ca") == not_after(pki.ca.pem)
        assert env.registry.get_sample_value(EXPIRY, {"certificate": "contacts:cert"}) is None


# --- server_name: the SNI sent and the name verified -----------------------------------------


def _recording_sni(context: ssl.SSLContext) -> list[str | None]:
    """The server names clients sent to `context` (as SNI), in order."""
    names: list[str | None] = []

    def record(tls: ssl.SSLObject, name: str | None, context: ssl.SSLContext) -> int | None:
        names.append(name)
        return None

    context.sni_callback = record
    return names


@pytest.fixture(name="internal")
def _internal(pki: Pki, tmp_path: Path) -> ServerFiles:
    """A server certificate for contacts.internal only (no IP address, no localhost)."""
    directory = tmp_path / "internal"
    directory.mkdir()
    return pki.ca.issue_server(directory, "contacts.internal")


async def test_server_name_is_sent_as_sni_and_verified(internal: ServerFiles) -> None:
    context = server_context(internal)
    sni = _recording_sni(context)
    tls = upstream_tls(ca=internal.ca, server_name="contacts.internal")
    async with (
        RecordingUpstream(ssl_context=context) as upstream,
        secure_gateway(upstream.url, tls) as env,
    ):
        assert_ok(await get(env), upstream)
        assert sni == ["contacts.internal"]


@pytest.mark.parametrize("server_name", [None, "other.internal"], ids=["url host", "other name"])
async def test_a_name_the_certificate_does_not_hold_is_refused(
    internal: ServerFiles, server_name: str | None
) -> None:
    """Without `server_name` the URL's host (127.0.0.1) is verified; the certificate is only
    for contacts.internal."""
    tls = upstream_tls(ca=internal.ca, server_name=server_name)
    async with (
        RecordingUpstream(ssl_context=server_context(internal)) as upstream,
        secure_gateway(upstream.url, tls) as env,
    ):
        assert_refused_at_connect(env, await get(env), upstream)


# --- client certificates (mTLS to the upstream) ----------------------------------------------


async def test_the_client_certificate_is_presented_to_an_upstream_that_requires_one(
    pki: Pki,
) -> None:
    context = server_context(pki.server, client_ca=pki.client_ca_file)
    tls = upstream_tls(ca=pki.server.ca, client=pki.client)
    async with (
        RecordingUpstream(ssl_context=context) as upstream,
        secure_gateway(upstream.url, tls) as env,
    ):
        assert_ok(await get(env), upstream)
        assert upstream.last.peer_common_name == CLIENT_NAME
        assert env.sample(EXPIRY, certificate="contacts:ca") == not_after(pki.ca.pem)
        client_expiry = not_after(pki.client.cert.read_bytes())
        assert env.sample(EXPIRY, certificate="contacts:cert") == client_expiry


async def test_without_a_client_certificate_an_upstream_that_requires_one_is_502(
    pki: Pki,
) -> None:
    """Refused by the upstream, not by scopegate: in TLS 1.3 the refusal may only arrive once
    the request is sent, so the reason may be connect or reset; never a 200."""
    context = server_context(pki.server, client_ca=pki.client_ca_file)
    async with (
        RecordingUpstream(ssl_context=context) as upstream,
        secure_gateway(upstream.url, upstream_tls(ca=pki.server.ca)) as env,
    ):
        reply = await get(env)
        assert reply.status == 502, reply
        assert reply.content_type == "application/problem+json", reply
        assert upstream.received == []
        assert failures(env) == 1


async def test_a_client_certificate_from_another_ca_is_refused_by_the_upstream(
    pki: Pki, tmp_path: Path
) -> None:
    directory = tmp_path / "stranger"
    directory.mkdir()
    stranger = TestAuthority("somebody else's client CA").issue_client(directory, "intruder")
    context = server_context(pki.server, client_ca=pki.client_ca_file)
    async with (
        RecordingUpstream(ssl_context=context) as upstream,
        secure_gateway(upstream.url, upstream_tls(ca=pki.server.ca, client=stranger)) as env,
    ):
        reply = await get(env)
        assert reply.status == 502, reply
        assert upstream.received == []
        assert failures(env) == 1


async def test_an_upstream_without_a_client_certificate_never_rides_anothers_connection(
    pki: Pki,
) -> None:
    """Two upstreams at one URL, `contacts` with the client certificate and `twin` without:
    a keep-alive connection that `contacts` opened (with its certificate) must not carry a
    request for `twin`, which the upstream would then take for the gateway's identity."""
    context = server_context(pki.server, client_ca=pki.client_ca_file)
    tls = upstream_tls(ca=pki.server.ca, client=pki.client)
    twin_tls = upstream_tls(ca=pki.server.ca)
    async with (
        RecordingUpstream(ssl_context=context) as upstream,
        gateway_env(TWIN_TEMPLATE, secure=upstream.url, tls=tls, twin_tls=twin_tls) as env,
    ):
        assert (await get(env, "/twin/first")).status == 502
        assert upstream.received == []
        assert_ok(await get(env), upstream)  # leaves a keep-alive connection behind
        assert (await get(env, "/twin/second")).status == 502
        assert [seen.target for seen in upstream.received] == ["/contacts"]


# --- a reload reads the files again ----------------------------------------------------------


async def test_a_reload_reads_a_rotated_ca_file(pki: Pki) -> None:
    """The CA file is rewritten in place with a new CA (the one that signs the new upstream):
    before the reload the new upstream does not verify, after it it does, and the gauge
    follows. Only the file's content changes between the last two configurations."""
    trust = pki.server.ca
    rotated = TestAuthority("rotated upstream CA", valid_for=datetime.timedelta(days=60))
    directory = pki.directory / "rotated"
    directory.mkdir()
    new_server = rotated.issue_server(directory, "127.0.0.1")
    tls = upstream_tls(ca=trust)
    async with (
        RecordingUpstream(ssl_context=server_context(pki.server)) as old,
        RecordingUpstream(ssl_context=server_context(new_server)) as new,
        secure_gateway(old.url, tls) as env,
    ):
        assert_ok(await get(env), old)
        assert env.sample(EXPIRY, certificate="contacts:ca") == not_after(pki.ca.pem)

        await reload_in_place(env, new.url, tls)  # the new upstream, trusting the old CA
        assert_refused_at_connect(env, await get(env), new)

        rotated.write(trust)
        await reload_in_place(env, new.url, tls)  # the same configuration, the file rotated
        assert_ok(await get(env), new)
        assert env.sample(EXPIRY, certificate="contacts:ca") == not_after(rotated.pem)
        assert not_after(rotated.pem) != not_after(pki.ca.pem)


async def test_a_reload_presents_the_rotated_client_certificate_to_new_connections(
    pki: Pki,
) -> None:
    context = server_context(pki.server, client_ca=pki.client_ca_file)
    tls = upstream_tls(ca=pki.server.ca, client=pki.client)
    async with (
        RecordingUpstream(ssl_context=context) as upstream,
        secure_gateway(upstream.url, tls) as env,
    ):
        assert_ok(await get(env), upstream)
        old = serial_number(pki.client.cert.read_bytes())
        assert upstream.last.peercert is not None
        assert int(upstream.last.peercert["serialNumber"], 16) == old

        rotated = pki.client_ca.issue_client(
            pki.directory, CLIENT_NAME, valid_for=datetime.timedelta(days=2)
        )
        assert rotated == pki.client  # the same files, new contents
        new = serial_number(rotated.cert.read_bytes())
        assert new != old
        await reload_in_place(env, upstream.url, tls)
        await drop_pooled_connection(env)
        assert_ok(await get(env), upstream)
        assert upstream.last.peercert is not None
        assert int(upstream.last.peercert["serialNumber"], 16) == new
        client_expiry = not_after(rotated.cert.read_bytes())
        assert env.sample(EXPIRY, certificate="contacts:cert") == client_expiry


async def test_a_bad_ca_file_fails_the_reload_and_keeps_the_old_trust(pki: Pki) -> None:
    """The file is spoiled, the reload's loading refuses it at `upstreams.contacts.tls.ca`, and
    new connections to the upstream go on verifying with the CA read before."""
    tls = upstream_tls(ca=pki.server.ca)
    async with (
        RecordingUpstream(ssl_context=server_context(pki.server)) as upstream,
        secure_gateway(upstream.url, tls) as env,
    ):
        assert_ok(await get(env), upstream)
        pki.server.ca.write_text("not a certificate\n")
        with pytest.raises(ConfigErrors) as caught:
            await reload_in_place(env, upstream.url, tls)
        assert "upstreams.contacts.tls.ca" in str(caught.value), caught.value
        await drop_pooled_connection(env)
        assert_ok(await get(env), upstream)
        assert env.sample(EXPIRY, certificate="contacts:ca") == not_after(pki.ca.pem)


# --- configuration errors --------------------------------------------------------------------

CHECKED = """\
issuers:
  - issuer: https://id.example.com/
    audiences: [api]
upstreams:
  api:
    url: {url}
{tls}routes:
  - path: /contacts
    upstream: api
    scopes: [read:contacts]
"""
HTTPS = "https://127.0.0.1:8443"


def test_a_complete_upstream_tls_section_loads(pki: Pki) -> None:
    tls = upstream_tls(ca=pki.server.ca, client=pki.client, server_name="contacts.internal")
    load_config_text(CHECKED.format(url=HTTPS, tls=tls), "gateway.yaml", {})
    only_ca = upstream_tls(ca=pki.server.ca, null_server_name=True)
    load_config_text(CHECKED.format(url=HTTPS, tls=only_ca), "gateway.yaml", {})


# Each case: the configuration's text, and the keys under `upstreams.api` at which the one error
# may be reported (the first is where it belongs; a pairing mistake may sit on either key).
Case = Callable[[Pki, Path], tuple[str, tuple[str, ...]]]


def _tls_on_http(pki: Pki, tmp_path: Path) -> tuple[str, tuple[str, ...]]:
    tls = upstream_tls(ca=pki.server.ca)
    return CHECKED.format(url="http://127.0.0.1:8001", tls=tls), ("tls", "url")


def _cert_without_key(pki: Pki, tmp_path: Path) -> tuple[str, tuple[str, ...]]:
    tls = upstream_tls(ca=pki.server.ca, cert=pki.client.cert)
    return CHECKED.format(url=HTTPS, tls=tls), ("tls", "tls.cert")


def _key_without_cert(pki: Pki, tmp_path: Path) -> tuple[str, tuple[str, ...]]:
    tls = upstream_tls(ca=pki.server.ca, key=pki.client.key)
    return CHECKED.format(url=HTTPS, tls=tls), ("tls", "tls.key")


def _missing_ca(pki: Pki, tmp_path: Path) -> tuple[str, tuple[str, ...]]:
    tls = upstream_tls(ca=tmp_path / "absent-ca.pem")
    return CHECKED.format(url=HTTPS, tls=tls), ("tls.ca",)


def _garbage_ca(pki: Pki, tmp_path: Path) -> tuple[str, tuple[str, ...]]:
    pki.server.ca.write_text("not a certificate\n")
    return CHECKED.format(url=HTTPS, tls=upstream_tls(ca=pki.server.ca)), ("tls.ca",)


def _missing_cert(pki: Pki, tmp_path: Path) -> tuple[str, tuple[str, ...]]:
    tls = upstream_tls(ca=pki.server.ca, cert=tmp_path / "absent.pem", key=pki.client.key)
    return CHECKED.format(url=HTTPS, tls=tls), ("tls.cert",)


def _missing_key(pki: Pki, tmp_path: Path) -> tuple[str, tuple[str, ...]]:
    tls = upstream_tls(ca=pki.server.ca, cert=pki.client.cert, key=tmp_path / "absent.key")
    return CHECKED.format(url=HTTPS, tls=tls), ("tls.key",)


def _mismatched_key(pki: Pki, tmp_path: Path) -> tuple[str, tuple[str, ...]]:
    write_new_key(pki.client.key)
    tls = upstream_tls(ca=pki.server.ca, client=pki.client)
    return CHECKED.format(url=HTTPS, tls=tls), ("tls.key", "tls.cert")


@pytest.mark.parametrize(
    "case",
    [
        _tls_on_http, _cert_without_key, _key_without_cert, _missing_ca, _garbage_ca,
        _missing_cert, _missing_key, _mismatched_key,
    ],
    ids=[
        "tls on an http upstream", "cert without key", "key without cert", "missing ca file",
        "garbage ca PEM", "missing cert file", "missing key file", "key does not match cert",
    ],
)  # fmt: skip
def test_a_bad_upstream_tls_section_is_one_positioned_error(
    pki: Pki, tmp_path: Path, case: Case
) -> None:
    """Each mistake is said once, as `FILE:LINE:COL: upstreams.api.KEY: ...`, at that key's
    line (for the `tls` mapping itself, its key's line or the line its value starts on)."""
    text, keys = case(pki, tmp_path)
    errors = errors_of(text)
    assert len(errors) == 1, errors
    error = errors[0]
    match = re.match(r"gateway\.yaml:(\d+):(\d+): upstreams\.api\.([\w.]+): ", error)
    assert match is not None, error
    assert match[3] in keys, error
    line = line_of(text, match[3].rsplit(".", 1)[-1])
    # A mapping (`tls`) is placed at its key, or at its value: the first line under the key.
    lines = {line, line + 1} if match[3] == "tls" else {line}
    assert int(match[1]) in lines, error
