"""A certified OpenID Connect provider (panva/oidc-provider, tests/oidc/provider.mjs) run on
loopback, and a client that gets real tokens from it through real grants.

Usage::

    async with running_provider() as op:
        op.issuer, op.jwks_uri, op.introspection_endpoint, op.revocation_endpoint
        token = await op.client_credentials("read:contacts", resource=OPAQUE_RESOURCE)
        bound = await op.client_credentials("read:contacts", resource=JWT_RESOURCE, dpop_key=key)
        stepped = await op.authorization_code("read:contacts", resource=JWT_RESOURCE, acr="mfa",
                                              auth_time=int(time.time()) - 3600, dpop_key=key)
        await op.introspect(token)               # the provider's JSON answer, as `scopegate` asks
        await op.revoke(token)                   # by the client the token was issued to
        await op.jwt_claims(stepped)             # payload of a JWT access token, signature checked

A token is an `IssuedToken`: the access token string itself (put it in a header as it is), with
the token response's `token_type`, `scope` and `expires_in`, and the client it was issued to.
`key` is `scopegate.devtools.keys.generate("ES256")` (any algorithm of `DPOP_ALGORITHMS`).

What the provider issues
------------------------
Every token is for one resource indicator (RFC 8707) and holds the requested scopes among
`SCOPES`; it lives 300 seconds.

For `JWT_RESOURCE` (and any other indicator but `OPAQUE_RESOURCE`), an RFC 9068 JWT signed
RS256 with kid `peer-key`, header ``{"alg": "RS256", "typ": "at+jwt", "kid": "peer-key"}``. By
client credentials, bound to a DPoP key::

    {"jti": "V6e0...", "sub": "scopegate-tests", "iat": 1796609800, "exp": 1796610100,
     "scope": "read:contacts", "client_id": "scopegate-tests", "iss": "http://127.0.0.1:PORT",
     "aud": "https://contacts.example.com", "cnf": {"jkt": "<RFC 7638 thumbprint>"}}

By authorization code (`sub` is the account, `alice`; no `cnf` without a DPoP key)::

    {"acr": "mfa", "amr": ["pwd", "otp"], "auth_time": 1796606200, "jti": "...", "sub": "alice",
     "iat": 1796609800, "exp": 1796610100, "scope": "read:contacts", "client_id": "scopegate-web",
     "iss": "http://127.0.0.1:PORT", "aud": "https://contacts.example.com"}

For `OPAQUE_RESOURCE`, an opaque string of 43 URL-safe characters, that only introspection
(RFC 7662) explains. The answer for an active one by client credentials::

    {"active": true, "client_id": "scopegate-tests", "exp": 1796610049, "iat": 1796609749,
     "iss": "http://127.0.0.1:PORT", "aud": "https://opaque.example.com",
     "scope": "read:contacts", "token_type": "Bearer"}

no `sub` (there is no end user) and no `jti` (the token is its own identifier). DPoP-bound, it
also carries ``"cnf": {"jkt": "<thumbprint>"}`` and ``"token_type": "DPoP"``. By authorization
code it also carries `sub` ("alice"), `acr`, `amr` and `auth_time`; here DPoP-bound::

    {"active": true, "sub": "alice", "acr": "pwd", "amr": ["pwd"], "auth_time": 1796609818,
     "client_id": "scopegate-web", "exp": 1796610118, "iat": 1796609818,
     "iss": "http://127.0.0.1:PORT", "aud": "https://opaque.example.com",
     "scope": "read:contacts", "cnf": {"jkt": "afxYUC1mUwE-oCvNNOplHYDOLY-Vk5jp_iRRrzvcwkc"},
     "token_type": "DPoP"}

A revoked, expired or unknown token answers ``{"active": false}``, and so does any token to a
client not allowed to see it (only `INTROSPECTION_CLIENT` and `INTROSPECTION_POST_CLIENT` see
other clients' tokens). A JWT is refused at introspection and revocation alike with 400
``unsupported_token_type``. A wrong client secret is refused with 401 ``invalid_client``. The
provider takes client_secret_basic and client_secret_post alike from either introspection client
(oidc-provider accepts both from a client registered with one of them), so it cannot catch a
gateway that sends the wrong one.

acr, amr and auth_time
----------------------
The provider logs in `ACCOUNT` without a human: `acr` is the first of the authorization
request's `acr_values` (``"pwd"`` when there is none), `amr` is ``["pwd", "otp"]`` for acr
``"mfa"`` and ``["pwd"]`` otherwise, and `auth_time` is the request's extra parameter
`login_time` (epoch seconds; the login happens now without it). oidc-provider keeps them on the
authorization code only; its `extraTokenClaims` hook copies them into the access token, JWT and
opaque alike. Tokens by client credentials carry none of them. `acr_values` needs the `openid`
scope, so `authorization_code` always asks for it; it stays out of the access token's scope.

DPoP
----
A token request with a `DPoP` proof (for POST to `token_endpoint`) gets a token bound to the
proof's key: ``token_type: DPoP``, and `cnf.jkt` in the JWT or the introspection answer. The
provider has no DPoP nonce: it never asks for one, and refuses a proof that carries one
(``invalid_dpop_proof``, "DPoP nonces are not supported"). A proof must have an `iat` within
300 seconds of now (``invalid_dpop_proof``, "DPoP proof iat is not recent enough") and a `jti`
not seen before (a replay is refused as a bare ``invalid_grant``). oidc-provider accepts only
ES256 and EdDSA proofs by default; this provider accepts every algorithm of `DPOP_ALGORITHMS`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import os
import secrets
import socket
from collections import deque
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qs, quote_plus, urljoin, urlsplit

import aiohttp
import jwt
import pytest

from scopegate.devtools.dpop import make_proof
from scopegate.devtools.keys import SigningKey
from tests.support.tools import require_tool

PEER = Path(__file__).parents[1] / "oidc"

JWT_RESOURCE = "https://contacts.example.com"
OPAQUE_RESOURCE = "https://opaque.example.com"
SHORT_LIVED_RESOURCE = "https://short-lived.example.com"  # opaque tokens that live 2 s
SCOPES = ("read:contacts", "create:contacts", "delete:contacts")
ACCOUNT = "alice"
REDIRECT_URI = "http://127.0.0.1/cb"
TOKEN_TTL = 300
JWT_KID = "peer-key"
JWT_ALGORITHM = "RS256"
DPOP_ALGORITHMS = (
    "ES256", "ES384", "ES512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "EdDSA",
)  # fmt: skip

AuthMethod = Literal["client_secret_basic", "client_secret_post", "none"]


@dataclass(frozen=True)
class Client:
    """A client registered at the provider, and how it authenticates at its endpoints."""

    client_id: str
    secret: str | None
    auth_method: AuthMethod


MACHINE_CLIENT = Client("scopegate-tests", "loopback-only-test-secret", "client_secret_basic")
WEB_CLIENT = Client("scopegate-web", None, "none")  # public: authorization code with PKCE
INTROSPECTION_SECRET = "loopback-only-introspection-secret"
INTROSPECTION_CLIENT = Client("scopegate", INTROSPECTION_SECRET, "client_secret_basic")
INTROSPECTION_POST_CLIENT = Client("scopegate-post", INTROSPECTION_SECRET, "client_secret_post")
CLIENTS = {
    client.client_id: client
    for client in (MACHINE_CLIENT, WEB_CLIENT, INTROSPECTION_CLIENT, INTROSPECTION_POST_CLIENT)
}

_HTTP_TIMEOUT = aiohttp.ClientTimeout(total=10)
_MAX_REDIRECTS = 10


class ProviderError(Exception):
    """The provider refused a request: its status and its answer (JSON when it sent JSON)."""

    def __init__(self, what: str, status: int, body: Any) -> None:
        super().__init__(f"{what}: {status} {body!r}")
        self.status = status
        self.body = body


class IssuedToken(str):
    """An access token, as the string the provider issued, with its token response."""

    token_type: str
    scope: str | None
    expires_in: int
    client_id: str

    def __new__(cls, response: Mapping[str, Any], client_id: str) -> IssuedToken:
        token = super().__new__(cls, str(response["access_token"]))
        token.token_type = str(response["token_type"])
        token.scope = None if response.get("scope") is None else str(response["scope"])
        token.expires_in = int(response["expires_in"])
        token.client_id = client_id
        return token


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _authenticate(client: Client, form: dict[str, str]) -> dict[str, str]:
    """Add `client`'s credentials to `form`, or return the header that carries them."""
    if client.auth_method == "client_secret_basic":
        # RFC 6749 §2.3.1: each part form-encoded before the Basic encoding.
        pair = f"{quote_plus(client.client_id)}:{quote_plus(client.secret or '')}"
        return {"Authorization": "Basic " + base64.b64encode(pair.encode()).decode("ascii")}
    form["client_id"] = client.client_id
    if client.auth_method == "client_secret_post":
        form["client_secret"] = client.secret or ""
    return {}


