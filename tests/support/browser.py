"""A real headless Chromium on loopback, driven over the Chrome DevTools Protocol (CDP).

Tests that need a browser's own rules (CORS is enforced by the browser, not by any HTTP client)
run their JavaScript in a real page: navigate to a URL, evaluate an async expression, read back
its value. The protocol is spoken over aiohttp's websocket client, so no driver package is needed.

Usage::

    async with launch_browser() as browser:
        await browser.navigate("http://127.0.0.1:8000/")
        status = await browser.evaluate("fetch('/x').then((r) => r.status)")
        failures = browser.events("Network.loadingFailed")

The browser is Debian's `chromium`; without it the test is skipped (failed under `CI=true`).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import signal
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from tests.support.tools import require_tool

# A browser start on a loaded CI machine takes a second or two; these bound each step so that a
# wedged browser fails the test instead of hanging it.
START_TIMEOUT = 20.0
COMMAND_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0

# A property set on a document about to be navigated away from (see Browser.navigate).
_LEFT_BEHIND = "__scopegateLeftBehind"

# Everything a test does not need is switched off: fewer processes, no network traffic of the
# browser's own (updates, sync, safe browsing) that could leave loopback.
CHROMIUM_FLAGS = (
    "--headless=new",
    "--remote-debugging-port=0",  # the browser picks a free port and writes it down
    "--no-sandbox",  # the sandbox needs user namespaces that containers often lack
    "--disable-gpu",
    "--disable-dev-shm-usage",  # /dev/shm is tiny in containers
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-extensions",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--metrics-recording-only",
    "--mute-audio",
)


class BrowserError(AssertionError):
    """The browser or a CDP command failed (not the page's JavaScript: that is a value)."""


@dataclass
class Evaluated:
    """What an expression gave: its value, or the exception it threw or its promise rejected."""

    value: Any
    error: str | None

    def ok(self) -> Any:
        """The value, or an assertion error with the page's exception."""
        if self.error is not None:
            raise AssertionError(f"page JavaScript failed: {self.error}")
        return self.value


@dataclass
class Browser:
    """A running browser and the CDP session with its one page."""

    process: asyncio.subprocess.Process
    socket: aiohttp.ClientWebSocketResponse
    stderr_path: Path
    _pending: dict[int, asyncio.Future[dict[str, Any]]] = field(default_factory=dict)
    _events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    async def send(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """One CDP command; its result, or BrowserError with the protocol's error."""
        message_id = next(self._ids)
        reply: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[message_id] = reply
        await self.socket.send_json({"id": message_id, "method": method, "params": params or {}})
        try:
            async with asyncio.timeout(COMMAND_TIMEOUT):
                answer = await reply
        finally:
            self._pending.pop(message_id, None)
        if "error" in answer:
            raise BrowserError(f"{method} failed: {answer['error']}")
        result: dict[str, Any] = answer.get("result", {})
        return result

    async def navigate(self, url: str) -> None:
        """Load url in the page and wait until the new document's load event has fired."""
        # The document being left is marked, so that loading the same URL again cannot be
        # mistaken for done while the old document still answers.
        await self.evaluate(f"window.{_LEFT_BEHIND} = true")
        navigated = await self.send("Page.navigate", {"url": url})
        if navigated.get("errorText"):
            raise BrowserError(f"navigating to {url} failed: {navigated['errorText']}")
        # The URL is compared as the browser spells it (`http://h:1` becomes `http://h:1/`).
        loaded = (
            f"!window.{_LEFT_BEHIND} && location.href === new URL({json.dumps(url)}).href"
            ' && document.readyState === "complete"'
        )
        async with asyncio.timeout(COMMAND_TIMEOUT):
            while True:
                # An evaluation that races the swap of documents fails; the next one will not.
                with contextlib.suppress(BrowserError):
                    if (await self.evaluate(loaded)).value:
                        return
                await asyncio.sleep(0.02)

    async def evaluate(self, expression: str) -> Evaluated:
        """Evaluate expression in the page; a promise is awaited and its value returned as JSON.

        A thrown exception or a rejected promise is the page's doing, so it comes back as
        Evaluated.error (e.g. "TypeError: Failed to fetch") for the test to assert on.
        """
        result = await self.send(
            "Runtime.evaluate",
            {"expression": expression, "awaitPromise": True, "returnByValue": True},
        )
        details = result.get("exceptionDetails")
        if details is not None:
            thrown = details.get("exception", {})
            text = thrown.get("description") or thrown.get("value") or details.get("text")
            # The description of an Error carries its stack; its first line is "Name: message".
            return Evaluated(None, str(text).splitlines()[0])
        return Evaluated(result.get("result", {}).get("value"), None)

    def events(self, method: str) -> list[dict[str, Any]]:
        """The parameters of every event of this kind received so far (e.g. Network.* ones)."""
        return [params for name, params in self._events if name == method]

    def clear_events(self) -> None:
        self._events.clear()

    async def read(self) -> None:
        """Route the socket's messages: replies to their command, events to the event log."""
        async for message in self.socket:
            if message.type != aiohttp.WSMsgType.TEXT:
                break
            data = json.loads(message.data)
            if "id" in data:
                reply = self._pending.get(data["id"])
                if reply is not None and not reply.done():
                    reply.set_result(data)
            else:
                self._events.append((data.get("method", ""), data.get("params", {})))
        for reply in self._pending.values():
            if not reply.done():
                reply.set_exception(BrowserError(f"CDP connection closed; {self.stderr_tail()}"))

    def stderr_tail(self) -> str:
        return _log_tail(self.stderr_path)


def _log_tail(path: Path, lines: int = 20) -> str:
    """The end of the browser's own log, for a failure message."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "no browser log"
    return "browser log:\n" + "\n".join(text.splitlines()[-lines:])


async def _devtools_port(user_data_dir: Path, process: asyncio.subprocess.Process) -> int:
    """The port the browser chose: the first line of DevToolsActivePort in its profile.

    The browser writes the file once it listens (the second line is the browser target's path),
    so the file's presence is also the readiness signal.
    """
    active_port = user_data_dir / "DevToolsActivePort"
    while True:
        if process.returncode is not None:
            raise BrowserError(f"chromium exited with {process.returncode} before listening")
        with contextlib.suppress(OSError):
            lines = active_port.read_text().splitlines()
            if len(lines) >= 2 and lines[0].isdigit():
                return int(lines[0])
        await asyncio.sleep(0.05)


async def _page_socket_url(http: aiohttp.ClientSession, port: int) -> str:
    """The websocket address of the browser's first tab (about:blank, opened at start)."""
    while True:
        async with http.get(f"http://127.0.0.1:{port}/json/list") as response:
            targets = await response.json()
        # The list also holds the browser's own UI (type "browser_ui"); the tab is the page.
        pages = [target for target in targets if target.get("type") == "page"]
        if pages:
            return str(pages[0]["webSocketDebuggerUrl"])
        await asyncio.sleep(0.05)


async def _stop(process: asyncio.subprocess.Process) -> None:
    """Stop the browser by its PID: ask, then insist; then its helpers, by its process group.

    The browser runs in a session of its own, so its process group id is its PID: renderers
    and the zygote that a killed browser could leave behind go with it, and nothing else does.
    """
    if process.returncode is None:
        process.terminate()
        try:
            async with asyncio.timeout(STOP_TIMEOUT):
                await process.wait()
        except TimeoutError:
            process.kill()
            await process.wait()
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


@asynccontextmanager
async def launch_browser() -> AsyncIterator[Browser]:
    """Start headless Chromium on loopback, attach to its page, and stop it afterwards."""
    chromium = require_tool("chromium", "Debian package chromium")
    with tempfile.TemporaryDirectory(prefix="scopegate-browser-") as workdir:
        user_data_dir = Path(workdir) / "profile"
        stderr_path = Path(workdir) / "chromium.log"
        # A file, not a pipe: the browser logs a lot and a pipe nobody drains would block it.
        with stderr_path.open("wb") as stderr:
            process = await asyncio.create_subprocess_exec(
                chromium, *CHROMIUM_FLAGS, f"--user-data-dir={user_data_dir}", "about:blank",
                stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
                stderr=stderr, start_new_session=True,
            )  # fmt: skip
        try:
            async with aiohttp.ClientSession() as http:
                try:
                    async with asyncio.timeout(START_TIMEOUT):
                        port = await _devtools_port(user_data_dir, process)
                        socket_url = await _page_socket_url(http, port)
                        socket = await http.ws_connect(socket_url, max_msg_size=0)
                except (TimeoutError, aiohttp.ClientError) as error:
                    log = _log_tail(stderr_path)
                    raise BrowserError(f"chromium did not start: {error!r}; {log}") from error
                browser = Browser(process, socket, stderr_path)
                reader = asyncio.create_task(browser.read())
                try:
                    # Network events tell a test what the browser itself did (preflights, CORS
                    # errors) beyond what the page is allowed to see.
                    await browser.send("Network.enable")
                    yield browser
                finally:
                    await socket.close()
                    reader.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await reader
        finally:
            await _stop(process)
