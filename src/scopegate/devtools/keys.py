"""Signing keys for development: generate or load one, publish its public half as a JWK.

Usage::

    key = generate("ES256")
    jwks(key)            # {"keys": [{"kty": "EC", "kid": ..., "alg": "ES256", "use": "sig", ...}]}
    key.private_pem()    # to hand to `scopegate token --key`
    load_pem("dev.pem")  # the same key again; its kid is the RFC 7638 thumbprint
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from scopegate.config.algorithms import KEY_SHAPES, KeyShape

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey

# The curves a JWK names (`crv`), as `cryptography` knows them.
_EC_CURVES: dict[str, type[ec.EllipticCurve]] = {
    "P-256": ec.SECP256R1,
    "P-384": ec.SECP384R1,
    "P-521": ec.SECP521R1,
}
# Members RFC 7638 §3.2 hashes, per key type.
_THUMBPRINT_MEMBERS = {
    "RSA": ("e", "kty", "n"),
    "EC": ("crv", "kty", "x", "y"),
    "OKP": ("crv", "kty", "x"),
}


@dataclass(frozen=True)
class SigningKey:
    """A private key, the algorithm it signs with, and the `kid` its tokens carry."""

    kid: str
    alg: str
    private_key: PrivateKey

    def public_jwk(self) -> dict[str, Any]:
        public = self.private_key.public_key()
        if isinstance(public, rsa.RSAPublicKey):
            jwk = RSAAlgorithm.to_jwk(public, as_dict=True)
        elif isinstance(public, ec.EllipticCurvePublicKey):
            jwk = ECAlgorithm.to_jwk(public, as_dict=True)
        else:
            jwk = OKPAlgorithm.to_jwk(public, as_dict=True)
        return {**jwk, "kid": self.kid, "alg": self.alg, "use": "sig"}

    def private_pem(self) -> bytes:
        return self.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )


def _shape_of(private_key: PrivateKey) -> KeyShape:
    """The JWK key type and curve of `private_key`, as `KEY_SHAPES` writes them."""
    if isinstance(private_key, rsa.RSAPrivateKey):
        return KeyShape("RSA")
    if isinstance(private_key, ec.EllipticCurvePrivateKey):
        curve = private_key.curve
        known = (crv for crv, kind in _EC_CURVES.items() if isinstance(curve, kind))
        return KeyShape("EC", next(known, curve.name))  # another curve fits no algorithm
    return KeyShape("OKP", "Ed25519")


def _fits(private_key: PrivateKey, alg: str) -> bool:
    return KEY_SHAPES.get(alg) == _shape_of(private_key)


def _new_private_key(alg: str) -> PrivateKey:
    shape = KEY_SHAPES.get(alg)
    if shape is None:
        raise ValueError(f"no asymmetric key type for algorithm {alg!r}")
    if shape.kty == "RSA":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if shape.kty == "EC" and shape.crv is not None:
        return ec.generate_private_key(_EC_CURVES[shape.crv]())
    return ed25519.Ed25519PrivateKey.generate()


def generate(alg: str = "RS256", kid: str | None = None) -> SigningKey:
    """A fresh key for `alg` with a random `kid` unless one is given."""
    return SigningKey(kid or secrets.token_hex(8), alg, _new_private_key(alg))


def _default_alg(private_key: PrivateKey) -> str:
    """The first algorithm of `KEY_SHAPES` that signs with this kind of key: RS256 for RSA,
    ES256/384/512 by curve, EdDSA for Ed25519."""
    shape = _shape_of(private_key)
    for alg, needed in KEY_SHAPES.items():
        if needed == shape:
            return alg
    raise ValueError(f"no JWS algorithm for the {shape.crv} curve")


def load_pem(path: Path | str, kid: str | None = None, alg: str | None = None) -> SigningKey:
    """An unencrypted PKCS#8 or traditional PEM private key. `alg` defaults to the key type's
    usual one (RS256, ES256/384/512 by curve, EdDSA); `kid` to the RFC 7638 thumbprint."""
    loaded = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    if not isinstance(
        loaded, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
    ):
        raise ValueError(f"{path}: not an RSA, EC or Ed25519 private key")
    chosen = alg or _default_alg(loaded)
    if not _fits(loaded, chosen):
        raise ValueError(f"{path}: this key cannot sign {chosen}")
    key = SigningKey(kid or "", chosen, loaded)
    return key if kid else SigningKey(thumbprint(key.public_jwk()), chosen, loaded)


def thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638 JWK thumbprint (SHA-256, base64url)."""
    members = {name: jwk[name] for name in _THUMBPRINT_MEMBERS[jwk["kty"]]}
    canonical = json.dumps(members, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(hashlib.sha256(canonical).digest()).rstrip(b"=").decode()


def jwks(*keys: SigningKey) -> dict[str, Any]:
    """A JWK Set document publishing the public halves of `keys`."""
    return {"keys": [key.public_jwk() for key in keys]}
