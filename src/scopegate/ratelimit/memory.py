"""`store: memory`: counts kept in this process, as GCRA theoretical arrival times.

Right for one process. Under `--workers N` or with several replicas each process counts alone,
so a client gets up to N times its limit: that is what `redis://` is for.

At most `max_keys` keys are kept, least recently counted dropped first; a key whose TAT has
passed holds nothing a fresh key would not (a dropped key starts afresh, so the bound can only
make the limit more lenient for the coldest keys, never stricter).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Sequence

from scopegate.pipeline.rate_limits import Counted, Outcome, gcra

MAX_KEYS = 100_000


class MemoryStore:
    def __init__(
        self, max_keys: int = MAX_KEYS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._tats: OrderedDict[str, float] = OrderedDict()
        self._max_keys = max_keys
        self._clock = clock

    async def spend(self, counted: Sequence[Counted]) -> list[Outcome]:
        return self.spend_now(counted)

    def spend_now(self, counted: Sequence[Counted]) -> list[Outcome]:
        now = self._clock()
        tats = self._tats
        if len(counted) == 1:  # the usual case, without the all-or-nothing bookkeeping
            entry = counted[0]
            rule = entry.rule
            outcome = gcra(tats.get(entry.key), now, rule.limit, rule.window)
            if outcome.allowed:
                self._keep(entry.key, outcome.tat)
            return [outcome]
        outcomes = [gcra(tats.get(c.key), now, c.rule.limit, c.rule.window) for c in counted]
        if all(outcome.allowed for outcome in outcomes):
            for entry, outcome in zip(counted, outcomes, strict=True):
                self._keep(entry.key, outcome.tat)
        return outcomes

    def _keep(self, key: str, tat: float) -> None:
        tats = self._tats
        tats[key] = tat
        tats.move_to_end(key)
        if len(tats) > self._max_keys:
            tats.popitem(last=False)

    async def close(self) -> None:
        self._tats.clear()

    def __len__(self) -> int:
        return len(self._tats)
