"""One generation of configuration, ready for requests: route table, verifier, key stores, header
policy. A reload builds a whole new `Runtime` and swaps one reference; requests in flight keep the
generation they started with.

Usage::

    runtime = Runtime.build(config, session, metrics, previous=old_runtime)  # ConfigErrors if bad
    await runtime.start()          # warm up key stores that are new in this generation
    ...
    await old_runtime.retire(keep=runtime)   # closes the stores the new generation did not adopt
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import aiohttp

from scopegate.config.model import Config, Forwarding, Issuer, JwksPolicy
from scopegate.config.resource_document import PublishedMetadata, published_metadata
from scopegate.keys.store import JwksStore, same_key_source
from scopegate.pipeline import BINDING_CLAIM, DESCRIBING_CLAIMS
from scopegate.pipeline.cors import CorsPolicy
from scopegate.pipeline.routing import (
    CompiledRoutes,
    RouteTable,
    compile_routes,
    raise_route_errors,
)
from scopegate.pipeline.verify import TokenVerifier
from scopegate.proxy.headers import HeaderPolicy
from scopegate.ratelimit.limiter import Limiter
from scopegate.ratelimit.memory import MemoryStore
from scopegate.ratelimit.redis_store import RedisStore
from scopegate.ratelimit.store import Store
from scopegate.telemetry.metrics import Metrics


def kept_claims(forward: Forwarding) -> frozenset[str]:
    """The claims read after verification: what describes the caller in the access log, and what
    is forwarded as headers (a dotted name by its literal name and by its first part)."""
    names = {*DESCRIBING_CLAIMS, BINDING_CLAIM}
    for claim, _ in forward.claims_to_headers:
        names.update((claim, claim.split(".", 1)[0]))
    return frozenset(names)


def _adopt_or_create(
    issuer: Issuer,
    policy: JwksPolicy,
    previous: Runtime | None,
    session: aiohttp.ClientSession,
    metrics: Metrics,
) -> tuple[JwksStore, bool]:
    """The key store for `issuer`, and whether it is new. A previous store that fetches the
    same keys the same way is kept as it is; one that fetches the same keys under another
    policy hands its keys to the new store. Either way a reload costs the provider nothing."""
    old = previous.key_stores.get(issuer.issuer) if previous is not None else None
    if old is not None and same_key_source(old.issuer, issuer) and old.policy == policy:
        return old, False
    store = JwksStore(
        issuer,
        policy,
        session,
        on_fetch=lambda name, ok, count: metrics.jwks_fetched(
            name, ok, count, time.time() if ok else None
        ),
    )
    if old is not None:
        store.carry_over_from(old)
    return store, True


def _key_stores(
    config: Config,
    previous: Runtime | None,
    session: aiohttp.ClientSession,
    metrics: Metrics,
) -> tuple[dict[str, JwksStore], tuple[JwksStore, ...]]:
    """Every configured issuer's key store by issuer name, and those of them new in this
    generation (the ones `Runtime.start` warms up)."""
    stores: dict[str, JwksStore] = {}
    fresh: list[JwksStore] = []
    for issuer in config.issuers:
        store, is_new = _adopt_or_create(issuer, config.jwks, previous, session, metrics)
        stores[issuer.issuer] = store
        if is_new:
            fresh.append(store)
    return stores, tuple(fresh)


def _verifier(
    config: Config, stores: dict[str, JwksStore], previous: Runtime | None
) -> TokenVerifier:
    """The generation's verifier; it adopts `previous`'s cached verdicts when they still hold."""
    return TokenVerifier(
        config.issuers,
        stores,
        cache_size=config.limits.token_cache_size,
        kept_claims=kept_claims(config.forward),
        carry_over=previous.verifier if previous is not None else None,
    )


def _limiter(config: Config, previous: Runtime | None, metrics: Metrics) -> Limiter | None:
    """The generation's rate limiter. A reload that keeps the store's settings keeps the store
    itself, so the counts of a memory store survive it and a Redis client is not reconnected."""
    limits = config.rate_limits
    if limits is None:
        return None
    old = previous.limiter if previous is not None else None
    store: Store
    if old is not None and (old.limits.store, old.limits.timeout) == (limits.store, limits.timeout):
        store = old.store
    elif limits.store is None:
        store = MemoryStore()
    else:
        store = RedisStore(limits.store.url, limits.timeout)
    return Limiter(limits, store, on_store_error=metrics.rate_limit_store_failed)


def _header_policy(config: Config) -> HeaderPolicy:
    forwarded = config.forwarded_client_cert
    if forwarded is None:
        return HeaderPolicy(config.forward)
    return HeaderPolicy(config.forward, forwarded.header)


@dataclass(eq=False)
class Runtime:
    config: Config
    routes: RouteTable
    verifier: TokenVerifier
    key_stores: dict[str, JwksStore]
    headers: HeaderPolicy
    fresh_stores: tuple[JwksStore, ...] = ()
    metadata: PublishedMetadata | None = None  # RFC 9728, when `resource_metadata` is set
    cors: CorsPolicy | None = None  # SPEC §6.2, when `cors:` is set
    limiter: Limiter | None = None  # SPEC §6.5, when `rate_limits:` is set

    @classmethod
    def build(
        cls,
        config: Config,
        session: aiohttp.ClientSession,
        metrics: Metrics,
        previous: Runtime | None = None,
        compiled: CompiledRoutes | None = None,
    ) -> Runtime:
        """Compile everything the request path needs; raise `ConfigErrors` if the routes are bad.

        `compiled`: the routes of `config` already compiled (a reload compiles them off the event
        loop). Key stores of issuers whose settings did not change are carried over from
        `previous`, so a reload costs the identity provider nothing.
        """
        if compiled is None:
            compiled = compile_routes(config.routes)
        raise_route_errors(compiled)
        stores, fresh = _key_stores(config, previous, session, metrics)
        return cls(
            config=config,
            routes=compiled.table,
            verifier=_verifier(config, stores, previous),
            key_stores=stores,
            headers=_header_policy(config),
            fresh_stores=fresh,
            metadata=published_metadata(config),
            cors=None if config.cors is None else CorsPolicy(config.cors),
            limiter=_limiter(config, previous, metrics),
        )

    async def start(self) -> None:
        """Warm up the key stores this generation created (carried-over ones run already)."""
        for store in self.fresh_stores:
            await store.start()

    async def retire(self, keep: Runtime | None = None) -> None:
        """Close what this generation owns and `keep` did not adopt."""
        kept = {id(store) for store in keep.key_stores.values()} if keep is not None else set()
        for store in self.key_stores.values():
            if id(store) not in kept:
                await store.close()
        if self.limiter is not None:
            adopted = keep is not None and keep.limiter is not None
            if not (adopted and keep.limiter.store is self.limiter.store):  # type: ignore[union-attr]
                await self.limiter.store.close()

    def not_ready(self) -> list[str]:
        """Why the gateway cannot serve tokens yet: one line per issuer without keys."""
        return [
            f"issuer {name}: no signing keys yet"
            + (f" ({store.last_error})" if store.last_error else "")
            for name, store in self.key_stores.items()
            if not store.ready
        ]
