"""RFC 7662 introspection of opaque tokens (SPEC §6.4), through a real gateway on a loopback
port, against a real introspection endpoint (`IntrospectionServer`) and a recording upstream.

What is shown: an active token's answer is checked as a JWT's claims are and its scopes
enforced; an inactive one is 401 `inactive_token`, remembered for `negative_cache_ttl`; active
answers are reused for `cache_ttl` and never past `exp`; concurrent requests with one token make
one call; both client authentication methods, the secret read from the environment and never
logged; the endpoint discovered; `jwt: true` revokes JWTs; and every fault of the endpoint
(down, slow, 500, not JSON, wrong types) is 503 `issuer_unavailable`, not remembered, while
tokens answered before keep working. Nothing refused reaches the upstream.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest

from scopegate.config.load import load_config_text
from tests.e2e.conftest import AUDIENCE, BASE_CONFIG, Env, gateway_env
from tests.support.access_log import log_lines
from tests.support.config_errors import errors_of, line_of
from tests.support.introspection_server import IntrospectionServer

CLIENT_ID = "scopegate"
SECRET = "introspection-secret-never-logged"
SECRET_VARIABLE = "SCOPEGATE_TEST_INTROSPECTION_SECRET"
INTROSPECTIONS = "scopegate_introspections_total"
DENIALS = "scopegate_denials_total"

TEMPLATE = BASE_CONFIG.replace(
    "    algorithms: [RS256, ES256]\n",
    "    algorithms: [RS256, ES256]\n{introspection}",
    1,
)


def introspection_section(endpoint: str | None, **settings: Any) -> str:
    """The issuer's `introspection:` block; `settings` beyond the defaults written as given."""
    lines = ["    introspection:"]
    if endpoint is not None:
        lines.append(f"      endpoint: {endpoint}")
    lines += [f"      client_id: {CLIENT_ID}", f"      client_secret: ${{{SECRET_VARIABLE}}}"]
    settings = {"cache_ttl": 60, "negative_cache_ttl": 10, "timeout": 1, **settings}
    for key, value in settings.items():
        text = str(value).lower() if isinstance(value, bool) else value
        lines.append(f"      {key}: {text}")
    return "\n".join(lines) + "\n"


@dataclass
class Setup:
    env: Env
    endpoint: IntrospectionServer

    def grant(self, token: str, scope: str = "read:contacts", **members: Any) -> str:
        """Make `token` active at the endpoint, for an hour unless `exp` is given."""
        answer = {
            "scope": scope,
            "client_id": "app-1",
            "sub": "alice",
            "aud": AUDIENCE,
            "iss": self.env.issuer,
            "exp": int(time.time()) + 3600,
            "iat": int(time.time()),
            "token_type": "Bearer",
        }
        answer.update(members)
        self.endpoint.active[token] = {k: v for k, v in answer.items() if v is not None}
        return token

    async def get(self, token: str, path: str = "/contacts") -> aiohttp.ClientResponse:
        headers = {"Authorization": f"Bearer {token}"}
        async with self.env.http.get(self.env.url + path, headers=headers) as answer:
            await answer.read()
            return answer

    def results(self, result: str) -> float:
        return self.env.sample(INTROSPECTIONS, issuer=self.env.issuer, result=result)


@asynccontextmanager
async def introspecting(
    monkeypatch: pytest.MonkeyPatch, *, discovered: bool = False, **settings: Any
) -> AsyncIterator[Setup]:
    """A gateway whose one issuer introspects at a fresh `IntrospectionServer`."""
    monkeypatch.setenv(SECRET_VARIABLE, SECRET)
    async with IntrospectionServer(CLIENT_ID, SECRET) as endpoint:
        section = introspection_section(None if discovered else endpoint.url, **settings)
        async with gateway_env(TEMPLATE, introspection=section) as env:
            if discovered:
                env.jwks.discovery = {"introspection_endpoint": endpoint.url}
            yield Setup(env, endpoint)


def challenge(answer: aiohttp.ClientResponse) -> str:
    return answer.headers.get("WWW-Authenticate", "")


# --- active and inactive ---------------------------------------------------------------------


