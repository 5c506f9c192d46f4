"""DPoP-bound access tokens (RFC 9449, SPEC §6.4), request by request: a token whose `cnf.jkt`
names a key is accepted only with `Authorization: DPoP` and a fresh proof that key signed for
this method and this URL; a proof that fails a check is 401 `invalid_dpop_proof`, a proof by
another key or a token in the wrong scheme is 401 `token_binding_mismatch`. A real gateway on
loopback, a real JWKS server and a recording upstream, which shows that no refused request
arrives; one client is `curl`.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm
from multidict import CIMultiDict

from scopegate.config.load import load_config_text
from scopegate.devtools.dpop import confirmation, make_proof, proof_jwk
from scopegate.devtools.keys import SigningKey, generate
from scopegate.pipeline.dpop import access_token_hash, b64url
from tests.e2e.conftest import AUDIENCE, BASE_CONFIG, Env, base_config, gateway_env
from tests.support.tools import require_tool

pytestmark = pytest.mark.timeout(30)

ISSUER_LINE = "    algorithms: [RS256, ES256]\n"
# Every asymmetric algorithm scopegate verifies, as the DPoP challenge lists them (RFC 9449
# §7.1): never `none`, never an HMAC.
ALGS = "RS256 RS384 RS512 PS256 PS384 PS512 ES256 ES384 ES512 EdDSA"
PUBLIC_URL = "https://api.example.com"
DENIALS = "scopegate_denials_total"
TIMEOUT = 5.0


def dpop_config(mode: str, template: str = BASE_CONFIG) -> str:
    """The shared configuration with the test issuer's `dpop` set to `mode`."""
    assert ISSUER_LINE in template
    return template.replace(ISSUER_LINE, f"{ISSUER_LINE}    dpop: {mode}\n", 1)


BEHIND_PROXY = dpop_config("allowed").replace(
    "routes:\n",
    f"resource_metadata:\n  public_url: {PUBLIC_URL}\n  resource: {AUDIENCE}\nroutes:\n",
    1,
)
# A public URL with a path: requests arrive with that path (as the RFC 9728 document does).
PREFIXED = (
    dpop_config("allowed").replace(
        "routes:\n",
        f"resource_metadata:\n  public_url: {PUBLIC_URL}/v1\n  resource: {AUDIENCE}\nroutes:\n",
        1,
    )
    + """\
  - name: prefixed
    path: /v1/contacts
    upstream: contacts
    scopes: [read:contacts]
"""
)


@asynccontextmanager
async def dpop_env(mode: str = "allowed") -> AsyncIterator[Env]:
    async with gateway_env(dpop_config(mode)) as env:
        yield env


@pytest.fixture(name="env")
async def _allowed_env() -> AsyncIterator[Env]:
    async with dpop_env("allowed") as env:
        yield env


@pytest.fixture(name="client_key")
def _client_key() -> SigningKey:
    """The key the client holds and its tokens are bound to."""
    return generate("ES256")


# --- requests and answers ----------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    status: int
    challenges: list[str]  # every WWW-Authenticate value, in order
    body: dict[str, Any]

    @property
    def detail(self) -> str:
        return str(self.body.get("detail", ""))


async def call(
    env: Env,
    method: str,
    path: str,
    *,
    authorization: str | None = None,
    proofs: tuple[str, ...] = (),
) -> Reply:
    """One request to the gateway at `env.url + path`, with each of `proofs` as a `DPoP` field."""
    headers: CIMultiDict[str] = CIMultiDict()
    if authorization is not None:
        headers.add("Authorization", authorization)
    for proof in proofs:
        headers.add("DPoP", proof)
    async with (
        asyncio.timeout(TIMEOUT),
        env.http.request(method, env.url + path, headers=headers) as answer,
    ):
        raw = await answer.read()
        body = json.loads(raw) if answer.content_type == "application/problem+json" else {}
        return Reply(answer.status, answer.headers.getall("WWW-Authenticate", []), body)


async def dpop_call(
    env: Env, token: str, proofs: tuple[str, ...], method: str = "GET", path: str = "/contacts"
) -> Reply:
    return await call(env, method, path, authorization=f"DPoP {token}", proofs=proofs)


