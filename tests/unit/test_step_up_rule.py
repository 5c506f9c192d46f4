"""RFC 9470 step-up as a pure rule: any claim values a token may carry are met, unmet with the
exact challenge parameters, or never an error."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scopegate.config.model import Route
from scopegate.pipeline.step_up import challenge_params, require_authentication
from scopegate.reasons import Denied, Reason

NOW = 1_800_000_000.0
ROUTE = Route(name="pay", path="/pay", upstream="u", acr_values=("mfa", "hwk"), max_age=300)

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=6,
)


@pytest.mark.parametrize(
    "claims",
    [
        {"acr": "mfa", "auth_time": NOW - 300},
        {"acr": "hwk", "auth_time": NOW + 5},
        {"acr": "mfa", "auth_time": NOW - 310.0},  # within max_age plus the leeway
    ],
)
def test_met(claims: dict[str, Any]) -> None:
    require_authentication(ROUTE, claims, now=NOW, leeway=10)


@pytest.mark.parametrize(
    "claims",
    [
        {"acr": "pwd", "auth_time": NOW},
        {"acr": "MFA", "auth_time": NOW},
        {"auth_time": NOW},
        {"acr": "mfa", "auth_time": NOW - 311},
        {"acr": "mfa"},
        {"acr": "mfa", "auth_time": "yesterday"},
        {"acr": "mfa", "auth_time": True},
        {"acr": "mfa", "auth_time": 10**400},  # no float holds it: not a time, never an error
        {"acr": "mfa", "auth_time": float("inf")},
    ],
)
def test_unmet_with_the_routes_requirements_in_the_challenge(claims: dict[str, Any]) -> None:
    with pytest.raises(Denied) as denied:
        require_authentication(ROUTE, claims, now=NOW, leeway=10)
    assert denied.value.reason is Reason.INSUFFICIENT_USER_AUTHENTICATION
    assert denied.value.challenge_params == (("acr_values", "mfa hwk"), ("max_age", "300"))


def test_a_route_names_only_what_it_asks() -> None:
    only_acr = Route(name="a", path="/a", upstream="u", acr_values=("mfa",))
    only_age = Route(name="b", path="/b", upstream="u", max_age=60)
    assert challenge_params(only_acr) == (("acr_values", "mfa"),)
    assert challenge_params(only_age) == (("max_age", "60"),)
    assert only_acr.steps_up and only_age.steps_up
    assert not Route(name="c", path="/c", upstream="u").steps_up


@given(acr=JSON_VALUES, auth_time=JSON_VALUES)
def test_any_claim_values_are_met_or_refused_never_an_error(acr: Any, auth_time: Any) -> None:
    met = acr in ("mfa", "hwk") and isinstance(auth_time, int | float)
    try:
        require_authentication(ROUTE, {"acr": acr, "auth_time": auth_time}, now=NOW, leeway=10)
    except Denied as denied:
        assert denied.reason is Reason.INSUFFICIENT_USER_AUTHENTICATION
        return
    assert met
