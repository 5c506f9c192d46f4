"""Step-up authentication (RFC 9470, SPEC §6.4): a route's `acr_values` and `max_age` against
the token's `acr` and `auth_time`. Unmet, the answer is 401 `insufficient_user_authentication`
with a challenge that says what would be met; the request never reaches the upstream. A real
gateway on loopback, a real JWKS server and a recording upstream.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from scopegate.devtools.tokens import step_up
from tests.e2e.conftest import BASE_CONFIG, Env, gateway_env
from tests.support.config_errors import errors_of, line_of

pytestmark = pytest.mark.timeout(30)

ISSUER_LINE = "    algorithms: [RS256, ES256]\n"
LEEWAY = 10  # the issuer's clock-skew allowance, which `max_age` gets as `exp` does
MAX_AGE = 300
STEP_UP_ROUTES = f"""\
  - name: payments
    path: /payments/{{{{id}}}}
    upstream: contacts
    scopes: [read:contacts]
    acr_values: [mfa]
    max_age: {MAX_AGE}
  - name: acr-only
    path: /acr-only
    upstream: contacts
    acr_values: [mfa, phr, "urn:example:hwk"]
  - name: age-only
    path: /age-only
    upstream: contacts
    max_age: {MAX_AGE}
  - name: report-step-up
    path: /report
    upstream: contacts
    enforce: report
    acr_values: [mfa]
    max_age: {MAX_AGE}
"""
STEP_UP_CONFIG = (
    BASE_CONFIG.replace(ISSUER_LINE, f"{ISSUER_LINE}    leeway: {LEEWAY}\n", 1) + STEP_UP_ROUTES
)
REASON = "insufficient_user_authentication"
TIMEOUT = 5.0


@pytest.fixture(name="env")
async def _step_up_env() -> AsyncIterator[Env]:
    async with gateway_env(STEP_UP_CONFIG) as env:
        yield env


@dataclass(frozen=True)
class Reply:
    status: int
    challenges: list[str]
    body: dict[str, Any]

    @property
    def detail(self) -> str:
        return str(self.body.get("detail", ""))


async def get(env: Env, path: str, headers: dict[str, str]) -> Reply:
    async with (
        asyncio.timeout(TIMEOUT),
        env.http.get(env.url + path, headers=headers) as answer,
    ):
        raw = await answer.read()
        body = json.loads(raw) if answer.content_type == "application/problem+json" else {}
        return Reply(answer.status, answer.headers.getall("WWW-Authenticate", []), body)


def with_claims(env: Env, claims: dict[str, Any], **kwargs: Any) -> dict[str, str]:
    return env.bearer(extra_claims=claims, **kwargs)


def ago(seconds: float) -> int:
    return int(time.time() - seconds)


def step_up_challenge(detail: str, params: str) -> str:
    """The whole RFC 9470 §3 challenge: `params` are the route's requirements."""
    return f'Bearer realm="scopegate", error="{REASON}", error_description="{detail}", {params}'


# --- met ------------------------------------------------------------------------------------


async def test_a_token_that_meets_the_route_passes(env: Env) -> None:
    claims = step_up("mfa", ago(60))
    reply = await get(env, "/payments/7", with_claims(env, claims))
    assert (reply.status, reply.challenges) == (200, [])
    assert env.upstream.last.target == "/payments/7"
    assert env.sample("scopegate_denials_total", route="payments", reason=REASON) == 0


async def test_auth_time_within_max_age_and_the_leeway_passes(env: Env) -> None:
    """`max_age` plus the issuer's leeway is the bound, as for `exp`: 5 s inside it passes."""
    claims = step_up("mfa", ago(MAX_AGE + LEEWAY - 5))
    assert (await get(env, "/payments/7", with_claims(env, claims))).status == 200
    fractional = {"acr": "mfa", "auth_time": time.time() - 1.5}  # a number, not only an int
    assert (await get(env, "/payments/7", with_claims(env, fractional))).status == 200


async def test_any_of_several_acr_values_passes(env: Env) -> None:
    for acr in ("mfa", "phr", "urn:example:hwk"):
        reply = await get(env, "/acr-only", with_claims(env, {"acr": acr}))
        assert reply.status == 200, (acr, reply)
    assert len(env.upstream.received) == 3


async def test_a_route_without_step_up_asks_nothing_of_acr(env: Env) -> None:
    assert (await get(env, "/contacts", env.bearer())).status == 200
    assert (await get(env, "/contacts", with_claims(env, {"acr": "pwd"}))).status == 200
    assert len(env.upstream.received) == 2


# --- unmet ----------------------------------------------------------------------------------

BOTH = f'acr_values="mfa", max_age="{MAX_AGE}"'


@pytest.mark.parametrize(
    ("claims", "said"),
    [
        pytest.param(lambda: step_up("pwd", ago(60)), "(acr)", id="another acr"),
        pytest.param(lambda: step_up("MFA", ago(60)), "(acr)", id="acr in another case"),
        pytest.param(lambda: step_up(None, ago(60)), "(acr)", id="no acr"),
        pytest.param(lambda: {"acr": ["mfa"], "auth_time": ago(60)}, "(acr)",
                     id="acr a list"),
        pytest.param(lambda: step_up("mfa", ago(MAX_AGE + LEEWAY + 5)), "(auth_time)",
                     id="auth_time beyond max_age and leeway"),
        pytest.param(lambda: step_up("mfa", ago(86400)), "(auth_time)", id="a day ago"),
        pytest.param(lambda: step_up("mfa", None), "(auth_time)", id="no auth_time"),
        pytest.param(lambda: {"acr": "mfa", "auth_time": str(ago(60))}, "(auth_time)",
                     id="auth_time a string"),
        pytest.param(lambda: {"acr": "mfa", "auth_time": True}, "(auth_time)",
                     id="auth_time true"),
    ],
)  # fmt: skip
async def test_an_unmet_step_up_is_401_with_what_would_meet_it(
    env: Env, claims: Any, said: str
) -> None:
    reply = await get(env, "/payments/7", with_claims(env, claims()))
    assert reply.status == 401, reply
    assert reply.body["type"] == f"https://scopegate.dev/problems/{REASON}"
    assert said in reply.detail
    assert reply.challenges == [step_up_challenge(reply.detail, BOTH)]
    assert env.sample("scopegate_denials_total", route="payments", reason=REASON) == 1
    assert env.upstream.received == []


