"""Development tokens of every kind a real provider issues (SPEC §6.4): the demo issuer's RFC 7662
introspection and RFC 7009 revocation endpoints, and `scopegate token` minting opaque,
DPoP-bound (RFC 9449) and step-up (RFC 9470) tokens. A real issuer on a loopback port, asked
over real HTTP; the command runs as a process of its own, as a developer runs it."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

import aiohttp
import jwt
import pytest

from scopegate.config.model import Introspection
from scopegate.devtools.demo import demo_config, running_demo
from scopegate.devtools.dpop import confirmation
from scopegate.devtools.issuer import DevIssuer
from scopegate.devtools.keys import SigningKey, generate
from scopegate.pipeline.dpop import access_token_hash, thumbprint

SCOPEGATE = [sys.executable, "-m", "scopegate"]
DEMO_YAML = Path(__file__).parents[2] / "src" / "scopegate" / "devtools" / "demo.yaml"
AUDIENCE = "https://contacts.example.com"
CLIENT_ID = "scopegate-demo"
SECRET = "s3cret: with+spaces/and&more"  # form-encoded in Basic credentials (RFC 6749 §2.3.1)
GATEWAY_URL = "http://127.0.0.1:8080/contacts"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SCOPEGATE, *args], capture_output=True, text=True, timeout=60, check=False
    )


async def run_async(*args: str) -> subprocess.CompletedProcess[str]:
    """The command in a process of its own, while the issuer it may call keeps serving."""
    return await asyncio.to_thread(run, *args)


@pytest.fixture(name="issuer")
async def _issuer() -> AsyncIterator[DevIssuer]:
    issuer = DevIssuer(generate("RS256"), client_id=CLIENT_ID, client_secret=SECRET)
    runner = await issuer.start("127.0.0.1", 0)
    try:
        yield issuer
    finally:
        await runner.cleanup()


def basic(client_id: str, secret: str) -> dict[str, str]:
    pair = f"{quote_plus(client_id)}:{quote_plus(secret)}".encode()
    return {"Authorization": "Basic " + base64.b64encode(pair).decode()}


async def post_form(
    url: str, form: dict[str, str], headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], str]:
    async with (
        aiohttp.ClientSession() as http,
        http.post(url, data=form, headers=headers or {}) as answer,
    ):
        return answer.status, dict(answer.headers), await answer.text()


async def introspect(issuer: DevIssuer, token: str) -> dict[str, Any]:
    """The issuer's answer for `token`, asked with client_secret_basic."""
    status, _, body = await post_form(
        issuer.introspection_endpoint, {"token": token}, basic(CLIENT_ID, SECRET)
    )
    assert status == 200, body
    answer: dict[str, Any] = json.loads(body)
    return answer


def pem_file(tmp_path: Path, key: SigningKey, name: str) -> Path:
    path = tmp_path / name
    path.write_bytes(key.private_pem())
    return path


def assignments(stdout: str) -> dict[str, str]:
    """`NAME=value` lines as the command prints them with --dpop-key."""
    lines = stdout.splitlines()
    assert all("=" in line for line in lines), stdout
    return dict(line.split("=", 1) for line in lines)


def verified_proof(proof: str) -> dict[str, Any]:
    """The claims of a DPoP proof, verified with the key its own header carries."""
    header = jwt.get_unverified_header(proof)
    assert header["typ"] == "dpop+jwt"
    public = jwt.PyJWK(header["jwk"]).key
    claims: dict[str, Any] = jwt.decode(proof, public, algorithms=[header["alg"]])
    return claims


# --- the issuer's introspection endpoint -------------------------------------------------------


async def test_discovery_announces_introspection_and_revocation(issuer: DevIssuer) -> None:
    url = issuer.url + ".well-known/openid-configuration"
    async with aiohttp.ClientSession() as http, http.get(url) as answer:
        document = await answer.json()
    assert document["introspection_endpoint"] == issuer.url + "introspect"
    assert document["revocation_endpoint"] == issuer.url + "revoke"
    for name in ("introspection", "revocation"):
        methods = document[f"{name}_endpoint_auth_methods_supported"]
        assert set(methods) == {"client_secret_basic", "client_secret_post"}


