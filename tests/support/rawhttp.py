"""Byte-exact HTTP/1.1 exchanges over a plain socket, for requests no client library would send.

Usage::

    answer = await exchange(port, b"GET /a/%2F/b HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n")
    assert answer.status == 400 and answer.json()["status"] == 400
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Answer:
    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes
    raw: bytes

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None

    def all(self, name: str) -> list[str]:
        """Every value of the header `name`, in order."""
        return [value for key, value in self.headers if key.lower() == name.lower()]

    def json(self) -> Any:
        return json.loads(self.body)


def _dechunk(body: bytes) -> bytes:
    out = bytearray()
    while body:
        size_line, _, rest = body.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out.extend(rest[:size])
        body = rest[size + 2 :]
    return bytes(out)


def parse(raw: bytes) -> list[Answer]:
    """Every response in `raw` (interim 1xx answers included), in order."""
    answers = []
    while raw:
        head, _, rest = raw.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = tuple(
            (name.strip(), value.strip())
            for name, _, value in (line.partition(":") for line in lines[1:])
        )
        lowered = {k.lower(): v for k, v in headers}
        if 100 <= status < 200 or status in (204, 304):
            body, raw = b"", rest
        elif "content-length" in lowered:
            length = int(lowered["content-length"])
            body, raw = rest[:length], rest[length:]
        elif "chunked" in lowered.get("transfer-encoding", ""):
            body, raw = _dechunk(rest), b""
        else:
            body, raw = rest, b""
        answers.append(Answer(status, headers, body, head))
    return answers


async def read_raw(port: int, request: bytes, *, timeout: float = 5.0) -> bytes:
    """Send `request` as is and return every byte until the server closes (or `timeout`)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        data = bytearray()
        async with asyncio.timeout(timeout):
            while chunk := await reader.read(65536):
                data.extend(chunk)
    except TimeoutError:
        pass
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    return bytes(data)


async def exchange_all(port: int, request: bytes, *, timeout: float = 5.0) -> list[Answer]:
    """Send `request` as is, read until the server closes (or `timeout`), parse every answer."""
    return parse(await read_raw(port, request, timeout=timeout))


async def exchange(port: int, request: bytes, *, timeout: float = 5.0) -> Answer:
    """The final answer to one request; add `Connection: close` so the server ends the exchange."""
    answers = await exchange_all(port, request, timeout=timeout)
    assert answers, "the server closed the connection without answering"
    return answers[-1]


def request_bytes(
    method: str, target: str, headers: dict[str, str] | None = None, body: bytes = b""
) -> bytes:
    """A well-formed HTTP/1.1 request that closes its connection after the answer."""
    lines = [f"{method} {target} HTTP/1.1", "Host: gateway.test", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    if body:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
