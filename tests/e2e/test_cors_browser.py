"""CORS as a browser enforces it: headless Chromium runs the JavaScript of a page served from one
origin against a real gateway on another (SPEC §6.2).

What no HTTP client can show, the browser does: the preflight it sends on its own before a
request with `Authorization`, whether it then lets the page read the answer (a 200, or a 403's
`WWW-Authenticate` challenge), and the request it refuses to send for an origin not allowed.
What the browser did beyond the page's sight (the preflight and its status, the CORS error) is
read from its DevTools network events; what reached the API, from the recording upstream.

One browser, one gateway and two page servers serve the whole module: a browser start costs
about half a second, and every test clears what the previous one left (events, recordings).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web

from tests.e2e.conftest import BASE_CONFIG, Env, gateway_env
from tests.support.browser import Browser, Evaluated, launch_browser
from tests.support.web_app import serve_app

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(60)]

# The test's own section, inserted into the shared configuration. BASE_CONFIG is a str.format
# template: the page's origin is filled in by it, beside the upstream and the issuer.
CORS_SECTION = """cors:
  allow_origins: [{page_origin}]
  allow_headers: [authorization, content-type]
  expose_headers: [x-request-id]
  max_age: 600
"""
CORS_CONFIG = BASE_CONFIG.replace("routes:\n", CORS_SECTION + "routes:\n", 1)

# Pages need no content of their own: the tests evaluate their fetch() calls in them.
PAGE_HTML = "<!doctype html><html><head><title>scopegate CORS test page</title></head></html>"


@asynccontextmanager
async def page_server() -> AsyncIterator[str]:
    """A server on its own loopback port answering `/` with an empty page; yields its origin."""

    async def page(request: web.Request) -> web.Response:
        return web.Response(text=PAGE_HTML, content_type="text/html")

    app = web.Application()
    app.router.add_get("/", page)
    async with serve_app(app) as origin:
        yield origin


@dataclass
class Stack:
    browser: Browser
    env: Env
    page_origin: str  # the one origin in allow_origins
    other_origin: str  # a page server on another port: another origin, not allowed

    def bearer_token(self, scopes: tuple[str, ...]) -> str:
        return self.env.bearer(scopes)["Authorization"].removeprefix("Bearer ")

    async def open_page(self, origin: str) -> None:
        await self.browser.navigate(origin + "/")
        # The page load's own requests are not what a test asserts on.
        self.browser.clear_events()
        self.env.upstream.received.clear()

    async def fetch_from(self, origin: str, method: str, path: str, token: str) -> Evaluated:
        """What a page of `origin` can read of its app's `fetch` of the gateway's `path`, sent
        with `token` (a rejected fetch comes back as the page's error)."""
        await self.open_page(origin)
        init = {"method": method, "headers": {"Authorization": f"Bearer {token}"}}
        return await self.browser.evaluate(fetch_expression(self.env.url + path, init))

    def preflight_statuses(self, path: str) -> list[int]:
        """The status of every preflight the browser sent for the gateway's `path`."""
        url = self.env.url + path
        return [
            int(event["response"]["status"])
            for event in self.browser.events("Network.responseReceived")
            if event.get("type") == "Preflight" and event["response"]["url"] == url
        ]

    def cors_errors(self) -> list[str]:
        """The CORS errors the browser reported for requests it failed (e.g. a refused
        preflight), as Chromium names them."""
        return [
            str(event["corsErrorStatus"]["corsError"])
            for event in self.browser.events("Network.loadingFailed")
            if event.get("corsErrorStatus")
        ]


@pytest_asyncio.fixture(name="stack", scope="module", loop_scope="module")
async def _stack() -> AsyncIterator[Stack]:
    # The page server starts first: its origin, port included, goes into the gateway's config.
    async with (
        page_server() as page_origin,
        page_server() as other_origin,
        gateway_env(CORS_CONFIG, page_origin=page_origin) as env,
        launch_browser() as browser,
    ):
        # The preflight cache would let one test's preflight answer for the next test's (max_age
        # is 600 s); with the cache disabled, as in DevTools, every request is preflighted anew.
        await browser.send("Network.setCacheDisabled", {"cacheDisabled": True})
        yield Stack(browser, env, page_origin, other_origin)


def fetch_expression(url: str, init: dict[str, Any]) -> str:
    """JavaScript that fetches url and gives what the page can read of the answer."""
    return f"""
        fetch({json.dumps(url)}, {json.dumps(init)}).then(async (response) => ({{
            status: response.status,
            challenge: response.headers.get("WWW-Authenticate"),
            body: await response.text(),
        }}))
    """


async def test_a_get_with_a_token_from_the_allowed_origin_reads_the_upstreams_answer(
    stack: Stack,
) -> None:
    token = stack.bearer_token(("read:contacts",))
    answer = (await stack.fetch_from(stack.page_origin, "GET", "/contacts", token)).ok()

    assert answer["status"] == 200
    assert json.loads(answer["body"]) == {"method": "GET", "target": "/contacts", "length": 0}
    # Authorization is not a safelisted header: the browser asked first, the gateway said yes.
    assert stack.preflight_statuses("/contacts") == [204]
    # The gateway answered the preflight itself: only the GET reached the API, token and all.
    [received] = stack.env.upstream.received
    assert (received.method, received.target) == ("GET", "/contacts")
    assert received.header("Authorization") == f"Bearer {token}"
    assert received.header("Origin") == stack.page_origin


async def test_b_delete_without_the_scope_shows_the_app_the_insufficient_scope_challenge(
    stack: Stack,
) -> None:
    read_only = stack.bearer_token(("read:contacts",))
    answer = (await stack.fetch_from(stack.page_origin, "DELETE", "/contacts/7", read_only)).ok()

    assert answer["status"] == 403
    # Readable by the page only because the gateway exposes WWW-Authenticate to allowed origins:
    # this is what lets an app ask its user for the missing scope.
    assert answer["challenge"] is not None
    assert 'error="insufficient_scope"' in answer["challenge"]
    assert stack.preflight_statuses("/contacts/7") == [204]
    assert stack.env.upstream.received == []


async def test_c_a_page_from_an_origin_not_allowed_is_blocked_by_the_browser(
    stack: Stack,
) -> None:
    token = stack.bearer_token(("read:contacts",))
    answer = await stack.fetch_from(stack.other_origin, "GET", "/contacts", token)

    # The page learns nothing but a network error: not the status, not a header.
    assert answer.error == "TypeError: Failed to fetch"
    # Why: the gateway refused the preflight, so the browser never sent the GET with its token.
    assert stack.preflight_statuses("/contacts") == [403]
    assert stack.cors_errors() == ["PreflightMissingAllowOriginHeader"]
    assert stack.env.upstream.received == []
