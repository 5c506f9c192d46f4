"""A real gateway on a loopback port, in front of a real recording upstream, trusting a real JWKS
endpoint served over HTTP, with tokens signed by real RSA and EC keys."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from prometheus_client import CollectorRegistry

from scopegate.app import RunningGateway
from scopegate.config.load import load_config_text
from scopegate.devtools.keys import SigningKey, generate
from scopegate.devtools.tokens import mint
from tests.support.jwks_server import JwksServer
from tests.support.upstream import RecordingUpstream

AUDIENCE = "https://contacts.example.com"

BASE_CONFIG = """
listen: 127.0.0.1:0
admin_listen: 127.0.0.1:0
issuers:
  - issuer: {issuer}
    jwks_uri: {jwks_uri}
    audiences: [{audience}]
    algorithms: [RS256, ES256]
jwks:
  min_refresh_interval: 1
limits:
  header_timeout: 1
  max_connections: 64
upstreams:
  contacts:
    url: {upstream}
    timeout: 1
    connect_timeout: 1
  based: {upstream}/base
  down:
    url: http://127.0.0.1:{closed_port}
    connect_timeout: 1
forward:
  claims_to_headers:
    sub: X-Auth-Subject
    azp: X-Auth-Client
    meta.tenant: X-Auth-Tenant
scopes:
  read:contacts: Read contacts
  create:contacts: Create contacts
  delete:contacts: Delete contacts
  admin: Everything
routes:
  - name: list-contacts
    path: /contacts
    methods: [GET]
    upstream: contacts
    scopes: [read:contacts]
  - name: create-contact
    path: /contacts
    methods: [POST]
    upstream: contacts
    scopes: [create:contacts]
  - name: read-contact
    path: /contacts/{{id}}
    methods: [GET]
    upstream: contacts
    scopes: [read:contacts]
  - name: delete-contact
    path: /contacts/{{id}}
    methods: [DELETE]
    upstream: contacts
    scopes: {{any: [delete:contacts, admin]}}
  - name: public
    path: /public/{{rest*}}
    upstream: contacts
    auth: none
  - name: behaviour
    path: /b/{{rest*}}
    upstream: contacts
    auth: none
    strip_prefix: /b
  - name: token-only
    path: /me
    upstream: contacts
  - name: based
    path: /api/{{rest*}}
    upstream: based
    strip_prefix: /api
    auth: none
  - name: upload
    path: /upload
    methods: [POST, PUT]
    upstream: contacts
    scopes: [create:contacts]
    max_body_bytes: 2000000000
  - name: small-body
    path: /small
    methods: [POST]
    upstream: contacts
    max_body_bytes: 10
  - name: down
    path: /down
    upstream: down
    auth: none
"""


@dataclass
class Env:
    """Everything a gateway test touches."""

    gateway: RunningGateway
    upstream: RecordingUpstream
    jwks: JwksServer
    rsa: SigningKey
    ec: SigningKey
    http: aiohttp.ClientSession
    registry: CollectorRegistry

    @property
    def port(self) -> int:
        return self.gateway.public_port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def issuer(self) -> str:
        return self.jwks.issuer

    def token(self, scopes: tuple[str, ...] = ("read:contacts",), **kwargs: Any) -> str:
        options: dict[str, Any] = {"issuer": self.issuer, "audience": AUDIENCE}
        options.update(kwargs)
        key = options.pop("key", self.rsa)
        return mint(key, scopes=scopes, **options)

    def bearer(self, scopes: tuple[str, ...] = ("read:contacts",), **kwargs: Any) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(scopes, **kwargs)}"}

    def sample(self, name: str, **labels: str) -> float:
        return self.registry.get_sample_value(name, labels) or 0.0


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def base_config(jwks: JwksServer, upstream: RecordingUpstream, template: str = BASE_CONFIG,
                **extra: str) -> str:  # fmt: skip
    """The shared test configuration, pointed at this test's JWKS server and upstream."""
    return template.format(
        issuer=jwks.issuer,
        jwks_uri=jwks.jwks_uri,
        audience=AUDIENCE,
        upstream=upstream.url,
        closed_port=closed_port(),
        **extra,
    )


@asynccontextmanager
async def gateway_env(config_template: str = BASE_CONFIG, **extra: str) -> AsyncIterator[Env]:
    rsa = generate("RS256")
    ec = generate("ES256")
    async with RecordingUpstream() as upstream, JwksServer([rsa, ec]) as jwks:
        text = base_config(jwks, upstream, config_template, **extra)
        config = load_config_text(text, "gateway.yaml")
        registry = CollectorRegistry()
        async with (
            RunningGateway.start(config, registry=registry, shutdown_grace=2.0) as gateway,
            aiohttp.ClientSession() as http,
        ):
            await wait_ready(gateway)
            yield Env(gateway, upstream, jwks, rsa, ec, http, registry)


async def wait_ready(gateway: RunningGateway, attempts: int = 200) -> None:
    import asyncio

    for _ in range(attempts):
        if not gateway.runtime.not_ready():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"gateway never became ready: {gateway.runtime.not_ready()}")


@pytest.fixture(name="session")
async def _session() -> AsyncIterator[aiohttp.ClientSession]:
    """A client session for tests that talk to a server themselves (key fetches)."""
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture(name="env")
async def _env() -> AsyncIterator[Env]:
    async with gateway_env() as env:
        yield env


TokenFactory = Callable[..., str]
