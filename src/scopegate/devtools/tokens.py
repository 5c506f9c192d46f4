"""Minting signed JWT access tokens for development and tests.

Usage::

    token = mint(key, issuer="https://id.example.com/", audience="https://api.example.com",
                 scopes=("read:contacts",), lifetime=300)
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
    issued = int(time.time()) if now is None else now
    claims: dict[str, Any] = {
        "iss": issuer,
        "sub": subject,
        "aud": audience if isinstance(audience, str) else list(audience),
        "iat": issued,
        "exp": issued + lifetime,
    }
    if scopes is not None:
        claims[scope_claim] = " ".join(scopes)
    for name, value in (extra_claims or {}).items():
        if value is None:
            claims.pop(name, None)
        else:
            claims[name] = value
    header = {"kid": key.kid, **(headers or {})}
    # None drops a member; PyJWT itself drops `typ` (its default "JWT") only when given None.
    header = {name: value for name, value in header.items() if value is not None or name == "typ"}
    return jwt.encode(claims, key.private_key, algorithm=key.alg, headers=header)
