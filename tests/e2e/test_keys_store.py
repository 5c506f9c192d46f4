"""The key store against a real JWKS endpoint on loopback that the test rotates, slows, breaks,
stops and counts (SPEC §2 `jwks:`): warm-up, discovery, lifetimes, single-flight refetch on an
unknown kid, bounded fetches under a random-kid flood, stale keys while the provider is down,
rotation and reloads. Time is an injected clock wherever a test would otherwise wait.
Parsing and fetching rules: tests/e2e/test_keys_fetch.py."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import AsyncIterator, Callable

import aiohttp
import pytest

from scopegate.config.model import Issuer, JwksPolicy
from scopegate.devtools.keys import generate
from scopegate.devtools.tokens import mint
from scopegate.keys.store import FetchHook, JwksStore
from scopegate.pipeline.verify import TokenVerifier
from scopegate.reasons import Denied, Reason
from tests.e2e.conftest import BASE_CONFIG, gateway_env
from tests.support.jwks_server import DISCOVERY_PATH, JwksServer

KEY = generate("RS256", kid="k1")
POLICY = JwksPolicy(cache_ttl=600, min_refresh_interval=30, max_stale=3600, timeout=1)
FAST = JwksPolicy(cache_ttl=0.2, min_refresh_interval=0.1, max_stale=3600, timeout=0.5)


class Clock:
    """Monotonic time the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(name="server")
async def _server() -> AsyncIterator[JwksServer]:
    async with JwksServer([KEY]) as server:
        yield server


@pytest.fixture(name="clock")
def _clock() -> Clock:
    return Clock()


@pytest.fixture(name="make_store")
async def _make_store(
    server: JwksServer, session: aiohttp.ClientSession, clock: Clock
) -> AsyncIterator[Callable[..., JwksStore]]:
    stores: list[JwksStore] = []

    def make(
        *,
        discover: bool = False,
        policy: JwksPolicy = POLICY,
        now: Callable[[], float] = clock,
        on_fetch: FetchHook | None = None,
    ) -> JwksStore:
        issuer = Issuer(
            server.issuer, jwks_uri=None if discover else server.jwks_uri, audiences=("a",),
            algorithms=("RS256", "ES256"),
        )  # fmt: skip
        store = JwksStore(issuer, policy, session, clock=now, on_fetch=on_fetch)
        stores.append(store)
        return store

    yield make
    for store in stores:
        await store.close()


async def eventually(condition: Callable[[], bool], within: float = 2.0) -> None:
    async with asyncio.timeout(within):
        while not condition():
            await asyncio.sleep(0.01)


async def test_keys_are_discovered_and_served(
    server: JwksServer, make_store: Callable[..., JwksStore]
) -> None:
    store = make_store(discover=True)
    assert not store.ready
    assert (await store.key_for("k1", "RS256")).key_id == "k1"
    assert (store.ready, store.key_count, store.last_error) == (True, 1, None)
    assert store.last_success is not None
    assert (server.count(DISCOVERY_PATH), server.count()) == (1, 1)


@pytest.mark.parametrize(
    ("discovery", "why"),
    [
        pytest.param(
            {"issuer": "https://evil.example/"},
            "another issuer",
            id="discovery names another issuer",
        ),
        pytest.param(
            {"jwks_uri": "http://10.0.0.1/keys"},
            "only over https",
            id="jwks_uri over plain http elsewhere",
        ),
        pytest.param({"jwks_uri": 7}, "no jwks_uri", id="jwks_uri not a string"),
    ],
)
async def test_a_bad_discovery_document_leaves_the_issuer_unavailable(
    server: JwksServer, make_store: Callable[..., JwksStore], discovery: dict[str, object], why: str
) -> None:
    server.discovery = discovery
    store = make_store(discover=True)
    with pytest.raises(Denied) as caught:
        await store.key_for("k1", "RS256")
    assert caught.value.reason is Reason.ISSUER_UNAVAILABLE
    assert store.last_error is not None and why in store.last_error
    assert server.count() == 0


async def test_keys_are_discovered_again_after_a_failed_fetch(
    server: JwksServer, make_store: Callable[..., JwksStore], clock: Clock
) -> None:
    store = make_store(discover=True)
    await store.key_for("k1", "RS256")
    server.mode = "down"
    assert not await store.refresh()
    server.mode = "ok"
    assert await store.refresh()
    assert server.count(DISCOVERY_PATH) == 2


