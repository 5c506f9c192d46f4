"""`scopegate serve` as a user runs it: a separate process, signals, reloads, and bodies far larger
than its memory."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from scopegate.devtools.keys import SigningKey, generate
from scopegate.devtools.tokens import mint
from tests.e2e.conftest import AUDIENCE, base_config
from tests.support.jwks_server import JwksServer
from tests.support.process import serve
from tests.support.upstream import RecordingUpstream

GIB = 1 << 30


@dataclass
class World:
    path: Path
    upstream: RecordingUpstream
    jwks: JwksServer
    key: SigningKey


@pytest.fixture(name="world")
async def _world(tmp_path: Path) -> AsyncIterator[World]:
    key = generate("RS256")
    async with RecordingUpstream() as upstream, JwksServer([key]) as jwks:
        text = base_config(jwks, upstream)
        path = tmp_path / "scopegate.yaml"
        path.write_text(text)
        yield World(path, upstream, jwks, key)


async def test_sigterm_lets_requests_in_flight_finish(
    world: World,
) -> None:
    """SIGTERM during a slow request: that request completes, then the process exits 0."""
    path = world.path
    async with serve(path) as served, aiohttp.ClientSession() as http:
        in_flight = asyncio.create_task(http.get(served.url + "/b/slow/0.8"))
        await asyncio.sleep(0.3)
        served.process.send_signal(signal.SIGTERM)
        response = await in_flight
        assert response.status == 200
        response.release()
        assert await asyncio.wait_for(served.process.wait(), 10) == 0
    assert any(line.get("message") == "scopegate stopped" for line in served.lines)


async def test_sighup_swaps_routes_and_a_bad_file_changes_nothing(
    world: World,
) -> None:
    path, upstream = world.path, world.upstream
    original = path.read_text()
    async with serve(path) as served, aiohttp.ClientSession() as http:
        async with http.get(served.url + "/public/x") as response:
            assert response.status == 200
        path.write_text(original.replace("path: /public/{rest*}", "path: /open/{rest*}"))
        served.process.send_signal(signal.SIGHUP)
        await served.wait_for_log("configuration reloaded")
        async with http.get(served.url + "/open/x") as response:
            assert response.status == 200
        async with http.get(served.url + "/public/x") as response:
            assert response.status == 404

        path.write_text(
            original.replace(
                "upstream: contacts\n    auth: none", "upstream: nowhere\n    auth: none", 1
            )
        )
        served.process.send_signal(signal.SIGHUP)
        await served.wait_for_log("reload failed; the running configuration is unchanged")
        async with http.get(served.url + "/open/x") as response:
            assert response.status == 200
        errors = [str(line.get("error")) for line in served.lines if line.get("error")]
        assert any(error.startswith(f"{path}:") and "nowhere" in error for error in errors)
        async with http.get(f"http://127.0.0.1:{served.admin_port}/metrics") as response:
            text = await response.text()
        assert 'scopegate_config_reloads_total{result="ok"} 1.0' in text
        assert 'scopegate_config_reloads_total{result="error"} 1.0' in text
    assert upstream.received


async def _gib_of_chunks() -> AsyncIterator[bytes]:
    chunk = b"y" * (1 << 20)
    for _ in range(GIB // len(chunk)):
        yield chunk


@pytest.mark.slow
async def test_a_gib_each_way_streams_in_constant_memory(
    world: World,
) -> None:
    """1 GiB up and 1 GiB down pass through while the gateway's peak RSS stays small."""
    path, upstream = world.path, world.upstream
    token = mint(
        world.key, issuer=world.jwks.issuer, audience=AUDIENCE, scopes=("create:contacts",)
    )
    async with serve(path) as served, aiohttp.ClientSession() as http:
        async with http.post(
            served.url + "/upload",
            data=_gib_of_chunks(),
            headers={"Authorization": f"Bearer {token}", "Content-Length": str(GIB)},
        ) as response:
            assert response.status == 200
        assert upstream.last.body_length == GIB
        received = 0
        async with http.get(served.url + f"/b/download/{GIB}") as response:
            assert response.status == 200
            async for chunk in response.content.iter_any():
                received += len(chunk)
        assert received == GIB
        peak = served.peak_rss_bytes()
    print(f"gateway peak RSS after 1 GiB up and 1 GiB down: {peak / (1 << 20):.0f} MiB")
    assert peak < 150 * (1 << 20), f"peak RSS {peak / (1 << 20):.0f} MiB"


async def test_reloads_under_continuous_load_lose_no_request(world: World) -> None:
    """Four clients send 150 requests each while the file is swapped, broken and swapped again:
    every request is answered 200, and the last good routes are the ones in force."""
    path = world.path
    original = path.read_text()
    variants = [
        original.replace("path: /me\n", "path: /me2\n"),
        original.replace(
            "upstream: contacts\n    auth: none", "upstream: nowhere\n    auth: none", 1
        ),
        original,
    ]

    async def client(http: aiohttp.ClientSession, url: str) -> list[int]:
        statuses = []
        for _ in range(150):
            async with http.get(url) as response:
                await response.read()
                statuses.append(response.status)
        return statuses

    async with serve(path) as served, aiohttp.ClientSession() as http:
        load = [asyncio.create_task(client(http, served.url + "/public/load")) for _ in range(4)]
        for variant in variants:
            await asyncio.sleep(0.15)
            path.write_text(variant)
            served.process.send_signal(signal.SIGHUP)
        results = await asyncio.gather(*load)
        async with asyncio.timeout(10):
            while len([ln for ln in served.lines if "reload" in str(ln.get("message"))]) < 3:
                await asyncio.sleep(0.05)
        async with http.get(served.url + "/me") as response:
            assert response.status == 401  # the original route table is in force again
    assert [status for statuses in results for status in statuses] == [200] * 600
    assert any(line.get("message") == "reload failed; the running configuration is unchanged"
               for line in served.lines)  # fmt: skip


async def test_the_access_log_says_who_did_what_and_never_the_token(world: World) -> None:
    token = mint(world.key, issuer=world.jwks.issuer, audience=AUDIENCE, scopes=("read:contacts",),
                 extra_claims={"azp": "app-7"})  # fmt: skip
    async with serve(world.path) as served, aiohttp.ClientSession() as http:
        async with http.get(
            served.url + "/contacts?x=1", headers={"Authorization": f"Bearer {token}"}
        ) as r:
            assert r.status == 200
        async with http.get(served.url + "/contacts") as r:
            assert r.status == 401
        served.process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(served.process.wait(), 10)
    lines = [line for line in served.lines if line.get("logger") == "scopegate.access"]
    allowed, denied = lines[-2], lines[-1]
    assert {k: allowed[k] for k in ("method", "path", "route", "status", "decision", "subject", "client_id", "upstream")} == {
        "method": "GET", "path": "/contacts", "route": "list-contacts", "status": 200,
        "decision": "allow", "subject": "user-1", "client_id": "app-7", "upstream": "contacts",
    }  # fmt: skip
    assert isinstance(allowed["duration_ms"], float)
    assert isinstance(allowed["upstream_ms"], float)
    assert (denied["decision"], denied["reason"], denied["status"]) == (
        "deny",
        "missing_token",
        401,
    )
    assert all(token not in str(line) for line in served.lines)
    assert all({"time", "level", "logger", "message"} <= line.keys() for line in served.lines)
