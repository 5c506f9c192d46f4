"""A development token issuer: a fresh signing key, its JWKS and an OIDC discovery document, with
RFC 7662 introspection and RFC 7009 revocation of the tokens it minted.

For `scopegate demo` and for tests; it mints tokens in-process and never runs in production.
Besides JWTs it mints opaque tokens: random strings that mean something only to this issuer,
which remembers their claims (in memory, at most `max_remembered` of them) and tells them to a
client that authenticates at its introspection endpoint (client_secret_basic or
client_secret_post, with the `client_id` and `client_secret` it was given).

Usage::

    issuer = DevIssuer(generate("RS256"), client_secret="s3cret")  # client_id "scopegate-demo"
    runner = await issuer.start("127.0.0.1", 0)
    token = issuer.mint(audience="https://contacts.example.com", scopes=("read:contacts",))
    opaque = issuer.mint_opaque(audience="https://contacts.example.com",
                                scopes=("read:contacts",), extra_claims={"acr": "mfa"})
    issuer.introspect(opaque)  # {"active": True, "scope": "read:contacts", "acr": "mfa", ...}
    issuer.revoke(opaque)      # from now on {"active": False}
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any, TypeVar
from urllib.parse import unquote_plus

import jwt
from aiohttp import web

from scopegate.devtools.keys import SigningKey, jwks
from scopegate.devtools.tokens import mint, step_up, token_claims

# Named in the discovery document so `scopegate token` can tell a demo issuer from a real one.
DEV_TOKEN_ENDPOINT = "scopegate_dev_token_endpoint"
# The client that may introspect and revoke tokens (the gateway), unless told otherwise.
INTROSPECTION_CLIENT_ID = "scopegate-demo"
# The `client_id` an opaque token was issued to, unless its claims say otherwise.
DEV_CLIENT_ID = "scopegate-dev-client"
# How many opaque tokens (and revoked JWTs) are remembered at most: past it, the expired ones,
# then the oldest, are forgotten.
MAX_REMEMBERED = 10_000
TOKEN_FORMATS = ("jwt", "opaque")
CLIENT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]

_THUMBPRINT = re.compile(r"[A-Za-z0-9_-]{43}")  # an RFC 7638 SHA-256 thumbprint, base64url
_NO_STORE = {"Cache-Control": "no-store"}
_CHALLENGE = {"WWW-Authenticate": 'Basic realm="scopegate demo issuer"', **_NO_STORE}
_INACTIVE: dict[str, Any] = {"active": False}

_Entry = TypeVar("_Entry")


class DevIssuer:
    def __init__(
        self,
        key: SigningKey,
        *,
        client_id: str = INTROSPECTION_CLIENT_ID,
        client_secret: str | None = None,
        max_remembered: int = MAX_REMEMBERED,
    ) -> None:
        """`client_id` and `client_secret` are what a client must present to introspect or
        revoke a token (a random secret when none is given: read it back from the attribute)."""
        self.key = key
        self.url = ""  # set by start(): the issuer identifier, with a trailing slash like Auth0's
        self.client_id = client_id
        self.client_secret = secrets.token_urlsafe(32) if client_secret is None else client_secret
        self.max_remembered = max_remembered
        self._opaque: OrderedDict[str, dict[str, Any]] = OrderedDict()  # token -> its claims
        self._revoked: OrderedDict[str, float] = OrderedDict()  # JWT digest -> its exp

    @property
    def jwks_uri(self) -> str:
        return self.url + ".well-known/jwks.json"

    @property
    def introspection_endpoint(self) -> str:
        return self.url + "introspect"

    @property
    def revocation_endpoint(self) -> str:
        return self.url + "revoke"

    def discovery(self) -> dict[str, Any]:
        return {
            "issuer": self.url,
            "jwks_uri": self.jwks_uri,
            "response_types_supported": ["token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": [self.key.alg],
            "grant_types_supported": ["client_credentials"],
            "introspection_endpoint": self.introspection_endpoint,
            "introspection_endpoint_auth_methods_supported": CLIENT_AUTH_METHODS,
            "revocation_endpoint": self.revocation_endpoint,
            "revocation_endpoint_auth_methods_supported": CLIENT_AUTH_METHODS,
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

        async def introspection(request: web.Request) -> web.Response:
            return await self._introspection(request)

        async def revocation(request: web.Request) -> web.Response:
            return await self._revocation(request)

        app = web.Application()
        app.router.add_get("/.well-known/openid-configuration", discovery)
        app.router.add_get("/.well-known/jwks.json", keys)
        app.router.add_post("/dev/token", dev_token)
        app.router.add_post("/introspect", introspection)
        app.router.add_post("/revoke", revocation)
        return app

    async def start(self, host: str, port: int) -> web.AppRunner:
        runner = web.AppRunner(self.app(), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound = runner.addresses[0][1]
        self.url = f"http://{host}:{bound}/"
        return runner

    def mint(self, **claims: Any) -> str:
        """A JWT signed with this issuer's key; `claims` as `tokens.mint` takes them."""
        return mint(self.key, issuer=self.url, **claims)

    def mint_opaque(self, **claims: Any) -> str:
        """An opaque token (URL-safe, no dots) standing for the claims `tokens.token_claims`
        makes of `claims`, with `client_id` DEV_CLIENT_ID unless `extra_claims` names one."""
        extra = {"client_id": DEV_CLIENT_ID, **(claims.pop("extra_claims", None) or {})}
        remembered = token_claims(issuer=self.url, extra_claims=extra, **claims)
        token = secrets.token_urlsafe(32)
        self._opaque[token] = remembered
        _forget_over(self._opaque, self.max_remembered, _expiry)
        return token

    def introspect(self, token: str) -> dict[str, Any]:
        """The RFC 7662 answer for `token`: its claims with `active: true` if this issuer
        minted it (an opaque token it remembers, or a JWT its key signed) and it is neither
        expired nor revoked; `{"active": false}` for anything else."""
        claims = self._verified_jwt(token) if "." in token else self._opaque.get(token)
        if claims is None or _expiry(claims) <= time.time():
            return dict(_INACTIVE)
        bound = isinstance(claims.get("cnf"), dict) and "jkt" in claims["cnf"]
        return {"active": True, **claims, "token_type": "DPoP" if bound else "Bearer"}

    def revoke(self, token: str) -> None:
        """RFC 7009: from now on `token` introspects inactive. A token this issuer did not mint
        is ignored, as the RFC asks."""
        if self._opaque.pop(token, None) is not None:
            return
        claims = self._verified_jwt(token) if "." in token else None
        if claims is not None:
            self._revoked[_digest(token)] = _expiry(claims)
            _forget_over(self._revoked, self.max_remembered, lambda exp: exp)

    def _verified_jwt(self, token: str) -> dict[str, Any] | None:
        """The claims of a JWT this issuer's key signed and that was not revoked, else None.
        Its expiry is left to the caller; the audience is the resource server's to check."""
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self.key.private_key.public_key(),
                algorithms=[self.key.alg],
                options={"verify_aud": False, "verify_exp": False},
            )
        except jwt.PyJWTError:
            return None
        return None if _digest(token) in self._revoked else claims

    async def _introspection(self, request: web.Request) -> web.Response:
        token = await self._client_and_token(request)
        if isinstance(token, web.Response):
            return token
        return web.json_response(self.introspect(token), headers=_NO_STORE)

    async def _revocation(self, request: web.Request) -> web.Response:
        token = await self._client_and_token(request)
        if isinstance(token, web.Response):
            return token
        self.revoke(token)
        return web.Response(status=200, headers=_NO_STORE)

    async def _client_and_token(self, request: web.Request) -> str | web.Response:
        """The `token` of an introspection or revocation request from this issuer's client, or
        the error answer (RFC 7662 §2.1, RFC 7009 §2.1)."""
        form = await request.post()
        refused = self._client_refused(request, form)
        if refused is not None:
            return refused
        token = form.get("token")
        if not isinstance(token, str) or not token:
            return _oauth_error(400, "invalid_request", "the token parameter is missing")
        return token

    def _client_refused(
        self, request: web.Request, form: Mapping[str, object]
    ) -> web.Response | None:
        """None when the client authenticated as this issuer's introspection client, with HTTP
        Basic (RFC 6749 §2.3.1: form-encoded, then base64) or with `client_id` and
        `client_secret` in the body; else the answer refusing it."""
        header = request.headers.get("Authorization")
        if header is not None and "client_secret" in form:
            detail = "the client authenticated in two ways at once: use one"
            return _oauth_error(400, "invalid_request", detail)
        given = _basic_credentials(header) if header is not None else _posted_credentials(form)
        if given is None or not self._is_client(*given):
            body = {"error": "invalid_client", "error_description": "client authentication failed"}
            return web.json_response(body, status=401, headers=_CHALLENGE)
        return None

    def _is_client(self, client_id: str, client_secret: str) -> bool:
        same_id = hmac.compare_digest(client_id.encode(), self.client_id.encode())
        same_secret = hmac.compare_digest(client_secret.encode(), self.client_secret.encode())
        return same_id and same_secret

    async def _dev_token(self, request: web.Request) -> web.Response:
        """Mint a token on request: what `scopegate token --issuer <demo issuer>` calls. Besides
        `audience`, `subject`, `scope` and `lifetime`: `format` ("jwt", the default, or
        "opaque"), `jkt` (bind the token to that key thumbprint: `cnf.jkt`, RFC 9449), `acr` and
        `auth_time` (RFC 9470)."""
        try:
            token, bound = self._dev_mint(await request.json())
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            return web.json_response({"error": "invalid_request", "detail": repr(exc)}, status=400)
        return web.json_response(
            {"access_token": token, "token_type": "DPoP" if bound else "Bearer"}
        )

    def _dev_mint(self, asked: Any) -> tuple[str, bool]:
        """The token a development token request asks for, and whether it is DPoP-bound."""
        token_format = asked.get("format", "jwt")
        if token_format not in TOKEN_FORMATS:
            raise ValueError(f"format must be jwt or opaque, not {token_format!r}")
        jkt = asked.get("jkt")
        if jkt is not None and not (isinstance(jkt, str) and _THUMBPRINT.fullmatch(jkt)):
            raise ValueError("jkt must be an RFC 7638 SHA-256 thumbprint (43 base64url characters)")
        extra = step_up(_optional_text(asked, "acr"), _optional_seconds(asked, "auth_time"))
        if jkt is not None:
            extra["cnf"] = {"jkt": jkt}
        claims: dict[str, Any] = {
            "audience": str(asked["audience"]),
            "subject": str(asked.get("subject", "demo-user")),
            "scopes": tuple(str(asked.get("scope", "")).split()),
            "lifetime": int(asked.get("lifetime", 300)),
            "extra_claims": extra or None,
        }
        minted = self.mint_opaque(**claims) if token_format == "opaque" else self.mint(**claims)
        return minted, jkt is not None