@pytest.mark.parametrize(
    ("cache_control", "lifetime"),
    [
        pytest.param(None, 600, id="no Cache-Control: cache_ttl"),
        pytest.param("public, max-age=120", 120, id="max-age within bounds wins"),
        pytest.param("max-age=5", 30, id="max-age below min_refresh_interval is raised to it"),
        pytest.param("max-age=99999", 600, id="max-age above cache_ttl is lowered to it"),
        pytest.param("no-store", 600, id="no-store: cache_ttl"),
    ],
)
async def test_the_keys_lifetime_is_max_age_within_the_policy(
    server: JwksServer,
    make_store: Callable[..., JwksStore],
    cache_control: str | None,
    lifetime: float,
) -> None:
    server.cache_control = cache_control
    store = make_store()
    await store.key_for("k1", "RS256")
    assert store.lifetime == lifetime


async def test_keys_are_refreshed_in_the_background_before_they_expire(
    server: JwksServer, make_store: Callable[..., JwksStore]
) -> None:
    store = make_store(policy=FAST, now=asyncio.get_running_loop().time)
    await store.start()
    await eventually(lambda: server.count() >= 3)  # every 0.8 × 0.2 s
    assert store.ready


async def test_warm_up_never_raises_and_retries_until_the_provider_answers(
    server: JwksServer, make_store: Callable[..., JwksStore]
) -> None:
    await server.stop()
    store = make_store(policy=FAST, now=asyncio.get_running_loop().time)
    await store.start()
    await eventually(lambda: store.last_error is not None)
    assert not store.ready and "could not be fetched" in (store.last_error or "")
    await server.start()
    await eventually(lambda: store.ready)


async def test_a_thousand_concurrent_requests_for_a_new_kid_cause_one_fetch(
    server: JwksServer, make_store: Callable[..., JwksStore], clock: Clock
) -> None:
    store = make_store()
    await store.key_for("k1", "RS256")
    clock.now += 31
    server.keys = [KEY, generate("RS256", kid="k2")]
    server.delay = 0.2  # every request arrives while the one fetch is under way
    keys = await asyncio.gather(*(store.key_for("k2", "RS256") for _ in range(1000)))
    assert {key.key_id for key in keys} == {"k2"}
    assert server.count() == 2  # the warm-up, then one for all thousand


async def test_random_kids_cost_at_most_one_fetch_per_interval(
    server: JwksServer, make_store: Callable[..., JwksStore], clock: Clock
) -> None:
    store = make_store()
    await store.key_for("k1", "RS256")
    for _ in range(5):
        clock.now += 31
        for _ in range(500):
            with pytest.raises(Denied) as caught:
                await store.key_for(secrets.token_hex(8), "RS256")
            assert caught.value.reason is Reason.UNKNOWN_KEY
    assert server.count() == 1 + 5  # warm-up plus one per elapsed interval


async def test_a_kid_still_unknown_is_remembered_until_the_next_good_fetch(
    server: JwksServer, make_store: Callable[..., JwksStore], clock: Clock
) -> None:
    store = make_store()
    await store.key_for("k1", "RS256")
    clock.now += 31
    with pytest.raises(Denied):
        await store.key_for("ghost", "RS256")
    clock.now += 31
    with pytest.raises(Denied):
        await store.key_for("ghost", "RS256")
    assert server.count() == 2  # the second miss was answered from memory
    assert await store.refresh()
    clock.now += 31
    server.keys = [KEY, generate("RS256", kid="ghost")]
    assert (await store.key_for("ghost", "RS256")).key_id == "ghost"


@pytest.mark.parametrize("mode", ["down", "garbage", "empty", "huge", "slow", "stopped"])
async def test_a_broken_provider_never_replaces_good_keys(
    server: JwksServer, make_store: Callable[..., JwksStore], clock: Clock, mode: str
) -> None:
    store = make_store(policy=JwksPolicy(cache_ttl=60, min_refresh_interval=30, timeout=0.2))
    await store.key_for("k1", "RS256")
    if mode == "stopped":
        await server.stop()
    elif mode == "slow":
        server.delay = 1.0
    else:
        server.mode = mode  # type: ignore[assignment]
    clock.now += 120  # past the lifetime, well within max_stale
    assert not await store.refresh()
    assert (await store.key_for("k1", "RS256")).key_id == "k1"
    assert store.ready and store.last_error and store.key_count == 1


