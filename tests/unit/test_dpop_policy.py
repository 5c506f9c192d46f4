"""The DPoP policy's verdicts per issuer mode (RFC 9449 §7), with real proofs: what a DPoP or
Bearer request with a bound or unbound token gets, and that a `cnf.jkt` of any text is a
mismatch, never an error."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scopegate.config.model import DpopMode, Issuer
from scopegate.devtools.dpop import confirmation, make_proof
from scopegate.devtools.keys import generate
from scopegate.pipeline import Principal
from scopegate.pipeline.dpop import ReplayCache
from scopegate.pipeline.dpop_binding import DpopPolicy
from scopegate.reasons import Denied, Reason

ISSUER = "https://id.example.com/"
URL = "https://api.example.com/contacts"
TOKEN = "an.access.token"
KEY = generate("ES256")
NOW = 1_800_000_000.0


def policy(mode: DpopMode) -> DpopPolicy:
    return DpopPolicy([Issuer(ISSUER, dpop=mode)], None, ReplayCache())


def principal(jkt: str | None) -> Principal:
    claims = {} if jkt is None else {"cnf": {"jkt": jkt}}
    return Principal(claims=claims, scopes=frozenset(), issuer=ISSUER)


def check(mode: DpopMode, jkt: str | None, *, dpop_scheme: bool) -> Reason | None:
    proofs = [make_proof(KEY, "GET", URL, access_token=TOKEN, iat=NOW)] if dpop_scheme else []
    try:
        policy(mode).check(principal(jkt), TOKEN if dpop_scheme else "", dpop_scheme, proofs,
                           method="GET", url=URL, now=NOW)  # fmt: skip
    except Denied as denied:
        return denied.reason
    return None


BOUND = confirmation(KEY)["jkt"]


@pytest.mark.parametrize(
    ("mode", "jkt", "dpop_scheme", "verdict"),
    [
        ("allowed", BOUND, True, None),
        ("required", BOUND, True, None),
        ("allowed", None, False, None),
        ("disabled", None, False, None),
        ("required", None, False, Reason.TOKEN_BINDING_MISMATCH),
        ("allowed", BOUND, False, Reason.TOKEN_BINDING_MISMATCH),  # a bound token as Bearer
        ("disabled", BOUND, False, Reason.TOKEN_BINDING_MISMATCH),
        ("allowed", None, True, Reason.TOKEN_BINDING_MISMATCH),  # the scheme without a binding
        ("disabled", BOUND, True, Reason.TOKEN_BINDING_MISMATCH),
    ],
)
def test_the_verdict_of_each_mode(
    mode: DpopMode, jkt: str | None, dpop_scheme: bool, verdict: Reason | None
) -> None:
    assert check(mode, jkt, dpop_scheme=dpop_scheme) == verdict


def test_the_challenge_names_dpop_only_when_an_issuer_accepts_it() -> None:
    assert policy("disabled").algs is None
    algs = policy("allowed").algs
    assert algs is not None and "ES256" in algs.split() and "HS256" not in algs.split()


@settings(max_examples=200)
@given(st.text(min_size=1, max_size=64))
def test_any_jkt_text_but_the_keys_is_a_mismatch_never_an_error(jkt: str) -> None:
    expected = None if jkt == BOUND else Reason.TOKEN_BINDING_MISMATCH
    assert check("allowed", jkt, dpop_scheme=True) == expected
