"""A route's rules applied through the store, and what a failing store means.

A store that errs or takes longer than `timeout` is a store error: counted, logged at most once
per `LOG_EVERY` seconds, and answered as `on_store_error` says: `allow` forwards the request
uncounted, `deny` answers 503 `rate_limit_unavailable`. Nothing is remembered about the failure:
the next request asks the store again, so counting resumes by itself once it answers.

Usage::

    limiter = Limiter(config.rate_limits, store, on_store_error=metrics.rate_limit_store_failed)
    rules = limiter.rules(route.name)                      # RouteRules, NO_RULES if none apply
    headers = await limiter.admit(rules.counting(principal, remote))   # or Denied
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence

from scopegate.config.model import RateLimits
from scopegate.pipeline.rate_limits import (
    NO_RULES,
    POLICY_HEADER,
    STATE_HEADER,
    Counted,
    Outcome,
    RouteRules,
    policy_member,
    rate_limit_headers,
    refusal,
    rules_for,
    state_template,
)
from scopegate.ratelimit.memory import MemoryStore
from scopegate.ratelimit.store import Store
from scopegate.reasons import Denied, Reason

LOG_EVERY = 30.0  # seconds between two log lines about a failing store
UNAVAILABLE_RETRY_AFTER = 1  # seconds, on the 503 of `on_store_error: deny`
_log = logging.getLogger("scopegate.ratelimit")


class Limiter:
    def __init__(
        self,
        limits: RateLimits,
        store: Store,
        *,
        on_store_error: Callable[[], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limits = limits
        self.store = store
        self._on_store_error = on_store_error
        self._clock = clock
        self._deny = limits.on_store_error == "deny"
        self._logged_at: float | None = None
        self._by_route: dict[str, RouteRules] = {}
        self._policies = {rule.name: policy_member(rule) for rule in limits.rules}
        self._states = {rule.name: state_template(rule) for rule in limits.rules}
        # Counted in this process: answered in line (`admit_now`), with no timeout to arm.
        self._memory = store if isinstance(store, MemoryStore) else None
        self.in_line = self._memory is not None

    def rules(self, route: str) -> RouteRules:
        """The rules that count requests on `route` (looked up once per route name)."""
        found = self._by_route.get(route)
        if found is None:
            found = self._by_route[route] = rules_for(route, self.limits.rules)
        return found

    async def admit(self, counted: Sequence[Counted]) -> list[tuple[bytes, bytes]]:
        """Spend this request; the `RateLimit` headers for its answer, or `Denied`
        (`rate_limited`, or `rate_limit_unavailable` when the store fails and that is what
        the file asks for)."""
        if not counted:
            return []
        if self._memory is not None:
            return self.admit_now(counted)
        try:
            outcomes = await self.store.spend(counted)  # bounded by the store's timeout
        except Exception as error:  # any failure of the store, its client or its network
            self._store_failed(error)
            if self._deny:
                raise Denied(
                    Reason.RATE_LIMIT_UNAVAILABLE,
                    "the rate limit store does not answer",
                    retry_after=UNAVAILABLE_RETRY_AFTER,
                    challenge=False,
                ) from None
            return []
        return self._answer(counted, outcomes)

    def admit_now(self, counted: Sequence[Counted]) -> list[tuple[bytes, bytes]]:
        """`admit` for a store counted in this process (`in_line`), without a coroutine."""
        memory = self._memory
        if not counted or memory is None:
            return []
        if len(counted) != 1:
            return self._answer(counted, memory.spend_now(counted))
        # One rule, the usual case: its headers from templates made once, in line.
        entry = counted[0]
        outcome = memory.spend_one(entry)
        name = entry.rule.name
        state = self._states[name] % (outcome[1], math.ceil(outcome[2]))
        headers = [(POLICY_HEADER, self._policies[name]), (STATE_HEADER, state)]
        if outcome[0]:
            return headers
        return self._answer(counted, [outcome])  # raises the refusal

    def _answer(
        self, counted: Sequence[Counted], outcomes: Sequence[Outcome]
    ) -> list[tuple[bytes, bytes]]:
        headers = rate_limit_headers(counted, outcomes, self._policies)
        denied = refusal(counted, outcomes)
        if denied is not None:
            denied.headers = tuple(headers)
            raise denied
        return headers

    def _store_failed(self, error: Exception) -> None:
        self._on_store_error()
        now = self._clock()
        if self._logged_at is None or now - self._logged_at >= LOG_EVERY:
            self._logged_at = now
            what = "timed out" if isinstance(error, TimeoutError) else repr(error)
            action = "refusing (503)" if self._deny else "allowing uncounted"
            _log.warning(
                "rate limit store failed: %s; %s while it fails", what, action,
                extra={"error": what, "on_store_error": self.limits.on_store_error},
            )  # fmt: skip


__all__ = ["NO_RULES", "Limiter"]
