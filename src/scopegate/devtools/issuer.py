"""A development token issuer: a fresh signing key, its JWKS and an OIDC discovery document.

For `scopegate demo` and for tests; it mints tokens in-process and never runs in production.

Usage::

    issuer = DevIssuer(generate("RS256"))
    runner = await issuer.start("127.0.0.1", 0)
    token = issuer.mint(audience="https://contacts.example.com", scopes=("read:contacts",))
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from scopegate.devtools.keys import SigningKey, jwks
from scopegate.devtools.tokens import mint

# Named in the discovery document so `scopegate token` can tell a demo issuer from a real one.
DEV_TOKEN_ENDPOINT = "scopegate_dev_token_endpoint"


class DevIssuer:
    def __init__(self, key: SigningKey) -> None:
        self.key = key
        self.url = ""  # set by start(): the issuer identifier, with a trailing slash like Auth0's

    @property
    def jwks_uri(self) -> str:
        return self.url + ".well-known/jwks.json"

    def discovery(self) -> dict[str, Any]:
        return {
            "issuer": self.url,
            "jwks_uri": self.jwks_uri,
            "response_types_supported": ["token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": [self.key.alg],
            "grant_types_supported": ["client_credentials"],
            DEV_TOKEN_ENDPOINT: self.url + "dev/token",
        }

    def app(self) -> web.Application:
        async def discovery(_: web.Request) -> web.Response:
            return web.json_response(self.discovery())

        async def keys(_: web.Request) -> web.Response:
            return web.json_response(
                jwks(self.key), headers={"Cache-Control": "public, max-age=600"}
            )

        async def dev_token(request: web.Request) -> web.Response:
            return await self._dev_token(request)

        app = web.Application()
        app.router.add_get("/.well-known/openid-configuration", discovery)
        app.router.add_get("/.well-known/jwks.json", keys)
        app.router.add_post("/dev/token", dev_token)
        return app

    async def _dev_token(self, request: web.Request) -> web.Response:
        """Mint a token on request: what `scopegate token --issuer <demo issuer>` calls."""
        try:
            asked = await request.json()
            scopes = tuple(str(asked.get("scope", "")).split())
            token = self.mint(
                audience=str(asked["audience"]),
                subject=str(asked.get("subject", "demo-user")),
                scopes=scopes,
                lifetime=int(asked.get("lifetime", 300)),
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            return web.json_response({"error": "invalid_request", "detail": repr(exc)}, status=400)
        return web.json_response({"access_token": token, "token_type": "Bearer"})

    async def start(self, host: str, port: int) -> web.AppRunner:
        runner = web.AppRunner(self.app(), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound = runner.addresses[0][1]
        self.url = f"http://{host}:{bound}/"
        return runner

    def mint(self, **claims: Any) -> str:
        return mint(self.key, issuer=self.url, **claims)