async def _answer(response: aiohttp.ClientResponse) -> Any:
    text = await response.text()
    try:
        return json.loads(text)
    except ValueError:
        return text


class OidcProvider:
    """The running provider, as a gateway and its tests see it: discovery, tokens by real grants,
    introspection and revocation. Built by `running_provider`."""

    def __init__(
        self,
        issuer: str,
        discovery: Mapping[str, Any],
        http: aiohttp.ClientSession,
        stdout: list[str],
        stderr: deque[str],
    ) -> None:
        self.issuer = issuer
        self.discovery = dict(discovery)
        self.authorization_endpoint = str(discovery["authorization_endpoint"])
        self.token_endpoint = str(discovery["token_endpoint"])
        self.introspection_endpoint = str(discovery["introspection_endpoint"])
        self.revocation_endpoint = str(discovery["revocation_endpoint"])
        self.jwks_uri = str(discovery["jwks_uri"])
        self.introspection_client_id = INTROSPECTION_CLIENT.client_id
        self.introspection_client_secret = INTROSPECTION_SECRET
        self.stdout = stdout  # what the provider printed besides its JSON line (nothing, normally)
        self.stderr = stderr  # the last lines it wrote on stderr
        self._http = http

    async def client_credentials(
        self,
        scope: str,
        *,
        resource: str,
        dpop_key: SigningKey | None = None,
        client: Client = MACHINE_CLIENT,
    ) -> IssuedToken:
        """A token by the client credentials grant; DPoP-bound to `dpop_key` when given."""
        form = {"grant_type": "client_credentials", "scope": scope, "resource": resource}
        return await self._token(form, client, dpop_key)

    async def authorization_code(
        self,
        scope: str,
        *,
        resource: str,
        acr: str | None = None,
        auth_time: int | None = None,
        dpop_key: SigningKey | None = None,
    ) -> IssuedToken:
        """A token for `WEB_CLIENT` by the authorization code grant with PKCE (S256): /auth, the
        provider's login and consent interactions, its redirects, then /token. Each call is a
        new browser, so a new login of `ACCOUNT` with `acr` (as `acr_values`) and `auth_time`
        (as `login_time`) when given. DPoP-bound to `dpop_key` when given."""
        verifier = secrets.token_urlsafe(48)
        state = secrets.token_urlsafe(16)
        query = {
            "client_id": WEB_CLIENT.client_id,
            "response_type": "code",
            "redirect_uri": REDIRECT_URI,
            "scope": f"openid {scope}",
            "resource": resource,
            "code_challenge": _b64url(hashlib.sha256(verifier.encode("ascii")).digest()),
            "code_challenge_method": "S256",
            "state": state,
        }
        if acr is not None:
            query["acr_values"] = acr
        if auth_time is not None:
            query["login_time"] = str(auth_time)
        jar = aiohttp.CookieJar(unsafe=True)  # the provider is on an IP address
        async with aiohttp.ClientSession(cookie_jar=jar, timeout=_HTTP_TIMEOUT) as browser:
            location = await self._follow(browser, self.authorization_endpoint, query)
        answer = {name: values[0] for name, values in parse_qs(urlsplit(location).query).items()}
        if "error" in answer:
            raise ProviderError("authorization", 302, answer)
        assert answer.get("state") == state, answer
        assert answer.get("iss") == self.issuer, answer  # RFC 9207
        form = {
            "grant_type": "authorization_code",
            "code": answer["code"],
            "redirect_uri": REDIRECT_URI,
            "code_verifier": verifier,
            "resource": resource,
        }
        return await self._token(form, WEB_CLIENT, dpop_key)

    async def introspect(
        self,
        token: str,
        *,
        client: Client = INTROSPECTION_CLIENT,
        token_type_hint: str | None = None,
    ) -> dict[str, Any]:
        """The provider's introspection answer for `token`, asked by `client`. `ProviderError`
        when it refuses the request (a wrong secret: 401; a JWT: 400)."""
        form = {"token": str(token)}
        if token_type_hint is not None:
            form["token_type_hint"] = token_type_hint
        headers = _authenticate(client, form)
        async with self._http.post(self.introspection_endpoint, data=form, headers=headers) as r:
            body = await _answer(r)
        if r.status != 200 or not isinstance(body, dict):
            raise ProviderError("introspection", r.status, body)
        return body

    async def revoke(self, token: str, *, client: Client | None = None) -> None:
        """Revoke `token` (RFC 7009), as the client it was issued to unless `client` is given
        (a token this object did not issue: as `INTROSPECTION_CLIENT`). Revoking an access
        token from the authorization code grant revokes its whole grant."""
        if client is None:
            owner = token.client_id if isinstance(token, IssuedToken) else None
            client = CLIENTS.get(owner or "", INTROSPECTION_CLIENT)
        form = {"token": str(token), "token_type_hint": "access_token"}
        headers = _authenticate(client, form)
        async with self._http.post(self.revocation_endpoint, data=form, headers=headers) as r:
            body = await _answer(r)
        if r.status != 200:
            raise ProviderError("revocation", r.status, body)

    async def jwks(self) -> dict[str, Any]:
        async with self._http.get(self.jwks_uri) as response:
            response.raise_for_status()
            document: dict[str, Any] = await response.json()
        return document

    async def jwt_claims(self, token: str, *, audience: str = JWT_RESOURCE) -> dict[str, Any]:
        """The claims of a JWT access token, once its signature (by the provider's published
        key), `typ` (at+jwt), issuer, audience and expiry are checked."""
        header = jwt.get_unverified_header(token)
        assert header.get("typ") == "at+jwt", header
        key = jwt.PyJWKSet.from_dict(await self.jwks())[str(header["kid"])]
        claims: dict[str, Any] = jwt.decode(
            token, key, algorithms=[JWT_ALGORITHM], audience=audience, issuer=self.issuer
        )
        return claims

    async def _token(
        self, form: dict[str, str], client: Client, dpop_key: SigningKey | None
    ) -> IssuedToken:
        headers = _authenticate(client, form)
        if dpop_key is not None:
            headers["DPoP"] = make_proof(dpop_key, "POST", self.token_endpoint)
        async with self._http.post(self.token_endpoint, data=form, headers=headers) as response:
            body = await _answer(response)
        if response.status != 200 or not isinstance(body, dict):
            raise ProviderError(f"{form['grant_type']} token request", response.status, body)
        return IssuedToken(body, client.client_id)

    async def _follow(
        self, browser: aiohttp.ClientSession, url: str, query: Mapping[str, str]
    ) -> str:
        """Follow the provider's redirects from the authorization request on, by hand, until
        one leaves for the client's redirect URI: that one's Location, never requested."""
        params: Mapping[str, str] | None = query
        for _ in range(_MAX_REDIRECTS):
            async with browser.get(url, params=params, allow_redirects=False) as response:
                body = await _answer(response)
                location = response.headers.get("Location")
            if response.status not in (302, 303) or location is None:
                raise ProviderError(f"GET {url}", response.status, body)
            if location.startswith(REDIRECT_URI + "?"):
                return location
            url, params = urljoin(url, location), None
        raise ProviderError("authorization", 508, f"more than {_MAX_REDIRECTS} redirects")


