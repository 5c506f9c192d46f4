"""The key store against a real JWKS endpoint on loopback that the test rotates, slows, breaks and
counts (SPEC §2 `jwks:`): warm-up, discovery, single-flight refetch on an unknown kid, bounded
fetches under a random-kid flood, stale keys while the provider is down, and rotation."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator

import aiohttp
import pytest

from scopegate.config.model import Issuer, JwksPolicy
from scopegate.devtools.keys import generate
from scopegate.keys.fetch import KeyFetchError, check_url
from scopegate.keys.store import JwksStore
from scopegate.reasons import Denied, Reason
from tests.support.jwks_server import JwksServer

KEY = generate("RS256", kid="k1")
POLICY = JwksPolicy(cache_ttl=600, min_refresh_interval=30, max_stale=3600, timeout=1)


class Clock:
    """Monotonic time the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(name="session")
async def _session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def store_for(
    server: JwksServer,
    session: aiohttp.ClientSession,
    clock: Clock,
    *,
    discover: bool = False,
    policy: JwksPolicy = POLICY,
) -> JwksStore:
    issuer = Issuer(
        server.issuer, jwks_uri=None if discover else server.jwks_uri, audiences=("a",),
        algorithms=("RS256", "ES256"),
    )  # fmt: skip
    return JwksStore(issuer, policy, session, clock=clock)


async def test_keys_are_discovered_and_served(session: aiohttp.ClientSession) -> None:
    async with JwksServer([KEY]) as server:
        store = store_for(server, session, Clock(), discover=True)
        assert not store.ready
        key = await store.key_for("k1", "RS256")
        assert key.key_id == "k1"
        assert (store.ready, store.key_count) == (True, 1)
        assert server.count("/.well-known/openid-configuration") == 1
        await store.close()


async def test_discovery_naming_another_issuer_is_refused(session: aiohttp.ClientSession) -> None:
    async with JwksServer([KEY]) as server:
        server.issuer_override = "https://evil.example/"
        store = store_for(server, session, Clock(), discover=True)
        with pytest.raises(Denied) as caught:
            await store.key_for("k1", "RS256")
        assert caught.value.reason is Reason.ISSUER_UNAVAILABLE
        assert store.last_error is not None and "another issuer" in store.last_error
        await store.close()


async def test_a_thousand_requests_for_a_new_kid_cause_one_fetch(
    session: aiohttp.ClientSession,
) -> None:
    async with JwksServer([KEY]) as server:
        clock = Clock()
        store = store_for(server, session, clock)
        await store.key_for("k1", "RS256")
        clock.now += 31
        new = generate("RS256", kid="k2")
        server.keys = [KEY, new]
        server.mode, server.delay = "slow", 0.2
        keys = await asyncio.gather(*(store.key_for("k2", "RS256") for _ in range(1000)))
        assert {key.key_id for key in keys} == {"k2"}
        assert server.count() == 2  # the warm-up, then one for all thousand
        await store.close()


async def test_random_kids_cost_at_most_one_fetch_per_interval(
    session: aiohttp.ClientSession,
) -> None:
    async with JwksServer([KEY]) as server:
        clock = Clock()
        store = store_for(server, session, clock)
        await store.key_for("k1", "RS256")
        refused = 0
        for round_ in range(5):
            clock.now += 31 if round_ else 0
            for _ in range(2000):
                try:
                    await store.key_for(secrets.token_hex(8), "RS256")
                except Denied as denied:
                    assert denied.reason is Reason.UNKNOWN_KEY
                    refused += 1
        assert refused == 10_000
        assert server.count() <= 1 + 4  # warm-up plus one per elapsed interval
        await store.close()


async def test_a_kid_still_unknown_is_remembered_until_the_next_good_fetch(
    session: aiohttp.ClientSession,
) -> None:
    async with JwksServer([KEY]) as server:
        clock = Clock()
        store = store_for(server, session, clock)
        await store.key_for("k1", "RS256")
        clock.now += 31
        with pytest.raises(Denied):
            await store.key_for("ghost", "RS256")
        fetched = server.count()
        clock.now += 31
        with pytest.raises(Denied):
            await store.key_for("ghost", "RS256")
        assert server.count() == fetched
        await store.close()


@pytest.mark.parametrize("mode", ["down", "garbage", "empty", "huge"])
async def test_a_broken_provider_never_replaces_good_keys(
    session: aiohttp.ClientSession, mode: str
) -> None:
    async with JwksServer([KEY]) as server:
        clock = Clock()
        policy = JwksPolicy(cache_ttl=60, min_refresh_interval=30, max_stale=3600, timeout=1,
                            max_response_bytes=1 << 20)  # fmt: skip
        store = store_for(server, session, clock, policy=policy)
        await store.key_for("k1", "RS256")
        server.mode = mode  # type: ignore[assignment]
        clock.now += 120  # past the TTL, within max_stale
        assert not await store.refresh()
        assert (await store.key_for("k1", "RS256")).key_id == "k1"
        assert store.ready and store.last_error
        await store.close()