def bound_token(env: Env, key: SigningKey, **kwargs: Any) -> str:
    """A token of the test issuer bound to `key` (`cnf.jkt`)."""
    extra = {"cnf": confirmation(key), **kwargs.pop("extra_claims", {})}
    return env.token(extra_claims=extra, **kwargs)


def proof_claims(method: str, url: str, token: str | None) -> dict[str, Any]:
    claims: dict[str, Any] = {"htm": method, "htu": url, "iat": int(time.time())}
    claims["jti"] = f"jti-{time.monotonic_ns()}"
    if token is not None:
        claims["ath"] = access_token_hash(token)
    return claims


def signed_proof(
    key: SigningKey,
    claims: dict[str, Any],
    *,
    header: dict[str, Any] | None = None,
    signer: SigningKey | None = None,
) -> str:
    """A proof with exactly these claims, `key`'s public JWK in its header unless `header`
    replaces it, signed by `signer` (default `key`)."""
    by = signer or key
    headers = {"typ": "dpop+jwt", "jwk": proof_jwk(key), **(header or {})}
    return jwt.encode(claims, by.private_key, algorithm=by.alg, headers=headers)


def refused_proof(reply: Reply, metadata: str | None = None) -> None:
    """401 invalid_dpop_proof, said in the DPoP challenge only (RFC 9449 §7.1); the Bearer
    challenge names the RFC 9728 document at `metadata`, if any."""
    assert reply.status == 401, reply
    assert reply.body["type"] == "https://scopegate.dev/problems/invalid_dpop_proof"
    bearer = 'Bearer realm="scopegate"'
    if metadata is not None:
        bearer += f', resource_metadata="{metadata}/.well-known/oauth-protected-resource"'
    assert reply.challenges == [
        bearer,
        f'DPoP error="invalid_dpop_proof", error_description="{reply.detail}", algs="{ALGS}"',
    ]


def mismatch_in_dpop(reply: Reply) -> None:
    """401 invalid_token (token_binding_mismatch), said in the DPoP challenge."""
    assert reply.status == 401, reply
    assert reply.body["type"] == "https://scopegate.dev/problems/token_binding_mismatch"
    assert reply.challenges == [
        'Bearer realm="scopegate"',
        f'DPoP error="invalid_token", error_description="{reply.detail}", algs="{ALGS}"',
    ]


def mismatch_in_bearer(reply: Reply, *, dpop_offered: bool = True) -> None:
    """401 invalid_token (token_binding_mismatch), said in the Bearer challenge."""
    assert reply.status == 401, reply
    assert reply.body["type"] == "https://scopegate.dev/problems/token_binding_mismatch"
    bearer = f'Bearer realm="scopegate", error="invalid_token", error_description="{reply.detail}"'
    assert reply.challenges == ([bearer, f'DPoP algs="{ALGS}"'] if dpop_offered else [bearer])


def denials(env: Env, reason: str, route: str = "list-contacts") -> float:
    return env.sample(DENIALS, route=route, reason=reason)


# --- a sound proof ----------------------------------------------------------------------


async def test_a_bound_token_with_a_sound_proof_is_forwarded_as_sent(
    env: Env, client_key: SigningKey
) -> None:
    token = bound_token(env, client_key)
    proof = make_proof(client_key, "GET", f"{env.url}/contacts", access_token=token)
    reply = await dpop_call(env, token, (proof,))
    assert reply.status == 200, reply
    assert reply.challenges == []
    assert len(env.upstream.received) == 1
    seen = env.upstream.last
    assert (seen.method, seen.target) == ("GET", "/contacts")
    assert seen.header("Authorization") == f"DPoP {token}"
    assert seen.header("X-Auth-Subject") == "user-1"
    assert env.sample("scopegate_denials_total", route="list-contacts",
                      reason="invalid_dpop_proof") == 0  # fmt: skip


async def test_a_proof_names_the_method_it_goes_with(env: Env, client_key: SigningKey) -> None:
    token = bound_token(env, client_key, scopes=("create:contacts",))
    proof = make_proof(client_key, "POST", f"{env.url}/contacts", access_token=token)
    reply = await dpop_call(env, token, (proof,), method="POST")
    assert reply.status == 200, reply
    assert (env.upstream.last.method, env.upstream.last.target) == ("POST", "/contacts")