async def test_the_challenge_names_only_what_the_route_asks(env: Env) -> None:
    acr_only = await get(env, "/acr-only", with_claims(env, {"acr": "pwd"}))
    assert acr_only.status == 401
    assert acr_only.challenges == [
        step_up_challenge(acr_only.detail, 'acr_values="mfa phr urn:example:hwk"')
    ]
    age_only = await get(env, "/age-only", with_claims(env, {"auth_time": ago(3600)}))
    assert age_only.status == 401
    assert age_only.challenges == [step_up_challenge(age_only.detail, f'max_age="{MAX_AGE}"')]
    # A route asking only max_age does not look at acr; one asking only acr_values not at
    # auth_time.
    assert (await get(env, "/age-only", with_claims(env, {"auth_time": ago(5)}))).status == 200
    assert (await get(env, "/acr-only", with_claims(env, {"acr": "phr"}))).status == 200
    assert env.sample("scopegate_denials_total", route="acr-only", reason=REASON) == 1
    assert env.sample("scopegate_denials_total", route="age-only", reason=REASON) == 1
    assert len(env.upstream.received) == 2


async def test_scopes_are_checked_before_step_up(env: Env) -> None:
    """A token lacking both the route's scope and its acr hears of the scope: 403."""
    headers = with_claims(env, {}, scopes=("create:contacts",))
    reply = await get(env, "/payments/7", headers)
    assert reply.status == 403, reply
    assert reply.body["type"] == "https://scopegate.dev/problems/insufficient_scope"
    assert reply.challenges == [
        'Bearer realm="scopegate", error="insufficient_scope", '
        f'error_description="{reply.detail}", scope="read:contacts"'
    ]
    assert env.sample("scopegate_denials_total", route="payments",
                      reason="insufficient_scope") == 1  # fmt: skip
    assert env.sample("scopegate_denials_total", route="payments", reason=REASON) == 0
    assert env.upstream.received == []


async def test_an_invalid_token_is_refused_before_step_up(env: Env) -> None:
    reply = await get(env, "/payments/7", with_claims(env, step_up("mfa", ago(5)), lifetime=-3600))
    assert reply.status == 401
    assert reply.body["type"] == "https://scopegate.dev/problems/expired_token"
    assert "acr_values" not in reply.challenges[0]
    assert env.upstream.received == []


# --- report-only ----------------------------------------------------------------------------


async def test_on_a_report_only_route_an_unmet_step_up_is_forwarded_and_counted(env: Env) -> None:
    reply = await get(env, "/report", with_claims(env, step_up("pwd", ago(60))))
    assert (reply.status, reply.challenges) == (200, [])
    assert env.upstream.last.target == "/report"
    labels = {"route": "report-step-up", "reason": REASON}
    assert env.sample("scopegate_shadow_denials_total", **labels) == 1
    assert env.sample("scopegate_denials_total", **labels) == 0
    met = await get(env, "/report", with_claims(env, step_up("mfa", ago(60))))
    assert met.status == 200
    assert env.sample("scopegate_shadow_denials_total", **labels) == 1
    assert len(env.upstream.received) == 2


# --- configuration errors -------------------------------------------------------------------

PLAIN = BASE_CONFIG.format(
    issuer="https://id.example.com/",
    jwks_uri="https://id.example.com/jwks",
    audience="https://contacts.example.com",
    upstream="http://127.0.0.1:9",
    closed_port=9,
)
OPEN_ROUTE = """\
  - name: open
    path: /open
    upstream: contacts
    auth: none
"""
GUARDED_ROUTE = """\
  - name: guarded
    path: /guarded
    upstream: contacts
"""


@pytest.mark.parametrize("key", ["acr_values", "max_age"])
def test_step_up_on_a_route_that_checks_no_token_is_a_positioned_error(key: str) -> None:
    value = "[mfa]" if key == "acr_values" else "300"
    text = PLAIN + OPEN_ROUTE + f"    {key}: {value}\n"
    index = text.count("  - name: ") - 1
    assert errors_of(text) == [
        f"gateway.yaml:{line_of(text, key)}:{len(key) + 7}: routes[{index}].{key}: "
        "contradicts auth: none, which checks no token"
    ]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        pytest.param("acr_values: []", "acr_values: must not be empty", id="no acr values"),
        pytest.param("max_age: -1", "max_age: must be at least 0, got -1", id="negative max_age"),
    ],
)
def test_a_step_up_requirement_that_no_token_could_meet_is_refused(line: str, message: str) -> None:
    key = line.partition(":")[0]
    text = PLAIN + GUARDED_ROUTE + f"    {line}\n"
    index = text.count("  - name: ") - 1
    assert errors_of(text) == [
        f"gateway.yaml:{line_of(text, key)}:{len(key) + 7}: routes[{index}].{message}"
    ]
