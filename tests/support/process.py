"""`scopegate serve` in a process of its own, as an operator runs it, with its JSON log read back.

Usage::

    async with serve(config_file, "--workers", "2") as served:
        ...  # requests to served.url; served.admin_url + "/metrics"
        await served.wait_for_log("configuration reloaded")
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import aiohttp


@dataclass
class Served:
    process: asyncio.subprocess.Process
    port: int
    admin_port: int
    lines: list[dict[str, object]]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    def children(self) -> list[int]:
        """The worker processes of a supervisor."""
        path = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        return [int(pid) for pid in path.read_text().split()]

    async def wait_for_log(self, message: str, timeout: float = 10) -> dict[str, object]:
        async with asyncio.timeout(timeout):
            while True:
                for line in self.lines:
                    if line.get("message") == message:
                        return line
                await asyncio.sleep(0.05)

    async def until_ready(self, timeout: float = 15) -> None:
        """Until `/readyz` answers 200: every worker started and has its keys."""
        async with aiohttp.ClientSession() as http, asyncio.timeout(timeout):
            while True:
                async with http.get(self.admin_url + "/readyz") as answer:
                    if answer.status == 200:
                        return
                await asyncio.sleep(0.1)

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
async def serve(config_file: Path, *args: str) -> AsyncIterator[Served]:
    """Start `scopegate serve -c config_file *args` and wait until it says it is listening."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "scopegate",
        "serve",
        "-c",
        str(config_file),
        *args,
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