async def test_the_same_proof_twice_is_a_replay(env: Env, client_key: SigningKey) -> None:
    token = bound_token(env, client_key)
    proof = make_proof(client_key, "GET", f"{env.url}/contacts", access_token=token)
    assert (await dpop_call(env, token, (proof,))).status == 200
    replayed = await dpop_call(env, token, (proof,))
    refused_proof(replayed)
    assert "jti" in replayed.detail
    assert denials(env, "invalid_dpop_proof") == 1
    assert len(env.upstream.received) == 1


async def test_a_replay_is_known_by_key_and_jti_not_by_the_proof_s_text(
    env: Env, client_key: SigningKey
) -> None:
    """Another proof with a used `jti` is a replay (another `iat` changes the text); the same
    `jti` from another client's key is not: a `jti` is unique per key only."""
    url = f"{env.url}/contacts"
    token = bound_token(env, client_key)
    jti = "one-and-only"
    first = make_proof(client_key, "GET", url, access_token=token, jti=jti)
    assert (await dpop_call(env, token, (first,))).status == 200
    again = make_proof(client_key, "GET", url, access_token=token, jti=jti, iat=time.time() - 10)
    assert again != first
    refused_proof(await dpop_call(env, token, (again,)))
    other_key = generate("ES256")
    other_token = bound_token(env, other_key, subject="user-2")
    theirs = make_proof(other_key, "GET", url, access_token=other_token, jti=jti)
    assert (await dpop_call(env, other_token, (theirs,))).status == 200
    assert len(env.upstream.received) == 2
    assert denials(env, "invalid_dpop_proof") == 1


# --- proofs that fail a check of RFC 9449 §4.3 ---------------------------------------------


@dataclass(frozen=True)
class Request:
    """What a case builds its `DPoP` field values from."""

    env: Env
    key: SigningKey
    token: str

    @property
    def url(self) -> str:
        return f"{self.env.url}/contacts"


def _at(r: Request) -> str:
    return r.url


def _proof(
    method: str = "GET",
    url: Callable[[Request], str] = _at,
    *,
    ath: bool = True,
    iat_offset: float = 0.0,
) -> Callable[[Request], list[str]]:
    """A proof by the client's key; `iat` is taken when the request is made, shifted."""

    def build(r: Request) -> list[str]:
        token = r.token if ath else None
        iat = time.time() + iat_offset
        return [make_proof(r.key, method, url(r), access_token=token, iat=iat)]

    return build


def _two_sound_proofs(r: Request) -> list[str]:
    return [make_proof(r.key, "GET", r.url, access_token=r.token) for _ in range(2)]


def _for_another_token(r: Request) -> list[str]:
    other = bound_token(r.env, r.key, subject="someone-else")
    assert other != r.token
    return [make_proof(r.key, "GET", r.url, access_token=other)]


def _unsigned_alg_none(r: Request) -> list[str]:
    header = {"typ": "dpop+jwt", "alg": "none", "jwk": proof_jwk(r.key)}
    claims = proof_claims("GET", r.url, r.token)
    parts = (b64url(json.dumps(part).encode()) for part in (header, claims))
    return [".".join(parts) + "."]


def _alg_none_with_a_signature(r: Request) -> list[str]:
    (unsigned,) = _unsigned_alg_none(r)
    return [unsigned + "c2lnbmF0dXJl"]


def _hmac(r: Request) -> list[str]:
    secret = b"a shared secret of thirty-two bytes or more, enough"
    claims = proof_claims("GET", r.url, r.token)
    headers = {"typ": "dpop+jwt", "jwk": proof_jwk(r.key)}
    return [jwt.encode(claims, secret, algorithm="HS256", headers=headers)]


def _private_jwk(r: Request) -> list[str]:
    assert isinstance(r.key.private_key, ec.EllipticCurvePrivateKey)
    private = ECAlgorithm.to_jwk(r.key.private_key, as_dict=True)
    assert "d" in private
    return [signed_proof(r.key, proof_claims("GET", r.url, r.token), header={"jwk": private})]


