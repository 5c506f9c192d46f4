"""A real RFC 7662 introspection endpoint on 127.0.0.1, which a test can fill, break, slow down,
stop, or count.

It authenticates its caller as a provider does (`client_secret_basic` or `client_secret_post`,
whichever the request uses: 401 for anything else), and records each call's token and how the
caller authenticated.

Usage::

    async with IntrospectionServer("scopegate", "s3cret") as server:
        server.active["opaque-1"] = {"scope": "read:contacts", "exp": ..., "sub": "alice"}
        server.url                       # the endpoint, for `introspection.endpoint`
        server.delay = 2.0               # every answer waits this long first
        server.mode = "error"            # 500; also "garbage" (not JSON), "not_object" ([]),
                                         # "no_active" ({}), "bad_types" (exp is a string)
        await server.stop()              # connection refused, until
        await server.start()             # the same port answers again
        server.calls                     # [Call(token, auth_method), ...]
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import unquote_plus

from aiohttp import web

from tests.support.loopback_server import LoopbackServer

Mode = Literal["ok", "error", "garbage", "not_object", "no_active", "bad_types"]
PATH = "/introspect"


@dataclass(frozen=True)
class Call:
    token: str
    auth_method: str  # client_secret_basic | client_secret_post


class IntrospectionServer(LoopbackServer):
    def __init__(self, client_id: str, client_secret: str) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.active: dict[str, dict[str, Any]] = {}  # token -> the members of its answer
        self.mode: Mode = "ok"
        self.delay = 0.0
        self.calls: list[Call] = []
        self.refused = 0  # calls answered 401 (wrong or missing client credentials)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{PATH}"

    def tokens_asked(self) -> list[str]:
        return [call.token for call in self.calls]

    def _authenticated_by(self, request: web.Request, form: Any) -> str | None:
        header = request.headers.get("Authorization", "")
        if header.startswith("Basic "):
            try:
                pair = base64.b64decode(header[6:], validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                return None
            client_id, _, secret = pair.partition(":")
            ok = (unquote_plus(client_id), unquote_plus(secret)) == (
                self.client_id,
                self.client_secret,
            )
            return "client_secret_basic" if ok else None
        ok = (form.get("client_id"), form.get("client_secret")) == (
            self.client_id,
            self.client_secret,
        )
        return "client_secret_post" if ok else None

    async def _introspect(self, request: web.Request) -> web.Response:
        form = await request.post()
        method = self._authenticated_by(request, form)
        if method is None:
            self.refused += 1
            return web.json_response({"error": "invalid_client"}, status=401)
        token = str(form.get("token", ""))
        self.calls.append(Call(token, method))
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.mode == "error":
            return web.Response(status=500, text="internal error")
        if self.mode == "garbage":
            return web.Response(body=b"<html>oops</html>", content_type="text/html")
        if self.mode == "not_object":
            return web.json_response([])
        if self.mode == "no_active":
            return web.json_response({})
        members = self.active.get(token)
        if members is None:
            return web.json_response({"active": False})
        if self.mode == "bad_types":
            return web.json_response({"active": True, **members, "exp": "tomorrow"})
        return web.json_response({"active": True, **members})

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post(PATH, self._introspect)
