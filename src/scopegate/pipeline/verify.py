"""Step 3b of SPEC §3: a bearer token → the `Principal` it proves, or a `Denied` naming the check.

The checks, in order, each its own reason:

1. syntax — a compact JWS of three base64url parts whose header and claims are JSON objects
   without duplicate member names, claims of RFC 7519 types; no `crit` (no extension is
   understood)                                                          → `malformed_token`
2. `alg` — never `none` or `HS*`, and on the issuer's allow-list          → `disallowed_alg`
3. `iss` — exactly a configured issuer; only that issuer's keys are used → `invalid_issuer`
4. `typ` — when the issuer sets `token_type` (RFC 9068 `at+jwt`)         → `invalid_token_type`
5. key — by `kid` from the issuer's JWKS, never from `jku`/`x5u`/`jwk`/`x5c` headers
                                              → `unknown_key` (or `issuer_unavailable`, 503)
6. signature, `exp`/`nbf`/`iat` with leeway, audience, required claims, by PyJWT's `decode`
   → `bad_signature`, `expired_token`, `not_yet_valid`, `invalid_audience`, `missing_claim`

Usage::

    verifier = TokenVerifier(config.issuers, {issuer: store, ...})
    principal = await verifier.verify(token, audience=route.audience)
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import jwt

from scopegate.config.model import Issuer
from scopegate.pipeline import Principal
from scopegate.pipeline.scopes import granted_scopes
from scopegate.pipeline.token_cache import VerifiedTokens
from scopegate.reasons import Denied, Reason

# What the gateway can ever verify: asymmetric signatures only. A shared-secret HMAC would let
# anyone holding the public key forge tokens (the classic RS256 → HS256 confusion).
ASYMMETRIC_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)

DEFAULT_CACHE_SIZE = 10_000
_B64URL = re.compile(r"[A-Za-z0-9_-]*")
_TIME_CLAIMS = ("exp", "nbf", "iat")


class KeySource(Protocol):
    """Where an issuer's verification keys come from (`keys.store.JwksStore` in the gateway).

    `generation` changes whenever the key set may have changed; tokens verified under an older
    generation are verified again."""

    @property
    def generation(self) -> int: ...

    async def key_for(self, kid: str | None, alg: str) -> jwt.PyJWK: ...


def _malformed(detail: str) -> Denied:
    return Denied(Reason.MALFORMED_TOKEN, detail)


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    members: dict[str, Any] = {}
    for name, value in pairs:
        if name in members:
            raise _malformed(f"duplicate member name {name!r}")
        members[name] = value
    return members


def _reject_constant(name: str) -> Any:
    raise _malformed(f"{name} is not a JSON number")


def _json_object(part: str, what: str) -> dict[str, Any]:
    if not _B64URL.fullmatch(part):
        raise _malformed(f"the {what} is not base64url")
    try:
        raw = base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
        value = json.loads(
            raw, object_pairs_hook=_reject_duplicates, parse_constant=_reject_constant
        )
    except (binascii.Error, ValueError, RecursionError):
        raise _malformed(f"the {what} is not valid JSON") from None
    if not isinstance(value, dict):
        raise _malformed(f"the {what} is not a JSON object")
    return value


def parse_unverified(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The header and claims of a compact JWS, checked for shape only (nothing is trusted yet)."""
    parts = token.split(".")
    if len(parts) == 5:
        raise _malformed("encrypted tokens (JWE) are not accepted")
    if len(parts) != 3:
        raise _malformed("not a JWT: expected three dot-separated parts")
    if not _B64URL.fullmatch(parts[2]):
        raise _malformed("the signature is not base64url")
    return _json_object(parts[0], "header"), _json_object(parts[1], "claims")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def check_claim_types(claims: Mapping[str, Any]) -> None:
    """RFC 7519 §4.1 types: NumericDate numbers, `aud` a string or strings, `iss`/`sub` strings."""
    for name in _TIME_CLAIMS:
        if name in claims and not _is_number(claims[name]):
            raise _malformed(f"the {name} claim is not a number")
    for name in ("iss", "sub"):
        if name in claims and not isinstance(claims[name], str):
            raise _malformed(f"the {name} claim is not a string")
    aud = claims.get("aud")
    if aud is not None and not (
        isinstance(aud, str) or (isinstance(aud, list) and all(isinstance(a, str) for a in aud))
    ):
        raise _malformed("the aud claim is neither a string nor an array of strings")


def _media_type(value: str) -> str:
    lowered = value.lower()
    return lowered.removeprefix("application/")


