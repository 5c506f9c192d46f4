"""Minting signed JWT access tokens for development and tests, and the claims of any token.

Usage::

    token = mint(key, issuer="https://id.example.com/", audience="https://api.example.com",
                 scopes=("read:contacts",), lifetime=300)
    claims = token_claims(issuer=..., audience=..., extra_claims=step_up("mfa", 1700000000))
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import jwt

from scopegate.devtools.keys import SigningKey


def mint(
    key: SigningKey,
    *,
    issuer: str,
    audience: str | Sequence[str],
    subject: str = "user-1",
    scopes: Sequence[str] | None = ("read:contacts",),
    lifetime: int = 300,
    now: int | None = None,
    extra_claims: Mapping[str, Any] | None = None,
    headers: Mapping[str, Any] | None = None,
    scope_claim: str = "scope",
) -> str:
    """A token signed by `key`; `scopes` go space-separated into `scope_claim` (None: no claim).

    `extra_claims` are applied last, so they can replace or (with value None) drop any claim;
    `headers` likewise over `{"kid": key.kid}` and PyJWT's `{"typ": "JWT"}`.
    """
    claims = token_claims(
        issuer=issuer,
        audience=audience,
        subject=subject,
        scopes=scopes,
        lifetime=lifetime,
        now=now,
        extra_claims=extra_claims,
        scope_claim=scope_claim,
    )
    return jwt.encode(claims, key.private_key, algorithm=key.alg, headers=_header(key, headers))


def token_claims(
    *,
    issuer: str,
    audience: str | Sequence[str],
    subject: str = "user-1",
    scopes: Sequence[str] | None = ("read:contacts",),
    lifetime: int = 300,
    now: int | None = None,
    extra_claims: Mapping[str, Any] | None = None,
    scope_claim: str = "scope",
) -> dict[str, Any]:
    """The claims `mint` signs, as a mapping: what an opaque token stands for as well."""
    issued = int(time.time()) if now is None else now
    claims = _registered_claims(issuer, subject, audience, issued, lifetime)
    if scopes is not None:
        claims[scope_claim] = " ".join(scopes)
    _apply_overrides(claims, extra_claims)
    return claims


def step_up(acr: str | None = None, auth_time: int | None = None) -> dict[str, Any]:
    """The RFC 9470 claims a route's `acr_values` and `max_age` are checked against: `acr`, how
    the user signed in, and `auth_time`, when (seconds since the epoch). Each only when given."""
    claims: dict[str, Any] = {}
    if acr is not None:
        claims["acr"] = acr
    if auth_time is not None:
        claims["auth_time"] = auth_time
    return claims


def _registered_claims(
    issuer: str, subject: str, audience: str | Sequence[str], issued: int, lifetime: int
) -> dict[str, Any]:
    return {
        "iss": issuer,
        "sub": subject,
        "aud": audience if isinstance(audience, str) else list(audience),
        "iat": issued,
        "exp": issued + lifetime,
    }


def _apply_overrides(claims: dict[str, Any], overrides: Mapping[str, Any] | None) -> None:
    """A value replaces (or adds) a claim; None drops it."""
    for name, value in (overrides or {}).items():
        if value is None:
            claims.pop(name, None)
        else:
            claims[name] = value


def _header(key: SigningKey, overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    """The JWS header: the key's `kid`, then `overrides`."""
    header = {"kid": key.kid, **(overrides or {})}
    # None drops a member; PyJWT itself drops `typ` (its default "JWT") only when given None.
    return {name: value for name, value in header.items() if value is not None or name == "typ"}
