"""The demo's browser app: one static page on an origin of its own, and a stand-in for sign-in.

A browser applies CORS only between origins, so the page is not served by the gateway: it comes
from `http://localhost:PORT/` while the gateway is `http://127.0.0.1:PORT`, and every call the
page makes to the API is a real cross-origin request, preflights and all.

`GET /token?scopes=read:contacts&lifetime=600` is where a real app would send its user to the
identity provider (authorization code flow with PKCE). Here the page's own server mints the
token with the demo issuer, for whatever scopes and lifetime the page asks: development only.

Usage::

    app = page_app(issuer, gateway="http://127.0.0.1:8080", audience=AUDIENCE)
"""

from __future__ import annotations

import html
from importlib import resources

from aiohttp import web

from scopegate.devtools.issuer import DevIssuer

PAGE = "demo_page.html"
GATEWAY_MARK = "__SCOPEGATE_GATEWAY__"  # where the page's HTML names the gateway
SUBJECT = "demo-user"
DEFAULT_LIFETIME = 600
MAX_LIFETIME = 3600


def page_html(gateway: str) -> str:
    """The page, told where the gateway is (its one setting, in a `<meta>` tag)."""
    text = resources.files("scopegate.devtools").joinpath(PAGE).read_text(encoding="utf-8")
    return text.replace(GATEWAY_MARK, html.escape(gateway))


def page_app(issuer: DevIssuer, gateway: str, audience: str) -> web.Application:
    """`/`: the page; `/token`: a token from `issuer` for the scopes and lifetime asked."""
    page = page_html(gateway)

    async def index(_: web.Request) -> web.Response:
        return web.Response(
            text=page, content_type="text/html", headers={"Cache-Control": "no-store"}
        )

    async def token(request: web.Request) -> web.Response:
        scopes = tuple(request.query.get("scopes", "").split())
        lifetime = _lifetime(request.query.get("lifetime", str(DEFAULT_LIFETIME)))
        if lifetime is None:
            detail = f"lifetime must be whole seconds from 1 to {MAX_LIFETIME}"
            return web.json_response({"error": "invalid_request", "detail": detail}, status=400)
        minted = issuer.mint(audience=audience, subject=SUBJECT, scopes=scopes, lifetime=lifetime)
        return web.json_response(
            {
                "access_token": minted,
                "token_type": "Bearer",
                "expires_in": lifetime,
                "scope": " ".join(scopes),
            },
            headers={"Cache-Control": "no-store"},
        )

    app = web.Application()
    app.router.add_get("/", index)
    app.router.add_get("/token", token)
    return app


def _lifetime(text: str) -> int | None:
    try:
        seconds = int(text)
    except ValueError:
        return None
    return seconds if 1 <= seconds <= MAX_LIFETIME else None
