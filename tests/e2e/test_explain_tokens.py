"""`scopegate check` and `scopegate explain --token` with the tokens of SPEC §6.4: the issuers'
introspection and DPoP settings listed (the client secret never), an opaque token introspected at
a real endpoint, a DPoP-bound token's binding spelt out, and step-up verdicts explained. The real
command runs as a process against real key and introspection servers on loopback."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from scopegate.devtools.dpop import confirmation
from scopegate.devtools.keys import SigningKey, generate
from scopegate.devtools.tokens import mint
from tests.support.introspection_server import IntrospectionServer
from tests.support.jwks_server import JwksServer

AUDIENCE = "https://contacts.example.com"
SECRET = "explain-secret-never-printed"

CONFIG = """\
issuers:
  - issuer: {issuer}
    audiences: [{audience}]
    introspection:
      endpoint: {endpoint}
      client_id: scopegate
      client_secret: ${{EXPLAIN_INTROSPECTION_SECRET}}
    dpop: {dpop}
upstreams:
  contacts: http://127.0.0.1:8001
routes:
  - path: /contacts
    methods: [GET]
    upstream: contacts
    scopes: [read:contacts]
  - path: /payments
    methods: [POST]
    upstream: contacts
    scopes: [read:contacts]
    acr_values: [mfa, hwk]
    max_age: 300
"""


@dataclass
class Setup:
    config: Path
    key: SigningKey
    jwks: JwksServer
    endpoint: IntrospectionServer

    def token(self, **claims: object) -> str:
        return mint(self.key, issuer=self.jwks.issuer, audience=AUDIENCE, extra_claims=claims)

    async def run(self, *args: str) -> tuple[int, str]:
        environment = {**os.environ, "EXPLAIN_INTROSPECTION_SECRET": SECRET}
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "scopegate", *args, "-c", str(self.config),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=environment,
        )  # fmt: skip
        async with asyncio.timeout(60):
            output, _ = await process.communicate()
        assert process.returncode is not None
        return process.returncode, output.decode()


@asynccontextmanager
async def setup(tmp_path: Path, dpop: str = "allowed") -> AsyncIterator[Setup]:
    key = generate("RS256")
    async with JwksServer([key]) as jwks, IntrospectionServer("scopegate", SECRET) as endpoint:
        config = tmp_path / "gateway.yaml"
        config.write_text(
            CONFIG.format(issuer=jwks.issuer, audience=AUDIENCE, endpoint=endpoint.url, dpop=dpop)
        )
        yield Setup(config, key, jwks, endpoint)


async def test_check_lists_introspection_and_dpop_without_the_secret(tmp_path: Path) -> None:
    async with setup(tmp_path, dpop="required") as s:
        status, output = await s.run("check")
    assert status == 0, output
    assert f"opaque tokens introspected at {s.endpoint.url} as scopegate" in output
    assert "DPoP required" in output
    assert "[step-up: acr mfa | hwk, auth_time within 300 s]" in output
    assert SECRET not in output


async def test_explain_introspects_an_opaque_token(tmp_path: Path) -> None:
    async with setup(tmp_path) as s:
        s.endpoint.active["opaque-1"] = {
            "scope": "read:contacts", "sub": "alice", "exp": int(time.time()) + 600,
        }  # fmt: skip
        status, output = await s.run("explain", "GET", "/contacts", "--token", "opaque-1")
        assert status == 0, output
        assert "token: introspected" in output and "subject alice" in output
        assert "verdict: ALLOW" in output
        status, output = await s.run("explain", "GET", "/contacts", "--token", "revoked-1")
        assert status == 1, output
        assert "verdict: DENY 401 inactive_token" in output
        assert s.endpoint.tokens_asked() == ["opaque-1", "revoked-1"]


async def test_explain_spells_out_a_dpop_binding(tmp_path: Path) -> None:
    proof_key = generate("ES256")
    async with setup(tmp_path) as s:
        bound = s.token(cnf=confirmation(proof_key))
        status, output = await s.run("explain", "GET", "/contacts", "--token", bound)
    assert status == 0, output
    assert f"binding: DPoP, key thumbprint {confirmation(proof_key)['jkt']}" in output
    assert "as Bearer it is refused" in output


async def test_explain_refuses_an_unbound_token_where_dpop_is_required(tmp_path: Path) -> None:
    async with setup(tmp_path, dpop="required") as s:
        status, output = await s.run("explain", "GET", "/contacts", "--token", s.token())
    assert status == 1, output
    assert "verdict: DENY 401 token_binding_mismatch" in output


async def test_explain_gives_the_step_up_verdict(tmp_path: Path) -> None:
    now = int(time.time())
    async with setup(tmp_path) as s:
        met = s.token(acr="hwk", auth_time=now)
        status, output = await s.run("explain", "POST", "/payments", "--token", met)
        assert status == 0, output
        assert "authentication: acr hwk" in output
        weak = s.token(acr="pwd", auth_time=now)
        status, output = await s.run("explain", "POST", "/payments", "--token", weak)
        assert status == 1, output
        assert "verdict: DENY 401 insufficient_user_authentication" in output
        old = s.token(acr="mfa", auth_time=now - 3600)
        status, output = await s.run("explain", "POST", "/payments", "--token", old)
        assert status == 1, output
        assert "more than 300 s ago" in output
