"""The demo upstream: a small in-memory contacts API that knows nothing about tokens.

It trusts what the gateway tells it (`X-Auth-Subject`, `X-Auth-Scopes`) and echoes who asked,
which is the point of putting scopegate in front of an API.
"""

from __future__ import annotations

import itertools
from typing import Any

from aiohttp import web

SEED = [
    {"name": "Ada Lovelace", "email": "ada@example.com"},
    {"name": "Alan Turing", "email": "alan@example.com"},
]


class ContactsApi:
    def __init__(self) -> None:
        self._ids = itertools.count(1)
        self.contacts: dict[str, dict[str, Any]] = {}
        for contact in SEED:
            self._add(contact)

    def _add(self, fields: dict[str, Any]) -> dict[str, Any]:
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
        contact = self._add({"name": fields["name"], "email": fields.get("email")})
        return web.json_response(contact, status=201)

    async def delete(self, request: web.Request) -> web.Response:
        if self.contacts.pop(request.match_info["id"], None) is None:
            return web.json_response({"error": "no such contact"}, status=404)
        return web.Response(status=204)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/contacts", self.list)
        app.router.add_post("/contacts", self.create)
        app.router.add_get("/contacts/{id}", self.read)
        app.router.add_delete("/contacts/{id}", self.delete)
        app.router.add_get("/public/hello", self.hello)
        return app

    async def hello(self, _: web.Request) -> web.Response:
        return web.json_response({"hello": "no token needed here"})
