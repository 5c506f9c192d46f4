"""Certificate-bound access tokens (RFC 8705 §3, SPEC §6.1): a token whose `cnf` names a
certificate's thumbprint is accepted only with that client certificate, from the TLS handshake
or, behind a trusted proxy, from its RFC 9440 `Client-Cert` header, which no one else may send
or pass on. Real TLS on loopback, certificates from a throw-away CA; the recording upstream
shows what arrived."""

from __future__ import annotations

import base64
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from scopegate.pipeline.binding import thumbprint
from tests.e2e.conftest import BASE_CONFIG, Env, gateway_env
from tests.support.certs import ClientFiles, ServerFiles, TestAuthority, load_certificate


def der_of(files: ClientFiles) -> bytes:
    return load_certificate(files.cert.read_bytes()).public_bytes(Encoding.DER)


def bound_token(env: Env, certificate_der: bytes) -> dict[str, str]:
    return env.bearer(extra_claims={"cnf": {"x5t#S256": thumbprint(certificate_der)}})


class Pki:
    def __init__(self, directory: Path) -> None:
        self.server_ca = TestAuthority("server CA")
        self.client_ca = TestAuthority("client CA")
        self.server: ServerFiles = self.server_ca.issue_server(directory, "localhost", "127.0.0.1")
        self.client_ca_file = self.client_ca.write(directory / "client-ca.pem")
        self.alice = self.client_ca.issue_client(directory, "alice")
        self.bob = self.client_ca.issue_client(directory, "bob")

    def client(self, files: ClientFiles | None) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.server.ca))
        if files is not None:
            context.load_cert_chain(files.cert, files.key)
        return context


@pytest.fixture(name="pki")
def _pki(tmp_path: Path) -> Pki:
    return Pki(tmp_path)


@asynccontextmanager
async def tls_env(pki: Pki) -> AsyncIterator[Env]:
    section = (
        f"tls:\n  cert: {pki.server.cert}\n  key: {pki.server.key}\n"
        f"  client_ca: {pki.client_ca_file}\n  client_auth: optional\n"
    )
    async with gateway_env(BASE_CONFIG.replace("routes:\n", section + "routes:\n", 1)) as env:
        yield env


async def get(env: Env, context: ssl.SSLContext, headers: dict[str, str]) -> aiohttp.ClientResponse:
    url = f"https://localhost:{env.port}/contacts"
    async with (
        aiohttp.ClientSession() as http,
        http.get(url, headers=headers, ssl=context) as answer,
    ):
        await answer.read()
        return answer


async def test_a_bound_token_passes_with_its_certificate_only(pki: Pki) -> None:
    async with tls_env(pki) as env:
        token = bound_token(env, der_of(pki.alice))
        assert (await get(env, pki.client(pki.alice), token)).status == 200
        for other in (pki.bob, None):  # another client's certificate, and none at all
            answer = await get(env, pki.client(other), token)
            assert answer.status == 401
            assert 'error="invalid_token"' in answer.headers["WWW-Authenticate"]
        labels = {"route": "list-contacts", "reason": "token_binding_mismatch"}
        assert env.sample("scopegate_denials_total", **labels) == 2
        assert len(env.upstream.received) == 1


async def test_a_bearer_token_needs_no_certificate(pki: Pki) -> None:
    async with tls_env(pki) as env:
        assert (await get(env, pki.client(None), env.bearer())).status == 200


FORWARDED = """
forwarded_client_cert:
  header: Client-Cert
  trusted_proxies: [{networks}]
"""


def client_cert_header(der: bytes) -> str:
    return ":" + base64.b64encode(der).decode() + ":"


@asynccontextmanager
async def behind_proxy(networks: str) -> AsyncIterator[Env]:
    template = BASE_CONFIG + FORWARDED.replace("{networks}", networks)
    async with gateway_env(template) as env:
        yield env


async def test_a_trusted_proxy_s_client_cert_header_binds_and_is_passed_on(pki: Pki) -> None:
    async with behind_proxy("127.0.0.1/32") as env:
        der = der_of(pki.alice)
        headers = {**bound_token(env, der), "Client-Cert": client_cert_header(der)}
        answer = await env.http.get(f"{env.url}/contacts", headers=headers)
        assert answer.status == 200
        assert env.upstream.last.header("Client-Cert") == client_cert_header(der)
        other = {**bound_token(env, der), "Client-Cert": client_cert_header(der_of(pki.bob))}
        refused = await env.http.get(f"{env.url}/contacts", headers=other)
        assert refused.status == 401
        broken = {**bound_token(env, der), "Client-Cert": "not base64"}
        assert (await env.http.get(f"{env.url}/contacts", headers=broken)).status == 400


async def test_a_client_cert_header_from_anyone_else_is_ignored_and_removed(pki: Pki) -> None:
    async with behind_proxy("10.0.0.0/8") as env:  # the test client, 127.0.0.1, is not one
        der = der_of(pki.alice)
        spoofed = {**bound_token(env, der), "Client-Cert": client_cert_header(der)}
        answer = await env.http.get(f"{env.url}/contacts", headers=spoofed)
        assert answer.status == 401  # the header proves nothing from here
        bearer = {**env.bearer(), "Client-Cert": client_cert_header(der), "client_cert": "x"}
        assert (await env.http.get(f"{env.url}/contacts", headers=bearer)).status == 200
        assert env.upstream.last.header("Client-Cert") is None
        assert env.upstream.last.header("client_cert") is None


async def test_without_forwarded_client_cert_the_header_never_reaches_the_upstream(
    pki: Pki,
) -> None:
    async with gateway_env() as env:
        headers = {**env.bearer(), "Client-Cert": client_cert_header(der_of(pki.alice))}
        assert (await env.http.get(f"{env.url}/contacts", headers=headers)).status == 200
        assert env.upstream.last.header("Client-Cert") is None
