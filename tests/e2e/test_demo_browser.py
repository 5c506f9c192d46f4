"""`scopegate demo`'s browser app in a real browser (issue 18): headless Chromium loads the page
from the app's own origin and uses the API through the demo's gateway, as a person would.

The demo runs in-process, started by `running_demo` exactly as `scopegate demo` starts it: its
issuer, contacts API, gateway (with `demo.yaml`) and page server. The page's functions are on
`window.demo`; a test calls them (what the page's buttons call), reads what they give back and
what the page shows (its DOM), and what the browser did beyond the page's sight (preflights, CORS
errors) from DevTools network events.

The first tests need no browser: the page server's token endpoint and the contacts API's feed,
on their own. The feed tests in the browser need the gateway's WebSocket relay (SPEC §6.3).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp
import jwt
import pytest
import pytest_asyncio

from scopegate.devtools.contacts import ContactsApi
from scopegate.devtools.demo import AUDIENCE, RunningDemo, running_demo
from scopegate.devtools.webapp import MAX_LIFETIME, page_app
from tests.support.browser import Browser, launch_browser
from tests.support.web_app import serve_app

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(60)]

WAIT = 10.0  # the longest any one step of the page may take
HTTP_TIMEOUT = aiohttp.ClientTimeout(total=WAIT)  # for the test's own requests
T = TypeVar("T")


async def until(check: Callable[[], Awaitable[T | None]], what: str, timeout: float = WAIT) -> T:
    """Poll `check` until it gives something other than None; fail naming `what` after
    `timeout` seconds."""
    try:
        async with asyncio.timeout(timeout):
            while (value := await check()) is None:
                await asyncio.sleep(0.05)
            return value
    except TimeoutError:
        raise AssertionError(f"not within {timeout} s: {what}") from None


@dataclass
class Demo:
    running: RunningDemo
    # The same page, from a server on another port of another host name: an origin the
    # gateway's `cors.allow_origins` does not name.
    other_origin: str


@pytest_asyncio.fixture(name="demo", scope="module", loop_scope="module")
async def _demo() -> AsyncIterator[Demo]:
    async with running_demo(0, 0) as running:
        other = page_app(running.issuer, running.gateway, AUDIENCE)
        async with serve_app(other) as other_origin:
            yield Demo(running, other_origin)


@dataclass
class Page:
    """The browser, on a page of the demo's browser app."""

    browser: Browser
    demo: Demo

    @property
    def contacts(self) -> ContactsApi:
        return self.demo.running.contacts

    async def open(self, origin: str | None = None) -> None:
        """Load the page from `origin` (the app's own by default), with a clean event log."""
        await self.browser.navigate(origin or self.demo.running.page)
        self.browser.clear_events()

    async def run(self, expression: str) -> Any:
        """The value of `expression` in the page (a promise is awaited); fails on a throw."""
        return (await self.browser.evaluate(expression)).ok()

    async def call(self, function: str, *arguments: Any) -> Any:
        """`window.demo.<function>(...arguments)`: what a button of the page calls."""
        listed = ", ".join(json.dumps(argument) for argument in arguments)
        return await self.run(f"window.demo.{function}({listed})")

    async def text(self, selector: str) -> str:
        return str(await self.run(f"document.querySelector({json.dumps(selector)}).innerText"))

    async def feed_entry(self, what: str, wanted: Callable[[dict[str, Any]], bool]) -> Any:
        """The first entry of the page's feed log that is `wanted`, waited for."""

        async def check() -> dict[str, Any] | None:
            log: list[dict[str, Any]] = await self.run("window.demo.feedLog")
            return next((entry for entry in log if wanted(entry)), None)

        return await until(check, what)

    async def counted(self, metric: str, reason: str, route: str = "contacts-feed") -> float:
        """A counter of the gateway's, for `route` and `reason`, as its admin port shows it."""
        async with (
            aiohttp.ClientSession(timeout=HTTP_TIMEOUT) as http,
            http.get(self.demo.running.admin + "/metrics") as response,
        ):
            text = await response.text()
        for line in text.splitlines():
            name, _, rest = line.partition("{")
            labels, _, value = rest.partition("} ")
            if name == metric and {f'route="{route}"', f'reason="{reason}"'} <= set(
                labels.split(",")
            ):
                return float(value)
        return 0.0

    def preflight_statuses(self, path: str) -> list[int]:
        url = self.demo.running.gateway + path
        return [
            int(event["response"]["status"])
            for event in self.browser.events("Network.responseReceived")
            if event.get("type") == "Preflight" and event["response"]["url"] == url
        ]

    def cors_errors(self) -> list[str]:
        return [
            str(event["corsErrorStatus"]["corsError"])
            for event in self.browser.events("Network.loadingFailed")
            if event.get("corsErrorStatus")
        ]


