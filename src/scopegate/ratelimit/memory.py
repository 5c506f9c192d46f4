"""`store: memory`: counts kept in this process, as GCRA theoretical arrival times.

Right for one process. Under `--workers N` or with several replicas each process counts alone,
so a client gets up to N times its limit: that is what `redis://` is for.

At most `max_keys` keys are kept, least recently counted dropped first; a key whose TAT has
passed holds nothing a fresh key would not (a dropped key starts afresh, so the bound can only
make the limit more lenient for the coldest keys, never stricter).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from scopegate.pipeline.rate_limits import Counted, Outcome, gcra

MAX_KEYS = 100_000


class MemoryStore:
    def __init__(
        self, max_keys: int = MAX_KEYS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        # A plain dict in recency order: a key counted again is moved to the end.
        self._tats: dict[str, float] = {}
        self._max_keys = max_keys
        self._clock = clock

    async def spend(self, counted: Sequence[Counted]) -> list[Outcome]:
        return self.spend_now(counted)

    def spend_now(self, counted: Sequence[Counted]) -> list[Outcome]:
        if len(counted) == 1:
            return [self.spend_one(counted[0])]
        now = self._clock()
        tats = self._tats
        outcomes = [gcra(tats.get(c.key), now, c.rule.limit, c.rule.window) for c in counted]
        if all(outcome.allowed for outcome in outcomes):
            for entry, outcome in zip(counted, outcomes, strict=True):
                self._keep(entry.key, outcome.tat)
        return outcomes

    def spend_one(self, entry: Counted) -> Outcome:
        """`spend_now` of one rule (the usual case), without the all-or-nothing bookkeeping."""
        tats = self._tats
        rule, key = entry.rule, entry.key
        outcome = gcra(tats.pop(key, None), self._clock(), rule.limit, rule.window)
        if len(tats) >= self._max_keys:
            del tats[next(iter(tats))]  # the least recently counted
        # Popped and put back, now the most recent: the new TAT, or after a refusal the one it
        # had (`outcome.tat` leaves it where it was).
        tats[key] = outcome[3]
        return outcome

    def _keep(self, key: str, tat: float) -> None:
        tats = self._tats
        if tats.pop(key, None) is None and len(tats) >= self._max_keys:
            del tats[next(iter(tats))]  # the least recently counted
        tats[key] = tat

    async def close(self) -> None:
        self._tats.clear()

    def __len__(self) -> int:
        return len(self._tats)