async def test_opaque_token_introspects_active_with_basic_auth(issuer: DevIssuer) -> None:
    before = int(time.time())
    token = issuer.mint_opaque(
        audience=AUDIENCE, subject="alice", scopes=("read:contacts", "delete:contacts"),
        lifetime=600, extra_claims={"acr": "mfa", "auth_time": before - 60},
    )  # fmt: skip
    assert "." not in token
    assert len(token) >= 40
    answer = await introspect(issuer, token)
    assert answer["active"] is True
    assert answer["scope"] == "read:contacts delete:contacts"
    assert answer["sub"] == "alice"
    assert answer["aud"] == AUDIENCE
    assert answer["iss"] == issuer.url
    assert answer["client_id"] == "scopegate-dev-client"
    assert answer["token_type"] == "Bearer"
    assert before <= answer["iat"] <= int(time.time())
    assert answer["exp"] == answer["iat"] + 600
    assert answer["acr"] == "mfa"
    assert answer["auth_time"] == before - 60
    assert "cnf" not in answer


async def test_client_secret_post_is_accepted(issuer: DevIssuer) -> None:
    token = issuer.mint_opaque(audience=AUDIENCE, scopes=("read:contacts",))
    form = {"token": token, "client_id": CLIENT_ID, "client_secret": SECRET}
    status, headers, body = await post_form(issuer.introspection_endpoint, form)
    assert status == 200, body
    assert '"active": true' in body
    assert headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize(
    ("headers", "form"),
    [
        pytest.param(basic(CLIENT_ID, "wrong"), {}, id="basic, wrong secret"),
        pytest.param(basic("someone-else", SECRET), {}, id="basic, wrong client"),
        pytest.param(
            {
                "Authorization": "Basic "
                + base64.b64encode(f"{CLIENT_ID}:{SECRET}".encode()).decode()
            },
            {},
            id="basic, secret not form-encoded",
        ),
        pytest.param({"Authorization": "Basic !!!"}, {}, id="basic, not base64"),
        pytest.param({"Authorization": "Bearer x"}, {}, id="another scheme"),
        pytest.param(
            {}, {"client_id": CLIENT_ID, "client_secret": "wrong"}, id="post, wrong secret"
        ),
        pytest.param({}, {"client_id": CLIENT_ID}, id="post, no secret"),
        pytest.param({}, {}, id="no client authentication"),
    ],
)
@pytest.mark.parametrize("endpoint", ["introspection", "revocation"])
async def test_a_client_that_does_not_authenticate_is_refused(
    issuer: DevIssuer, endpoint: str, headers: dict[str, str], form: dict[str, str]
) -> None:
    token = issuer.mint_opaque(audience=AUDIENCE)
    url = (
        issuer.introspection_endpoint if endpoint == "introspection" else issuer.revocation_endpoint
    )
    status, answer_headers, body = await post_form(url, {"token": token, **form}, headers)
    assert status == 401, body
    assert answer_headers["WWW-Authenticate"].startswith("Basic ")
    assert '"invalid_client"' in body
    assert "active" not in body
    assert (await introspect(issuer, token))["active"] is True  # a refused revocation did nothing


async def test_two_ways_of_authenticating_at_once_are_refused(issuer: DevIssuer) -> None:
    token = issuer.mint_opaque(audience=AUDIENCE)
    form = {"token": token, "client_id": CLIENT_ID, "client_secret": SECRET}
    status, _, body = await post_form(issuer.introspection_endpoint, form, basic(CLIENT_ID, SECRET))
    assert status == 400
    assert '"invalid_request"' in body


async def test_a_request_without_a_token_is_invalid(issuer: DevIssuer) -> None:
    status, _, body = await post_form(issuer.introspection_endpoint, {}, basic(CLIENT_ID, SECRET))
    assert status == 400
    assert '"invalid_request"' in body


@pytest.mark.parametrize(
    "token",
    [
        pytest.param("never-minted-by-this-issuer", id="unknown opaque"),
        pytest.param("a.b.c", id="not a JWT"),
        pytest.param(
            jwt.encode({"exp": int(time.time()) + 600}, generate("RS256").private_key, "RS256"),
            id="JWT signed by another key",
        ),
    ],
)
async def test_a_token_the_issuer_did_not_mint_is_inactive(issuer: DevIssuer, token: str) -> None:
    assert await introspect(issuer, token) == {"active": False}


