"""`scopegate serve` as a user runs it: a separate process, signals, reloads, and bodies far larger
than its memory."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from scopegate.devtools.keys import SigningKey, generate
from scopegate.devtools.tokens import mint
from tests.e2e.conftest import AUDIENCE, BASE_CONFIG, closed_port
from tests.support.jwks_server import JwksServer
from tests.support.upstream import RecordingUpstream

GIB = 1 << 30


@dataclass
class Served:
    process: asyncio.subprocess.Process
    port: int
    admin_port: int
    lines: list[dict[str, object]]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def peak_rss_bytes(self) -> int:
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmHWM in /proc status")


async def _read_logs(stream: asyncio.StreamReader, lines: list[dict[str, object]]) -> None:
    while raw := await stream.readline():
        try:
            lines.append(json.loads(raw))
        except ValueError:
            lines.append({"message": raw.decode(errors="replace")})


@asynccontextmanager
async def serve(config_file: Path) -> AsyncIterator[Served]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "scopegate",
        "serve",
        "-c",
        str(config_file),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert process.stdout is not None
    lines: list[dict[str, object]] = []
    reader = asyncio.create_task(_read_logs(process.stdout, lines))
    try:
        async with asyncio.timeout(15):
            while not any(line.get("message") == "scopegate listening" for line in lines):
                if process.returncode is not None:
                    raise AssertionError(f"serve exited early: {lines}")
                await asyncio.sleep(0.05)
        ready = next(line for line in lines if line.get("message") == "scopegate listening")
        port = int(str(ready["listen"]).rsplit(":", 1)[1])
        admin = int(str(ready["admin"]).rsplit(":", 1)[1])
        yield Served(process, port, admin, lines)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        await reader


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
        text = BASE_CONFIG.format(
            issuer=jwks.issuer,
            jwks_uri=jwks.jwks_uri,
            audience=AUDIENCE,
            upstream=upstream.url,
            closed_port=closed_port(),
        )
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
        await _wait_for_log(served, "configuration reloaded")
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
        await _wait_for_log(served, "reload failed; the running configuration is unchanged")
        async with http.get(served.url + "/open/x") as response:
            assert response.status == 200
        errors = [str(line.get("error")) for line in served.lines if line.get("error")]
        assert any(error.startswith(f"{path}:") and "nowhere" in error for error in errors)
        async with http.get(f"http://127.0.0.1:{served.admin_port}/metrics") as response:
            text = await response.text()
        assert 'scopegate_config_reloads_total{result="ok"} 1.0' in text
        assert 'scopegate_config_reloads_total{result="error"} 1.0' in text
    assert upstream.received


async def _wait_for_log(served: Served, message: str) -> None:
    async with asyncio.timeout(10):
        while not any(line.get("message") == message for line in served.lines):
            await asyncio.sleep(0.05)


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
    assert peak < 150 * (1 << 20), f"peak RSS {peak / (1 << 20):.0f} MiB"
