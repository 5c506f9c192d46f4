"""An OpenAPI description as the route table (SPEC §6.6), end to end: the published Spotify
Web API description imported, checked and served by a real gateway in front of the recording
upstream, every operation's allow and deny as the description states; the command line; and
a `scopegate serve` process that re-reads the description on SIGHUP."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from scopegate.config.errors import ConfigErrors
from scopegate.config.load import load_config_text
from scopegate.config.model import Route
from scopegate.config.openapi import import_openapi
from scopegate.devtools.keys import generate
from scopegate.devtools.tokens import mint
from tests.e2e.conftest import AUDIENCE, BASE_CONFIG, base_config, gateway_env
from tests.support.jwks_server import JwksServer
from tests.support.process import serve
from tests.support.upstream import RecordingUpstream

SPOTIFY = Path(__file__).parent / "data" / "spotify.yml"
SCOPEGATE = [sys.executable, "-m", "scopegate"]
WITH_OPENAPI = (
    BASE_CONFIG + "openapi:\n  - {{file: {spec}, upstream: contacts, server_path: true}}\n"
)


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SCOPEGATE, *args], capture_output=True, text=True, timeout=60, check=False
    )


def concrete(path: str) -> str:
    return re.sub(r"\{[^}]*\}", "x1", path)


def spotify_routes() -> tuple[Route, ...]:
    return import_openapi(str(SPOTIFY), "contacts", server_path=True).routes


def test_spotify_imports_every_operation_below_its_server_path() -> None:
    api = import_openapi(str(SPOTIFY), "contacts", server_path=True)
    assert api.notes == ()
    assert len(api.routes) == 97 and all(r.path.startswith("/v1/") for r in api.routes)
    scoped = [r for r in api.routes if not r.scopes.needs_nothing]
    assert 0 < len(scoped) < len(api.routes)  # with and without scopes
    assert api.scopes["playlist-read-private"] == "Access your private playlists."


async def test_every_spotify_operation_is_allowed_and_denied_as_the_document_states() -> None:
    """A token with exactly an operation's scopes passes; lacking any one of them is 403; no
    token is 401."""
    async with gateway_env(WITH_OPENAPI, spec=str(SPOTIFY)) as env:
        for route in spotify_routes():
            assert route.methods is not None
            (method,) = route.methods
            url = env.url + concrete(route.path)
            (needed,) = route.scopes.alternatives
            async with env.http.request(method, url, headers=env.bearer(tuple(needed))) as answer:
                assert answer.status == 200, (route.name, await answer.text())
            for missing in needed:
                scopes = tuple(needed - {missing})
                async with env.http.request(method, url, headers=env.bearer(scopes)) as answer:
                    assert answer.status == 403, (route.name, missing)
            async with env.http.request(method, url) as answer:
                assert answer.status == 401, route.name


def test_check_shows_where_each_route_came_from(tmp_path: Path) -> None:
    config = tmp_path / "gateway.yaml"
    (tmp_path / "spotify.yml").write_bytes(SPOTIFY.read_bytes())
    config.write_text(_config_text("spotify.yml"))
    result = run("check", "-c", str(config))
    assert result.returncode == 0, result.stderr
    header = next(line for line in result.stdout.splitlines() if line.startswith("METHODS"))
    assert header.split() == ["METHODS", "PATH", "ROUTE", "UPSTREAM", "ORIGIN", "REQUIRES"]
    assert re.search(
        r"GET,HEAD\s+/v1/albums/\{id\}\s+get-an-album\s+contacts\s+spotify\.yml#get-an-album\s",
        result.stdout,
    )
    assert "valid: 98 route(s)" in result.stdout


def _config_text(spec: str, extra_routes: str = "") -> str:
    return f"""
issuers:
  - issuer: https://id.example.com/
    jwks_uri: https://id.example.com/jwks.json
    audiences: [api]
upstreams:
  contacts: http://127.0.0.1:9
routes:
  - name: health
    path: /health
    auth: none
    upstream: contacts
{extra_routes}openapi:
  - file: {spec}
    upstream: contacts
    server_path: true
