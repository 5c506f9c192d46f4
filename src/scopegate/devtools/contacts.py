"""The demo upstream: a small in-memory contacts API that knows nothing about tokens.

It trusts what the gateway tells it (`X-Auth-Subject`, `X-Auth-Scopes`) and echoes who asked,
which is the point of putting scopegate in front of an API.

`GET /contacts/feed` is a WebSocket that tells every listener about each contact created or
deleted (`{"event": "created"|"deleted", "contact": {...}}`), after a `hello` naming the caller.
The API checks no token there either: the gateway checked the upgrade before relaying it, and
closes the feed itself when the token expires.
"""

from __future__ import annotations

import contextlib
import itertools
from typing import Any

from aiohttp import WSCloseCode, web

SEED = [
    {"name": "Ada Lovelace", "email": "ada@example.com"},
    {"name": "Alan Turing", "email": "alan@example.com"},
]
# The feed pings now and then: an idle feed stays open (scopegate's websocket_idle_timeout is
# 300 s by default), and a listener gone without a close frame is noticed.
FEED_HEARTBEAT = 60.0


class ContactsApi:
    def __init__(self) -> None:
        self._ids = itertools.count(1)
        self.contacts: dict[str, dict[str, Any]] = {}
        self.feeds: set[web.WebSocketResponse] = set()  # the feed sockets open now
        for contact in SEED:
            self.add(contact)

    def add(self, fields: dict[str, Any]) -> dict[str, Any]:
        """Store a contact (no feed message: that is the `POST` handler's)."""
        contact = {"id": str(next(self._ids)), **fields}
        self.contacts[contact["id"]] = contact
        return contact

    @staticmethod
    def _caller(request: web.Request) -> dict[str, str | None]:
        return {
            "subject": request.headers.get("X-Auth-Subject"),
            "scopes": request.headers.get("X-Auth-Scopes"),
        }

    async def list(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"contacts": list(self.contacts.values()), "caller": self._caller(request)}
        )

    async def read(self, request: web.Request) -> web.Response:
        contact = self.contacts.get(request.match_info["id"])
        if contact is None:
            return web.json_response({"error": "no such contact"}, status=404)
        return web.json_response(contact)

    async def create(self, request: web.Request) -> web.Response:
        try:
            fields = await request.json()
        except ValueError:
            return web.json_response({"error": "expected a JSON object"}, status=400)
        if not isinstance(fields, dict) or not isinstance(fields.get("name"), str):
            return web.json_response({"error": "a contact needs a name"}, status=400)
        contact = self.add({"name": fields["name"], "email": fields.get("email")})
        await self._announce("created", contact)
        return web.json_response(contact, status=201)

    async def delete(self, request: web.Request) -> web.Response:
        contact = self.contacts.pop(request.match_info["id"], None)
        if contact is None:
            return web.json_response({"error": "no such contact"}, status=404)
        await self._announce("deleted", contact)
        return web.Response(status=204)

    async def feed(self, request: web.Request) -> web.StreamResponse:
        """The live feed: a hello naming the caller, then one message per change."""
        socket = web.WebSocketResponse(heartbeat=FEED_HEARTBEAT)
        if not socket.can_prepare(request).ok:
            return web.json_response(
                {"error": "this is a WebSocket: send an upgrade request"},
                status=426,
                headers={"Upgrade": "websocket", "Connection": "Upgrade"},
            )
        await socket.prepare(request)
        self.feeds.add(socket)
        try:
            await socket.send_json({"event": "hello", "caller": self._caller(request)})
            async for _ in socket:  # listeners have nothing to say: read until the close
                pass
        finally:
            self.feeds.discard(socket)
        return socket

    async def _announce(self, event: str, contact: dict[str, Any]) -> None:
        message = {"event": event, "contact": contact}
        for socket in list(self.feeds):
            # A listener whose connection is going away misses the message; the others do not.
            with contextlib.suppress(ConnectionError, RuntimeError):
                await socket.send_json(message)

    async def _close_feeds(self, _: web.Application) -> None:
        """On shutdown: a feed would otherwise hold the server open until its listener leaves."""
        for socket in list(self.feeds):
            await socket.close(code=WSCloseCode.GOING_AWAY, message=b"the demo API is stopping")

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/contacts", self.list)
        app.router.add_post("/contacts", self.create)
        app.router.add_get("/contacts/feed", self.feed)  # before /contacts/{id}, which it fits
        app.router.add_get("/contacts/{id}", self.read)
        app.router.add_delete("/contacts/{id}", self.delete)
        app.router.add_get("/public/hello", self.hello)
        app.on_shutdown.append(self._close_feeds)
        return app

    async def hello(self, _: web.Request) -> web.Response:
        return web.json_response({"hello": "no token needed here"})
