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
from collections.abc import Sequence
from dataclasses import dataclass, field

import aiohttp

from scopegate.config.model import Config, Forwarding, Issuer, JwksPolicy, Route
from scopegate.config.resource_document import PublishedMetadata, published_metadata
from scopegate.keys.introspection import Introspector
from scopegate.keys.store import JwksStore, same_key_source
from scopegate.pipeline import AUTHENTICATION_CLAIMS, BINDING_CLAIM, DESCRIBING_CLAIMS
from scopegate.pipeline.cors import CorsPolicy
from scopegate.pipeline.dpop import ReplayCache
from scopegate.pipeline.dpop_binding import DpopPolicy
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


def kept_claims(forward: Forwarding, routes: Sequence[Route] = ()) -> frozenset[str]:
    """The claims read after verification: what describes the caller in the access log, what
    is forwarded as headers (a dotted name by its literal name and by its first part), and what
    a route's step-up requirement reads."""
    names = {*DESCRIBING_CLAIMS, BINDING_CLAIM}
    for claim, _ in forward.claims_to_headers:
        names.update((claim, claim.split(".", 1)[0]))
    if any(route.steps_up for route in routes):
        names.update(AUTHENTICATION_CLAIMS)
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


def _introspectors(
    config: Config, previous: Runtime | None, session: aiohttp.ClientSession, metrics: Metrics
) -> dict[str, Introspector]:
    """The introspection client of each issuer that has `introspection:`; a previous one that
    asks the same endpoint the same way is kept, with what it remembers."""
    introspectors = {}
    for issuer in config.issuers:
        if issuer.introspection is None:
            continue
        fresh = Introspector(issuer, session, on_answer=metrics.introspected)
        old = previous.introspectors.get(issuer.issuer) if previous is not None else None
        introspectors[issuer.issuer] = old if old is not None and fresh.adopts(old) else fresh
    return introspectors


def _verifier(
    config: Config,
    stores: dict[str, JwksStore],
    introspectors: dict[str, Introspector],
    previous: Runtime | None,
) -> TokenVerifier:
    """The generation's verifier; it adopts `previous`'s cached verdicts when they still hold."""
    return TokenVerifier(
        config.issuers,
        stores,
        cache_size=config.limits.token_cache_size,
        kept_claims=kept_claims(config.forward, config.routes),
        carry_over=previous.verifier if previous is not None else None,
        introspectors=introspectors,
    )


def _dpop_policy(config: Config, previous: Runtime | None) -> DpopPolicy:
    """The generation's DPoP policy; the proofs seen are remembered across a reload, or a proof
    could be replayed just after one."""
    replay = previous.dpop.replay if previous is not None else ReplayCache()
    nonces = previous.dpop.nonces if previous is not None else None  # issued ones stay good
    public_url = None if config.resource_metadata is None else config.resource_metadata.public_url
    return DpopPolicy(config.issuers, public_url, replay, nonces)


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
    introspectors: dict[str, Introspector] = field(default_factory=dict)  # SPEC §6.4
    dpop: DpopPolicy = field(default_factory=lambda: DpopPolicy((), None, ReplayCache()))

    @property
    def shared_proofs(self) -> RedisStore | None:
        """Where DPoP proofs used are remembered across workers and replicas: the rate limits'
        Redis, when there is one."""
        store = None if self.limiter is None else self.limiter.store
        return store if isinstance(store, RedisStore) else None

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
        introspectors = _introspectors(config, previous, session, metrics)
        return cls(
            config=config,
            routes=compiled.table,
            verifier=_verifier(config, stores, introspectors, previous),
            key_stores=stores,
            headers=_header_policy(config),
            fresh_stores=fresh,
            metadata=published_metadata(config),
            cors=None if config.cors is None else CorsPolicy(config.cors),
            limiter=_limiter(config, previous, metrics),
            introspectors=introspectors,
            dpop=_dpop_policy(config, previous),
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
