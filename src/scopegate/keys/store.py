"""One issuer's signing keys, kept so that the identity provider can never cause an outage.

- **Warm-up**: `start()` fetches at once in the background; `ready` turns true on first success.
- **Refresh**: in the background before the keys expire; the lifetime is the provider's
  `Cache-Control: max-age` clamped to `[min_refresh_interval, cache_ttl]`.
- **Unknown `kid`**: at most one fetch per `min_refresh_interval`, single-flight: every request
  waiting on a new key shares one fetch. A `kid` still unknown afterwards is remembered until
  the next successful fetch, so a flood of random `kid`s costs the provider nothing.
- **Stale-if-error**: a failed fetch never replaces a good key set; known keys are used for up to
  `max_stale` after their last successful fetch. Only then (or before any key was ever fetched)
  are requests answered 503 `issuer_unavailable`, with `Retry-After`.

Usage::

    store = JwksStore(issuer, config.jwks, session, on_fetch=metrics_hook)
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
from collections.abc import Callable, Mapping

import aiohttp
import jwt

from scopegate.config.model import Issuer, JwksPolicy
from scopegate.keys.fetch import KeyFetchError, KeyId, discover_jwks_uri, fetch_jwks
from scopegate.reasons import Denied, Reason

LOG = logging.getLogger("scopegate.keys")
REFRESH_AHEAD = 0.8  # refresh when 80 % of a key set's lifetime has passed
MAX_REMEMBERED_UNKNOWN = 10_000  # bounds memory under a random-kid flood

FetchHook = Callable[[str, bool, int], None]  # issuer, ok, usable key count


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
        self._keys: Mapping[KeyId, jwt.PyJWK] = {}
        self._good_at: float | None = None
        self._lifetime = policy.cache_ttl
        self._last_attempt: float | None = None
        self._inflight: asyncio.Task[bool] | None = None
        self._unknown: set[str] = set()
        self._background: asyncio.Task[None] | None = None
        self.last_error: str | None = None
        self.last_success: float | None = None  # wall-clock time, for the metric
        self.fetches = 0
        self.generation = 0  # moves on every accepted key set: cached verdicts are re-checked

    # -- state -------------------------------------------------------------------------------

    @property
    def key_count(self) -> int:
        return len({kid for kid, _ in self._keys})

    def _too_stale(self) -> bool:
        return self._good_at is None or self._clock() - self._good_at > self.policy.max_stale

    @property
    def ready(self) -> bool:
        return not self._too_stale()

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        if self._background is None:
            self._background = asyncio.get_running_loop().create_task(self._refresh_loop())

    async def close(self) -> None:
        for task in (self._background, self._inflight):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._background = None

    async def _refresh_loop(self) -> None:
        while True:
            ok = await self.refresh()
            if ok:
                delay = max(self.policy.min_refresh_interval, self._lifetime * REFRESH_AHEAD)
            else:  # retry failures at the pace an unknown kid may cause fetches
                delay = max(self.policy.min_refresh_interval, 1.0)
            await asyncio.sleep(delay)

    # -- fetching ----------------------------------------------------------------------------

    async def refresh(self) -> bool:
        """Fetch now, or join the fetch already under way; True when it brought good keys."""
        if self._inflight is None:
            self._inflight = asyncio.get_running_loop().create_task(self._fetch())
            self._inflight.add_done_callback(self._fetch_done)
        return await asyncio.shield(self._inflight)

    def _fetch_done(self, _: asyncio.Task[bool]) -> None:
        self._inflight = None

    async def _fetch(self) -> bool:
        self._last_attempt = self._clock()
        self.fetches += 1
        policy = self.policy
        try:
            if self._jwks_uri is None:
                self._jwks_uri = await discover_jwks_uri(
                    self._session, self.issuer.issuer,
                    seconds=policy.timeout, max_bytes=policy.max_response_bytes,
                )  # fmt: skip
            fetched = await fetch_jwks(
                self._session, self._jwks_uri, self.issuer.algorithms,
                seconds=policy.timeout, max_bytes=policy.max_response_bytes,
            )  # fmt: skip
        except KeyFetchError as error:
            self.last_error = str(error)
            LOG.warning(
                "key fetch failed; known keys stay in use",
                extra={"issuer": self.issuer.issuer, "error": error.reason, "url": error.url},
            )
            self._notify(ok=False)
            return False
        self._accept(fetched.keys, fetched.max_age)
        return True

    def _accept(self, keys: Mapping[KeyId, jwt.PyJWK], max_age: float | None) -> None:
        policy = self.policy
        lifetime = policy.cache_ttl if max_age is None else max_age
        self._lifetime = min(max(lifetime, policy.min_refresh_interval), policy.cache_ttl)
        self._keys = keys
        self.generation += 1
        self._unknown.clear()
        self._good_at = self._clock()
        self.last_success = self._wall_clock()
        self.last_error = None
        self._notify(ok=True)

    def _notify(self, *, ok: bool) -> None:
        if self._on_fetch is not None:
            self._on_fetch(self.issuer.issuer, ok, self.key_count)

    async def _fetch_if_allowed(self) -> None:
        """Join a fetch under way, or start one if the last began `min_refresh_interval` ago."""
        due = self._last_attempt is None or (
            self._clock() - self._last_attempt >= self.policy.min_refresh_interval
        )
        if self._inflight is None and not due:
            return
        # Discovery and the key set are two requests, each bounded by `timeout`.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.refresh(), 2 * self.policy.timeout)

    # -- lookup ------------------------------------------------------------------------------

    def _lookup(self, kid: str | None, alg: str) -> jwt.PyJWK | None:
        key = self._keys.get((kid, alg))
        if key is not None:
            return key
        if kid is None:  # a token naming no key may use the issuer's only key for its alg
            candidates = [key for (_, key_alg), key in self._keys.items() if key_alg == alg]
            return candidates[0] if len(candidates) == 1 else None
        if any(known == kid for known, _ in self._keys):
            raise Denied(Reason.DISALLOWED_ALG, f"the key the token names is not an {alg} key")
        return None

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
        if self._too_stale():
            await self._fetch_if_allowed()
            if self._too_stale():
                raise self._unavailable()
        key = self._lookup(kid, alg)
        if key is not None:
            return key
        if kid is not None and kid in self._unknown:
            raise Denied(Reason.UNKNOWN_KEY, "the token's key is not in the issuer's key set")
        await self._fetch_if_allowed()
        key = self._lookup(kid, alg)
        if key is not None:
            return key
        if kid is not None and len(self._unknown) < MAX_REMEMBERED_UNKNOWN:
            self._unknown.add(kid)
        raise Denied(Reason.UNKNOWN_KEY, "the token's key is not in the issuer's key set")
