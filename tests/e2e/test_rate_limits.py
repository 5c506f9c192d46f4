"""Per-client rate limits (SPEC §6.5) as a client meets them, with the per-process `memory` store
and with stores that fail: a closed port, and one that accepts and never answers. (A real
Redis shared by several processes: tests/e2e/test_rate_limits_redis.py.)"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from scopegate.devtools.keys import generate
from tests.e2e.conftest import BASE_CONFIG, Env, base_config, closed_port, gateway_env
from tests.support.jwks_server import JwksServer
from tests.support.process import serve
from tests.support.rawhttp import exchange, request_bytes
from tests.support.upstream import RecordingUpstream

RULES = """
rate_limits:
  store: {store}
  on_store_error: {on_store_error}
  timeout: 0.2
  rules:
    - name: per-client
      key: client
      limit: 3
      window: 60
      routes: [list-contacts, report-only]
    - name: per-subject
      key: subject
      limit: 100
      window: 1
      routes: [read-contact]
    - name: per-ip
      key: ip
      limit: 4
      window: 60
      routes: [public, token-only]
"""
REPORT_ONLY_ROUTE = """  - name: report-only
    path: /report
    upstream: contacts
    enforce: report
"""
CONFIG = BASE_CONFIG.replace("routes:\n", REPORT_ONLY_ROUTE.join(["routes:\n", ""]), 1) + RULES


@asynccontextmanager
async def limited(store: str = "memory", on_store_error: str = "allow") -> AsyncIterator[Env]:
    async with gateway_env(CONFIG, store=store, on_store_error=on_store_error) as env:
        yield env


def client(env: Env, azp: str, scopes: tuple[str, ...] = ("read:contacts",)) -> dict[str, str]:
    return env.bearer(scopes, extra_claims={"azp": azp})


async def test_a_client_spends_its_limit_then_gets_429_with_exact_headers() -> None:
    async with limited() as env:
        seen = []
        for _ in range(4):
            answer = await env.http.get(f"{env.url}/contacts", headers=client(env, "app-1"))
            seen.append((answer.status, answer.headers["RateLimit"]))
            assert answer.headers["RateLimit-Policy"] == '"per-client";q=3;w=60'
        # A quiet client may spend its whole limit at once; then one request per 20 s.
        assert seen == [
            (200, '"per-client";r=2;t=0'),
            (200, '"per-client";r=1;t=0'),
            (200, '"per-client";r=0;t=20'),
            (429, '"per-client";r=0;t=20'),
        ]
        assert answer.headers["Retry-After"] == "20"
        assert (await answer.json())["type"].endswith("/rate_limited")
        assert len(env.upstream.received) == 3  # the refused request never reached it
        assert env.sample("scopegate_denials_total", route="list-contacts", reason="rate_limited")


async def test_one_client_over_its_limit_does_not_affect_another() -> None:
    async with limited() as env:
        for _ in range(4):
            await env.http.get(f"{env.url}/contacts", headers=client(env, "greedy"))
        other = await env.http.get(f"{env.url}/contacts", headers=client(env, "polite"))
        assert other.status == 200
        assert other.headers["RateLimit"] == '"per-client";r=2;t=0'


async def test_a_token_that_fails_verification_never_spends_the_client_s_budget() -> None:
    async with limited() as env:
        expired = env.bearer(lifetime=-3600, extra_claims={"azp": "app-1"})
        forged = {"Authorization": client(env, "app-1")["Authorization"][:-4] + "AAAA"}
        for headers in [expired, forged] * 3:
            answer = await env.http.get(f"{env.url}/contacts", headers=headers)
            assert answer.status == 401
            assert "RateLimit" not in answer.headers
        statuses = [
            (await env.http.get(f"{env.url}/contacts", headers=client(env, "app-1"))).status
            for _ in range(3)
        ]
        assert statuses == [200, 200, 200]


async def test_ip_rules_count_before_the_token_so_a_flood_without_tokens_is_limited() -> None:
    async with limited() as env:
        statuses = [(await env.http.get(f"{env.url}/me")).status for _ in range(3)]
        assert statuses == [401, 401, 401]
        # One budget per address and rule, across the routes the rule names.
        public = [(await env.http.get(f"{env.url}/public/x")).status for _ in range(2)]
        assert public == [200, 429]
        assert (await env.http.get(f"{env.url}/me")).status == 429  # before the token


async def test_a_route_no_rule_names_is_not_limited() -> None:
    async with limited() as env:
        for _ in range(6):
            answer = await env.http.post(
                f"{env.url}/contacts",
                headers=client(env, "app-1", ("create:contacts",)),
                data=b"{}",
            )
            assert answer.status == 200
            assert "RateLimit" not in answer.headers


async def test_subject_rules_count_by_sub() -> None:
    async with limited() as env:
        answer = await env.http.get(f"{env.url}/contacts/1", headers=env.bearer(subject="ann"))
        assert answer.headers["RateLimit"] == '"per-subject";r=99;t=0'
        assert answer.headers["RateLimit-Policy"] == '"per-subject";q=100;w=1'


async def test_over_the_limit_on_a_report_only_route_is_forwarded_and_counted_as_shadow() -> None:
    async with limited() as env:
        statuses = [
            (await env.http.get(f"{env.url}/report", headers=client(env, "app-1"))).status
            for _ in range(5)
        ]
        assert statuses == [200] * 5
        assert len(env.upstream.received) == 5
        labels = {"route": "report-only", "reason": "rate_limited"}
        assert env.sample("scopegate_shadow_denials_total", **labels) == 2
        assert env.sample("scopegate_denials_total", **labels) == 0


@pytest.mark.parametrize(
    ("on_store_error", "status"), [("allow", 200), ("deny", 503)], ids=["allow", "deny"]
)
async def test_an_unreachable_store_is_answered_as_on_store_error_says(
    on_store_error: str, status: int
) -> None:
    async with limited(f"redis://127.0.0.1:{closed_port()}/0", on_store_error) as env:
        for _ in range(5):  # past the limit: nothing is counted while the store is down
            answer = await env.http.get(f"{env.url}/contacts", headers=client(env, "app-1"))
            assert answer.status == status
            assert "RateLimit" not in answer.headers
        assert env.sample("scopegate_rate_limit_store_errors_total") == 5
        if status == 503:
            assert answer.headers["Retry-After"] == "1"
            assert (await answer.json())["type"].endswith("/rate_limit_unavailable")
            assert env.upstream.received == []
        else:
            assert len(env.upstream.received) == 5


async def test_a_store_that_never_answers_costs_a_request_the_timeout_at_most() -> None:
    silent: list[asyncio.StreamWriter] = []

    async def accept_and_say_nothing(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        silent.append(writer)

    server = await asyncio.start_server(accept_and_say_nothing, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with limited(f"redis://127.0.0.1:{port}/0", "allow") as env:
            for _ in range(3):
                started = time.monotonic()
                request = request_bytes("GET", "/contacts", client(env, "app-1"))
                answer = await exchange(env.port, request, timeout=5)
                assert answer.status == 200
                assert time.monotonic() - started < 1.0  # timeout: 0.2
            assert env.sample("scopegate_rate_limit_store_errors_total") == 3
    finally:
        for writer in silent:
            writer.close()
        server.close()


async def test_a_memory_store_under_workers_is_warned_about(tmp_path: Path) -> None:
    """Each worker counts alone: the operator is told at start, with the way out."""
    key = generate("RS256")
    async with RecordingUpstream() as upstream, JwksServer([key]) as jwks:
        path = tmp_path / "scopegate.yaml"
        path.write_text(base_config(jwks, upstream, CONFIG, store="memory", on_store_error="allow"))
        async with serve(path, "--workers", "2") as served:
            # Ready before leaving: a worker still fetching keys from this test's JWKS server
            # would keep its end of the log pipe open while this loop waits for it to close.
            await served.until_ready()
            async with asyncio.timeout(10):
                while not any(
                    "each worker counts alone" in str(line.get("message")) for line in served.lines
                ):
                    await asyncio.sleep(0.05)
        warning = next(line for line in served.lines if "counts alone" in str(line.get("message")))
        assert warning["level"] == "WARNING" and warning["workers"] == 2
