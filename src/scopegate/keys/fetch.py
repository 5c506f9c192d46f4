"""Fetching an issuer's keys: OIDC discovery and the JWK Set, over the shared client session.

Parsing is defensive, because a key set is input from the network. A key is skipped (the rest
are kept) when it is not for signatures (`use` other than `sig`, `key_ops` without `verify`),
carries private members, fits none of the issuer's algorithms (`kty`, `crv`, `alg`), is shorter
than PyJWT's minimum (RSA under 2048 bits) or does not parse. A set with no usable key is an
error, never an empty cache. Bodies are capped while they are read, redirects are not followed,
and plain `http` is refused except to loopback addresses.

Which key a token gets:

- a token with a `kid` gets the key with that `kid` fitted to its `alg`; when a `kid` repeats,
  the first usable key in document order wins, so the choice depends on the document alone;
- a token without a `kid` gets a key only when the set holds exactly one usable key for its
  `alg` (with or without a `kid`); anything else would mean guessing.

Usage::

    uri = await discover_jwks_uri(session, issuer.issuer, seconds=5, max_bytes=1 << 20)
    fetched = await fetch_jwks(session, uri, issuer.algorithms, seconds=5, max_bytes=1 << 20)
    fetched.by_id[("kid-1", "RS256")]   # a jwt.PyJWK bound to that algorithm
    fetched.sole.get("RS256")           # the key a kid-less RS256 token may use, if any
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import jwt

from scopegate.config.algorithms import KEY_SHAPES
from scopegate.errors import KeyFetchError

# Members only a private (or symmetric) JWK has; a provider publishing them is misconfigured.
_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
_MAX_AGE = re.compile(r"(?:^|,)\s*max-age\s*=\s*\"?(\d+)\"?\s*(?:,|$)", re.IGNORECASE)
_CHUNK = 65536

KeyId = tuple[str, str]  # (kid, alg)


@dataclass(frozen=True, slots=True)
class FetchedKeySet:
    """The usable keys of one JWK Set document, each bound to one algorithm."""

    by_id: Mapping[KeyId, jwt.PyJWK]
    sole: Mapping[str, jwt.PyJWK]  # alg -> the only usable key for it (for kid-less tokens)
    count: int  # usable JWKs in the document
    max_age: float | None = None  # from Cache-Control, when the provider said

    @property
    def kids(self) -> frozenset[str]:
        return frozenset(kid for kid, _ in self.by_id)


def new_session() -> aiohttp.ClientSession:
    """The client session for key and discovery fetches: no cookie jar, nothing decompressed
    (the size cap counts the bytes that arrive)."""
    return aiohttp.ClientSession(
        cookie_jar=aiohttp.DummyCookieJar(),
        auto_decompress=False,
        timeout=aiohttp.ClientTimeout(total=None),
    )


def is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_url(url: str) -> None:
    """Refuse anything but https, and plain http to a loopback address (local development)."""
    scheme = urlsplit(url).scheme
    if scheme == "https" or (scheme == "http" and is_loopback(url)):
        return
    raise KeyFetchError(
        url, "an identity provider is called only over https (plain http only on loopback)"
    )


async def read_capped(response: aiohttp.ClientResponse, url: str, max_bytes: int) -> bytes:
    if response.content_length is not None and response.content_length > max_bytes:
        raise KeyFetchError(url, f"answer larger than {max_bytes} bytes")
    body = bytearray()
    async for chunk in response.content.iter_chunked(_CHUNK):
        body.extend(chunk)
        if len(body) > max_bytes:  # counted after decompression: a gzip bomb stops here too
            raise KeyFetchError(url, f"answer larger than {max_bytes} bytes")
    return bytes(body)


async def get_json(
    session: aiohttp.ClientSession, url: str, *, seconds: float, max_bytes: int
) -> tuple[Any, str | None]:
    """A JSON document and its Cache-Control header, or `KeyFetchError`."""
    check_url(url)
    headers = {"Accept": "application/json"}
    try:
        async with (
            asyncio.timeout(seconds),
            session.get(url, allow_redirects=False, headers=headers) as response,
        ):
            if response.status != 200:
                raise KeyFetchError(url, f"answered HTTP {response.status} (expected 200)")
            body = await read_capped(response, url, max_bytes)
            cache_control = response.headers.get("Cache-Control")
    except TimeoutError:
        raise KeyFetchError(url, f"no answer within {seconds:g} s") from None
    except (aiohttp.ClientError, OSError) as exc:
        raise KeyFetchError(url, f"could not be fetched ({type(exc).__name__})") from None
    try:
        return json.loads(body.decode("utf-8")), cache_control
    except (ValueError, RecursionError):
        raise KeyFetchError(url, "answer is not JSON") from None


def max_age(cache_control: str | None) -> float | None:
    if cache_control is None or "no-store" in cache_control.lower():
        return None
    match = _MAX_AGE.search(cache_control)
    return float(match.group(1)) if match else None


def _for_signatures(jwk: Mapping[str, Any]) -> bool:
    key_ops = jwk.get("key_ops")
    if key_ops is not None and (not isinstance(key_ops, list) or "verify" not in key_ops):
        return False
    return jwk.get("use", "sig") == "sig" and not _PRIVATE_MEMBERS & jwk.keys()


def _fits(jwk: Mapping[str, Any], alg: str) -> bool:
    kty, crv = KEY_SHAPES[alg]
    if jwk.get("kty") != kty or (crv is not None and jwk.get("crv") != crv):
        return False
    return jwk.get("alg") in (None, alg)


def _bind(jwk: Mapping[str, Any], alg: str) -> jwt.PyJWK | None:
    try:
        key = jwt.PyJWK(dict(jwk), algorithm=alg)
    except (jwt.PyJWTError, ValueError, TypeError, KeyError):
        return None  # one broken key must not take the good ones with it
    # PyJWT would warn on every verification with a short key; refuse it once, here.
    return None if key.Algorithm.check_key_length(key.key) else key


def bind_keys(jwk: Any, algorithms: Iterable[str]) -> dict[str, jwt.PyJWK]:
    """One JWK bound to each allowed algorithm it fits; empty when it is unusable."""
    if not isinstance(jwk, dict) or not _for_signatures(jwk):
        return {}
    if "kid" in jwk and not isinstance(jwk["kid"], str):
        return {}
    bound = {alg: _bind(jwk, alg) for alg in algorithms if alg in KEY_SHAPES and _fits(jwk, alg)}
    return {alg: key for alg, key in bound.items() if key is not None}


def parse_key_set(entries: list[Any], algorithms: Iterable[str]) -> FetchedKeySet:
    allowed = tuple(algorithms)
    by_id: dict[KeyId, jwt.PyJWK] = {}
    per_alg: dict[str, list[jwt.PyJWK]] = {}
    count = 0
    for jwk in entries:
        bound = bind_keys(jwk, allowed)
        count += bool(bound)
        for alg, key in bound.items():
            per_alg.setdefault(alg, []).append(key)
            if "kid" in jwk:
                by_id.setdefault((jwk["kid"], alg), key)  # first in the document wins
    sole = {alg: keys[0] for alg, keys in per_alg.items() if len(keys) == 1}
    return FetchedKeySet(by_id, sole, count)


async def fetch_jwks(
    session: aiohttp.ClientSession,
    url: str,
    algorithms: Iterable[str],
    *,
    seconds: float,
    max_bytes: int,
) -> FetchedKeySet:
    """The usable keys at `url` for `algorithms`, or `KeyFetchError` (never an empty set)."""
    document, cache_control = await get_json(session, url, seconds=seconds, max_bytes=max_bytes)
    entries = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise KeyFetchError(url, 'not a JWK Set (no "keys" array)')
    parsed = parse_key_set(entries, algorithms)
    if not parsed.count:
        raise KeyFetchError(
            url, f"no usable signing key for the allowed algorithms among {len(entries)}"
        )
    return FetchedKeySet(parsed.by_id, parsed.sole, parsed.count, max_age(cache_control))


async def discover_jwks_uri(
    session: aiohttp.ClientSession, issuer: str, *, seconds: float, max_bytes: int
) -> str:
    """`jwks_uri` from `{issuer}/.well-known/openid-configuration`, whose `issuer` must match."""
    return await discover(session, issuer, "jwks_uri", seconds=seconds, max_bytes=max_bytes)


async def discover(
    session: aiohttp.ClientSession, issuer: str, member: str, *, seconds: float, max_bytes: int
) -> str:
    """The URL `member` names in `{issuer}/.well-known/openid-configuration` (`jwks_uri`,
    `introspection_endpoint`), whose `issuer` must match."""
    url = issuer.rstrip("/") + "/.well-known/openid-configuration"
    document, _ = await get_json(session, url, seconds=seconds, max_bytes=max_bytes)
    if not isinstance(document, dict):
        raise KeyFetchError(url, "the discovery document is not a JSON object")
    if document.get("issuer") != issuer:
        raise KeyFetchError(url, "the discovery document names another issuer")
    found = document.get(member)
    if not isinstance(found, str):
        raise KeyFetchError(url, f"the discovery document has no {member}")
    check_url(found)
    return found