def _typ(typ: str) -> Callable[[Request], list[str]]:
    def build(r: Request) -> list[str]:
        return [signed_proof(r.key, proof_claims("GET", r.url, r.token), header={"typ": typ})]

    return build


def _jwk_of_one_key_signed_by_another(r: Request) -> list[str]:
    claims = proof_claims("GET", r.url, r.token)
    return [signed_proof(r.key, claims, signer=generate("ES256"))]


def _without(claim: str) -> Callable[[Request], list[str]]:
    def build(r: Request) -> list[str]:
        claims = proof_claims("GET", r.url, r.token)
        del claims[claim]
        return [signed_proof(r.key, claims)]

    return build


def _port(r: Request) -> str:
    return f"http://127.0.0.1:{r.env.port + 1}/contacts"


HTM, HTU, IAT = "htm is not", "htu is not", "(iat)"
BAD_PROOFS = [
    pytest.param(_proof("POST"), HTM, id="for another method"),
    pytest.param(_proof("get"), HTM, id="for the method in lower case"),
    pytest.param(_proof(url=lambda r: f"{r.env.url}/contacts/1"), HTU, id="for another path"),
    pytest.param(_proof(url=lambda r: f"http://localhost:{r.env.port}/contacts"), HTU,
                 id="for another host"),
    pytest.param(_proof(url=_port), HTU, id="for another port"),
    pytest.param(_proof(url=lambda r: f"https://127.0.0.1:{r.env.port}/contacts"), HTU,
                 id="for another scheme"),
    pytest.param(_for_another_token, "ath is not", id="for another token (ath)"),
    pytest.param(_proof(ath=False), "no ath", id="without ath"),
    pytest.param(_proof(iat_offset=-400), IAT, id="stale iat"),
    pytest.param(_proof(iat_offset=60), IAT, id="iat in the future"),
    pytest.param(lambda r: [], "no DPoP proof", id="no DPoP header"),
    pytest.param(_two_sound_proofs, "more than one", id="two DPoP headers"),
    pytest.param(lambda r: ["garbage"], "malformed", id="garbage"),
    pytest.param(lambda r: ["a.b.c"], "malformed", id="three parts of nothing"),
    pytest.param(_unsigned_alg_none, "not signed", id="alg none, unsigned"),
    pytest.param(_alg_none_with_a_signature, "alg", id="alg none, with a signature"),
    pytest.param(_hmac, "alg", id="HS256"),
    pytest.param(_private_jwk, "private", id="a private jwk (d)"),
    pytest.param(_typ("JWT"), "typ", id="typ JWT"),
    pytest.param(_typ("application/dpop+jwt"), "typ", id="typ with application/"),
    pytest.param(_jwk_of_one_key_signed_by_another, "signature",
                 id="a signature its jwk does not verify"),
    pytest.param(_without("jti"), "no jti", id="without jti"),
    pytest.param(_without("htu"), "no htu", id="without htu"),
    pytest.param(_without("iat"), "no iat", id="without iat"),
]  # fmt: skip


@pytest.mark.parametrize(("build", "why"), BAD_PROOFS)
async def test_a_proof_that_fails_a_check_is_invalid_dpop_proof(
    env: Env, client_key: SigningKey, build: Callable[[Request], list[str]], why: str
) -> None:
    token = bound_token(env, client_key)
    proofs = tuple(build(Request(env, client_key, token)))
    reply = await dpop_call(env, token, proofs)
    refused_proof(reply)
    assert why in reply.detail  # the check that refused it, named
    assert token not in reply.detail
    assert denials(env, "invalid_dpop_proof") == 1
    assert env.upstream.received == []


async def test_a_proof_within_the_window_and_the_leeway_is_accepted(
    env: Env, client_key: SigningKey
) -> None:
    """The bounds the cases above cross, from inside: 250 s old, 3 s ahead."""
    url = f"{env.url}/contacts"
    token = bound_token(env, client_key)
    for iat in (time.time() - 250, time.time() + 3):
        proof = make_proof(client_key, "GET", url, access_token=token, iat=iat)
        assert (await dpop_call(env, token, (proof,))).status == 200
    assert len(env.upstream.received) == 2


