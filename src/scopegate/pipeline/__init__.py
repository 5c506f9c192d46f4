"""Deciding whether a request may pass (SPEC §3 steps 1–3): plain values in, a value or `Denied`
out.

The order every request goes through, one module each:

1. `target`   — origin-form only; RFC 3986 normalisation → the path that is matched and forwarded
2. `routing`  — most specific route wins → `RouteMatch`, or 404 / 405 with `Allow`
               (`patterns` parses and checks the route paths it compiles)
3. `bearer`   — `Authorization: Bearer <token>` → the token, or 401 / 400
   `verify`   — algorithm, issuer, key, signature, times, audience, type → `Principal`, or 401 / 503
   `scopes`   — the route's rule against the token's scopes → nothing, or 403

Beside them, `cors` answers a browser's preflight and says which origins may read an answer.

Nothing in this package does I/O of its own: keys arrive through the `verify.KeySource` protocol.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from scopegate.config.model import Route


@dataclass(frozen=True, slots=True)
class RouteMatch:
    """The route chosen for a request, the normalised path it was chosen for, and the values of
    its `{param}` / `{rest*}` segments."""

    route: Route
    path: str
    params: Mapping[str, str] = field(default_factory=dict)


BINDING_CLAIM = "cnf"  # RFC 7800 confirmation: kept with a cached principal, for RFC 8705


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling, as proven by a verified token; `ANONYMOUS` on `auth: none` routes."""

    claims: Mapping[str, Any]
    scopes: frozenset[str]
    issuer: str | None
    expires_at: float | None = None  # the token's `exp`; None when it has none
    # What a consumer derived from this principal and keeps with it (a cached token's identity
    # headers), and who derived it. Not part of the principal's value. Two fields rather than
    # one pair: a tuple would be one more object kept alive by every cached principal.
    derived_by: object = field(default=None, compare=False, repr=False)
    derived: Any = field(default=None, compare=False, repr=False)
    # The same for rate limits: the (rules, counted keys) this principal was last counted
    # under, so that a returning token's keys are not formatted again (`rate_limits.py`).
    counted: Any = field(default=None, compare=False, repr=False)
    # Read once here rather than from `claims` on each request's access-log line: a cached
    # principal is logged many times, and two fields cost less than three lookups a request.
    subject: str | None = field(init=False, compare=False, repr=False)
    client_id: Any = field(init=False, compare=False, repr=False)  # `azp`, else `client_id`
    # RFC 8705 §3.1: the SHA-256 thumbprint of the client certificate this token is bound to
    # (`cnf.x5t#S256`), or None for a bearer token anyone holding it may use.
    bound_to: Any = field(init=False, compare=False, repr=False)
    # RFC 9449 §6: the thumbprint of the key this token is bound to (`cnf.jkt`): it is accepted
    # only with the DPoP scheme and a proof signed by that key. None: not DPoP-bound.
    dpop_bound_to: Any = field(init=False, compare=False, repr=False)
    # Until when a verdict on this token may be reused: its `exp` for a JWT; for an introspected
    # token no later than the introspection answer's `cache_ttl` allows.
    cache_until: float | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        sub = self.claims.get("sub")
        object.__setattr__(self, "subject", sub if isinstance(sub, str) else None)
        client = self.claims.get("azp") or self.claims.get("client_id")
        object.__setattr__(self, "client_id", client)
        confirmation = self.claims.get(BINDING_CLAIM)
        bound = key = None
        if isinstance(confirmation, Mapping):
            bound, key = confirmation.get("x5t#S256"), confirmation.get("jkt")
        object.__setattr__(self, "bound_to", None if bound is None else str(bound))
        object.__setattr__(self, "dpop_bound_to", None if key is None else str(key))
        if self.cache_until is None:
            object.__setattr__(self, "cache_until", self.expires_at)

    @property
    def authenticated(self) -> bool:
        return self.issuer is not None


class KeptClaims(Mapping[str, Any]):
    """The few claims a cached principal keeps (`sub`, ...), in less memory than a dict, whose
    hash table is sized for growth it will never see. `names` is one tuple shared by every
    principal whose token carried the same kept claims; `values` are in the same order."""

    __slots__ = ("_names", "_values")

    def __init__(self, names: tuple[str, ...], values: tuple[Any, ...]) -> None:
        self._names = names
        self._values = values

    def __getitem__(self, name: str) -> Any:
        if name not in self._names:
            raise KeyError(name)
        return self._values[self._names.index(name)]

    def get(self, name: str, default: Any = None) -> Any:
        # Mapping's own goes through __getitem__ and an exception.
        return self._values[self._names.index(name)] if name in self._names else default

    def __contains__(self, name: object) -> bool:
        return name in self._names

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)

    def __repr__(self) -> str:
        return repr(dict(zip(self._names, self._values, strict=True)))


# The claims a principal is read for beyond its scopes (`subject`, `client_id`): with the claims
# that `forward.claims_to_headers` names, all that a cached principal needs to keep.
DESCRIBING_CLAIMS = ("sub", "azp", "client_id")
# What a route's step-up requirement (RFC 9470) reads: kept only when some route has one.
AUTHENTICATION_CLAIMS = ("acr", "auth_time")


ANONYMOUS = Principal(claims={}, scopes=frozenset(), issuer=None)