def _free_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _require_provider() -> str:
    """The `node` program; skip (fail in CI) when it or oidc-provider is missing."""
    node = require_tool("node", "Debian package nodejs")
    if not (PEER / "node_modules" / "oidc-provider").is_dir():
        message = "oidc-provider is not installed: npm ci --prefix tests/oidc"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return node


async def _collect(stream: asyncio.StreamReader, into: list[str] | deque[str]) -> None:
    while line := await stream.readline():
        into.append(line.decode(errors="replace").rstrip("\n"))


@asynccontextmanager
async def running_provider(
    resource: str = JWT_RESOURCE, opaque_resource: str = OPAQUE_RESOURCE
) -> AsyncIterator[OidcProvider]:
    """Start the provider on a free loopback port, wait until it listens and has answered its
    discovery document; stop it (SIGTERM, then SIGKILL after 5 s) on the way out."""
    node = _require_provider()
    process = await asyncio.create_subprocess_exec(
        node, str(PEER / "provider.mjs"), str(_free_port()), resource, opaque_resource,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert process.stdout is not None and process.stderr is not None
    stdout: list[str] = []
    stderr: deque[str] = deque(maxlen=50)
    readers: list[asyncio.Task[None]] = [asyncio.create_task(_collect(process.stderr, stderr))]
    try:
        async with asyncio.timeout(20):
            while not (line := await process.stdout.readline()).startswith(b"{"):
                if not line:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(asyncio.gather(process.wait(), readers[0]), 5)
                    raise AssertionError(f"oidc-provider did not start: {stdout} {list(stderr)}")
                stdout.append(line.decode(errors="replace").rstrip("\n"))  # should not happen
        issuer = str(json.loads(line)["issuer"])
        readers.append(asyncio.create_task(_collect(process.stdout, stdout)))
        async with aiohttp.ClientSession(timeout=_HTTP_TIMEOUT) as http:
            async with http.get(issuer + "/.well-known/openid-configuration") as response:
                response.raise_for_status()
                discovery = await response.json()
            yield OidcProvider(issuer, discovery, http, stdout, stderr)
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 5)
            except TimeoutError:
                process.kill()
                await process.wait()
        for reader in readers:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
