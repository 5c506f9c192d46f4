"""Rate limits shared through a real `redis-server` (SPEC §6.5): two `scopegate serve` processes of
two workers each keep one count; Redis killed and restarted under load, under both
`on_store_error` settings; a hung Redis; a password; and the Lua script held to the reference
GCRA of pipeline/rate_limits.py, outcome for outcome."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scopegate.config.model import RateLimitRule
from scopegate.devtools.keys import generate
from scopegate.devtools.tokens import mint
from scopegate.pipeline.rate_limits import Counted
from scopegate.ratelimit.memory import MemoryStore
from scopegate.ratelimit.redis_store import RedisStore
from tests.e2e.conftest import AUDIENCE, BASE_CONFIG, Env, base_config, gateway_env
from tests.support.certs import TestAuthority
from tests.support.jwks_server import JwksServer
from tests.support.process import serve
from tests.support.redis import RedisServer, free_port
from tests.support.tools import require_tool
from tests.support.upstream import RecordingUpstream

RULE = """
rate_limits:
  store: {store}
  on_store_error: {on_store_error}
  timeout: 0.25
  rules:
    - name: per-client
      key: client
      limit: {limit}
      window: 3600
      routes: [list-contacts]
"""
CONFIG = BASE_CONFIG + RULE


@pytest.fixture(name="redis")
async def _redis() -> AsyncIterator[RedisServer]:
    async with RedisServer() as server:
        yield server


def client_token(env_or_key: Env, azp: str) -> dict[str, str]:
    return env_or_key.bearer(extra_claims={"azp": azp})


async def _get(http: aiohttp.ClientSession, url: str, headers: dict[str, str]) -> int:
    async with http.get(url, headers=headers) as answer:
        await answer.read()
        return answer.status


async def test_two_processes_of_two_workers_each_share_one_limit(
    tmp_path: Path, redis: RedisServer
) -> None:
    key = generate("RS256")
    limit = 20
    async with RecordingUpstream() as upstream, JwksServer([key]) as jwks:
        path = tmp_path / "scopegate.yaml"
        text = base_config(jwks, upstream, CONFIG, store=redis.url, on_store_error="allow",
                           limit=str(limit))  # fmt: skip
        path.write_text(text)
        token = mint(key, issuer=jwks.issuer, audience=AUDIENCE, extra_claims={"azp": "app-1"})
        headers = {"Authorization": f"Bearer {token}"}
        async with (
            serve(path, "--workers", "2") as first,
            serve(path, "--workers", "2") as second,
        ):
            for served in (first, second):
                await served.until_ready()
            # A connection of its own per request: the kernel hands each to any worker.
            connector = aiohttp.TCPConnector(force_close=True)
            async with aiohttp.ClientSession(connector=connector) as http:
                urls = [first.url, second.url] * 30
                statuses = await asyncio.gather(
                    *(_get(http, url + "/contacts", headers) for url in urls)
                )
            workers = {pid for served in (first, second) for pid in served.children()}
            assert len(workers) == 4
    # One request per 180 s is earned over the window: within the test, the limit is exact.
    assert statuses.count(200) == limit
    assert statuses.count(429) == len(urls) - limit
    assert len(upstream.received) == limit


@pytest.mark.parametrize("on_store_error", ["allow", "deny"])
async def test_redis_killed_and_restarted_under_load_hangs_and_loses_nothing(
    redis: RedisServer, on_store_error: str
) -> None:
    async with gateway_env(
        CONFIG, store=redis.url, on_store_error=on_store_error, limit="100000"
    ) as env:
        answered: list[tuple[float, int, bool]] = []  # (seconds, status, counted)
        stop = asyncio.Event()

        async def load(name: str) -> None:
            headers = client_token(env, name)
            while not stop.is_set():
                started = time.monotonic()
                async with env.http.get(f"{env.url}/contacts", headers=headers) as answer:
                    await answer.read()
                    counted = "RateLimit" in answer.headers
                    answered.append((time.monotonic() - started, answer.status, counted))

        sent = [asyncio.create_task(load(f"app-{i}")) for i in range(4)]
        await asyncio.sleep(0.5)
        await redis.kill()  # a crash: connections reset, then refused
        await asyncio.sleep(0.7)
        await redis.start()  # the same port, empty
        await asyncio.sleep(1.0)
        stop.set()
        await asyncio.wait_for(asyncio.gather(*sent), 5)

    statuses = {status for _, status, _ in answered}
    assert statuses <= ({200} if on_store_error == "allow" else {200, 503}), statuses
    assert max(seconds for seconds, _, _ in answered) < 1.5  # none waited past the timeout
    assert env.sample("scopegate_rate_limit_store_errors_total") > 0
    if on_store_error == "deny":
        assert 503 in statuses
    # Counting resumed by itself once Redis was back: the last answers carry the headers.
    assert all(counted for _, _, counted in answered[-8:])
    ok = sum(1 for _, status, _ in answered if status == 200)
    assert len(env.upstream.received) == ok  # every 200 was forwarded, nothing else


async def test_a_hung_redis_costs_a_request_the_timeout_then_counting_resumes(
    redis: RedisServer,
) -> None:
    async with gateway_env(CONFIG, store=redis.url, on_store_error="allow", limit="5") as env:
        headers = client_token(env, "app-1")
        first = await env.http.get(f"{env.url}/contacts", headers=headers)
        assert first.headers["RateLimit"] == '"per-client";r=4;t=0'
        await redis.pause()
        try:
            started = time.monotonic()
            hung = await env.http.get(f"{env.url}/contacts", headers=headers)
            assert hung.status == 200 and "RateLimit" not in hung.headers
            assert time.monotonic() - started < 1.0  # timeout: 0.25
        finally:
            await redis.resume()
        await asyncio.sleep(0.3)
        again = await env.http.get(f"{env.url}/contacts", headers=headers)
        # What the hung call may have counted after all, the count shows: never more than two.
        assert again.headers["RateLimit"] in ('"per-client";r=3;t=0', '"per-client";r=2;t=0')


async def test_a_password_in_the_url_is_used_and_a_wrong_one_is_a_store_error() -> None:
    async with RedisServer(password="s3cret pass") as redis:
        async with gateway_env(CONFIG, store=redis.url, on_store_error="deny", limit="5") as env:
            answer = await env.http.get(f"{env.url}/contacts", headers=client_token(env, "a"))
            assert answer.status == 200 and "RateLimit" in answer.headers
        wrong = redis.url.replace("s3cret%20pass", "wrong")
        assert wrong != redis.url
        async with gateway_env(CONFIG, store=wrong, on_store_error="deny", limit="5") as env:
            answer = await env.http.get(f"{env.url}/contacts", headers=client_token(env, "a"))
            assert answer.status == 503
            assert env.sample("scopegate_rate_limit_store_errors_total") == 1


RULES = [
    RateLimitRule("small", "client", 3, 3600.0),
    RateLimitRule("medium", "client", 7, 3600.0),
    RateLimitRule("by-ip", "ip", 5, 7200.0),
]


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    requests=st.lists(
        st.tuples(st.sets(st.sampled_from(range(len(RULES))), min_size=1), st.sampled_from("ab")),
        min_size=1,
        max_size=25,
    )
)
async def test_the_lua_script_agrees_with_the_reference_gcra(
    redis: RedisServer, requests: Sequence[tuple[set[int], str]]
) -> None:
    """Windows of an hour make the outcome independent of the milliseconds the test takes, so
    the two stores must agree exactly: allowed, remaining, and all-or-nothing across rules."""
    await redis.command("FLUSHALL")
    store = RedisStore(redis.url, timeout=2.0)
    reference = MemoryStore()
    try:
        for rules, who in requests:
            counted = [Counted(RULES[i], f"{RULES[i].name}:{who}") for i in sorted(rules)]
            shared = await store.spend(counted)
            local = reference.spend_now(counted)
            assert [(o.allowed, o.remaining) for o in shared] == [
                (o.allowed, o.remaining) for o in local
            ]
            for mine, theirs in zip(shared, local, strict=True):
                assert abs(mine.wait - theirs.wait) < 1.0
    finally:
        await store.close()


async def test_the_database_number_of_the_url_is_the_one_counted_in(redis: RedisServer) -> None:
    store = RedisStore(redis.url.rsplit("/", 1)[0] + "/3", timeout=2.0)
    try:
        await store.spend([Counted(RULES[0], "small:db")])
    finally:
        await store.close()
    assert await redis.command("DBSIZE") == 0
    connection = await redis.connect()
    try:
        assert await connection.command("SELECT", "3") == "OK"
        assert await connection.command("KEYS", "*") == [b"scopegate:rl:small:db"]
        ttl = await connection.command("PTTL", "scopegate:rl:small:db")
        assert isinstance(ttl, int) and 0 < ttl <= 1_200_000  # expires once it holds nothing
    finally:
        await connection.close()


async def test_commands_of_concurrent_requests_are_pipelined_and_paired_in_order(
    redis: RedisServer,
) -> None:
    """Many requests at once on one connection: each gets its own key's reply."""
    store = RedisStore(redis.url, timeout=2.0)
    try:
        outcomes = await asyncio.gather(
            *(
                store.spend([Counted(RateLimitRule(f"r{i}", "ip", i + 1, 3600.0), f"k{i}")])
                for i in range(50)
            )
        )
    finally:
        await store.close()
    assert [o[0].remaining for o in outcomes] == list(range(50))


