"""RFC 9470 step-up: a route that asks for a particular authentication (SPEC §6.4).

A route's `acr_values` lists the authentication context classes it accepts: the token's `acr`
must be one of them. Its `max_age` bounds how long ago the user authenticated: the token's
`auth_time` must be no more than that many seconds old, with the issuer's `leeway` for clock
skew as for `exp`. Unmet: 401 `insufficient_user_authentication`, and the challenge says what
would be met (`acr_values`, `max_age`), so that the client can ask the authorization server for
exactly that authentication (RFC 9470 §3, §4).

Usage::

    if route.steps_up:
        require_authentication(route, principal.claims, now=time.time(), leeway=issuer.leeway)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from scopegate.config.model import Route
from scopegate.keys.claim_types import is_numeric_date
from scopegate.reasons import Denied, Reason


def challenge_params(route: Route) -> tuple[tuple[str, str], ...]:
    """RFC 9470 §3: the route's requirements, as the challenge states them."""
    params: list[tuple[str, str]] = []
    if route.acr_values is not None:
        params.append(("acr_values", " ".join(route.acr_values)))
    if route.max_age is not None:
        params.append(("max_age", str(route.max_age)))
    return tuple(params)


def _unmet(route: Route, detail: str) -> Denied:
    return Denied(
        Reason.INSUFFICIENT_USER_AUTHENTICATION, detail, challenge_params=challenge_params(route)
    )


def require_authentication(
    route: Route, claims: Mapping[str, Any], *, now: float, leeway: float
) -> None:
    """Refuse unless the token's `acr` and `auth_time` meet the route's step-up requirement."""
    if route.acr_values is not None:
        acr = claims.get("acr")
        if not isinstance(acr, str):
            raise _unmet(route, "the token does not say how the user authenticated (acr)")
        if acr not in route.acr_values:
            raise _unmet(route, "the user authenticated in a way this route does not accept (acr)")
    if route.max_age is not None:
        auth_time: Any = claims.get("auth_time")
        if not is_numeric_date(auth_time):
            raise _unmet(route, "the token does not say when the user authenticated (auth_time)")
        if now - float(auth_time) > route.max_age + leeway:
            raise _unmet(
                route, f"the user authenticated more than {route.max_age} s ago (auth_time)"
            )
