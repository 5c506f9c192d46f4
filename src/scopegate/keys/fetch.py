"""Fetching an issuer's keys: OIDC discovery and the JWK Set, over the shared client session.

Parsing is defensive, because a key set is input from the network: keys that are not for
signatures (`use` other than `sig`), that fit none of the issuer's algorithms, or that do not
parse are skipped and the rest kept; a set with no usable key is an error, never an empty cache.
Bodies are capped while they are read. Plain `http` is refused except to loopback addresses.

Usage::

    uri = await discover_jwks_uri(session, issuer.issuer, seconds=5, max_bytes=1 << 20)
    fetched = await fetch_jwks(session, uri, issuer.algorithms, seconds=5, max_bytes=1 << 20)
    fetched.keys[("kid-1", "RS256")]   # a jwt.PyJWK bound to that algorithm
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

# JWK key type and curve each algorithm needs (RFC 7518 §3, RFC 8037).
_FITS: dict[str, tuple[str, str | None]] = {
    **dict.fromkeys(("RS256", "RS384", "RS512", "PS256", "PS384", "PS512"), ("RSA", None)),
    "ES256": ("EC", "P-256"),
    "ES384": ("EC", "P-384"),
    "ES512": ("EC", "P-521"),
    "EdDSA": ("OKP", "Ed25519"),
}
_MAX_AGE = re.compile(r"(?:^|,)\s*max-age\s*=\s*\"?(\d+)\"?\s*(?:,|$)", re.IGNORECASE)

KeyId = tuple[str | None, str]  # (kid, alg)


class KeyFetchError(Exception):
    """A discovery or key set fetch that failed; `reason` says why in a sentence."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"{url}: {reason}")
        self.url = url
        self.reason = reason


@dataclass(frozen=True)
class FetchedKeySet:
    keys: Mapping[KeyId, jwt.PyJWK]
    max_age: float | None  # from Cache-Control, when the provider said

    @property
    def kids(self) -> frozenset[str | None]:
        return frozenset(kid for kid, _ in self.keys)


def is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_url(url: str) -> None:
    scheme = urlsplit(url).scheme
    if scheme == "https" or (scheme == "http" and is_loopback(url)):
        return
    raise KeyFetchError(url, "keys are fetched only over https (plain http only from loopback)")


async def get_json(
    session: aiohttp.ClientSession, url: str, *, seconds: float, max_bytes: int
) -> tuple[Any, str | None]:
    """A JSON document and its Cache-Control header, or `KeyFetchError`."""
    check_url(url)
    try:
        async with (
            asyncio.timeout(seconds),
            session.get(
                url, allow_redirects=False, headers={"Accept": "application/json"}
            ) as response,
        ):
            if response.status != 200:
                raise KeyFetchError(url, f"answered HTTP {response.status}")
            body = bytearray()
            async for chunk in response.content.iter_chunked(65536):
                body.extend(chunk)
                if len(body) > max_bytes:
                    raise KeyFetchError(url, f"answer larger than {max_bytes} bytes")
            cache_control = response.headers.get("Cache-Control")
    except TimeoutError:
        raise KeyFetchError(url, f"no answer within {seconds:g} s") from None
    except aiohttp.ClientError as exc:
        raise KeyFetchError(url, f"could not be fetched ({type(exc).__name__})") from None
    try:
        return json.loads(body), cache_control
    except ValueError:
        raise KeyFetchError(url, "answer is not JSON") from None


def max_age(cache_control: str | None) -> float | None:
    if cache_control is None or "no-store" in cache_control.lower():
        return None
    match = _MAX_AGE.search(cache_control)
    return float(match.group(1)) if match else None


def _fits(jwk: Mapping[str, Any], alg: str) -> bool:
    kty, crv = _FITS[alg]
    if jwk.get("kty") != kty or (crv is not None and jwk.get("crv") != crv):
        return False
    return jwk.get("alg") in (None, alg)


def usable_keys(documents: Iterable[Any], algorithms: Iterable[str]) -> dict[KeyId, jwt.PyJWK]:
    """Signature keys by (kid, alg). For a repeated `kid` the first usable key in document order
    wins, so the choice never depends on anything but the document."""
    keys: dict[KeyId, jwt.PyJWK] = {}
    for jwk in documents:
        if not isinstance(jwk, dict) or jwk.get("use", "sig") != "sig":
            continue
        kid = jwk.get("kid")
        if kid is not None and not isinstance(kid, str):
            continue
        for alg in algorithms:
            if (kid, alg) in keys or alg not in _FITS or not _fits(jwk, alg):
                continue
            try:
                keys[(kid, alg)] = jwt.PyJWK(jwk, algorithm=alg)
            except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError, KeyError):
                continue  # one broken key must not take the good ones with it
    return keys


async def fetch_jwks(
    session: aiohttp.ClientSession,
    url: str,
    algorithms: Iterable[str],
    *,
    seconds: float,
    max_bytes: int,
) -> FetchedKeySet:
    document, cache_control = await get_json(session, url, seconds=seconds, max_bytes=max_bytes)
    entries = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise KeyFetchError(url, 'not a JWK Set (no "keys" array)')
    keys = usable_keys(entries, algorithms)
    if not keys:
        raise KeyFetchError(url, "no usable signing key for the allowed algorithms")
    return FetchedKeySet(keys, max_age(cache_control))


async def discover_jwks_uri(
    session: aiohttp.ClientSession, issuer: str, *, seconds: float, max_bytes: int
) -> str:
    """`jwks_uri` from `{issuer}/.well-known/openid-configuration`, whose `issuer` must match."""
    url = issuer.rstrip("/") + "/.well-known/openid-configuration"
    document, _ = await get_json(session, url, seconds=seconds, max_bytes=max_bytes)
    if not isinstance(document, dict) or document.get("issuer") != issuer:
        raise KeyFetchError(url, "the discovery document names another issuer")
    jwks_uri = document.get("jwks_uri")
    if not isinstance(jwks_uri, str):
        raise KeyFetchError(url, "the discovery document has no jwks_uri")
    check_url(jwks_uri)
    return jwks_uri