@pytest.mark.parametrize("trusted", [True, False], ids=["trusted CA", "unknown CA"])
async def test_rediss_speaks_tls_and_checks_the_server_s_certificate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, trusted: bool
) -> None:
    """`rediss://`: TLS to Redis, verified against the trust store (here a test CA, through
    `SSL_CERT_FILE`); a certificate from an unknown CA is a store error, never trusted."""
    files = TestAuthority().issue_server(tmp_path, "localhost")
    if trusted:
        monkeypatch.setenv("SSL_CERT_FILE", str(files.ca))
    port = free_port()
    server = await asyncio.create_subprocess_exec(
        require_tool("redis-server", "Debian package redis-server"),
        "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
        "--tls-cert-file", str(files.cert), "--tls-key-file", str(files.key),
        "--tls-ca-cert-file", str(files.ca), "--tls-auth-clients", "no",
        "--save", "", "--appendonly", "no",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        await _until_listening(port)
        url = f"rediss://localhost:{port}/0"
        async with gateway_env(CONFIG, store=url, on_store_error="deny", limit="5") as env:
            answer = await env.http.get(f"{env.url}/contacts", headers=client_token(env, "a"))
            if trusted:
                assert answer.status == 200
                assert answer.headers["RateLimit"] == '"per-client";r=4;t=0'
            else:
                assert answer.status == 503
                assert env.sample("scopegate_rate_limit_store_errors_total") == 1
    finally:
        server.terminate()
        await asyncio.wait_for(server.wait(), 5)


async def _until_listening(port: int) -> None:
    async with asyncio.timeout(10):
        while True:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                await asyncio.sleep(0.05)
                continue
            writer.close()
            return
