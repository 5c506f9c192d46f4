"""`store: redis://...`: one count shared by every worker and replica.

One round trip per request: a Lua script runs GCRA for every rule of the request at once, on
Redis's own clock (so replicas whose clocks differ still agree), all or nothing, and sets each
key to expire when its TAT has passed (a quiet key holds no memory). EVALSHA is sent, and the
script sent whole if Redis lost it (a restart). The connection (`resp.py`) is pipelined and
reconnects by itself once Redis is back; each call is bounded by `timeout`.

Keys are `scopegate:rl:` + rule name + key kind + value. With Redis Cluster, the rules of one
route would need one hash slot; a single Redis (or a replicated primary) is what this expects.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
from collections.abc import Sequence
from typing import Any

from scopegate.pipeline.rate_limits import Counted, Outcome, outcome
from scopegate.ratelimit.resp import RedisError, RespClient

PREFIX = "scopegate:rl:"
PROOF_PREFIX = "scopegate:dpop:"  # DPoP proofs used (SPEC §6.4), shared like the counts

# KEYS: one per rule; ARGV: limit, window for each. Returns allowed, remaining, wait for each,
# wait as text (a Lua number returned to Redis would be cut to an integer).
GCRA = """
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) + tonumber(now_parts[2]) / 1000000
local out, tats, all = {}, {}, true
for i = 1, #KEYS do
  local limit, window = tonumber(ARGV[2 * i - 1]), tonumber(ARGV[2 * i])
  local interval = window / limit
  local start = now
  local tat = tonumber(redis.call('GET', KEYS[i]))
  if tat and tat > now then start = tat end
  local new_tat = start + interval
  if new_tat - now > window + 1e-6 then
    all = false
    out[3 * i - 2], out[3 * i - 1] = 0, 0
    out[3 * i] = string.format('%.6f', start + interval - window - now)
  else
    local remaining = math.floor((window - (new_tat - now)) / interval + 1e-6)
    local wait = 0
    if remaining <= 0 then wait = new_tat + interval - window - now end
    out[3 * i - 2], out[3 * i - 1], out[3 * i] = 1, remaining, string.format('%.6f', wait)
    tats[i] = new_tat
  end
end
if all then
  for i = 1, #KEYS do
    local ttl = math.ceil((tats[i] - now) * 1000)
    redis.call('SET', KEYS[i], string.format('%.6f', tats[i]), 'PX', math.max(ttl, 1))
  end
end
return out
"""


class RedisStore:
    def __init__(self, url: str, timeout: float) -> None:
        self._client = RespClient(url, connect_timeout=timeout)
        self._timeout = timeout
        self._script = GCRA.encode()
        # EVALSHA names the script by its SHA-1 (what Redis computes; nothing secret).
        self._sha = hashlib.sha1(self._script, usedforsecurity=False).hexdigest().encode()

    async def spend(self, counted: Sequence[Counted]) -> list[Outcome]:
        """Raises `RedisError`, or `TimeoutError` after `timeout` (the connection is then
        dropped, so that a hung Redis cannot pile up commands)."""
        args = [b"%d" % len(counted)]
        args += [(PREFIX + entry.key).encode() for entry in counted]
        for entry in counted:
            args += (b"%d" % entry.rule.limit, repr(entry.rule.window).encode())
        try:
            async with asyncio.timeout(self._timeout):
                reply = await self._run(args)
        except TimeoutError:
            self._client.reset()
            raise
        return [
            outcome(bool(reply[i]), int(reply[i + 1]), float(reply[i + 2]), 0.0)
            for i in range(0, len(reply), 3)
        ]

    async def _run(self, args: list[bytes]) -> Any:
        try:
            return await self._client.call(b"EVALSHA", self._sha, *args)
        except RedisError as error:
            if not str(error).startswith("NOSCRIPT"):
                raise
        # A Redis that restarted, or was flushed, has lost the script: EVAL loads it again.
        return await self._client.call(b"EVAL", self._script, *args)

    async def first_use(self, key: str, seconds: float) -> bool:
        """Whether `key` (a DPoP proof's) is new to every worker and replica sharing this Redis:
        it is then remembered for `seconds` (`SET NX PX`, atomic). Raises as `spend` does."""
        milliseconds = b"%d" % max(1, math.ceil(seconds * 1000))
        try:
            async with asyncio.timeout(self._timeout):
                reply = await self._client.call(
                    b"SET", (PROOF_PREFIX + key).encode(), b"1", b"PX", milliseconds, b"NX"
                )
        except TimeoutError:
            self._client.reset()
            raise
        return reply is not None

    async def close(self) -> None:
        await self._client.close()
