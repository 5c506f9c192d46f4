"""Verified tokens, remembered so that a client's next request with the same token costs a lookup.

An entry lives until the token's own `exp`, and only while the issuer's key set is the one it
was verified against: every successful key fetch starts a new generation, so a key removed from
the JWKS stops vouching for cached tokens at the next refresh. Every entry belongs to the
generation the cache last saw, so a new one empties the cache at once (entries carry no
generation of their own). The cache is bounded (least recently used entries go first), keyed
by the token and the audience it was checked for.

Nor does an entry outlive the keys that verified it: while the issuer is unreachable, its keys
stop vouching for tokens `jwks.max_stale` after their last good fetch, and from then on the
uncached path answers 503 `issuer_unavailable`; a cached verdict must not keep answering 200.
That moment is fixed for a generation (only a good fetch moves it, and a good fetch starts a new
generation), so `put` learns it and the cache keeps the earliest over its entries: a hit then
costs one more comparison of two numbers. Once it passes, the whole cache is emptied, and
entries whose keys are still usable (another issuer's) are simply verified again, once.

The bound is kept by the standard library's `OrderedDict` (the least recently used entry first,
`move_to_end` on every hit), as its documentation's own LRU recipe does. cachetools' `LRUCache`
keeps a dict and an `OrderedDict` side by side, so each entry costs more memory, and its hit
runs in Python where `move_to_end` runs in C.

The key is a digest of the token, not the token: a bearer token is many times the size of a
digest, and cached verdicts would otherwise keep every client's credentials in memory (and in
any core dump). It is
SHA-256 cut to 128 bits, over the token's length, the token and the audience (the length first,
so that no token and audience pair can pass for another): one 16-byte key per entry, and a
collision would need 2^64 tokens. SHA-256 rather than BLAKE2b because OpenSSL's runs on the CPU's
SHA instructions, which makes it the quicker of the two on a token, and it runs on every
protected request.

Usage::

    key = cache_key(token, audience)            # once per request: for the lookup and the store
    principal = cache.get(key, generation=store.generation)   # or None
    cache.put(key, principal, generation=store.generation, usable_for=store.usable_for)
    # until principal.cache_until (its exp), and never once the keys are past usable_for
"""

from __future__ import annotations

import hashlib
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar


class Expiring(Protocol):
    """What the cache needs of a verdict: until when it may be reused (a JWT's `exp`; for an
    introspected token, no later than its introspection may be reused)."""

    @property
    def cache_until(self) -> float | None: ...


V = TypeVar("V", bound=Expiring)


def cache_key(token: str, audience: str | None) -> bytes:
    """The cache's key for `token` checked for `audience` (None: the issuer's own list)."""
    encoded = token.encode("utf-8", "surrogatepass")
    digest = hashlib.sha256(len(encoded).to_bytes(8, "big"))
    digest.update(encoded)
    if audience is not None:
        digest.update(audience.encode("utf-8", "surrogatepass"))
    return digest.digest()[:16]


class VerifiedTokens(Generic[V]):
    """The verdicts (a verified token's principal) by `cache_key`, bounded and least recently used
    first out."""

    def __init__(self, size: int, *, clock: Callable[[], float] = time.time) -> None:
        self._entries: OrderedDict[bytes, V] | None = OrderedDict() if size > 0 else None
        self._size = size
        self._generation: int | None = None  # that of every entry
        self._usable_until = math.inf  # the earliest moment an entry's keys stop vouching
        self._clock = clock

    @property
    def enabled(self) -> bool:
        """False for a cache of size 0: nothing is remembered, so no key need be computed."""
        return self._entries is not None

    def get(self, key: bytes, *, generation: int) -> V | None:
        if self._entries is None:
            return None
        if generation != self._generation:
            self._forget()  # every entry was verified under keys since replaced
            self._generation = generation
            return None
        principal = self._entries.get(key)
        if principal is None:
            return None
        now = self._clock()
        if now >= self._usable_until:
            self._forget()  # some entry's keys no longer vouch for it
            return None
        if principal.cache_until is None or principal.cache_until <= now:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return principal

    def put(self, key: bytes, principal: V, *, generation: int, usable_for: float) -> None:
        """Remember `principal` under `key` until its `cache_until`; `generation` is the key set's
        when verification began (a key set that moved since makes the verdict stale), and
        `usable_for` the seconds that key set may still verify tokens (not a moment longer will
        the verdict be returned)."""
        if self._entries is None or principal.cache_until is None:
            return  # a token without exp is checked every time
        if generation != self._generation:
            if self._generation is not None:
                return
            self._generation = generation
        now = self._clock()
        if now >= self._usable_until:
            self._forget()
        if usable_for <= 0:
            return  # the keys lapsed while the token was being verified
        self._usable_until = min(self._usable_until, now + usable_for)
        self._entries[key] = principal
        self._entries.move_to_end(key)  # a token verified again is the most recently used
        if len(self._entries) > self._size:
            self._entries.popitem(last=False)

    def _forget(self) -> None:
        if self._entries is not None:
            self._entries.clear()
        self._usable_until = math.inf

    def __len__(self) -> int:
        return 0 if self._entries is None else len(self._entries)