# --- the key and the scheme -----------------------------------------------------------------


async def test_a_sound_proof_by_another_key_is_a_binding_mismatch(
    env: Env, client_key: SigningKey
) -> None:
    token = bound_token(env, client_key)
    thief = generate("ES256")
    proof = make_proof(thief, "GET", f"{env.url}/contacts", access_token=token)
    reply = await dpop_call(env, token, (proof,))
    mismatch_in_dpop(reply)
    assert denials(env, "token_binding_mismatch") == 1
    assert denials(env, "invalid_dpop_proof") == 0
    assert env.upstream.received == []


async def test_a_bound_token_sent_as_bearer_is_refused(env: Env, client_key: SigningKey) -> None:
    """With or without a sound proof beside it: the scheme says how the token is used."""
    token = bound_token(env, client_key)
    proof = make_proof(client_key, "GET", f"{env.url}/contacts", access_token=token)
    for proofs in ((), (proof,)):
        reply = await call(env, "GET", "/contacts", authorization=f"Bearer {token}",
                           proofs=proofs)  # fmt: skip
        mismatch_in_bearer(reply)
    assert denials(env, "token_binding_mismatch") == 2
    assert env.upstream.received == []


async def test_an_unbound_token_with_the_dpop_scheme_is_refused(
    env: Env, client_key: SigningKey
) -> None:
    token = env.token()
    proof = make_proof(client_key, "GET", f"{env.url}/contacts", access_token=token)
    reply = await dpop_call(env, token, (proof,))
    mismatch_in_dpop(reply)
    assert denials(env, "token_binding_mismatch") == 1
    assert env.upstream.received == []
    # The same token as Bearer, under `allowed`, is an ordinary bearer token.
    ordinary = await call(env, "GET", "/contacts", authorization=f"Bearer {token}")
    assert ordinary.status == 200


async def test_under_required_only_bound_tokens_with_proofs_pass(client_key: SigningKey) -> None:
    async with dpop_env("required") as env:
        unbound = await call(env, "GET", "/contacts", authorization=f"Bearer {env.token()}")
        mismatch_in_bearer(unbound)
        assert "cnf.jkt" in unbound.detail
        assert env.upstream.received == []
        token = bound_token(env, client_key)
        proof = make_proof(client_key, "GET", f"{env.url}/contacts", access_token=token)
        assert (await dpop_call(env, token, (proof,))).status == 200
        assert env.upstream.last.header("Authorization") == f"DPoP {token}"
        assert len(env.upstream.received) == 1
        assert denials(env, "token_binding_mismatch") == 1


async def test_under_disabled_a_bound_token_sent_as_bearer_is_still_refused(
    client_key: SigningKey,
) -> None:
    """The default: the file says nothing of DPoP. RFC 9449 §7.2: a bound token is useless
    without its key, whatever the issuer's mode."""
    async with gateway_env() as env:
        assert "dpop" not in base_config(env.jwks, env.upstream).lower()
        token = bound_token(env, client_key)
        reply = await call(env, "GET", "/contacts", authorization=f"Bearer {token}")
        mismatch_in_bearer(reply, dpop_offered=False)
        assert denials(env, "token_binding_mismatch") == 1
        assert env.upstream.received == []


async def test_a_file_that_does_not_mention_dpop_never_reads_the_scheme_nor_names_it(
    client_key: SigningKey,
) -> None:
    async with gateway_env() as env:
        url = f"{env.url}/contacts"
        token = bound_token(env, client_key)
        proof = make_proof(client_key, "GET", url, access_token=token)
        for authorization in ("DPoP x", f"DPoP {token}"):
            reply = await call(env, "GET", "/contacts", authorization=authorization,
                               proofs=(proof,))  # fmt: skip
            assert reply.status == 401, reply
            assert reply.body["type"] == "https://scopegate.dev/problems/missing_token"
            assert reply.challenges == ['Bearer realm="scopegate"']
        assert denials(env, "missing_token") == 2
        # No answer names DPoP: not a 401 without a token, not a 403, not a 200.
        plain = await call(env, "GET", "/contacts")
        assert plain.challenges == ['Bearer realm="scopegate"']
        forbidden = await call(env, "DELETE", "/contacts/1",
                               authorization=f"Bearer {env.token()}")  # fmt: skip
        assert forbidden.status == 403
        assert all("dpop" not in value.lower() for value in forbidden.challenges)
        assert forbidden.challenges[0].startswith('Bearer realm="scopegate", error="insuff')
        assert env.upstream.received == []
        # A stray DPoP header beside an ordinary bearer token is nothing to a file without DPoP.
        ordinary = await call(env, "GET", "/contacts", authorization=f"Bearer {env.token()}",
                              proofs=("garbage",))  # fmt: skip
        assert (ordinary.status, ordinary.challenges) == (200, [])
        assert denials(env, "invalid_dpop_proof") == 0


