"""Step 3c of SPEC §3: the scopes a token grants, and whether they satisfy a route's rule.

Scopes compare as whole, case-sensitive strings: a string claim is split on the space
character only, an array claim is taken item by item (items that are not strings grant
nothing), and every configured claim is merged into one set.

Usage::

    granted = granted_scopes(claims, ("scope", "scp", "realm_access.roles"))
    require(route.scopes, granted)   # raises Denied(INSUFFICIENT_SCOPE, scope="...")
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from scopegate.config.model import ScopeRule
from scopegate.reasons import Denied, Reason


def read_claim(claims: Mapping[str, Any], dotted_name: str) -> Any:
    """The value at a dotted claim name (``realm_access.roles``), or None when any part is absent.

    A claim whose own name contains a dot is found too: the literal name is tried first.
    """
    if dotted_name in claims:
        return claims[dotted_name]
    value: Any = claims
    for part in dotted_name.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def _scopes_of(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        return (scope for scope in value.split(" ") if scope)
    if isinstance(value, list):
        return (item for item in value if isinstance(item, str) and item)
    return ()


def granted_scopes(claims: Mapping[str, Any], scope_claims: Sequence[str]) -> frozenset[str]:
    """Every scope the token grants, merged over the configured claim names."""
    granted: set[str] = set()
    for name in scope_claims:
        granted.update(_scopes_of(read_claim(claims, name)))
    return frozenset(granted)


def closest_alternative(rule: ScopeRule, granted: frozenset[str]) -> frozenset[str] | None:
    """The alternative that misses the fewest scopes, or None when the rule has none at all.

    Ties go to the alternative written first, so the answer is stable for a given file.
    """
    return min(rule.alternatives, key=lambda alternative: len(alternative - granted), default=None)


def missing_scopes(rule: ScopeRule, granted: frozenset[str]) -> frozenset[str]:
    """What the alternative closest to being met still lacks (empty when the rule is met, and
    for a rule with no alternative, which lacks nothing nameable; `require` refuses it)."""
    closest = closest_alternative(rule, granted)
    return frozenset() if closest is None else closest - granted


def require(rule: ScopeRule, granted: frozenset[str]) -> None:
    """Pass when some alternative of ``rule`` is wholly granted; otherwise refuse with 403.

    A rule without any alternative (`auth: deny`, `NO_TOKEN_PASSES`) is met by no token: it fails
    closed with a 403 instead of crashing.
    """
    closest = closest_alternative(rule, granted)
    if closest is None:
        raise Denied(Reason.INSUFFICIENT_SCOPE, "no combination of scopes meets this route")
    if closest <= granted:
        return
    raise Denied(
        Reason.INSUFFICIENT_SCOPE,
        f"the token lacks the scope(s): {' '.join(sorted(closest - granted))}",
        scope=" ".join(sorted(closest)),
    )
