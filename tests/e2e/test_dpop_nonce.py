"""RFC 9449 §9 server nonces, through a real gateway: with `dpop_nonce: true`, a proof without a
nonce (or with one scopegate did not issue) is answered 401 `use_dpop_nonce` with a `DPoP-Nonce`
header; the same request signed again with that nonce passes. Refused requests never arrive."""

from __future__ import annotations

import aiohttp

from scopegate.devtools.dpop import confirmation, make_proof
from scopegate.devtools.keys import generate
from tests.e2e.conftest import BASE_CONFIG, Env, gateway_env

NONCE_CONFIG = BASE_CONFIG.replace(
    "    algorithms: [RS256, ES256]\n",
    "    algorithms: [RS256, ES256]\n    dpop: required\n    dpop_nonce: true\n",
    1,
)


async def _get(env: Env, token: str, proof: str) -> aiohttp.ClientResponse:
    headers = {"Authorization": f"DPoP {token}", "DPoP": proof}
    async with env.http.get(env.url + "/contacts", headers=headers) as answer:
        await answer.read()
        return answer


async def test_a_proof_without_a_nonce_is_told_which_to_use_and_then_passes() -> None:
    async with gateway_env(NONCE_CONFIG) as env:
        key = generate("ES256")
        token = env.token(extra_claims={"cnf": confirmation(key)})
        url = env.url + "/contacts"
        first = await _get(env, token, make_proof(key, "GET", url, access_token=token))
        assert first.status == 401
        challenges = first.headers.getall("WWW-Authenticate")
        assert challenges[1].startswith('DPoP error="use_dpop_nonce"'), challenges
        nonce = first.headers["DPoP-Nonce"]
        assert env.upstream.received == []
        second = await _get(
            env, token, make_proof(key, "GET", url, access_token=token, nonce=nonce)
        )
        assert second.status == 200
        assert len(env.upstream.received) == 1
        made_up = make_proof(key, "GET", url, access_token=token, nonce="made-up-nonce")
        third = await _get(env, token, made_up)
        assert third.status == 401
        assert "DPoP-Nonce" in third.headers
        assert len(env.upstream.received) == 1
        assert (
            env.sample(
                "scopegate_denials_total", route="list-contacts", reason="invalid_dpop_proof"
            )
            == 2
        )