async def test_keys_older_than_max_stale_make_the_issuer_unavailable_until_it_recovers(
    server: JwksServer, make_store: Callable[..., JwksStore], clock: Clock
) -> None:
    store = make_store()
    await store.key_for("k1", "RS256")
    server.mode = "down"
    clock.now += 3601
    with pytest.raises(Denied) as caught:
        await store.key_for("k1", "RS256")
    assert caught.value.reason is Reason.ISSUER_UNAVAILABLE
    assert caught.value.retry_after == 30 and caught.value.challenge is False
    assert not store.ready
    server.mode = "ok"
    clock.now += 31
    assert (await store.key_for("k1", "RS256")).key_id == "k1"


async def test_never_fetched_and_down_is_unavailable_not_unauthorised(
    server: JwksServer, make_store: Callable[..., JwksStore]
) -> None:
    server.mode = "down"
    store = make_store()
    for _ in range(3):  # later requests within the interval are answered without a fetch
        with pytest.raises(Denied) as caught:
            await store.key_for("k1", "RS256")
        assert caught.value.reason is Reason.ISSUER_UNAVAILABLE
        assert caught.value.challenge is False and caught.value.retry_after
    assert server.count() == 1


async def test_expired_keys_are_served_while_they_refresh_behind_the_request(
    server: JwksServer, make_store: Callable[..., JwksStore], clock: Clock
) -> None:
    store = make_store()  # never started: no background loop
    await store.key_for("k1", "RS256")
    clock.now += 601
    assert (await store.key_for("k1", "RS256")).key_id == "k1"
    await eventually(lambda: server.count() == 2)


async def test_rotation_adds_on_first_use_and_removes_after_refresh(
    server: JwksServer, make_store: Callable[..., JwksStore], clock: Clock
) -> None:
    store = make_store()
    await store.key_for("k1", "RS256")
    new = generate("RS256", kid="k2")
    server.keys = [KEY, new]
    clock.now += 31
    assert (await store.key_for("k2", "RS256")).key_id == "k2"
    server.keys = [new]
    assert await store.refresh()
    with pytest.raises(Denied) as caught:
        await store.key_for("k1", "RS256")
    assert caught.value.reason is Reason.UNKNOWN_KEY


async def test_a_known_kid_asked_for_another_algorithm_is_a_disallowed_alg(
    server: JwksServer, make_store: Callable[..., JwksStore]
) -> None:
    server.keys = [KEY, generate("ES256", kid="e1")]
    store = make_store()
    assert (await store.key_for("e1", "ES256")).key_id == "e1"
    with pytest.raises(Denied) as caught:
        await store.key_for("k1", "ES256")
    assert caught.value.reason is Reason.DISALLOWED_ALG
    assert server.count() == 1  # the key exists: nothing to fetch


async def test_a_token_without_kid_gets_the_only_key_and_nothing_else(
    server: JwksServer, make_store: Callable[..., JwksStore], clock: Clock
) -> None:
    store = make_store()
    assert (await store.key_for(None, "RS256")).key_id == "k1"
    server.keys = [KEY, generate("RS256", kid="k2")]
    assert await store.refresh()
    with pytest.raises(Denied) as caught:
        await store.key_for(None, "RS256")
    assert caught.value.reason is Reason.UNKNOWN_KEY


