"""Signing keys for development: generate or load one, publish its public half as a JWK.

Usage::

    key = generate("ES256")
    jwks(key)            # {"keys": [{"kty": "EC", "kid": ..., "alg": "ES256", "use": "sig", ...}]}
    key.private_pem()    # to hand to `scopegate token --key`
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey

_CURVES: dict[str, ec.EllipticCurve] = {
    "ES256": ec.SECP256R1(),
    "ES384": ec.SECP384R1(),
    "ES512": ec.SECP521R1(),
}


@dataclass(frozen=True)
class SigningKey:
    kid: str
    alg: str
    private_key: PrivateKey

    def public_jwk(self) -> dict[str, Any]:
        public = self.private_key.public_key()
        if isinstance(public, rsa.RSAPublicKey):
            jwk = json.loads(RSAAlgorithm.to_jwk(public))
        elif isinstance(public, ec.EllipticCurvePublicKey):
            jwk = json.loads(ECAlgorithm.to_jwk(public))
        else:
            jwk = json.loads(OKPAlgorithm.to_jwk(public))
        return {**jwk, "kid": self.kid, "alg": self.alg, "use": "sig"}

    def private_pem(self) -> bytes:
        return self.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )


def _new_private_key(alg: str) -> PrivateKey:
    if alg[:2] in ("RS", "PS"):
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if alg in _CURVES:
        return ec.generate_private_key(_CURVES[alg])
    if alg == "EdDSA":
        return ed25519.Ed25519PrivateKey.generate()
    raise ValueError(f"no key type for algorithm {alg!r}")


def generate(alg: str = "RS256", kid: str | None = None) -> SigningKey:
    """A fresh key for `alg` with a random `kid` unless one is given."""
    return SigningKey(kid or secrets.token_hex(8), alg, _new_private_key(alg))


def _default_alg(private_key: PrivateKey) -> str:
    if isinstance(private_key, rsa.RSAPrivateKey):
        return "RS256"
    if isinstance(private_key, ec.EllipticCurvePrivateKey):
        sizes = {256: "ES256", 384: "ES384", 521: "ES512"}
        return sizes[private_key.curve.key_size]
    return "EdDSA"


def load_pem(path: Path | str, kid: str | None = None, alg: str | None = None) -> SigningKey:
    """A private key from a PEM file; `kid` defaults to the key's RFC 7638 thumbprint."""
    loaded = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    if not isinstance(
        loaded, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
    ):
        raise ValueError(f"{path}: not an RSA, EC or Ed25519 private key")
    chosen_alg = alg or _default_alg(loaded)
    key = SigningKey(kid or "", chosen_alg, loaded)
    return key if kid else SigningKey(thumbprint(key.public_jwk()), chosen_alg, loaded)


def thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638 JWK thumbprint (SHA-256, base64url)."""
    import base64
    import hashlib

    required = {
        "RSA": ("e", "kty", "n"),
        "EC": ("crv", "kty", "x", "y"),
        "OKP": ("crv", "kty", "x"),
    }
    members = {name: jwk[name] for name in required[jwk["kty"]]}
    digest = hashlib.sha256(json.dumps(members, separators=(",", ":"), sort_keys=True).encode())
    return base64.urlsafe_b64encode(digest.digest()).rstrip(b"=").decode()


def jwks(*keys: SigningKey) -> dict[str, Any]:
    """A JWK Set document publishing the public halves of `keys`."""
    return {"keys": [key.public_jwk() for key in keys]}