def _optional_text(asked: Mapping[str, Any], name: str) -> str | None:
    value = asked.get(name)
    if value is not None and not (isinstance(value, str) and value):
        raise ValueError(f"{name} must be a non-empty string")
    return value


def _optional_seconds(asked: Mapping[str, Any], name: str) -> int | None:
    value = asked.get(name)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise ValueError(f"{name} must be whole seconds since the epoch")
    return value


def _basic_credentials(header: str) -> tuple[str, str] | None:
    scheme, _, encoded = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    client_id, colon, client_secret = decoded.partition(":")
    return (unquote_plus(client_id), unquote_plus(client_secret)) if colon else None


def _posted_credentials(form: Mapping[str, object]) -> tuple[str, str] | None:
    client_id, client_secret = form.get("client_id"), form.get("client_secret")
    if isinstance(client_id, str) and isinstance(client_secret, str):
        return client_id, client_secret
    return None


def _oauth_error(status: int, error: str, description: str) -> web.Response:
    body = {"error": error, "error_description": description}
    return web.json_response(body, status=status, headers=_NO_STORE)


def _expiry(claims: Mapping[str, Any]) -> float:
    """When a token stops being active: its `exp`, or never without one."""
    exp = claims.get("exp")
    if isinstance(exp, bool) or not isinstance(exp, int | float):
        return float("inf")
    return float(exp)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _forget_over(
    entries: OrderedDict[str, _Entry], limit: int, expiry: Callable[[_Entry], float]
) -> None:
    """Keep at most `limit` entries: past it, forget the expired ones, then the oldest."""
    if len(entries) <= limit:
        return
    now = time.time()
    for name in [name for name, entry in entries.items() if expiry(entry) <= now]:
        del entries[name]
    while len(entries) > limit:
        entries.popitem(last=False)
