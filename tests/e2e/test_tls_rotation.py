"""Certificate rotation under continuous load (SPEC §6.1): new files and a reload, three times,
while clients keep opening HTTPS connections and sending requests; not one fails, and the new
certificates are served."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import aiohttp

from scopegate.config.load import load_config_text
from tests.e2e.conftest import BASE_CONFIG, base_config, gateway_env
from tests.support.certs import TestAuthority, serial_number

ROTATIONS = 3


async def test_rotating_the_certificate_under_load_fails_no_request(tmp_path: Path) -> None:
    authority = TestAuthority()
    files = authority.issue_server(tmp_path, "localhost", "127.0.0.1")
    section = f"tls:\n  cert: {files.cert}\n  key: {files.key}\n"
    template = BASE_CONFIG.replace("routes:\n", section + "routes:\n", 1)
    trust = ssl.create_default_context(cafile=str(files.ca))
    async with gateway_env(template) as env:
        url = f"https://localhost:{env.port}/contacts"
        headers = env.bearer()
        statuses: list[int] = []
        failures: list[BaseException] = []
        serials: set[int] = set()
        stop = asyncio.Event()

        async def keep_alive_client() -> None:
            connector = aiohttp.TCPConnector(ssl=trust)
            async with aiohttp.ClientSession(connector=connector) as http:
                while not stop.is_set():
                    try:
                        async with http.get(url, headers=headers) as answer:
                            await answer.read()
                            statuses.append(answer.status)
                    except (aiohttp.ClientError, OSError) as error:
                        failures.append(error)

        request = (f"GET /contacts HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
                   f"Authorization: {headers['Authorization']}\r\n\r\n").encode()  # fmt: skip

        async def new_connection_client() -> None:
            """A handshake per request, noting which certificate each was served."""
            while not stop.is_set():
                try:
                    reader, writer = await asyncio.open_connection(
                        "127.0.0.1", env.port, ssl=trust, server_hostname="localhost"
                    )
                    sslobj = writer.get_extra_info("ssl_object")
                    serials.add(serial_number(sslobj.getpeercert(binary_form=True)))
                    writer.write(request)
                    status_line = await reader.readline()
                    await reader.read()
                    writer.close()
                    statuses.append(int(status_line.split()[1]))
                except (OSError, IndexError, ValueError) as error:
                    failures.append(error)

        # Two clients open a connection per request (a handshake each), two keep theirs.
        clients = [asyncio.create_task(new_connection_client()) for _ in range(2)]
        clients += [asyncio.create_task(keep_alive_client()) for _ in range(2)]
        rotated = {serial_number(files.cert.read_bytes())}
        for _ in range(ROTATIONS):
            await asyncio.sleep(0.4)
            authority.issue_server(tmp_path, "localhost", "127.0.0.1")  # the same paths
            rotated.add(serial_number(files.cert.read_bytes()))
            text = base_config(env.jwks, env.upstream, template)
            await env.gateway.reload(load_config_text(text, "gateway.yaml"))
        await asyncio.sleep(0.4)
        stop.set()
        async with asyncio.timeout(10):
            await asyncio.gather(*clients)

    assert failures == []
    assert statuses and set(statuses) == {200}
    assert len(statuses) > 40, len(statuses)
    # Every certificate of the rotation was served, the last included.
    assert rotated <= serials, (rotated, serials)