# --- the URL a proof names ----------------------------------------------------------------


async def test_query_and_fragment_are_not_part_of_what_htu_names(
    env: Env, client_key: SigningKey
) -> None:
    token = bound_token(env, client_key)
    claims = proof_claims("GET", f"{env.url}/contacts?page=1#top", token)
    with_query = signed_proof(client_key, claims)
    reply = await dpop_call(env, token, (with_query,), path="/contacts?page=2&sort=name")
    assert reply.status == 200, reply
    assert env.upstream.last.target == "/contacts?page=2&sort=name"
    plain = make_proof(client_key, "GET", f"{env.url}/contacts", access_token=token)
    assert (await dpop_call(env, token, (plain,), path="/contacts?page=3")).status == 200
    assert len(env.upstream.received) == 2


async def test_behind_a_proxy_htu_is_the_public_url(client_key: SigningKey) -> None:
    async with gateway_env(BEHIND_PROXY) as env:
        token = bound_token(env, client_key)
        for public in (f"{PUBLIC_URL}/contacts", "HTTPS://API.example.com:443/contacts"):
            proof = make_proof(client_key, "GET", public, access_token=token)
            reply = await dpop_call(env, token, (proof,))
            assert reply.status == 200, reply
        assert len(env.upstream.received) == 2
        loopback = make_proof(client_key, "GET", f"{env.url}/contacts", access_token=token)
        refused = await dpop_call(env, token, (loopback,))
        refused_proof(refused, metadata=PUBLIC_URL)
        assert "htu" in refused.detail
        assert len(env.upstream.received) == 2


async def test_behind_a_proxy_htu_takes_the_public_origin_and_the_path_as_it_arrived(
    client_key: SigningKey,
) -> None:
    async with gateway_env(PREFIXED) as env:
        token = bound_token(env, client_key)
        sound = make_proof(client_key, "GET", f"{PUBLIC_URL}/v1/contacts", access_token=token)
        assert (await dpop_call(env, token, (sound,), path="/v1/contacts")).status == 200
        assert env.upstream.last.target == "/v1/contacts"
        for wrong in (f"{PUBLIC_URL}/v1/v1/contacts", f"{PUBLIC_URL}/contacts"):
            proof = make_proof(client_key, "GET", wrong, access_token=token)
            reply = await dpop_call(env, token, (proof,), path="/v1/contacts")
            refused_proof(reply, metadata=f"{PUBLIC_URL}/v1")
        assert len(env.upstream.received) == 1


async def test_equivalent_spellings_of_the_url_are_the_url(
    env: Env, client_key: SigningKey
) -> None:
    """RFC 3986 §6.2.2: case of scheme and host, unreserved escapes and dot segments."""
    token = bound_token(env, client_key)
    for htu in (f"HTTP://127.0.0.1:{env.port}/%63ontacts", f"{env.url}/a/../contacts",
                f"{env.url}/./contacts"):  # fmt: skip
        proof = signed_proof(client_key, proof_claims("GET", htu, token))
        reply = await dpop_call(env, token, (proof,))
        assert reply.status == 200, (htu, reply)
    assert len(env.upstream.received) == 3
    # Not `%2F` for `/`: a decoded slash would split a segment the gateway keeps whole.
    slash = signed_proof(client_key, proof_claims("GET", f"{env.url}/contacts%2F1", token))
    refused_proof(await dpop_call(env, token, (slash,), path="/contacts/1"))
    assert len(env.upstream.received) == 3


