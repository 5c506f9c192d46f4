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


def missing_scopes(rule: ScopeRule, granted: frozenset[str]) -> frozenset[str]:
    """What the alternative closest to being met still lacks (empty when the rule is met).

    Ties go to the alternative written first, so the answer is stable for a given file.
    """
    return min((alternative - granted for alternative in rule.alternatives), key=len)


def require(rule: ScopeRule, granted: frozenset[str]) -> None:
    """Pass when some alternative of ``rule`` is wholly granted; otherwise refuse with 403."""
    missing = missing_scopes(rule, granted)
    if not missing:
        return
    closest = next(alt for alt in rule.alternatives if alt - granted == missing)
    raise Denied(
        Reason.INSUFFICIENT_SCOPE,
        f"the token lacks the scope(s): {' '.join(sorted(missing))}",
        scope=" ".join(sorted(closest)),
    )
