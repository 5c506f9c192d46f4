"""The command line as a newcomer meets it: `demo`, `token`, `check`, `explain`."""

from __future__ import annotations

import asyncio
import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from scopegate.devtools.keys import generate
from tests.support.tools import require_tool

SCOPEGATE = [sys.executable, "-m", "scopegate"]
EXAMPLE = Path(__file__).parents[2] / "config" / "scopegate.example.yaml"


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SCOPEGATE, *args], capture_output=True, text=True, timeout=60, env=env, check=False
    )


async def _read_demo(stream: asyncio.StreamReader) -> list[str]:
    lines: list[str] = []
    async with asyncio.timeout(20):
        while not lines or lines[-1] != "Press Ctrl-C to stop.":
            raw = await stream.readline()
            assert raw, f"demo ended early: {lines}"
            lines.append(raw.decode().rstrip("\n"))
    return lines


def _promised(lines: list[str]) -> list[tuple[int, str]]:
    """The demo's examples: each `# STATUS: what` line, with the command on the line after."""
    return [
        (int(m.group(1)), lines[i + 1])
        for i, line in enumerate(lines)
        if (m := re.match(r"# (\d{3}): ", line))
    ]


async def _curl(command: str) -> int:
    """Run one printed curl command with aiohttp instead (curl may not be installed)."""
    words = shlex.split(command)
    method = words[words.index("-X") + 1] if "-X" in words else "GET"
    headers = dict(h.split(": ", 1) for i, h in enumerate(words) if i > 0 and words[i - 1] == "-H")
    async with (
        aiohttp.ClientSession() as http,
        http.request(method, words[-1], headers=headers) as r,
    ):
        return r.status


async def test_demo_prints_commands_whose_answers_are_as_promised() -> None:
    """The browser app's page comes first; every printed command gets the status written above
    it, and the denials are counted."""
    process = await asyncio.create_subprocess_exec(
        *SCOPEGATE,
        "demo",
        "--port",
        "0",
        "--admin-port",
        "0",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert process.stdout is not None
    try:
        lines = await _read_demo(process.stdout)
        pairs = _promised(lines)
        assert [status for status, _ in pairs] == [200, 401, 401, 401, 403, 204, 200]
        for status, command in pairs:
            assert await _curl(command) == status, command
        summary = next(line for line in lines if line.startswith("scopegate demo: gateway "))
        issuer = re.search(r"issuer (http://\S+)", summary)
        assert issuer is not None
        gateway = summary.split()[3]
        # First of all, the browser app: its page, on an origin of its own, names the gateway.
        page = re.fullmatch(r"open (http://localhost:\d+/) in a browser: .+", lines[0])
        assert page is not None, lines[0]
        timeout = aiohttp.ClientTimeout(total=10)
        async with (
            aiohttp.ClientSession(timeout=timeout) as http,
            http.get(page.group(1)) as response,
        ):
            assert response.status == 200
            assert f'content="{gateway}"' in await response.text()
        minted = await asyncio.to_thread(
            run, "token", "--issuer", issuer.group(1), "--audience",
            "https://contacts.example.com", "--scopes", "read:contacts",
        )  # fmt: skip
        assert minted.returncode == 0, minted.stderr
        command = f"curl -si -H 'Authorization: Bearer {minted.stdout.strip()}' {gateway}/contacts"
        assert await _curl(command) == 200  # a token from `scopegate token` opens the demo
        metrics_command = next(line for line in lines if "/metrics |" in line)
        metrics_url = metrics_command.split()[2]
        async with aiohttp.ClientSession() as http, http.get(metrics_url) as response:
            text = await response.text()
        for reason, count in [
            ("missing_token", 1),
            ("expired_token", 1),
            ("invalid_audience", 1),
            ("insufficient_scope", 1),
        ]:
            assert re.search(
                rf'scopegate_denials_total{{reason="{reason}",route="[^"]+"}} {count}\.0'
                rf'|scopegate_denials_total{{route="[^"]+",reason="{reason}"}} {count}\.0',
                text,
            ), reason
    finally:
        process.send_signal(signal.SIGINT)
        rest = await asyncio.wait_for(process.stdout.read(), 10)
        assert await asyncio.wait_for(process.wait(), 10) == 0
    assert b"scopegate demo stopped." in rest


def test_check_prints_the_route_table_of_the_example() -> None:
    result = run("check", "-c", str(EXAMPLE), env={"PATH": ""})
    assert result.returncode == 0, result.stderr
    assert "valid:" in result.stdout
    assert re.search(r"DELETE\s+/contacts/\{id\}", result.stdout)
    assert "METHODS" in result.stdout
    feed = r"contacts-feed .*read:contacts \[websocket, token in \?access_token\]"
    assert re.search(feed, result.stdout), result.stdout


def test_check_reports_every_error_with_its_position(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "issuers:\n"
        "  - issuer: https://id.example.com/\n"
        "    audiences: [api]\n"
        "    algorithms: [HS256]\n"
        "upstreams:\n"
        "  api: http://127.0.0.1:9\n"
        "routes:\n"
        "  - path: /x\n"
        "    upstream: apii\n"
        "    scope: [read]\n"
    )
    result = run("check", "-c", str(bad))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) >= 3
    assert all(line.startswith(f"{bad}:") for line in lines)
    assert any("HS256" in line for line in lines)
    assert any("apii" in line for line in lines)
    assert any('"scope"' in line for line in lines)


