"""SPEC §6.5, the deciding half: which rules count a request, under which key, and GCRA.

GCRA (the generic cell rate algorithm) keeps one number per key, the theoretical arrival time
(TAT) of the next request if requests came exactly at the allowed rate. A key that has been
quiet has its TAT in the past and may spend its whole `limit` at once; after that requests pass
at `limit / window` per second. There is no window edge at which two limits fit in one window,
as with a fixed window counter.

With `interval = window / limit`, a request at `now` passes when
`max(tat, now) + interval - now <= window`, and then moves the TAT there. The Redis store runs
the same arithmetic in a Lua script (`ratelimit/redis_store.py`); this module is the reference
both stores are tested against.

Usage::

    counted = rules_for(route, rules).counting(principal, remote)   # [(rule, key), ...]
    outcome = gcra(tat, now, rule.limit, rule.window)               # or a store does it
    headers = rate_limit_headers(counted, outcomes)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from scopegate.config.model import RateLimitRule
from scopegate.pipeline import Principal
from scopegate.reasons import Denied, Reason


class Outcome:
    """One rule's verdict: `remaining` requests may follow at once; `wait` seconds until the
    next one would pass (0 while some remain); `tat` is the key's new TAT (unchanged when
    refused). A plain slotted class: one is made per rule and request, and a frozen
    dataclass's `__init__` costs several times this one's."""

    __slots__ = ("allowed", "remaining", "tat", "wait")

    def __init__(self, allowed: bool, remaining: int, wait: float, tat: float) -> None:
        self.allowed = allowed
        self.remaining = remaining
        self.wait = wait
        self.tat = tat

    def __repr__(self) -> str:
        return f"Outcome({self.allowed}, {self.remaining}, {self.wait:g}, {self.tat:g})"


def gcra(tat: float | None, now: float, limit: int, window: float) -> Outcome:
    """One request at `now` against a key whose TAT is `tat` (None: never seen)."""
    interval = window / limit
    start = now if tat is None or tat < now else tat
    new_tat = start + interval
    # The stores keep TATs to the microsecond: float noise within it must not refuse the
    # limit-th request, nor leave a remaining one uncounted.
    if new_tat - now > window + 1e-6:
        return Outcome(False, 0, start + interval - window - now, start)
    remaining = int((window - (new_tat - now)) / interval + 1e-6)
    wait = 0.0 if remaining > 0 else new_tat + interval - window - now
    return Outcome(True, remaining, wait, new_tat)


class Counted:
    """A rule and the key it counts this request under (`rule.name` + kind + value)."""

    __slots__ = ("key", "rule")

    def __init__(self, rule: RateLimitRule, key: str) -> None:
        self.rule = rule
        self.key = key


@dataclass(frozen=True, slots=True)
class RouteRules:
    """The rules that apply on one route, split by when they can count: `ip` rules before the
    token is checked, `client` and `subject` rules only once it is verified."""

    by_ip: tuple[RateLimitRule, ...]
    by_principal: tuple[RateLimitRule, ...]

    def counting(self, principal: Principal | None, remote: str | None) -> list[Counted]:
        """The (rule, key) pairs this request spends: `ip` rules by the peer's address, and,
        with a verified `principal`, `client` rules by its `azp`/`client_id` and `subject`
        rules by its `sub`. A rule whose key the request lacks does not count it."""
        counted = [Counted(rule, f"{rule.name}:ip:{remote}") for rule in self.by_ip if remote]
        if principal is None:
            return counted
        for rule in self.by_principal:
            value = principal.client_id if rule.key == "client" else principal.subject
            if isinstance(value, str) and value:
                counted.append(Counted(rule, f"{rule.name}:{rule.key}:{value}"))
        return counted


NO_RULES = RouteRules((), ())


def rules_for(route: str, rules: Sequence[RateLimitRule]) -> RouteRules:
    applying = [rule for rule in rules if rule.routes is None or route in rule.routes]
    if not applying:
        return NO_RULES
    return RouteRules(
        tuple(rule for rule in applying if rule.key == "ip"),
        tuple(rule for rule in applying if rule.key != "ip"),
    )


def rate_limit_headers(
    counted: Sequence[Counted],
    outcomes: Sequence[Outcome],
    policies: Mapping[str, bytes] | None = None,
) -> list[tuple[bytes, bytes]]:
    """`RateLimit-Policy` and `RateLimit` (IETF httpapi rate-limit headers), one list member per
    rule: `"NAME";q=LIMIT;w=WINDOW` and `"NAME";r=REMAINING;t=SECONDS`. `policies`: each
    rule's `policy_member` by name, made once (this runs on every limited request)."""
    known = policies or {}
    if len(counted) == 1:  # the usual case, without the joins
        rule, outcome = counted[0].rule, outcomes[0]
        policy = known.get(rule.name) or policy_member(rule)
        state = b'"%s";r=%d;t=%d' % (rule.name.encode(), outcome.remaining, math.ceil(outcome.wait))
        return [(b"RateLimit-Policy", policy), (b"RateLimit", state)]
    policy = b", ".join(known.get(c.rule.name) or policy_member(c.rule) for c in counted)
    states = b", ".join(
        b'"%s";r=%d;t=%d' % (c.rule.name.encode(), o.remaining, math.ceil(o.wait))
        for c, o in zip(counted, outcomes, strict=True)
    )
    return [(b"RateLimit-Policy", policy), (b"RateLimit", states)]


def policy_member(rule: RateLimitRule) -> bytes:
    """`"NAME";q=LIMIT;w=WINDOW`."""
    return f'"{rule.name}";q={rule.limit};w={_seconds(rule.window)}'.encode()


def refusal(counted: Sequence[Counted], outcomes: Sequence[Outcome]) -> Denied | None:
    """`rate_limited`, naming the rules that refused, with the longest wait as `Retry-After`;
    None when every rule allows the request."""
    if all(outcome.allowed for outcome in outcomes):
        return None
    refused = [(c, o) for c, o in zip(counted, outcomes, strict=True) if not o.allowed]
    wait = max(outcome.wait for _, outcome in refused)
    names = ", ".join(c.rule.name for c, _ in refused)
    detail = f"over the rate limit ({names}); retry in {math.ceil(wait)} s"
    return Denied(Reason.RATE_LIMITED, detail, retry_after=max(1, math.ceil(wait)), challenge=False)


def _seconds(window: float) -> str:
    return str(int(window)) if window == int(window) else f"{window:g}"