async def test_every_fetch_is_reported_and_failures_are_logged(
    server: JwksServer, make_store: Callable[..., JwksStore], caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[tuple[str, bool, int]] = []
    store = make_store(on_fetch=lambda *report: seen.append(report))
    assert await store.refresh()
    server.mode = "garbage"
    with caplog.at_level(logging.WARNING, logger="scopegate.keys"):
        assert not await store.refresh()
    assert seen == [(server.issuer, True, 1), (server.issuer, False, 1)]
    assert "not JSON" in caplog.text and server.issuer in caplog.text


async def test_a_reload_keeps_the_keys_of_an_unchanged_issuer(
    server: JwksServer, make_store: Callable[..., JwksStore], session: aiohttp.ClientSession
) -> None:
    old = make_store()
    await old.key_for("k1", "RS256")
    new = make_store(policy=JwksPolicy(cache_ttl=300))  # another policy, the same key source
    assert new.carry_over_from(old)
    assert new.ready and (await new.key_for("k1", "RS256")).key_id == "k1"
    moved = JwksStore(Issuer(server.issuer, jwks_uri=server.jwks_uri + "?v=2"), POLICY, session)
    assert not moved.carry_over_from(old)
    assert server.count() == 1


async def test_retiring_a_store_answers_the_requests_waiting_on_its_fetch(
    server: JwksServer, make_store: Callable[..., JwksStore], clock: Clock
) -> None:
    store = make_store()
    await store.key_for("k1", "RS256")
    clock.now += 31
    server.delay = 0.5
    waiting = asyncio.create_task(store.key_for("k2", "RS256"))
    await eventually(lambda: server.count() == 2)
    await store.close()
    with pytest.raises(Denied) as caught:
        await waiting  # refused like any unknown key, not cancelled
    assert caught.value.reason is Reason.UNKNOWN_KEY


async def test_a_cached_token_is_verified_again_once_its_key_left_the_set(
    server: JwksServer, make_store: Callable[..., JwksStore], clock: Clock
) -> None:
    """The verdict cache never outlives the key: after a refresh without the key, 401."""
    store = make_store()
    verifier = TokenVerifier([store.issuer], {store.issuer.issuer: store})
    token = mint(KEY, issuer=server.issuer, audience="a")
    assert (await verifier.verify(token)).subject == "user-1"
    assert (await verifier.verify(token)).subject == "user-1"  # from the cache
    server.keys = [generate("RS256", kid="k2")]
    assert await store.refresh()
    with pytest.raises(Denied) as caught:
        await verifier.verify(token)
    assert caught.value.reason is Reason.UNKNOWN_KEY


async def test_a_cached_token_is_refused_once_the_keys_are_older_than_max_stale(
    server: JwksServer, make_store: Callable[..., JwksStore], clock: Clock
) -> None:
    """The verdict cache never outlives the keys' usability: with the provider down past
    max_stale, a token verified before gets 503 like any other, not its cached verdict."""
    store = make_store(policy=JwksPolicy(cache_ttl=600, min_refresh_interval=30, max_stale=60))
    started = time.time()
    verifier = TokenVerifier(
        [store.issuer], {store.issuer.issuer: store}, clock=lambda: started + clock.now - 1000
    )
    token = mint(KEY, issuer=server.issuer, audience="a")
    assert (await verifier.verify(token)).subject == "user-1"
    await server.stop()
    clock.now += 59
    assert (await verifier.verify(token)).subject == "user-1"  # stale keys, within max_stale
    clock.now += 2
    with pytest.raises(Denied) as caught:
        await verifier.verify(token)
    assert caught.value.reason is Reason.ISSUER_UNAVAILABLE and caught.value.retry_after
    assert verifier.remembered == 0


MAX_STALE_CONFIG = BASE_CONFIG.replace(
    "  min_refresh_interval: 1\n", "  min_refresh_interval: 0.2\n  max_stale: 2\n"
)


async def test_the_gateway_answers_503_to_a_cached_token_once_max_stale_has_passed() -> None:
    """A real gateway and JWKS endpoint: a token accepted before the provider went down is
    served while the keys are within max_stale, then gets 503 issuer_unavailable with
    Retry-After, and the upstream never sees it."""
    assert "max_stale: 2" in MAX_STALE_CONFIG
    async with gateway_env(MAX_STALE_CONFIG) as env:
        headers = env.bearer()
        async with env.http.get(env.url + "/contacts", headers=headers) as answer:
            assert answer.status == 200
        await env.jwks.stop()
        async with env.http.get(env.url + "/contacts", headers=headers) as answer:
            assert answer.status == 200  # from the cache, the keys still usable
        await asyncio.sleep(2.2)  # past max_stale, counted from the last good fetch
        async with env.http.get(env.url + "/contacts", headers=headers) as answer:
            assert answer.status == 503
            assert int(answer.headers["Retry-After"]) >= 1
            assert "WWW-Authenticate" not in answer.headers
            assert (await answer.json())["type"].endswith("/issuer_unavailable")
        assert len(env.upstream.received) == 2
        assert (
            env.sample(
                "scopegate_denials_total", route="list-contacts", reason="issuer_unavailable"
            )
            == 1
        )
