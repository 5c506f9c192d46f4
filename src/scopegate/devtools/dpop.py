"""DPoP proofs (RFC 9449 §4.2) for the demo and the tests: what a client signs and sends in the
`DPoP` header with each request, and the `cnf.jkt` a token bound to its key carries.

Usage::

    key = generate("ES256")
    token = mint(issuer_key, ..., extra_claims={"cnf": confirmation(key)})
    proof = make_proof(key, "GET", "https://api.example.com/contacts", access_token=token)
"""

from __future__ import annotations

import secrets
import time
from typing import Any

import jwt

from scopegate.devtools.keys import SigningKey
from scopegate.pipeline.dpop import access_token_hash, thumbprint

PROOF_TYPE = "dpop+jwt"
_PUBLIC_MEMBERS = ("kty", "crv", "x", "y", "n", "e")


def proof_jwk(key: SigningKey) -> dict[str, Any]:
    """The public key a proof carries in its `jwk` header: key members only (no `kid`, `alg`
    or `use`), as RFC 9449 §4.2 shows it."""
    public = key.public_jwk()
    return {name: public[name] for name in _PUBLIC_MEMBERS if name in public}


def confirmation(key: SigningKey) -> dict[str, str]:
    """The `cnf` claim of a token bound to `key` (RFC 9449 §6.1)."""
    return {"jkt": thumbprint(proof_jwk(key))}


def make_proof(
    key: SigningKey,
    method: str,
    url: str,
    *,
    access_token: str | None = None,
    nonce: str | None = None,
    iat: float | None = None,
    jti: str | None = None,
) -> str:
    """A proof for one request: `htm` the method, `htu` the URL without query and fragment,
    a fresh `jti`, `iat` now; `ath` when it goes with an access token, `nonce` when the server
    asked for one."""
    claims: dict[str, Any] = {
        "htm": method,
        "htu": url.split("#", 1)[0].split("?", 1)[0],
        "iat": int(time.time() if iat is None else iat),
        "jti": jti or secrets.token_urlsafe(16),
    }
    if access_token is not None:
        claims["ath"] = access_token_hash(access_token)
    if nonce is not None:
        claims["nonce"] = nonce
    headers = {"typ": PROOF_TYPE, "jwk": proof_jwk(key)}
    return jwt.encode(claims, key.private_key, algorithm=key.alg, headers=headers)
