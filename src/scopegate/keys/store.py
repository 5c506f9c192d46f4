"""One issuer's signing keys, kept so that the identity provider can never cause an outage.

- **Warm-up**: `start()` fetches at once in the background; `ready` turns true on first success.
  Failed attempts are retried after 1, 2, 4 … seconds, at most `min_refresh_interval` apart.
- **Refresh**: in the background when 80 % of the keys' lifetime has passed; the lifetime is the
  provider's `Cache-Control: max-age` clamped to `[min_refresh_interval, cache_ttl]`.
- **Unknown `kid`**: at most one fetch per `min_refresh_interval`, single-flight: every request
  waiting on a new key shares one fetch. A `kid` still unknown afterwards is remembered until
  the next successful fetch, so a flood of random `kid`s costs the provider nothing.
- **Known `kid`, other algorithm**: `disallowed_alg` at once: the key exists, the token misuses it.
- **Stale-if-error**: a failed fetch never replaces a good key set; known keys are used for up to
  `max_stale` after their last successful fetch. Only then (or before any key was ever fetched)
  are requests answered 503 `issuer_unavailable`, with `Retry-After`.

Usage::

    store = JwksStore(issuer, config.jwks, session, on_fetch=metrics_hook)
    store.carry_over_from(previous_store)       # on reload: keep keys fetched the same way
    await store.start()
    key = await store.key_for(kid, "RS256")     # jwt.PyJWK, or raises Denied
    await store.close()
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable

import aiohttp
import jwt

from scopegate.config.model import Issuer, JwksPolicy
from scopegate.errors import KeyFetchError
from scopegate.keys.fetch import FetchedKeySet, discover_jwks_uri, fetch_jwks
from scopegate.reasons import Denied, Reason

LOG = logging.getLogger("scopegate.keys")
REFRESH_AHEAD = 0.8  # refresh when 80 % of a key set's lifetime has passed
MAX_REMEMBERED_UNKNOWN = 10_000  # bounds memory under a random-kid flood

FetchHook = Callable[[str, bool, int], None]  # issuer, ok, usable key count


def same_key_source(a: Issuer, b: Issuer) -> bool:
    """Whether two issuer settings fetch and keep the very same keys."""
    return (a.issuer, a.jwks_uri, a.algorithms) == (b.issuer, b.jwks_uri, b.algorithms)


class JwksStore:
    def __init__(
        self,
        issuer: Issuer,
        policy: JwksPolicy,
        session: aiohttp.ClientSession,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        on_fetch: FetchHook | None = None,
    ) -> None:
        self.issuer = issuer
        self.policy = policy
        self._session = session
        self._clock = clock
        self._wall_clock = wall_clock
        self._on_fetch = on_fetch
        self._jwks_uri = issuer.jwks_uri
        self._keys: FetchedKeySet | None = None
        self._good_at: float | None = None  # clock time of the last successful fetch
        self._last_attempt: float | None = None
        self._inflight: asyncio.Task[bool] | None = None
        self._background: asyncio.Task[None] | None = None
        self._unknown: set[str] = set()
        self._last_error: str | None = None
        self._last_success: float | None = None
        self._generation = 0

    @property
    def ready(self) -> bool:
        """Keys are at hand: fetched at least once, and not older than `max_stale`."""
        return self._age() <= self.policy.max_stale

    @property
    def last_error(self) -> str | None:
        """Why the latest fetch failed; None once a fetch succeeds."""
        return self._last_error

    @property
    def last_success(self) -> float | None:
        """Wall-clock time of the last successful fetch (for the metric)."""
        return self._last_success

    @property
    def key_count(self) -> int:
        return 0 if self._keys is None else self._keys.count

    @property
    def generation(self) -> int:
        """Moves on every accepted key set, so cached verdicts are checked again."""
        return self._generation

    @property
    def usable_for(self) -> float:
        """Seconds the current keys may still verify tokens: `max_stale` after their last good
        fetch, however the fetches since went (negative once past, -inf before any). It moves
        forward only with `generation`, so whoever caches a verdict can keep its deadline."""
        return self.policy.max_stale - self._age()

    @property
    def lifetime(self) -> float:
        """Seconds the current keys are fresh: the provider's max-age within the policy's bounds."""
        max_age = None if self._keys is None else self._keys.max_age
        policy = self.policy
        wanted = policy.cache_ttl if max_age is None else max_age
        return min(max(wanted, policy.min_refresh_interval), policy.cache_ttl)

    def _age(self) -> float:
        return math.inf if self._good_at is None else self._clock() - self._good_at

    def _fetch_due(self) -> bool:
        last = self._last_attempt
        return last is None or self._clock() - last >= self.policy.min_refresh_interval

    def carry_over_from(self, other: JwksStore) -> bool:
        """Adopt `other`'s keys if it fetched them the same way (a reload that changed only
        audiences, leeway or the policy); True when adopted. Call before `start()`."""
        if other._keys is None or not same_key_source(self.issuer, other.issuer):
            return False
        self._jwks_uri = other._jwks_uri
        self._keys, self._good_at = other._keys, other._good_at
        self._last_attempt, self._last_success = other._last_attempt, other._last_success
        self._unknown = set(other._unknown)
        self._generation = other._generation
        return True

    async def start(self) -> None:
        """Begin warm-up and background refresh; never raises when the provider is down."""
        if self._background is None:
            self._background = asyncio.get_running_loop().create_task(self._refresh_loop())

    async def close(self) -> None:
        for task in (self._background, self._inflight):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._background = None

    def _next_delay(self, failures: int) -> float:
        if failures:  # back off 1, 2, 4 … s, never slower than the unknown-kid pace
            return min(self.policy.min_refresh_interval, 2.0 ** (failures - 1))
        return max(0.0, self.lifetime * REFRESH_AHEAD - self._age())

    async def _refresh_loop(self) -> None:
        failures = 0
        while True:
            await asyncio.sleep(self._next_delay(failures))
            failures = 0 if await self.refresh() else failures + 1

    async def refresh(self) -> bool:
        """Fetch now, or join the fetch already under way; True when it brought good keys."""
        task = self._fetch_task()
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            # The fetch itself was cancelled by `close()` (a reload retired this store): the
            # requests waiting on it carry on without new keys instead of being cancelled.
            current = asyncio.current_task()
            if task.cancelled() and current is not None and not current.cancelling():
                return False
            raise

    def _fetch_task(self) -> asyncio.Task[bool]:
        """The fetch under way, started if there is none (single-flight)."""
        if self._inflight is None:
            self._inflight = asyncio.get_running_loop().create_task(self._fetch())
            self._inflight.add_done_callback(self._fetch_done)
        return self._inflight

    def _fetch_done(self, _: asyncio.Task[bool]) -> None:
        self._inflight = None

    async def _fetch(self) -> bool:
        self._last_attempt = self._clock()
        try:
            fetched = await self._download()
        except KeyFetchError as error:
            if self.issuer.jwks_uri is None:
                self._jwks_uri = None  # the provider may have moved its keys: discover again
            return self._failed(error.reason, error.url)
        except Exception as error:  # a bug must not stop the refresh loop for good
            LOG.exception("key fetch for %s failed unexpectedly", self.issuer.issuer)
            return self._failed(f"unexpected {type(error).__name__}", self._jwks_uri or "")
        self._accept(fetched)
        return True

    async def _download(self) -> FetchedKeySet:
        seconds, max_bytes = self.policy.timeout, self.policy.max_response_bytes
        if self._jwks_uri is None:
            self._jwks_uri = await discover_jwks_uri(
                self._session, self.issuer.issuer, seconds=seconds, max_bytes=max_bytes
            )
        return await fetch_jwks(
            self._session, self._jwks_uri, self.issuer.algorithms,
            seconds=seconds, max_bytes=max_bytes,
        )  # fmt: skip

    def _failed(self, reason: str, url: str) -> bool:
        self._last_error = f"{url}: {reason}"
        LOG.warning(
            "key fetch for %s failed (%s); known keys stay in use",
            self.issuer.issuer, reason,
            extra={"issuer": self.issuer.issuer, "url": url, "error": reason},
        )  # fmt: skip
        self._notify(ok=False)
        return False

    def _accept(self, fetched: FetchedKeySet) -> None:
        self._keys = fetched
        self._generation += 1
        self._unknown.clear()
        self._good_at = self._clock()
        self._last_success = self._wall_clock()
        self._last_error = None
        self._notify(ok=True)

    def _notify(self, *, ok: bool) -> None:
        if self._on_fetch is not None:
            self._on_fetch(self.issuer.issuer, ok, self.key_count)

    async def _fetch_if_allowed(self) -> None:
        """Join a fetch under way, or start one if the last began `min_refresh_interval` ago."""
        if self._inflight is None and not self._fetch_due():
            return
        # Discovery and the key set are two requests, each bounded by `timeout`.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.refresh(), 2 * self.policy.timeout)

    def _lookup(self, kid: str | None, alg: str) -> jwt.PyJWK | None:
        keys = self._keys
        if keys is None:
            return None
        if kid is None:
            return keys.sole.get(alg)
        key = keys.by_id.get((kid, alg))
        if key is None and kid in keys.kids:
            raise Denied(Reason.DISALLOWED_ALG, f"the key the token names is not an {alg} key")
        return key

    def _unavailable(self) -> Denied:
        waited = 0.0 if self._last_attempt is None else self._clock() - self._last_attempt
        retry = max(1, math.ceil(self.policy.min_refresh_interval - waited))
        return Denied(
            Reason.ISSUER_UNAVAILABLE,
            "the token issuer's keys are not available; try again later",
            retry_after=retry,
            challenge=False,
        )

    async def key_for(self, kid: str | None, alg: str) -> jwt.PyJWK:
        """The key for a token's `kid` and `alg`, or `Denied` (`unknown_key`, `disallowed_alg`,
        `issuer_unavailable`)."""
        if not self.ready:
            await self._fetch_if_allowed()
            if not self.ready:
                raise self._unavailable()
        elif self._age() > self.lifetime and self._fetch_due():
            # Past their lifetime (the background loop is late or not running): serve the stale
            # keys and refresh behind this request.
            _ = self._fetch_task()
        return await self._find(kid, alg)

    async def _find(self, kid: str | None, alg: str) -> jwt.PyJWK:
        key = self._lookup(kid, alg)
        if key is not None:
            return key
        if kid is not None and kid in self._unknown:
            raise Denied(Reason.UNKNOWN_KEY, "the token's key is not in the issuer's key set")
        await self._fetch_if_allowed()
        key = self._lookup(kid, alg)
        if key is not None:
            return key
        if kid is None:
            raise Denied(Reason.UNKNOWN_KEY, "the token names no key and the issuer has several")
        if len(self._unknown) < MAX_REMEMBERED_UNKNOWN:
            self._unknown.add(kid)
        raise Denied(Reason.UNKNOWN_KEY, "the token's key is not in the issuer's key set")