def test_check_uses_scopegate_config_from_the_environment(tmp_path: Path) -> None:
    result = run("check", env={"SCOPEGATE_CONFIG": str(EXAMPLE), "PATH": ""})
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("args", "code", "verdict"),
    [
        pytest.param(
            ["GET", "/contacts", "--scopes", "read:contacts"],
            0,
            "verdict: ALLOW",
            id="read scope allows the list",
        ),
        pytest.param(
            ["DELETE", "/contacts/7", "--scopes", "read:contacts"],
            1,
            "verdict: DENY 403 insufficient_scope",
            id="read scope cannot delete",
        ),
        pytest.param(["GET", "/nothing/here"], 1, "verdict: DENY 404 no_route", id="no route"),
        pytest.param(
            ["GET", "/public/a/../../contacts"],
            1,
            "requires: read:contacts",
            id="dot segments resolve to the protected route",
        ),
    ],
)
def test_explain_gives_route_requirement_and_verdict(
    args: list[str], code: int, verdict: str
) -> None:
    result = run("explain", "-c", str(EXAMPLE), *args)
    assert result.returncode == code, result.stdout + result.stderr
    assert verdict in result.stdout


def test_token_signs_with_an_explicit_key(tmp_path: Path) -> None:
    import jwt

    key = generate("RS256")
    pem = tmp_path / "key.pem"
    pem.write_bytes(key.private_pem())
    result = run(
        "token",
        "--key",
        str(pem),
        "--issuer",
        "https://id.example.com/",
        "--audience",
        "api",
        "--scopes",
        "read:contacts delete:contacts",
    )
    assert result.returncode == 0, result.stderr
    claims = jwt.decode(result.stdout.strip(), options={"verify_signature": False})
    assert claims["iss"] == "https://id.example.com/"
    assert claims["aud"] == "api"
    assert claims["scope"] == "read:contacts delete:contacts"


def test_token_without_a_key_refuses_an_issuer_that_is_not_a_demo(tmp_path: Path) -> None:
    result = run("token", "--issuer", "http://127.0.0.1:9/", "--audience", "api")
    assert result.returncode == 1
    assert "scopegate token:" in result.stderr
    assert result.stdout == ""


def test_check_and_explain_show_report_only_routes(tmp_path: Path) -> None:
    """A report-only file: the table marks its routes, and explain says what enforcing would
    deny (exit 1) while telling that the request is forwarded."""
    config = tmp_path / "report.yaml"
    config.write_text(EXAMPLE.read_text().replace("\nroutes:\n", "\nenforce: report\nroutes:\n", 1))
    checked = run("check", "-c", str(config))
    assert checked.returncode == 0, checked.stderr
    assert re.search(r"list-contacts .*read:contacts \[report only\]", checked.stdout), (
        checked.stdout
    )
    explained = run(
        "explain", "-c", str(config), "DELETE", "/contacts/7", "--scopes", "read:contacts"
    )
    assert explained.returncode == 1, explained.stdout + explained.stderr
    assert "verdict: SHADOW DENY insufficient_scope" in explained.stdout
    assert "report only: forwarded" in explained.stdout


def test_check_lists_the_rate_limits_without_the_store_password(tmp_path: Path) -> None:
    config = tmp_path / "limited.yaml"
    config.write_text(
        EXAMPLE.read_text()
        + "rate_limits:\n  store: redis://:hunter2@127.0.0.1:6379/0\n  rules:\n"
        + "    - {name: per-client, key: client, limit: 100, window: 60, routes: [list-contacts]}\n"
    )
    checked = run("check", "-c", str(config))
    assert checked.returncode == 0, checked.stderr
    assert "rate limits, counted in redis://:***@127.0.0.1:6379/0" in checked.stdout
    assert "per-client: 100 per 60 s by client on list-contacts" in checked.stdout
    assert "hunter2" not in checked.stdout + checked.stderr


async def test_demo_over_tls_serves_https_and_a_certificate_bound_token() -> None:
    """`scopegate demo --tls`: every printed command, run by the real curl (HTTPS against the
    throw-away CA, a client certificate where the command shows one), gets its status."""
    curl = require_tool("curl", "Debian package curl")
    process = await asyncio.create_subprocess_exec(
        *SCOPEGATE, "demo", "--tls", "--port", "0", "--admin-port", "0",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    assert process.stdout is not None
    try:
        lines = await _read_demo(process.stdout)
        pairs = _promised(lines)
        assert [status for status, _ in pairs] == [200, 401, 401, 401, 403, 204, 200, 200, 401]
        assert all("https://" in command and "--cacert" in command for _, command in pairs)
        assert "--cert" in pairs[-2][1] and "--cert" not in pairs[-1][1]
        for status, command in pairs:
            words = [curl, *shlex.split(command)[1:], "-o", "/dev/null", "-w", "%{http_code}"]
            done = await asyncio.to_thread(
                subprocess.run, words, capture_output=True, text=True, timeout=20, check=False
            )
            assert done.stdout.endswith(str(status)), (command, done.stdout, done.stderr)
    finally:
        process.send_signal(signal.SIGINT)
        await asyncio.wait_for(process.stdout.read(), 10)
        assert await asyncio.wait_for(process.wait(), 10) == 0