async def test_an_expired_opaque_token_is_inactive(issuer: DevIssuer) -> None:
    expired = issuer.mint_opaque(audience=AUDIENCE, lifetime=-1)
    fresh = issuer.mint_opaque(audience=AUDIENCE, lifetime=60)
    assert await introspect(issuer, expired) == {"active": False}
    assert (await introspect(issuer, fresh))["active"] is True


@pytest.mark.parametrize("auth", ["basic", "post"])
async def test_a_revoked_opaque_token_is_inactive(issuer: DevIssuer, auth: str) -> None:
    token = issuer.mint_opaque(audience=AUDIENCE)
    other = issuer.mint_opaque(audience=AUDIENCE)
    assert (await introspect(issuer, token))["active"] is True
    form = {"token": token, "token_type_hint": "access_token"}
    if auth == "basic":
        status, _, _ = await post_form(issuer.revocation_endpoint, form, basic(CLIENT_ID, SECRET))
    else:
        form |= {"client_id": CLIENT_ID, "client_secret": SECRET}
        status, _, _ = await post_form(issuer.revocation_endpoint, form)
    assert status == 200
    assert await introspect(issuer, token) == {"active": False}
    assert (await introspect(issuer, other))["active"] is True  # only that one


async def test_revoking_an_unknown_token_is_answered_200(issuer: DevIssuer) -> None:
    """RFC 7009 §2.2: an invalid token is no error."""
    status, _, _ = await post_form(
        issuer.revocation_endpoint, {"token": "nothing-like-it"}, basic(CLIENT_ID, SECRET)
    )
    assert status == 200


async def test_its_own_jwts_introspect_until_expired_or_revoked(issuer: DevIssuer) -> None:
    """What a gateway with `introspection.jwt: true` asks about the demo's JWTs."""
    token = issuer.mint(audience=AUDIENCE, subject="bob", scopes=("read:contacts",))
    answer = await introspect(issuer, token)
    assert answer["active"] is True
    assert answer["sub"] == "bob"
    assert answer["scope"] == "read:contacts"
    assert answer["iss"] == issuer.url
    assert answer["token_type"] == "Bearer"
    expired = issuer.mint(audience=AUDIENCE, lifetime=-1)
    assert await introspect(issuer, expired) == {"active": False}
    tampered = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    assert await introspect(issuer, tampered) == {"active": False}
    status, _, _ = await post_form(
        issuer.revocation_endpoint, {"token": token}, basic(CLIENT_ID, SECRET)
    )
    assert status == 200
    assert await introspect(issuer, token) == {"active": False}


async def test_opaque_tokens_remembered_are_bounded() -> None:
    issuer = DevIssuer(generate("ES256"), client_secret=SECRET, max_remembered=3)
    runner = await issuer.start("127.0.0.1", 0)
    try:
        tokens = [issuer.mint_opaque(audience=AUDIENCE, lifetime=600) for _ in range(4)]
        actives = [(await introspect(issuer, token))["active"] for token in tokens]
    finally:
        await runner.cleanup()
    assert actives == [False, True, True, True]  # the oldest was forgotten


