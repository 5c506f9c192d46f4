"""What the limiter asks of a store of counts: spend one request on several keys at once."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from scopegate.pipeline.rate_limits import Counted, Outcome


class Store(Protocol):
    async def spend(self, counted: Sequence[Counted]) -> list[Outcome]:
        """One request against every (rule, key) in `counted`, all or nothing: when any rule
        refuses, no count moves. One outcome per entry, in order."""

    async def close(self) -> None:
        """Let go of connections; the store is not used again."""
