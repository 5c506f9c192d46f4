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
from operator import itemgetter

from scopegate.config.model import RateLimitRule
from scopegate.pipeline import Principal
from scopegate.reasons import Denied, Reason


class Outcome(tuple[bool, int, float, float]):
    """One rule's verdict: `remaining` requests may follow at once; `wait` seconds until the
    next one would pass (0 while some remain); `tat` is the key's new TAT (unchanged when
    refused). A tuple made with `tuple.__new__` and read through C-level getters: one is made
    per rule and request, and any Python-level `__init__` costs several times as much."""

    __slots__ = ()

    allowed = property(itemgetter(0))
    remaining = property(itemgetter(1))
    wait = property(itemgetter(2))
    tat = property(itemgetter(3))

    def __repr__(self) -> str:
        return f"Outcome(allowed={self[0]}, remaining={self[1]}, wait={self[2]:g}, tat={self[3]:g})"


def outcome(allowed: bool, remaining: int, wait: float, tat: float) -> Outcome:
    return tuple.__new__(Outcome, (allowed, remaining, wait, tat))


def gcra(tat: float | None, now: float, limit: int, window: float) -> Outcome:
    """One request at `now` against a key whose TAT is `tat` (None: never seen)."""
    interval = window / limit
    start = tat if tat is not None and tat > now else now
    ahead = start + interval - now  # how far the new TAT would run ahead of now
    # The stores keep TATs to the microsecond: float noise within it must not refuse the
    # limit-th request, nor leave a remaining one uncounted.
    if ahead > window + 1e-6:
        return tuple.__new__(Outcome, (False, 0, ahead - window, start))
    remaining = int((window - ahead) / interval + 1e-6)
    wait = 0.0 if remaining else ahead + interval - window
    return tuple.__new__(Outcome, (True, remaining, wait, start + interval))


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
        rules by its `sub`. A rule whose key the request lacks does not count it. The list
        returned is shared: callers read it only."""
        by_ip = (
            [Counted(rule, f"{rule.name}:ip:{remote}") for rule in self.by_ip]
            if self.by_ip and remote
            else []
        )
        if principal is None or not self.by_principal:
            return by_ip
        memo = principal.counted
        if memo is not None and memo[0] is self:
            mine: list[Counted] = memo[1]
        else:
            mine = []
            for rule in self.by_principal:
                value = principal.client_id if rule.key == "client" else principal.subject
                if isinstance(value, str) and value:
                    mine.append(Counted(rule, f"{rule.name}:{rule.key}:{value}"))
            object.__setattr__(principal, "counted", (self, mine))  # a memo, as `derived` is
        return by_ip + mine if by_ip else mine


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
        rule, (_, remaining, wait, _) = counted[0].rule, outcomes[0]
        policy = known.get(rule.name) or policy_member(rule)
        state = b'"%s";r=%d;t=%d' % (rule.name.encode(), remaining, math.ceil(wait))
        return [(b"RateLimit-Policy", policy), (b"RateLimit", state)]
    policy = b", ".join(known.get(c.rule.name) or policy_member(c.rule) for c in counted)
    states = b", ".join(
        b'"%s";r=%d;t=%d' % (c.rule.name.encode(), o.remaining, math.ceil(o.wait))
        for c, o in zip(counted, outcomes, strict=True)
    )
    return [(b"RateLimit-Policy", policy), (b"RateLimit", states)]


POLICY_HEADER = b"RateLimit-Policy"
STATE_HEADER = b"RateLimit"


def state_template(rule: RateLimitRule) -> bytes:
    """`"NAME";r=%d;t=%d`: the rule's `RateLimit` member, to fill with remaining and wait."""
    return b'"' + rule.name.encode() + b'";r=%d;t=%d'


def policy_member(rule: RateLimitRule) -> bytes:
    """`"NAME";q=LIMIT;w=WINDOW`."""
    return f'"{rule.name}";q={rule.limit};w={_seconds(rule.window)}'.encode()


def refusal(counted: Sequence[Counted], outcomes: Sequence[Outcome]) -> Denied | None:
    """`rate_limited`, naming the rules that refused, with the longest wait as `Retry-After`;
    None when every rule allows the request."""
    if len(outcomes) == 1 and outcomes[0][0]:
        return None  # the usual case, without a generator
    if all(outcome.allowed for outcome in outcomes):
        return None
    refused = [(c, o) for c, o in zip(counted, outcomes, strict=True) if not o.allowed]
    wait = max(outcome.wait for _, outcome in refused)
    names = ", ".join(c.rule.name for c, _ in refused)
    detail = f"over the rate limit ({names}); retry in {math.ceil(wait)} s"
    return Denied(Reason.RATE_LIMITED, detail, retry_after=max(1, math.ceil(wait)), challenge=False)


def _seconds(window: float) -> str:
    return str(int(window)) if window == int(window) else f"{window:g}"