"""


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        pytest.param("  - {name: get-an-album, path: /albums, upstream: contacts}\n", 'openapi[0]: route name "get-an-album" is already used by routes[1]', id="same name"),
        pytest.param("  - {path: '/v1/albums/{x}', methods: [GET], upstream: contacts}\n", 'route "get-an-album" is ambiguous: it matches the same requests as route "GET /v1/albums/{x}"', id="same requests"),
    ],
)  # fmt: skip
def test_a_generated_route_colliding_with_routes_is_an_error_at_the_entry(
    tmp_path: Path, extra: str, message: str
) -> None:
    config = tmp_path / "gateway.yaml"
    text = _config_text(str(SPOTIFY), extra)
    config.write_text(text)
    entry = text.splitlines().index("  - file: " + str(SPOTIFY)) + 1
    result = run("check", "-c", str(config))
    assert result.returncode == 1
    assert f"{config}:{entry}:5: " + message in result.stderr, result.stderr


def test_a_broken_description_is_a_configuration_error_and_nothing_applies(tmp_path: Path) -> None:
    (tmp_path / "api.yaml").write_text(
        "openapi: 3.0.3\ninfo: {title: t, version: '1'}\npaths:\n  /a:\n    get: {responses: 5}\n"
    )
    with pytest.raises(ConfigErrors) as caught:
        load_config_text(_config_text("api.yaml"), str(tmp_path / "gateway.yaml"))
    assert [str(e) for e in caught.value.errors] == [
        f"{tmp_path}/api.yaml:5:22: paths./a.get.responses: 5 is not of type 'object'"
    ]
    with pytest.raises(ConfigErrors) as caught:
        load_config_text(_config_text("absent.yaml"), str(tmp_path / "gateway.yaml"))
    assert "absent.yaml:1:1: cannot read: No such file or directory" in str(caught.value)


def test_import_openapi_prints_a_table_check_accepts(tmp_path: Path) -> None:
    result = run("import-openapi", str(SPOTIFY), "--upstream", "contacts", "--server-path")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("scopes:\n")
    assert (
        '  - name: "get-an-album"\n    path: "/v1/albums/{id}"\n    methods: [GET]\n'
        in result.stdout
    )
    config = tmp_path / "gateway.yaml"
    head = _config_text("x").split("routes:")[0]
    config.write_text(head + result.stdout)
    checked = run("check", "-c", str(config))
    assert checked.returncode == 0, checked.stderr
    assert "valid: 97 route(s)" in checked.stdout


def test_import_openapi_reports_what_it_cannot_map_and_refuses_invalid_documents(
    tmp_path: Path,
) -> None:
    document = tmp_path / "api.yaml"
    document.write_text(
        "openapi: 3.1.0\ninfo: {title: t, version: '1'}\n"
        "components:\n  securitySchemes:\n    key: {type: apiKey, in: header, name: X-Key}\n"
        "paths:\n  /a:\n    get:\n      operationId: keyed\n      security: [{key: []}]\n"
        "      responses: {'200': {description: ok}}\n"
        "  /open:\n    get:\n      operationId: open\n      security: []\n"
        "      responses: {'200': {description: ok}}\n"
    )
    result = run("import-openapi", str(document), "--upstream", "api")
    assert result.returncode == 0
    assert (
        f"note: {document}:9:7: paths./a.get: security alternative key (apiKey) names no OAuth 2.0 scheme: dropped\n"
        in result.stderr
    )
    assert f"note: {document}:9:7: paths./a.get: GET /a: no token passes" in result.stderr
    assert (
        '  - name: "keyed"\n    path: "/a"\n    methods: [GET]\n    upstream: "api"\n    auth: deny'
        in result.stdout
        and '  - name: "open"\n    path: "/open"\n    methods: [GET]\n    upstream: "api"\n    auth: none\n'
        in result.stdout
    )
    document.write_text("not: openapi\n")
    result = run("import-openapi", str(document), "--upstream", "api")
    assert (result.returncode, result.stdout) == (1, "")
    assert f"{document}:1:1: not an OpenAPI document" in result.stderr


async def test_sighup_rereads_the_description(tmp_path: Path) -> None:
    """Changing the description and sending SIGHUP changes the routes of a running server."""
    key = generate("RS256")
    spec = tmp_path / "spotify.yml"
    original = SPOTIFY.read_text()
    spec.write_text(original)
    async with RecordingUpstream() as upstream, JwksServer([key]) as jwks:
        path = tmp_path / "scopegate.yaml"
        path.write_text(base_config(jwks, upstream, WITH_OPENAPI, spec="spotify.yml"))
        token = mint(key, issuer=jwks.issuer, audience=AUDIENCE, scopes=())
        headers = {"Authorization": f"Bearer {token}"}
        async with serve(path) as served, aiohttp.ClientSession() as http:
            async with http.get(served.url + "/v1/albums/x1", headers=headers) as answer:
                assert answer.status == 200
            spec.write_text(original.replace("  /albums/{id}:\n", "  /records/{id}:\n", 1))
            served.process.send_signal(signal.SIGHUP)
            await served.wait_for_log("configuration reloaded")
            async with http.get(served.url + "/v1/albums/x1", headers=headers) as answer:
                assert answer.status == 404
            async with http.get(served.url + "/v1/records/x1", headers=headers) as answer:
                assert answer.status == 200
