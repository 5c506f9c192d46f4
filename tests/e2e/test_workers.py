"""`scopegate serve --workers 2` under a real Prometheus: metrics summed over workers, reloads and
shutdown reaching every worker, a dead worker replaced."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from scopegate.devtools.keys import SigningKey, generate
from scopegate.devtools.tokens import mint
from tests.e2e.conftest import AUDIENCE, base_config, closed_port
from tests.support.jwks_server import JwksServer
from tests.support.process import Served, serve
from tests.support.tools import require_tool
from tests.support.upstream import RecordingUpstream


@dataclass
class Setup:
    path: Path
    upstream: RecordingUpstream
    jwks: JwksServer
    key: SigningKey

    def bearer(self, *scopes: str) -> dict[str, str]:
        token = mint(self.key, issuer=self.jwks.issuer, audience=AUDIENCE, scopes=scopes)
        return {"Authorization": f"Bearer {token}"}


@pytest.fixture(name="setup")
async def _setup(tmp_path: Path) -> AsyncIterator[Setup]:
    key = generate("RS256")
    async with RecordingUpstream() as upstream, JwksServer([key]) as jwks:
        path = tmp_path / "scopegate.yaml"
        path.write_text(
            base_config(jwks, upstream)
        )  # fmt: skip
        yield Setup(path, upstream, jwks, key)


async def _get(url: str, headers: dict[str, str] | None = None) -> int:
    """One request on a connection of its own, so the kernel may hand it to any worker."""
    connector = aiohttp.TCPConnector(force_close=True)
    async with (
        aiohttp.ClientSession(connector=connector) as http,
        http.get(url, headers=headers) as response,
    ):
        return response.status


async def _wait_ready(served: Served) -> None:
    async with asyncio.timeout(15):
        while await _get(served.admin_url + "/readyz") != 200:
            await asyncio.sleep(0.1)


async def _traffic(served: Served, setup: Setup) -> None:
    for _ in range(20):
        assert await _get(served.url + "/contacts", setup.bearer("read:contacts")) == 200
    for _ in range(10):
        assert await _get(served.url + "/contacts") == 401
    for _ in range(6):
        assert await _get(served.url + "/contacts", setup.bearer("other")) == 403


async def _prometheus_query(port: int, query: str) -> dict[str, float]:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://127.0.0.1:{port}/api/v1/query", params={"query": query}) as response,
    ):
        body = await response.json()
    return {
        ",".join(f"{k}={v}" for k, v in sorted(item["metric"].items())): float(item["value"][1])
        for item in body["data"]["result"]
    }


async def test_two_workers_are_scraped_as_one_by_a_real_prometheus(
    setup: Setup, tmp_path: Path
) -> None:
    prometheus = require_tool("prometheus", "Debian package prometheus")
    async with serve(setup.path, "--workers", "2") as served:
        assert len(served.children()) == 2
        await _wait_ready(served)
        await _traffic(served, setup)
        port = closed_port()
        config = tmp_path / "prometheus.yml"
        config.write_text(
            "global: {scrape_interval: 1s}\n"
            "scrape_configs:\n"
            "  - job_name: scopegate\n"
            f"    static_configs: [{{targets: ['127.0.0.1:{served.admin_port}']}}]\n"
        )
        process = await asyncio.create_subprocess_exec(
            prometheus, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        try:
            expected = {"reason=insufficient_scope": 6.0, "reason=missing_token": 10.0}
            found: dict[str, float] = {}
            async with asyncio.timeout(40):
                while found != expected:
                    await asyncio.sleep(0.5)
                    try:
                        found = await _prometheus_query(
                            port, "sum by (reason) (scopegate_denials_total)"
                        )
                    except aiohttp.ClientError:
                        continue
            allowed = await _prometheus_query(
                port, 'sum(scopegate_requests_total{route="list-contacts",code="200"})'
            )
            assert allowed == {"": 20.0}
        finally:
            process.terminate()
            await asyncio.wait_for(process.wait(), 10)


def _count(served: Served, message: str) -> int:
    return sum(1 for line in served.lines if line.get("message") == message)


async def test_reload_and_shutdown_reach_every_worker_and_a_dead_one_is_replaced(
    setup: Setup,
) -> None:
    async with serve(setup.path, "--workers", "2") as served:
        await _wait_ready(served)
        first = served.children()
        os.kill(first[0], signal.SIGKILL)
        await served.wait_for_log("worker died; starting another")
        async with asyncio.timeout(15):
            while len(served.children()) != 2 or first[0] in served.children():
                await asyncio.sleep(0.1)
        await _wait_ready(served)

        original = setup.path.read_text()
        setup.path.write_text(original.replace("path: /public/{rest*}", "path: /open/{rest*}"))
        served.process.send_signal(signal.SIGHUP)
        async with asyncio.timeout(10):  # the supervisor and each worker say so
            while _count(served, "configuration reloaded") < 3:
                await asyncio.sleep(0.1)
        statuses = [await _get(served.url + "/open/x") for _ in range(30)]
        assert statuses == [200] * 30
        assert [await _get(served.url + "/public/x") for _ in range(30)] == [404] * 30

        served.process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(served.process.wait(), 15) == 0
    assert any(line.get("message") == "scopegate stopped" for line in served.lines)