# --- the verdict cache and reloads ---------------------------------------------------------


async def test_a_cached_token_still_needs_a_sound_proof_every_time(
    env: Env, client_key: SigningKey
) -> None:
    url = f"{env.url}/contacts"
    token = bound_token(env, client_key)
    first = make_proof(client_key, "GET", url, access_token=token)
    second = make_proof(client_key, "GET", url, access_token=token)
    assert first != second
    assert (await dpop_call(env, token, (first,))).status == 200
    assert (await dpop_call(env, token, (second,))).status == 200
    refused_proof(await dpop_call(env, token, (make_proof(client_key, "POST", url,
                                                          access_token=token),)))  # fmt: skip
    refused_proof(await dpop_call(env, token, ()))
    refused_proof(await dpop_call(env, token, (first,)))
    thief = make_proof(generate("ES256"), "GET", url, access_token=token)
    mismatch_in_dpop(await dpop_call(env, token, (thief,)))
    mismatch_in_bearer(await call(env, "GET", "/contacts", authorization=f"Bearer {token}"))
    assert len(env.upstream.received) == 2
    assert denials(env, "invalid_dpop_proof") == 3
    assert denials(env, "token_binding_mismatch") == 2


async def test_a_proof_used_before_a_reload_is_still_a_replay_after_it(
    env: Env, client_key: SigningKey
) -> None:
    url = f"{env.url}/contacts"
    token = bound_token(env, client_key)
    proof = make_proof(client_key, "GET", url, access_token=token)
    assert (await dpop_call(env, token, (proof,))).status == 200
    before = env.gateway.runtime
    text = base_config(env.jwks, env.upstream, dpop_config("allowed"))
    await env.gateway.reload(load_config_text(text, "gateway.yaml"))
    assert env.gateway.runtime is not before
    refused_proof(await dpop_call(env, token, (proof,)))
    fresh = make_proof(client_key, "GET", url, access_token=token)
    assert (await dpop_call(env, token, (fresh,))).status == 200
    assert len(env.upstream.received) == 2


# --- the scheme of the request names the challenge that carries the error ------------------

STEP_UP_ROUTE = """\
  - name: payments
    path: /payments
    upstream: contacts
    acr_values: [mfa]
"""


async def _expired(env: Env, key: SigningKey) -> Reply:
    token = bound_token(env, key, lifetime=-3600)
    proof = make_proof(key, "GET", f"{env.url}/contacts", access_token=token)
    return await dpop_call(env, token, (proof,))


async def _lacking_scope(env: Env, key: SigningKey) -> Reply:
    token = bound_token(env, key)
    proof = make_proof(key, "DELETE", f"{env.url}/contacts/1", access_token=token)
    return await dpop_call(env, token, (proof,), method="DELETE", path="/contacts/1")


async def _without_step_up(env: Env, key: SigningKey) -> Reply:
    token = bound_token(env, key, extra_claims={"acr": "pwd"})
    proof = make_proof(key, "GET", f"{env.url}/payments", access_token=token)
    return await dpop_call(env, token, (proof,), path="/payments")


@pytest.mark.parametrize(
    ("send", "error"),
    [pytest.param(_expired, "invalid_token", id="expired token"),
     pytest.param(_lacking_scope, "insufficient_scope", id="scope lacking"),
     pytest.param(_without_step_up, "insufficient_user_authentication", id="step-up unmet")],
)  # fmt: skip
async def test_a_dpop_request_refused_for_its_token_hears_why_in_the_dpop_challenge(
    client_key: SigningKey, send: Callable[[Env, SigningKey], Any], error: str
) -> None:
    """problems.challenge: "The error is said in the challenge of the scheme the request used"
    (RFC 9449 §7.1 shows `WWW-Authenticate: DPoP error="invalid_token"` for a DPoP request)."""
    async with gateway_env(dpop_config("allowed") + STEP_UP_ROUTE) as env:
        reply: Reply = await send(env, client_key)
        assert reply.status in (401, 403), reply
        assert env.upstream.received == []
        assert len(reply.challenges) == 2, reply
        bearer, dpop = reply.challenges
        assert dpop.startswith(f'DPoP error="{error}", '), reply
        assert dpop.endswith(f'algs="{ALGS}"'), reply
        assert bearer == 'Bearer realm="scopegate"', reply