_PYJWT_REASONS: tuple[tuple[type[Exception], Reason], ...] = (
    (jwt.ExpiredSignatureError, Reason.EXPIRED_TOKEN),
    (jwt.ImmatureSignatureError, Reason.NOT_YET_VALID),
    (jwt.InvalidAudienceError, Reason.INVALID_AUDIENCE),
    (jwt.MissingRequiredClaimError, Reason.MISSING_CLAIM),
    (jwt.InvalidIssuerError, Reason.INVALID_ISSUER),
    (jwt.InvalidSignatureError, Reason.BAD_SIGNATURE),
    (jwt.InvalidAlgorithmError, Reason.DISALLOWED_ALG),
)


def _denial_for(error: jwt.PyJWTError) -> Denied:
    for kind, reason in _PYJWT_REASONS:
        if isinstance(error, kind):
            if isinstance(error, jwt.MissingRequiredClaimError):
                return Denied(reason, f"the token has no {error.claim} claim")
            return Denied(reason, _DETAILS[reason])
    return _malformed("the token could not be decoded")


_DETAILS = {
    Reason.EXPIRED_TOKEN: "the token has expired",
    Reason.NOT_YET_VALID: "the token is not valid yet",
    Reason.INVALID_AUDIENCE: "the token is not meant for this API (audience)",
    Reason.INVALID_ISSUER: "the token's issuer is not trusted",
    Reason.BAD_SIGNATURE: "the token's signature does not verify",
    Reason.DISALLOWED_ALG: "the token's algorithm does not match its key",
}


class TokenVerifier:
    """Verifies tokens of the configured issuers, each with its own key source."""

    def __init__(
        self,
        issuers: Sequence[Issuer],
        key_sources: Mapping[str, KeySource],
        *,
        cache_size: int = DEFAULT_CACHE_SIZE,
    ) -> None:
        self._issuers = {issuer.issuer: issuer for issuer in issuers}
        self._key_sources = dict(key_sources)
        self._decoder = jwt.PyJWT()
        self._verified = VerifiedTokens(cache_size)

    def _issuer_of(self, claims: Mapping[str, Any]) -> Issuer:
        iss = claims.get("iss")
        issuer = self._issuers.get(iss) if isinstance(iss, str) else None
        if issuer is None:
            raise Denied(Reason.INVALID_ISSUER, "the token's issuer is not trusted")
        return issuer

    @staticmethod
    def _algorithm(header: Mapping[str, Any], issuer: Issuer) -> str:
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in ASYMMETRIC_ALGORITHMS:
            raise Denied(Reason.DISALLOWED_ALG, "the token's algorithm is never accepted")
        if alg not in issuer.algorithms:
            raise Denied(Reason.DISALLOWED_ALG, f"{alg} is not allowed for this issuer")
        return alg

    @staticmethod
    def _check_type(header: Mapping[str, Any], issuer: Issuer) -> None:
        if issuer.token_type is None:
            return
        typ = header.get("typ")
        if not isinstance(typ, str) or _media_type(typ) != _media_type(issuer.token_type):
            raise Denied(Reason.INVALID_TOKEN_TYPE, f"the token's typ is not {issuer.token_type}")

    async def verify(self, token: str, *, audience: str | None = None) -> Principal:
        """The principal a token proves; a token verified before, still unexpired and under the
        same key set, is answered from the cache without parsing or verifying it again."""
        cached = self._verified.get(token, audience, generation=self._generation_of_token(token))
        if cached is not None:
            return cached
        principal, generation = await self._verify(token, audience)
        self._verified.put(token, audience, principal, generation=generation)
        return principal

    def _generation_of_token(self, token: str) -> int:
        # The issuer is unknown until the token is parsed; the sum of every source's generation
        # moves whenever any of them does, which is all a cache hit needs to know.
        return sum(source.generation for source in self._key_sources.values())

    async def _verify(self, token: str, audience: str | None) -> tuple[Principal, int]:
        generation = self._generation_of_token(token)
        header, claims = parse_unverified(token)
        if "crit" in header:
            raise _malformed("the token has critical header extensions this gateway does not know")
        check_claim_types(claims)
        issuer = self._issuer_of(claims)
        alg = self._algorithm(header, issuer)
        self._check_type(header, issuer)
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise _malformed("the kid header is not a string")
        key = await self._key_sources[issuer.issuer].key_for(kid, alg)
        audiences = [audience] if audience is not None else list(issuer.audiences)
        try:
            verified = self._decoder.decode(
                token,
                key,
                algorithms=[alg],
                audience=audiences or None,
                issuer=issuer.issuer,
                leeway=issuer.leeway,
                options={"require": list(issuer.required_claims), "verify_aud": bool(audiences)},
            )
        except jwt.PyJWTError as error:
            raise _denial_for(error) from None
        principal = Principal(
            verified, granted_scopes(verified, issuer.scope_claims), issuer.issuer
        )
        return principal, generation