async def dev_token(issuer: DevIssuer, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    async with (
        aiohttp.ClientSession() as http,
        http.post(issuer.url + "dev/token", json=body) as answer,
    ):
        return answer.status, await answer.json()


async def test_dev_token_endpoint_mints_bound_step_up_opaque_tokens(issuer: DevIssuer) -> None:
    jkt = confirmation(generate("ES256"))["jkt"]
    status, answer = await dev_token(issuer, {
        "audience": AUDIENCE, "scope": "read:contacts", "format": "opaque", "jkt": jkt,
        "acr": "mfa", "auth_time": 1_700_000_000,
    })  # fmt: skip
    assert status == 200, answer
    assert answer["token_type"] == "DPoP"
    token = answer["access_token"]
    assert "." not in token
    claims = await introspect(issuer, token)
    assert claims["active"] is True
    assert claims["cnf"] == {"jkt": jkt}
    assert claims["token_type"] == "DPoP"
    assert (claims["acr"], claims["auth_time"]) == ("mfa", 1_700_000_000)


@pytest.mark.parametrize(
    "wrong",
    [
        pytest.param({"format": "paseto"}, id="unknown format"),
        pytest.param({"jkt": "not-a-thumbprint"}, id="jkt not a thumbprint"),
        pytest.param({"acr": ""}, id="empty acr"),
        pytest.param({"auth_time": "yesterday"}, id="auth_time not seconds"),
        pytest.param({"auth_time": True}, id="auth_time a boolean"),
    ],
)
async def test_dev_token_endpoint_refuses_what_it_cannot_mint(
    issuer: DevIssuer, wrong: dict[str, Any]
) -> None:
    status, answer = await dev_token(issuer, {"audience": AUDIENCE, **wrong})
    assert status == 400
    assert answer["error"] == "invalid_request"


# --- scopegate token ---------------------------------------------------------------------------


async def test_token_opaque_from_a_demo_issuer_introspects_active(issuer: DevIssuer) -> None:
    minted = await run_async(
        "token", "--opaque", "--issuer", issuer.url, "--audience", AUDIENCE,
        "--subject", "carol", "--scopes", "read:contacts create:contacts", "--lifetime", "120",
    )  # fmt: skip
    assert minted.returncode == 0, minted.stderr
    assert minted.stderr == ""
    token = minted.stdout.removesuffix("\n")
    assert "\n" not in token
    assert "." not in token
    answer = await introspect(issuer, token)
    assert answer["active"] is True
    assert answer["sub"] == "carol"
    assert answer["scope"] == "read:contacts create:contacts"
    assert answer["exp"] - answer["iat"] == 120
    assert answer["token_type"] == "Bearer"


async def test_token_without_new_options_prints_the_jwt_alone(issuer: DevIssuer) -> None:
    """`TOKEN=$(scopegate token ...)` keeps working: one line, the JWT, nothing else."""
    minted = await run_async("token", "--issuer", issuer.url, "--audience", AUDIENCE)
    assert minted.returncode == 0, minted.stderr
    token = minted.stdout.removesuffix("\n")
    assert "\n" not in token
    public = issuer.key.private_key.public_key()
    claims = jwt.decode(token, public, algorithms=["RS256"], audience=AUDIENCE)
    assert claims["sub"] == "dev-user"
    assert "cnf" not in claims
    assert "acr" not in claims


@pytest.mark.parametrize("source", ["demo issuer", "--key", "demo issuer, --opaque"])
@pytest.mark.parametrize("proof_alg", ["ES256", "RS256", "EdDSA"])
async def test_token_with_dpop_key_is_bound_and_comes_with_a_proof(
    issuer: DevIssuer, tmp_path: Path, source: str, proof_alg: str
) -> None:
    proof_key = generate(proof_alg)
    args = ["--issuer", issuer.url, "--audience", AUDIENCE, "--scopes", "delete:contacts",
            "--dpop-key", str(pem_file(tmp_path, proof_key, "client.pem")),
            "--method", "DELETE", "--url", GATEWAY_URL + "/7?x=1"]  # fmt: skip
    if source == "--key":
        args += ["--key", str(pem_file(tmp_path, issuer.key, "issuer.pem"))]
    if source.endswith("--opaque"):
        args.append("--opaque")
    minted = await run_async("token", *args)
    assert minted.returncode == 0, minted.stderr
    printed = assignments(minted.stdout)
    assert list(printed) == ["DPOP_TOKEN", "DPOP_PROOF"]
    token, proof = printed["DPOP_TOKEN"], printed["DPOP_PROOF"]
    if source.endswith("--opaque"):
        assert "." not in token
        claims = await introspect(issuer, token)
        assert claims["token_type"] == "DPoP"
    else:
        public = issuer.key.private_key.public_key()
        claims = jwt.decode(token, public, algorithms=["RS256"], audience=AUDIENCE)
    assert claims["cnf"]["jkt"] == confirmation(proof_key)["jkt"]
    assert claims["scope"] == "delete:contacts"
    proven = verified_proof(proof)
    assert proven["htm"] == "DELETE"
    assert proven["htu"] == GATEWAY_URL + "/7"  # without the query (RFC 9449 §4.2)
    assert proven["ath"] == access_token_hash(token)
    assert abs(proven["iat"] - time.time()) < 30
    assert proven["jti"]


async def test_dpop_output_sets_shell_variables_with_eval(
    issuer: DevIssuer, tmp_path: Path
) -> None:
    """The documented use: `eval "$(scopegate token ... --dpop-key ...)"` in a POSIX shell."""
    key_file = pem_file(tmp_path, generate("ES256"), "client.pem")
    script = 'eval "$("$@")" && printf "%s\\n%s\\n" "$DPOP_TOKEN" "$DPOP_PROOF"'
    command = [*SCOPEGATE, "token", "--issuer", issuer.url, "--audience", AUDIENCE,
               "--dpop-key", str(key_file), "--url", GATEWAY_URL]  # fmt: skip
    done = await asyncio.to_thread(
        subprocess.run, ["sh", "-c", script, "sh", *command],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    token, proof = done.stdout.splitlines()
    assert jwt.decode(token, options={"verify_signature": False})["iss"] == issuer.url
    assert verified_proof(proof)["ath"] == access_token_hash(token)


async def test_proof_for_makes_a_fresh_proof_for_a_token(issuer: DevIssuer, tmp_path: Path) -> None:
    key = generate("ES256")
    key_file = str(pem_file(tmp_path, key, "client.pem"))
    minted = await run_async(
        "token", "--issuer", issuer.url, "--audience", AUDIENCE, "--dpop-key", key_file,
        "--url", GATEWAY_URL,
    )  # fmt: skip
    assert minted.returncode == 0, minted.stderr
    first = assignments(minted.stdout)
    token = first["DPOP_TOKEN"]
    again = await run_async(
        "token", "--dpop-key", key_file, "--proof-for", token,
        "--method", "POST", "--url", GATEWAY_URL,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    printed = assignments(again.stdout)
    assert list(printed) == ["DPOP_PROOF"]
    fresh = verified_proof(printed["DPOP_PROOF"])
    assert fresh["htm"] == "POST"
    assert fresh["htu"] == GATEWAY_URL
    assert fresh["ath"] == access_token_hash(token)
    assert fresh["jti"] != verified_proof(first["DPOP_PROOF"])["jti"]
    header = jwt.get_unverified_header(printed["DPOP_PROOF"])
    assert thumbprint(header["jwk"]) == confirmation(key)["jkt"]  # signed with --dpop-key


async def test_proof_for_a_token_bound_to_another_key_is_refused(
    issuer: DevIssuer, tmp_path: Path
) -> None:
    token = issuer.mint(audience=AUDIENCE, extra_claims={"cnf": confirmation(generate("ES256"))})
    other = str(pem_file(tmp_path, generate("ES256"), "other.pem"))
    refused = await run_async(
        "token", "--dpop-key", other, "--proof-for", token, "--url", GATEWAY_URL
    )
    assert refused.returncode == 2
    assert refused.stdout == ""
    assert refused.stderr.startswith("scopegate token: ")
    assert "cnf.jkt" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("source", ["demo issuer", "--key"])
async def test_acr_and_auth_time_land_in_a_jwt(
    issuer: DevIssuer, tmp_path: Path, source: str
) -> None:
    args = ["--issuer", issuer.url, "--audience", AUDIENCE, "--acr", "mfa",
            "--auth-time", "1700000000"]  # fmt: skip
    if source == "--key":
        args += ["--key", str(pem_file(tmp_path, issuer.key, "issuer.pem"))]
    minted = await run_async("token", *args)
    assert minted.returncode == 0, minted.stderr
    public = issuer.key.private_key.public_key()
    claims = jwt.decode(minted.stdout.strip(), public, algorithms=["RS256"], audience=AUDIENCE)
    assert claims["acr"] == "mfa"
    assert claims["auth_time"] == 1_700_000_000


async def test_acr_and_a_relative_auth_time_land_in_an_opaque_token(issuer: DevIssuer) -> None:
    before = int(time.time())
    minted = await run_async(
        "token", "--opaque", "--issuer", issuer.url, "--audience", AUDIENCE,
        "--acr", "urn:example:loa:2", "--auth-time", "-600",
    )  # fmt: skip
    after = int(time.time())
    assert minted.returncode == 0, minted.stderr
    answer = await introspect(issuer, minted.stdout.strip())
    assert answer["active"] is True
    assert answer["acr"] == "urn:example:loa:2"
    assert before - 600 <= answer["auth_time"] <= after - 600


@pytest.mark.parametrize(
    ("args", "names"),
    [
        pytest.param(["--opaque", "--key", "{key}"], ["--opaque", "--key"], id="opaque with key"),
        pytest.param(["--dpop-key", "{key}"], ["--dpop-key", "--url"], id="dpop key without url"),
        pytest.param(["--url", GATEWAY_URL], ["--url", "--dpop-key"], id="url without dpop key"),
        pytest.param(["--dpop-key", "{key}", "--url", "/contacts"], ["--url"], id="relative url"),
        pytest.param(
            ["--dpop-key", "{key}", "--url", GATEWAY_URL, "--method", "GE T"],
            ["--method"],
            id="not a method",
        ),
    ],
)
def test_options_that_do_not_go_together_are_refused(
    tmp_path: Path, args: list[str], names: list[str]
) -> None:
    key = str(pem_file(tmp_path, generate("ES256"), "key.pem"))
    # An issuer that would not answer: the refusal comes before anything is asked of it.
    common = ["--issuer", "http://127.0.0.1:9/", "--audience", AUDIENCE]
    refused = run("token", *common, *(arg.replace("{key}", key) for arg in args))
    assert refused.returncode == 2
    assert refused.stdout == ""
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1, refused.stderr
    assert lines[0].startswith("scopegate token: ")
    for name in names:
        assert name in lines[0]


def test_proof_for_refuses_options_that_make_a_token(tmp_path: Path) -> None:
    key = str(pem_file(tmp_path, generate("ES256"), "key.pem"))
    refused = run(
        "token", "--dpop-key", key, "--proof-for", "abc", "--url", GATEWAY_URL,
        "--scopes", "read:contacts", "--acr", "mfa",
    )  # fmt: skip
    assert refused.returncode == 2
    assert refused.stdout == ""
    assert "--scopes, --acr" in refused.stderr


def test_opaque_from_an_issuer_that_is_not_a_demo_says_why(tmp_path: Path) -> None:
    refused = run("token", "--opaque", "--issuer", "http://127.0.0.1:9/", "--audience", AUDIENCE)
    assert refused.returncode == 1
    assert refused.stdout == ""
    assert refused.stderr.startswith("scopegate token: ")


# --- the demo's configuration ------------------------------------------------------------------


def test_demo_configuration_introspects_at_the_discovered_endpoint() -> None:
    config = demo_config(
        "http://127.0.0.1:1/", "http://127.0.0.1:2", 0, 0, "http://localhost:3",
        introspection_secret="fresh-secret",
    )  # fmt: skip
    (issuer,) = config.issuers
    assert issuer.introspection is not None
    assert issuer.introspection.client_id == "scopegate-demo"
    assert issuer.introspection.client_secret == "fresh-secret"
    assert issuer.introspection.endpoint is None  # discovered


def test_scopegate_check_passes_on_the_demo_configuration() -> None:
    env = {
        **os.environ,
        "SCOPEGATE_DEMO_ISSUER": "http://127.0.0.1:1/",
        "SCOPEGATE_DEMO_UPSTREAM": "http://127.0.0.1:2",
        "SCOPEGATE_DEMO_PAGE_ORIGIN": "http://localhost:3",
        "SCOPEGATE_DEMO_INTROSPECTION_SECRET": "fresh-secret",
    }
    checked = subprocess.run(
        [*SCOPEGATE, "check", "-c", str(DEMO_YAML)],
        capture_output=True, text=True, timeout=60, check=False, env=env,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stderr
    assert "fresh-secret" not in checked.stdout + checked.stderr


async def test_the_running_demo_gives_its_gateway_the_issuers_credentials() -> None:
    async with running_demo(0, 0) as demo:
        (configured,) = demo.running.runtime.config.issuers
        assert configured.introspection is not None
        assert configured.introspection.client_id == demo.issuer.client_id
        assert configured.introspection.client_secret == demo.issuer.client_secret
        token = demo.issuer.mint_opaque(audience=AUDIENCE)
        assert (await introspect_as(demo.issuer, token, configured.introspection))["active"]
    async with running_demo(0, 0) as second:
        assert second.issuer.client_secret != demo.issuer.client_secret  # a new one each run


async def introspect_as(issuer: DevIssuer, token: str, settings: Introspection) -> dict[str, Any]:
    form = {
        "token": token,
        "client_id": settings.client_id,
        "client_secret": settings.client_secret,
    }
    status, _, body = await post_form(issuer.introspection_endpoint, form)
    assert status == 200, body
    answer: dict[str, Any] = json.loads(body)
    return answer