async def test_an_active_opaque_token_is_forwarded_with_its_identity(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with introspecting(monkeypatch) as setup:
        token = setup.grant("opaque-token-1", sub="alice", azp="app-7")
        answer = await setup.get(token)
        assert answer.status == 200
        seen = setup.env.upstream.last
        assert seen.header("X-Auth-Subject") == "alice"
        assert seen.header("X-Auth-Client") == "app-7"
        assert seen.header("Authorization") == f"Bearer {token}"
        assert setup.endpoint.calls[0].token == token
        assert setup.endpoint.calls[0].auth_method == "client_secret_basic"
        assert setup.results("active") == 1


async def test_the_scopes_of_the_answer_are_enforced(monkeypatch: pytest.MonkeyPatch) -> None:
    async with introspecting(monkeypatch) as setup:
        token = setup.grant("opaque-reader", scope="read:contacts profile")
        async with setup.env.http.delete(
            setup.env.url + "/contacts/1", headers={"Authorization": f"Bearer {token}"}
        ) as answer:
            assert answer.status == 403
            assert 'error="insufficient_scope"' in challenge(answer)
        assert (await setup.get(token)).status == 200
        assert len(setup.env.upstream.received) == 1  # the GET only


async def test_an_inactive_token_is_refused_and_remembered_for_negative_cache_ttl(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with introspecting(monkeypatch, negative_cache_ttl=0.5) as setup:
        for _ in range(3):
            answer = await setup.get("revoked-or-unknown")
            assert answer.status == 401
            assert 'error="invalid_token"' in challenge(answer)
        assert setup.env.sample(DENIALS, route="list-contacts", reason="inactive_token") == 3
        assert setup.endpoint.tokens_asked() == ["revoked-or-unknown"]
        await asyncio.sleep(0.6)
        assert (await setup.get("revoked-or-unknown")).status == 401
        assert len(setup.endpoint.calls) == 2
        assert setup.results("inactive") == 2
        assert setup.env.upstream.received == []


async def test_an_active_answer_is_reused_for_cache_ttl(monkeypatch: pytest.MonkeyPatch) -> None:
    async with introspecting(monkeypatch, cache_ttl=0.5) as setup:
        token = setup.grant("opaque-cached")
        for _ in range(5):
            assert (await setup.get(token)).status == 200
        assert len(setup.endpoint.calls) == 1
        del setup.endpoint.active[token]  # revoked at the provider
        await asyncio.sleep(0.6)
        answer = await setup.get(token)
        assert answer.status == 401
        assert len(setup.endpoint.calls) == 2
        assert len(setup.env.upstream.received) == 5


async def test_an_answer_is_never_reused_past_the_tokens_exp(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`cache_ttl` 60, but the token expires in 2 s: from then on the gateway asks again. (The
    provider here still says active; the issuer's leeway, 30 s by default, then accepts it as it
    would a JWT's `exp`, so the answer is 200 after a second call.)"""
    async with introspecting(monkeypatch, cache_ttl=60) as setup:
        token = setup.grant("opaque-short", exp=int(time.time()) + 2)
        assert (await setup.get(token)).status == 200
        assert (await setup.get(token)).status == 200
        assert len(setup.endpoint.calls) == 1
        await asyncio.sleep(2.2)
        assert (await setup.get(token)).status == 200
        assert len(setup.endpoint.calls) == 2


async def test_concurrent_requests_with_one_token_make_one_call(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with introspecting(monkeypatch) as setup:
        token = setup.grant("opaque-burst")
        setup.endpoint.delay = 0.3
        answers = await asyncio.gather(*(setup.get(token) for _ in range(20)))
        assert [answer.status for answer in answers] == [200] * 20
        assert len(setup.endpoint.calls) == 1
        assert setup.results("active") == 1


async def test_a_request_that_goes_away_does_not_cancel_the_call_others_wait_for(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with introspecting(monkeypatch) as setup:
        token = setup.grant("opaque-patient")
        setup.endpoint.delay = 0.4
        impatient = asyncio.create_task(setup.get(token))
        await asyncio.sleep(0.1)
        patient = asyncio.create_task(setup.get(token))
        await asyncio.sleep(0.05)
        impatient.cancel()  # the client hangs up
        assert (await patient).status == 200
        assert len(setup.endpoint.calls) == 1


# --- what an answer must say -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("members", "reason"),
    [
        ({"aud": "https://another-api.example.com"}, "invalid_audience"),
        ({"iss": "https://another-issuer.example.com/"}, "invalid_issuer"),
        ({"exp": None}, "missing_claim"),  # required_claims defaults to [exp]
        ({"exp": 1}, "expired_token"),
        ({"nbf": int(time.time()) + 3600}, "not_yet_valid"),
    ],
    ids=["another audience", "another issuer", "no exp", "expired", "not yet valid"],
)
async def test_the_answer_is_checked_as_a_jwts_claims_are(
    monkeypatch: pytest.MonkeyPatch, members: dict[str, Any], reason: str
) -> None:
    async with introspecting(monkeypatch) as setup:
        token = setup.grant("opaque-checked", **members)
        answer = await setup.get(token)
        assert answer.status == 401
        assert setup.env.sample(DENIALS, route="list-contacts", reason=reason) == 1
        assert setup.env.upstream.received == []


@pytest.mark.parametrize(
    "members",
    [{"token_use": "refresh_token"}, {"typ": "Refresh"}, {"typ": "Offline"}, {"typ": "ID"}],
    ids=["Hydra refresh token", "Keycloak refresh token", "Keycloak offline token", "ID token"],
)
async def test_an_active_token_the_issuer_says_is_no_access_token_is_refused(
    monkeypatch: pytest.MonkeyPatch, members: dict[str, Any]
) -> None:
    async with introspecting(monkeypatch) as setup:
        token = setup.grant("opaque-refresh", **members)
        assert (await setup.get(token)).status == 401
        assert setup.env.sample(DENIALS, route="list-contacts", reason="invalid_token_type") == 1
        assert setup.env.upstream.received == []
        access = setup.grant("opaque-access", token_use="access_token", typ="Bearer")
        assert (await setup.get(access)).status == 200


async def test_an_answer_without_aud_or_iss_is_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    """RFC 7662 makes both optional; SPEC §6.4 checks them when present."""
    async with introspecting(monkeypatch) as setup:
        token = setup.grant("opaque-plain", aud=None, iss=None)
        assert (await setup.get(token)).status == 200


async def test_a_dpop_bound_opaque_token_sent_as_bearer_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with introspecting(monkeypatch) as setup:
        token = setup.grant(
            "opaque-bound", cnf={"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"}
        )
        answer = await setup.get(token)
        assert answer.status == 401
        assert (
            setup.env.sample(DENIALS, route="list-contacts", reason="token_binding_mismatch") == 1
        )
        assert setup.env.upstream.received == []


# --- client authentication and the secret ----------------------------------------------------


async def test_client_secret_post_sends_the_credentials_in_the_form(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with introspecting(monkeypatch, auth_method="client_secret_post") as setup:
        token = setup.grant("opaque-posted")
        assert (await setup.get(token)).status == 200
        assert setup.endpoint.calls[0].auth_method == "client_secret_post"


async def test_the_endpoint_is_discovered_when_not_configured(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with introspecting(monkeypatch, discovered=True) as setup:
        token = setup.grant("opaque-discovered")
        assert (await setup.get(token)).status == 200
        assert setup.endpoint.tokens_asked() == [token]


async def test_refused_credentials_are_503_and_logged_without_the_secret(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with introspecting(monkeypatch) as setup:
        setup.endpoint.client_secret = "the provider expects another secret"
        token = setup.grant("opaque-any")
        with log_lines(monkeypatch) as lines:
            answer = await setup.get(token)
        assert answer.status == 503
        assert setup.endpoint.refused == 1
        said = " ".join(str(line) for line in lines)
        assert "refuses scopegate's client credentials" in said, lines
        assert SECRET not in said and token not in said
        assert setup.results("error") == 1


# --- faults ----------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["error", "garbage", "not_object", "no_active", "bad_types"])
async def test_a_bad_answer_is_503_not_remembered_and_cached_tokens_keep_working(
    monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    async with introspecting(monkeypatch) as setup:
        known = setup.grant("opaque-known")
        assert (await setup.get(known)).status == 200  # answered before the fault
        fresh = setup.grant("opaque-fresh")
        setup.endpoint.mode = mode  # type: ignore[assignment]
        answer = await setup.get(fresh)
        assert answer.status == 503
        assert answer.headers["Retry-After"] == "1"
        assert setup.env.sample(DENIALS, route="list-contacts", reason="issuer_unavailable") == 1
        assert (await setup.get(known)).status == 200  # from the cache
        setup.endpoint.mode = "ok"
        assert (await setup.get(fresh)).status == 200  # the failure was not remembered
        assert setup.results("error") == 1
        assert len(setup.env.upstream.received) == 3


async def test_an_exp_no_float_holds_is_a_malformed_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    """A 400-digit integer is valid JSON but no time: 503 as any malformed answer, not a 500."""
    async with introspecting(monkeypatch) as setup:
        token = setup.grant("opaque-huge-exp", exp=10**400)
        answer = await setup.get(token)
        assert answer.status == 503
        assert setup.results("error") == 1
        assert setup.env.upstream.received == []


async def test_a_slow_endpoint_is_503_within_the_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    async with introspecting(monkeypatch, timeout=0.3) as setup:
        token = setup.grant("opaque-slow")
        setup.endpoint.delay = 2.0
        started = time.monotonic()
        answer = await setup.get(token)
        elapsed = time.monotonic() - started
        assert answer.status == 503
        assert elapsed < 1.0, elapsed
        assert setup.env.upstream.received == []


async def test_an_endpoint_that_is_down_is_503_until_it_is_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with introspecting(monkeypatch) as setup:
        known = setup.grant("opaque-before")
        assert (await setup.get(known)).status == 200
        await setup.endpoint.stop()
        token = setup.grant("opaque-during")
        assert (await setup.get(token)).status == 503
        assert (await setup.get(known)).status == 200
        await setup.endpoint.start()
        assert (await setup.get(token)).status == 200


# --- JWTs introspected as well ---------------------------------------------------------------


async def test_jwt_true_refuses_a_revoked_jwt_and_accepts_an_active_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with introspecting(monkeypatch, jwt=True) as setup:
        revoked = setup.env.token()
        answer = await setup.get(revoked)
        assert answer.status == 401
        assert setup.env.sample(DENIALS, route="list-contacts", reason="inactive_token") == 1
        active = setup.grant(setup.env.token(subject="bob"))
        assert (await setup.get(active)).status == 200
        assert setup.endpoint.tokens_asked() == [revoked, active]
        assert len(setup.env.upstream.received) == 1


async def test_jwts_are_not_introspected_without_jwt_true(monkeypatch: pytest.MonkeyPatch) -> None:
    async with introspecting(monkeypatch) as setup:
        assert (await setup.get(setup.env.token())).status == 200
        assert setup.endpoint.calls == []


async def test_a_bad_jwt_is_refused_before_any_call(monkeypatch: pytest.MonkeyPatch) -> None:
    """A JWT with a bad signature is refused on its own: `jwt: true` asks only about tokens
    that verify."""
    async with introspecting(monkeypatch, jwt=True) as setup:
        token = setup.env.token()
        forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
        assert (await setup.get(forged)).status == 401
        assert setup.endpoint.calls == []


# --- configuration ---------------------------------------------------------------------------

TWO_ISSUERS = """\
issuers:
  - issuer: https://one.example.com/
    audiences: [api]
    introspection:
      client_id: a
      client_secret: b
  - issuer: https://two.example.com/
    audiences: [api]
    introspection:
      client_id: a
      client_secret: b
upstreams:
  api: http://127.0.0.1:8001
routes:
  - path: /x
    upstream: api
"""


def test_two_introspecting_issuers_are_refused_where_the_second_is() -> None:
    lines = TWO_ISSUERS.splitlines()
    first, second = (n for n, line in enumerate(lines, start=1) if "client_id" in line)
    assert errors_of(TWO_ISSUERS) == [
        f"gateway.yaml:{second}:7: issuers[1].introspection: only one issuer may introspect "
        f"opaque tokens (the first is at gateway.yaml:{first}:7)"
    ]


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("endpoint: ftp://x/introspect", "is not an absolute http:// or https:// URL"),
        ("auth_method: private_key_jwt", "client_secret_basic"),
        ("timeout: 0", "timeout"),
        ("cache_ttl: -1", "cache_ttl"),
        ("jwt: yes please", "jwt"),
    ],
)
def test_a_bad_introspection_setting_is_a_positioned_error(setting: str, message: str) -> None:
    text = (
        TWO_ISSUERS.split("  - issuer: https://two")[0].replace(
            "      client_secret: b\n", f"      client_secret: b\n      {setting}\n"
        )
        + TWO_ISSUERS[TWO_ISSUERS.index("upstreams:") :]
    )
    errors = errors_of(text)
    assert len(errors) == 1, errors
    line = line_of(text, setting.split(":")[0])
    assert errors[0].startswith(f"gateway.yaml:{line}:"), errors
    assert message in errors[0], errors


def test_a_missing_client_secret_is_an_error_and_the_secret_is_never_printed() -> None:
    one_issuer = TWO_ISSUERS.split("  - issuer: https://two")[0]
    rest = TWO_ISSUERS[TWO_ISSUERS.index("upstreams:") :]
    errors = errors_of(one_issuer.replace("      client_secret: b\n", "") + rest)
    assert len(errors) == 1 and "client_secret" in errors[0], errors
    text = one_issuer.replace("client_secret: b", "client_secret: do-not-print-me") + rest
    introspection = load_config_text(text, "gateway.yaml", {}).issuers[0].introspection
    assert introspection is not None
    assert introspection.client_secret == "do-not-print-me"
    assert "do-not-print-me" not in repr(introspection)