@pytest_asyncio.fixture(name="page", scope="module", loop_scope="module")
async def _page(demo: Demo) -> AsyncIterator[Page]:
    async with launch_browser() as browser:
        # Every request preflighted anew, as in DevTools: one test's cached preflight must not
        # answer for the next test's.
        await browser.send("Network.setCacheDisabled", {"cacheDisabled": True})
        yield Page(browser, demo)


def is_event(event: str) -> Callable[[dict[str, Any]], bool]:
    return lambda entry: entry["kind"] == "message" and entry["message"]["event"] == event


def is_close(entry: dict[str, Any]) -> bool:
    return bool(entry["kind"] == "close")


async def no_feed_open(contacts: ContactsApi) -> None:
    """The contacts API has let go of every feed socket (they leave its set on close)."""

    async def check() -> bool | None:
        return True if not contacts.feeds else None

    await until(check, "the contacts API's feed sockets all closed")


# Without a browser: the pieces the page relies on.


async def test_the_page_server_mints_demo_tokens_for_the_scopes_and_lifetime_asked(
    demo: Demo,
) -> None:
    token_url = demo.running.page + "token"
    async with aiohttp.ClientSession(timeout=HTTP_TIMEOUT) as http:
        asked = {"scopes": "read:contacts delete:contacts", "lifetime": "5"}
        async with http.get(token_url, params=asked) as response:
            assert response.status == 200
            body = await response.json()
        async with http.get(token_url, params={"lifetime": str(MAX_LIFETIME + 1)}) as response:
            assert response.status == 400
        async with http.get(demo.running.page) as response:
            page = await response.text()
    key = demo.running.issuer.key
    claims = jwt.decode(
        body["access_token"], key.private_key.public_key(), [key.alg], audience=AUDIENCE
    )
    assert claims["iss"] == demo.running.issuer.url
    assert claims["scope"] == "read:contacts delete:contacts"
    assert claims["exp"] - claims["iat"] == 5
    # The page is told where the gateway is, and loads nothing from anywhere else.
    assert f'<meta name="scopegate-gateway" content="{demo.running.gateway}">' in page
    assert "src=" not in page
    assert "href=" not in page


async def test_the_contacts_feed_says_hello_then_every_change_and_forgets_closed_sockets() -> None:
    contacts = ContactsApi()
    async with (
        serve_app(contacts.app()) as api,
        aiohttp.ClientSession(timeout=HTTP_TIMEOUT) as http,
    ):
        async with http.get(api + "/contacts/feed") as response:
            assert response.status == 426  # a plain GET is told to upgrade
        headers = {"X-Auth-Subject": "someone", "X-Auth-Scopes": "read:contacts"}
        async with http.ws_connect(api + "/contacts/feed", headers=headers) as feed:
            hello = await feed.receive_json(timeout=WAIT)
            assert hello == {
                "event": "hello",
                "caller": {"subject": "someone", "scopes": "read:contacts"},
            }
            assert len(contacts.feeds) == 1
            async with http.post(api + "/contacts", json={"name": "Grace Hopper"}) as response:
                created = await response.json()
            assert await feed.receive_json(timeout=WAIT) == {"event": "created", "contact": created}
            async with http.delete(api + "/contacts/" + created["id"]) as response:
                assert response.status == 204
            assert await feed.receive_json(timeout=WAIT) == {"event": "deleted", "contact": created}
        await no_feed_open(contacts)


# In the browser, from the page's own origin: the one `cors.allow_origins` names.


async def test_signed_in_with_read_contacts_the_page_lists_the_contacts(page: Page) -> None:
    await page.open()
    await page.call("signIn", ["read:contacts"])
    result = await page.call("loadContacts")

    assert result["status"] == 200
    listed = await page.run(
        "[...document.querySelectorAll('#contacts li')].map(li => li.dataset.id)"
    )
    assert listed == list(page.contacts.contacts)
    assert "Signed in as demo-user with read:contacts" in await page.text("#session")
    # Authorization is not a header a page may send on its own: the browser asked the gateway.
    assert page.preflight_statuses("/contacts") == [204]


