"""Verified tokens, remembered so that a client's next request with the same token costs a lookup.

An entry lives until the token's own `exp`, and only while the issuer's key set is the one it
was verified against: every successful key fetch starts a new generation, so a key removed from
the JWKS stops vouching for cached tokens at the next refresh. The cache is bounded (least
recently used entries go first), keyed by the token and the audience it was checked for.

The key holds a 128-bit BLAKE2b digest of the token, not the token: a bearer token is ~800 bytes,
so 100,000 cached verdicts would otherwise keep 80 MB of credentials in memory (and in any core
dump). The audience goes into the same digest, after the token's length so that no token and
audience pair can pass for another: one 16-byte key per entry. A collision would need 2^64 tokens.

Usage::

    cache = VerifiedTokens(10_000)
    principal = cache.get(token, audience, generation=store.generation)   # or None
    cache.put(token, audience, principal, expires_at=claims["exp"], generation=store.generation)
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass

from cachetools import LRUCache

from scopegate.pipeline import Principal


@dataclass(frozen=True, slots=True)
class _Entry:
    principal: Principal
    expires_at: float
    generation: int


def _digest(token: str, audience: str | None) -> bytes:
    encoded = token.encode("utf-8", "surrogatepass")
    digest = hashlib.blake2b(len(encoded).to_bytes(8, "big"), digest_size=16)
    digest.update(encoded)
    if audience is not None:
        digest.update(audience.encode("utf-8", "surrogatepass"))
    return digest.digest()


class VerifiedTokens:
    def __init__(self, size: int, *, clock: Callable[[], float] = time.time) -> None:
        self._entries: LRUCache[bytes, _Entry] | None = LRUCache(maxsize=size) if size > 0 else None
        self._clock = clock

    def get(self, token: str, audience: str | None, *, generation: int) -> Principal | None:
        if self._entries is None:
            return None
        key = _digest(token, audience)
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry.generation != generation or entry.expires_at <= self._clock():
            del self._entries[key]
            return None
        return entry.principal

    def put(
        self,
        token: str,
        audience: str | None,
        principal: Principal,
        *,
        expires_at: object,
        generation: int,
    ) -> None:
        """Remember `principal` for `token` until `expires_at` (the token's `exp` claim)."""
        if (
            self._entries is None
            or not isinstance(expires_at, int | float)
            or isinstance(expires_at, bool)
        ):
            return  # a token without exp is checked every time
        self._entries[_digest(token, audience)] = _Entry(principal, float(expires_at), generation)

    def __len__(self) -> int:
        return 0 if self._entries is None else len(self._entries)