# --- what the configuration promises beyond single requests --------------------------------


async def test_with_dpop_nonce_a_proof_carries_a_nonce_the_gateway_issued(
    client_key: SigningKey,
) -> None:
    """RFC 9449 §9: without a nonce (or with one the gateway never issued), 401 with
    `DPoP error="use_dpop_nonce"` and a `DPoP-Nonce` to sign the next proof with."""
    template = dpop_config("allowed").replace(
        "    dpop: allowed\n", "    dpop: allowed\n    dpop_nonce: true\n", 1
    )
    async with gateway_env(template) as env:
        url = f"{env.url}/contacts"
        token = bound_token(env, client_key)
        nonce = ""
        for said in (None, "made-up"):
            proof = make_proof(client_key, "GET", url, access_token=token, nonce=said)
            async with env.http.get(url, headers={"Authorization": f"DPoP {token}",
                                                  "DPoP": proof}) as answer:  # fmt: skip
                body = await answer.json(content_type=None)
                assert answer.status == 401
                assert body["type"] == "https://scopegate.dev/problems/invalid_dpop_proof"
                assert answer.headers.getall("WWW-Authenticate") == [
                    'Bearer realm="scopegate"',
                    f'DPoP error="use_dpop_nonce", error_description="{body["detail"]}", '
                    f'algs="{ALGS}"',
                ]
                nonce = answer.headers["DPoP-Nonce"]
        assert env.upstream.received == []
        assert denials(env, "invalid_dpop_proof") == 2
        proof = make_proof(client_key, "GET", url, access_token=token, nonce=nonce)
        assert (await dpop_call(env, token, (proof,))).status == 200
        assert len(env.upstream.received) == 1


async def test_under_required_the_metadata_says_bound_tokens_are_required() -> None:
    """RFC 9728 §2: `dpop_bound_access_tokens_required` is whether the resource always
    requires DPoP-bound tokens, which `dpop: required` on every issuer means."""
    template = BEHIND_PROXY.replace("    dpop: allowed\n", "    dpop: required\n", 1)
    async with gateway_env(template) as env:
        url = f"{env.url}/.well-known/oauth-protected-resource"
        async with env.http.get(url) as answer:
            assert answer.status == 200
            document = await answer.json()
        assert document["dpop_bound_access_tokens_required"] is True
        assert "ES256" in document["dpop_signing_alg_values_supported"]


# --- a client outside this process -----------------------------------------------------------


async def run_curl(*arguments: str) -> str:
    curl = require_tool("curl", "Debian package curl")
    process = await asyncio.create_subprocess_exec(
        curl, "--silent", "--show-error", "--noproxy", "*", "--max-time", "10", *arguments,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    try:
        async with asyncio.timeout(15):
            output, _ = await process.communicate()
    except TimeoutError:
        process.kill()
        await process.wait()
        raise AssertionError("curl did not finish within 15 s") from None
    assert process.returncode == 0, output
    return output.decode(errors="replace")


async def test_curl_sends_a_dpop_request(env: Env, client_key: SigningKey) -> None:
    url = f"{env.url}/contacts"
    token = bound_token(env, client_key)
    proof = make_proof(client_key, "GET", url, access_token=token)
    request = ("-H", f"Authorization: DPoP {token}", "-H", f"DPoP: {proof}")
    out = await run_curl("-o", "/dev/null", "-w", "%{http_code}", *request, url)
    assert out == "200"
    assert (env.upstream.last.header("User-Agent") or "").startswith("curl/")
    assert env.upstream.last.header("Authorization") == f"DPoP {token}"
    again = await run_curl("-D", "-", "-o", "/dev/null", *request, url)
    assert again.startswith("HTTP/1.1 401")
    assert re.search(r'(?im)^www-authenticate: DPoP error="invalid_dpop_proof"', again), again
    assert len(env.upstream.received) == 1