async def test_a_delete_with_only_read_contacts_shows_the_challenge_and_signing_in_for_it_helps(
    page: Page,
) -> None:
    contact = page.contacts.add({"name": "Edsger Dijkstra", "email": None})
    await page.open()
    await page.call("signIn", ["read:contacts"])
    await page.call("loadContacts")

    denied = await page.call("deleteContact", contact["id"])

    # The page could read the 403's challenge: the gateway exposes WWW-Authenticate to it.
    assert denied["status"] == 403
    assert denied["error"] == "insufficient_scope"
    assert denied["scope"] == "delete:contacts"
    assert 'error="insufficient_scope"' in denied["challenge"]
    shown = await page.text("#answer")
    assert f"DELETE /contacts/{contact['id']}: 403" in shown
    assert 'error="insufficient_scope"' in shown
    assert 'scope="delete:contacts"' in shown
    assert contact["id"] in page.contacts.contacts

    # The app offers to sign in again with the scope the challenge named; then the delete works.
    await page.run("document.querySelector('#step-up').click()")

    async def signed_in_again() -> str | None:
        session = await page.text("#session")
        return session if "delete:contacts" in session else None

    assert "read:contacts delete:contacts" in await until(signed_in_again, "a new sign-in")
    allowed = await page.call("deleteContact", contact["id"])
    assert allowed["status"] == 204
    assert contact["id"] not in page.contacts.contacts
    assert (
        await page.run(f"document.querySelector('#contacts li[data-id=\"{contact['id']}\"]')")
        is None
    )


async def test_the_same_page_from_an_origin_not_allowed_is_blocked_by_the_browser(
    page: Page,
) -> None:
    await page.open(page.demo.other_origin + "/")
    await page.call("signIn", ["read:contacts"])  # its own server still signs it in
    result = await page.call("loadContacts")

    # The page learns nothing but a network error, and tells its user where to look.
    assert result["failed"] == "TypeError: Failed to fetch"
    assert "cors.allow_origins" in await page.text("#answer")
    # The gateway refused the preflight, so the browser never sent the GET with the token.
    assert page.preflight_statuses("/contacts") == [403]
    assert page.cors_errors() == ["PreflightMissingAllowOriginHeader"]


# The live feed: a WebSocket through the gateway's relay, with the token in the query.


async def test_the_feed_says_hello_and_shows_a_contact_created_through_the_gateway(
    page: Page,
) -> None:
    await page.open()
    await page.call("signIn", ["read:contacts", "create:contacts"])
    await page.call("openFeed")

    hello = await page.feed_entry("the feed's hello", is_event("hello"))
    # The API saw who the gateway said the token was for, and the scopes it carried.
    assert hello["message"]["caller"]["subject"] == "demo-user"
    assert set(hello["message"]["caller"]["scopes"].split()) == {"read:contacts", "create:contacts"}
    assert await page.text("#feed-state") == "open"

    added = await page.call("addContact", "Grace Hopper")
    assert added["status"] == 201
    created = await page.feed_entry("the feed's created message", is_event("created"))
    assert created["message"]["contact"] == json.loads(added["body"])
    assert "created:" in await page.text("#feed")

    await page.call("closeFeed")
    closed = await page.feed_entry("the feed closed by the page", is_close)
    assert closed["code"] == 1000
    await no_feed_open(page.contacts)


async def test_the_gateway_closes_the_feed_with_1008_when_its_token_expires(page: Page) -> None:
    await page.open()
    # The demo's issuer has leeway 0: the gateway ends the feed the second the token expires.
    await page.call("signIn", ["read:contacts"], 3)
    await page.call("openFeed")
    await page.feed_entry("the feed's hello", is_event("hello"))

    closed = await page.feed_entry("the feed closed by the gateway", is_close)

    assert closed["code"] == 1008
    assert await page.text("#feed-state") == "closed (code 1008)"
    assert "closed: code 1008" in await page.text("#feed")
    # The gateway closed the API's side too, and counted why it closed the feed.
    await no_feed_open(page.contacts)
    assert await page.counted("scopegate_websocket_closes_total", "token_expired") >= 1


async def test_a_page_from_an_origin_not_allowed_cannot_open_the_feed_either(page: Page) -> None:
    await page.open(page.demo.other_origin + "/")
    await page.call("signIn", ["read:contacts"])
    await page.call("openFeed")

    # Browsers apply no CORS to a WebSocket: the gateway checks its Origin itself and refuses
    # the upgrade, which a page sees only as a connection closed without a close frame.
    closed = await page.feed_entry("the refused feed's close", is_close)
    assert closed["code"] == 1006
    assert await page.run("window.demo.feedLog.length") == 1  # no hello
    assert await page.counted("scopegate_denials_total", "cors_rejected") >= 1
    assert page.contacts.feeds == set()