async def test_keys_older_than_max_stale_make_the_issuer_unavailable(
    session: aiohttp.ClientSession,
) -> None:
    async with JwksServer([KEY]) as server:
        clock = Clock()
        store = store_for(server, session, clock)
        await store.key_for("k1", "RS256")
        server.mode = "down"
        clock.now += 3601
        with pytest.raises(Denied) as caught:
            await store.key_for("k1", "RS256")
        assert caught.value.reason is Reason.ISSUER_UNAVAILABLE
        assert caught.value.retry_after is not None and caught.value.retry_after >= 1
        assert not store.ready
        server.mode = "ok"
        clock.now += 31
        assert (await store.key_for("k1", "RS256")).key_id == "k1"
        await store.close()


async def test_never_fetched_and_down_is_unavailable_not_unauthorised(
    session: aiohttp.ClientSession,
) -> None:
    async with JwksServer([KEY]) as server:
        server.mode = "down"
        store = store_for(server, session, Clock())
        with pytest.raises(Denied) as caught:
            await store.key_for("k1", "RS256")
        assert caught.value.reason is Reason.ISSUER_UNAVAILABLE
        assert caught.value.challenge is False
        await store.close()


async def test_rotation_adds_on_first_use_and_removes_after_refresh(
    session: aiohttp.ClientSession,
) -> None:
    async with JwksServer([KEY]) as server:
        clock = Clock()
        store = store_for(server, session, clock)
        await store.key_for("k1", "RS256")
        new = generate("RS256", kid="k2")
        server.keys = [KEY, new]
        clock.now += 31
        assert (await store.key_for("k2", "RS256")).key_id == "k2"
        server.keys = [new]
        clock.now += 31
        assert await store.refresh()
        with pytest.raises(Denied) as caught:
            await store.key_for("k1", "RS256")
        assert caught.value.reason is Reason.UNKNOWN_KEY
        await store.close()


async def test_a_key_is_used_only_for_an_algorithm_it_fits(session: aiohttp.ClientSession) -> None:
    async with JwksServer([KEY, generate("ES256", kid="e1")]) as server:
        store = store_for(server, session, Clock())
        assert (await store.key_for("e1", "ES256")).key_id == "e1"
        with pytest.raises(Denied) as caught:
            await store.key_for("k1", "ES256")
        assert caught.value.reason is Reason.DISALLOWED_ALG
        await store.close()


async def test_cache_control_max_age_sets_the_lifetime_within_bounds(
    session: aiohttp.ClientSession,
) -> None:
    async with JwksServer([KEY], cache_control="public, max-age=5") as server:
        store = store_for(server, session, Clock())
        await store.key_for("k1", "RS256")
        assert store._lifetime == POLICY.min_refresh_interval  # 5 s is clamped up to 30 s
        server.cache_control = "max-age=99999"
        await store.refresh()
        assert store._lifetime == POLICY.cache_ttl
        await store.close()


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://id.example.com/jwks", True),
        ("http://127.0.0.1:8080/jwks", True),
        ("http://[::1]/jwks", True),
        ("http://localhost/jwks", True),
        ("http://id.example.com/jwks", False),
        ("http://10.0.0.5/jwks", False),
        ("file:///etc/passwd", False),
    ],
)
def test_keys_are_fetched_over_https_or_from_loopback_only(url: str, allowed: bool) -> None:
    if allowed:
        check_url(url)
    else:
        with pytest.raises(KeyFetchError):
            check_url(url)


async def test_a_cached_token_is_verified_again_once_its_key_left_the_set(
    session: aiohttp.ClientSession,
) -> None:
    """The verdict cache never outlives the key: after a refresh without the key, 401."""
    from scopegate.devtools.tokens import mint
    from scopegate.pipeline.verify import TokenVerifier

    async with JwksServer([KEY]) as server:
        clock = Clock()
        store = store_for(server, session, clock)
        verifier = TokenVerifier([store.issuer], {store.issuer.issuer: store})
        token = mint(KEY, issuer=server.issuer, audience="a")
        assert (await verifier.verify(token)).subject == "user-1"
        assert (await verifier.verify(token)).subject == "user-1"  # from the cache
        server.keys = [generate("RS256", kid="k2")]
        clock.now += 31
        assert await store.refresh()
        with pytest.raises(Denied) as caught:
            await verifier.verify(token)
        assert caught.value.reason is Reason.UNKNOWN_KEY
        await store.close()
