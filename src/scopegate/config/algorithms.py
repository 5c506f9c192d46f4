"""The JWS signing algorithms scopegate can verify, and the key each one needs: the one list that
the configuration's checks, key fetching, token verification and the development keys all read.

Asymmetric signatures only. A shared-secret HMAC (`HS256`) would let anyone holding the public
key forge tokens (the classic RS256 → HS256 confusion), and `none` proves nothing.

Usage::

    "ES256" in KEY_SHAPES                 # whether scopegate can ever verify it
    KEY_SHAPES["ES256"]                   # KeyShape(kty="EC", crv="P-256")
    ", ".join(SIGNING_ALGORITHMS)         # every name, in the order messages list them
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import NamedTuple


class KeyShape(NamedTuple):
    """The JWK key type and curve an algorithm signs with (RFC 7518 §3, RFC 8037)."""

    kty: str
    crv: str | None = None  # None: the key type has no curve (RSA)


_RSA = KeyShape("RSA")

KEY_SHAPES: Mapping[str, KeyShape] = MappingProxyType({
    "RS256": _RSA, "RS384": _RSA, "RS512": _RSA,
    "PS256": _RSA, "PS384": _RSA, "PS512": _RSA,
    "ES256": KeyShape("EC", "P-256"),
    "ES384": KeyShape("EC", "P-384"),
    "ES512": KeyShape("EC", "P-521"),
    "EdDSA": KeyShape("OKP", "Ed25519"),
})  # fmt: skip
SIGNING_ALGORITHMS: tuple[str, ...] = tuple(KEY_SHAPES)
# What an issuer that names no algorithms accepts: the one every OpenID provider must support.
DEFAULT_ALGORITHMS: tuple[str, ...] = ("RS256",)
