"""Step 3b of SPEC §3: a bearer token → the `Principal` it proves, or a `Denied` naming the check.

The checks, in order (when several fail, the first one names the denial):

1. syntax — a compact JWS of three canonical base64url parts (RFC 4648 §3.5) whose header
   and claims are UTF-8 JSON objects without duplicate member names     → `malformed_token`
2. `alg` — never `none`, `HS*` or anything but the asymmetric JWS set   → `disallowed_alg`
3. `crit` — no extension is understood (RFC 7515 §4.1.11)               → `malformed_token`
4. `iss` — a string naming a configured issuer; only its keys are used  → `invalid_issuer`
5. `alg` — on that issuer's allow-list                                  → `disallowed_alg`
6. claim types (RFC 7519): finite NumericDates, `aud` a string or
   strings, `sub` a string; `kid` a string                              → `malformed_token`
7. `typ` — when the issuer sets `token_type` (RFC 9068 `at+jwt`)         → `invalid_token_type`
8. key — by `kid` from the issuer's JWKS, never from `jku`/`x5u`/`jwk`/`x5c` headers
                                              → `unknown_key` (or `issuer_unavailable`, 503)
9. signature, by PyJWT's algorithm for the key (the key fixes the algorithm)
                                                  → `bad_signature` (`disallowed_alg`)
10. required claims, `iat`/`nbf`/`exp` with leeway, audience, in PyJWT's order
   → `missing_claim`, `not_yet_valid`, `expired_token`, `invalid_audience`

The header and claims are parsed once, by our own strict parser; PyJWT's `decode` would parse
them again and check each base64 character in Python, which was most of what verifying a new
token cost.

Every part must be canonical base64url: a text of length 4n + 1 encodes no whole byte, and the
bits the last character carries beyond the last byte must be zero. Otherwise one signed token
would have many spellings, each accepted, each its own entry in the verified-token cache. A
warm token skips parsing altogether, which is sound because the cache is keyed by the exact
token text: a spelling is remembered only once it has passed these checks itself.

Usage::

    verifier = TokenVerifier(config.issuers, {issuer: store, ...})
    principal = await verifier.verify(token, audience=route.audience)
"""

from __future__ import annotations

import binascii
import json
import math
import string
import sys
import time
from collections.abc import Callable, Collection, Hashable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol, TypeVar

import jwt

from scopegate.config.algorithms import KEY_SHAPES
from scopegate.config.model import UNKNOWN_SOURCE, Issuer
from scopegate.keys.claim_types import is_numeric_date
from scopegate.keys.token_cache import VerifiedTokens, cache_key
from scopegate.pipeline import KeptClaims, Principal
from scopegate.pipeline.scopes import granted_scopes
from scopegate.reasons import Denied, Reason

DEFAULT_CACHE_SIZE = 10_000
_MAX_SHARED_VALUES = 10_000
_Shareable = TypeVar("_Shareable", bound=Hashable)
_B64URL_ALPHABET = (string.ascii_letters + string.digits + "-_").encode("ascii")
# By a base64url text's length mod 4, the characters it may end with (RFC 4648 §3.5): none
# after a lone character, which holds no whole byte; after two or three, those whose last 4 or 2
# bits, which fall beyond the last byte, are zero. A multiple of four has no such bits.
_CANONICAL_ENDINGS = ("", "", "AQgw", "AEIMQUYcgkosw048")
_TIME_CLAIMS = ("exp", "nbf", "iat")


class KeySource(Protocol):
    """Where an issuer's verification keys come from (`keys.store.JwksStore` in the gateway).

    `generation` changes whenever the key set may have changed; tokens verified under an older
    generation are verified again. `usable_for` is how many more seconds the current key set may
    verify tokens (`jwks.max_stale`); a cached verdict is never used past it."""

    @property
    def generation(self) -> int: ...

    @property
    def usable_for(self) -> float: ...

    async def key_for(self, kid: str | None, alg: str) -> jwt.PyJWK: ...


class Introspects(Protocol):
    """Where an issuer's tokens are introspected (`keys.introspection.Introspector`): the
    members of the issuer's answer for an active token, or a `Denied` (`inactive_token`,
    `issuer_unavailable`). `digest` is the token's cache key, so that nothing keeps the token."""

    async def active_claims(self, token: str, digest: bytes) -> dict[str, Any]: ...


def _malformed(detail: str) -> Denied:
    return Denied(Reason.MALFORMED_TOKEN, detail)


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    members: dict[str, Any] = {}
    for name, value in pairs:
        if name in members:
            raise _malformed(f"duplicate member name {name!r}")
        # Interned: every cached token's claims then share one "iss", "exp", ... (interned
        # strings are freed with their last use, so hostile names do not accumulate).
        members[sys.intern(name)] = value
    return members


def _reject_constant(name: str) -> Any:
    raise _malformed(f"{name} is not a JSON number")


_JSON = json.JSONDecoder(object_pairs_hook=_reject_duplicates, parse_constant=_reject_constant)
_FROM_URLSAFE = bytes.maketrans(b"-_", b"+/")


def is_b64url(part: str) -> bool:
    """Whether `part` is written in the base64url alphabet only (RFC 4648 §5, no padding): what
    `[A-Za-z0-9_-]*` fully matches, checked in C by deleting the alphabet (`bytes.translate`)."""
    return part.isascii() and not part.encode("ascii").translate(None, _B64URL_ALPHABET)


def is_canonical_b64url(part: str) -> bool:
    """Whether `part`, which `is_b64url` accepted, is the only spelling of the bytes it encodes:
    its length is not 4n + 1 and its last character sets no bit beyond the last byte."""
    tail = len(part) % 4
    return not tail or part[-1] in _CANONICAL_ENDINGS[tail]


def _check_b64url(part: str, what: str) -> None:
    if not is_b64url(part):
        raise _malformed(f"the {what} is not base64url")
    if not is_canonical_b64url(part):
        raise _malformed(f"the {what} is not canonical base64url")


def b64url_decode(part: str) -> bytes:
    """Unpadded base64url (RFC 7515 §2) that `is_b64url` has already accepted; raises
    `binascii.Error` for a length no base64 text has (4n + 1)."""
    data = part.encode("ascii").translate(_FROM_URLSAFE)
    return binascii.a2b_base64(data + b"=" * (-len(data) % 4), strict_mode=True)


def _json_object(part: str, what: str) -> dict[str, Any]:
    _check_b64url(part, what)
    try:
        # RFC 8259 §8.1: JSON between systems is UTF-8; `json.loads(bytes)` would also take UTF-16.
        value = _JSON.decode(b64url_decode(part).decode("utf-8"))
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
    _check_b64url(parts[2], "signature")
    return _json_object(parts[0], "header"), _json_object(parts[1], "claims")


def check_claim_types(claims: Mapping[str, Any]) -> None:
    """RFC 7519 §4.1 types: NumericDate numbers, `aud` a string or strings, `sub` a string."""
    for name in _TIME_CLAIMS:
        if name in claims and not is_numeric_date(claims[name]):
            raise _malformed(f"the {name} claim is not a number")
    if "sub" in claims and not isinstance(claims["sub"], str):
        raise _malformed("the sub claim is not a string")
    aud = claims.get("aud")
    if aud is not None and not (
        isinstance(aud, str) or (isinstance(aud, list) and all(isinstance(a, str) for a in aud))
    ):
        raise _malformed("the aud claim is neither a string nor an array of strings")


def _media_type(value: str) -> str:
    """RFC 7515 §4.1.9: `typ` compares case-insensitively, `application/` may be left out."""
    return value.lower().removeprefix("application/")


@dataclass(frozen=True, slots=True)
class _Plan:
    """What verifying a token of one issuer needs, worked out once at construction."""

    issuer: Issuer
    keys: KeySource
    token_type: str | None  # already a `_media_type`
    introspector: Introspects | None = None  # with `introspection:` (SPEC §6.4)

    @property
    def introspects_jwts(self) -> bool:
        settings = self.issuer.introspection
        return self.introspector is not None and settings is not None and settings.jwt


def _plans(
    issuers: Sequence[Issuer],
    key_sources: Mapping[str, KeySource],
    introspectors: Mapping[str, Introspects],
) -> dict[str, _Plan]:
    """Each issuer's plan, by the issuer's name (a token's `iss`)."""
    return {
        issuer.issuer: _Plan(
            issuer,
            key_sources[issuer.issuer],
            None if issuer.token_type is None else _media_type(issuer.token_type),
            introspectors.get(issuer.issuer),
        )
        for issuer in issuers
    }


def _interned(names: Collection[str] | None) -> frozenset[str] | None:
    """The names of the claims kept, interned as a parsed token's claim names are, so looking
    one up in a token's claims meets the very same string."""
    return None if names is None else frozenset(map(sys.intern, names))


# What some providers say of a token that is not an access token, which an endpoint may still
# call active: Ory Hydra's `token_use`, Keycloak's `typ` (RFC 7662 leaves both to the provider).
_NOT_ACCESS_TOKEN_TYPES = frozenset({"refresh", "offline", "id", "id_token", "logout"})


def _is_access_token(answer: Mapping[str, Any]) -> bool:
    """Whether an active introspection answer may stand for an access token: a refresh or ID
    token must never open an API, whatever the endpoint says of its being active."""
    use = answer.get("token_use")
    if use is not None and use != "access_token":
        return False
    typ = answer.get("typ")
    return not (isinstance(typ, str) and typ.lower() in _NOT_ACCESS_TOKEN_TYPES)


class TokenVerifier:
    """Verifies tokens of the configured issuers, each with its own key source."""

    def __init__(
        self,
        issuers: Sequence[Issuer],
        key_sources: Mapping[str, KeySource],
        *,
        cache_size: int = DEFAULT_CACHE_SIZE,
        kept_claims: Collection[str] | None = None,
        clock: Callable[[], float] = time.time,
        carry_over: TokenVerifier | None = None,
        introspectors: Mapping[str, Introspects] | None = None,
    ) -> None:
        """`kept_claims`, when given, are the only claims a principal keeps (those the gateway
        reads after verification): a cached principal then costs the same whatever else its
        token carries. None keeps every claim.

        `carry_over`: a verifier whose remembered verdicts this one adopts if they are still
        true here, that is when both verify the same way against the very same key sources
        (a reload that changed only routes or upstreams keeps every client's token warm)."""
        self._plans = _plans(issuers, key_sources, introspectors or {})
        # SPEC §6.4: a token that is not a compact JWS goes to the one issuer that introspects.
        self._introspecting = next(
            (plan for plan in self._plans.values() if plan.introspector is not None), None
        )
        self._sources = tuple(plan.keys for plan in self._plans.values())
        self._clock = clock
        self._shared_values: dict[object, Any] = {}
        self._kept = _interned(kept_claims)
        self._kept_order = () if self._kept is None else tuple(sorted(self._kept))
        self._cache_size = cache_size
        self._verified: VerifiedTokens[Principal] = (
            carry_over._verified
            if carry_over is not None and self._verifies_like(carry_over)
            else VerifiedTokens(cache_size, clock=clock)
        )

    @property
    def remembered(self) -> int:
        """How many verified tokens are cached."""
        return len(self._verified)

    def _verifies_like(self, other: TokenVerifier) -> bool:
        """Whether a verdict of `other` is this verifier's verdict too: the same issuers with
        the same checks (where they were written aside), key sources, claims kept, cache."""
        mine, theirs = self._plans, other._plans

        def checks(plan: _Plan) -> tuple[object, ...]:
            return (replace(plan.issuer, source=UNKNOWN_SOURCE), plan.token_type)

        return (
            mine.keys() == theirs.keys()
            and all(mine[name].keys is theirs[name].keys for name in mine)
            and all(mine[name].introspector is theirs[name].introspector for name in mine)
            and all(checks(mine[name]) == checks(theirs[name]) for name in mine)
            and self._kept == other._kept
            and self._cache_size == other._cache_size
            and self._clock is other._clock
        )

    async def verify(self, token: str, *, audience: str | None = None) -> Principal:
        """The principal a token proves; a token verified before, still unexpired and under the
        same key sets, still usable, is answered from the cache without parsing or verifying it
        again.

        `audience`, when given (a route's own), replaces the issuer's `audiences`."""
        if not self._verified.enabled:
            return await self._verify(token, audience, cache_key(token, None))
        key = cache_key(token, audience)
        # Taken before any key lookup: a key set that changes meanwhile makes this entry stale.
        generation = self._generation()
        cached = self._verified.get(key, generation=generation)
        if cached is not None:
            return cached
        digest = key if audience is None else cache_key(token, None)
        principal = await self._verify(token, audience, digest)
        self._verified.put(
            key, principal, generation=generation, usable_for=self._usable_for(principal)
        )
        return principal

    def _usable_for(self, principal: Principal) -> float:
        """Seconds the keys that verified `principal` may still vouch for it."""
        return self._plans[principal.issuer].keys.usable_for if principal.issuer else -math.inf

    def _generation(self) -> int:
        # The sum of every source's generation moves whenever any of them does, which is all a
        # cache hit needs to know (the issuer is unknown until the token is parsed).
        sources = self._sources
        if len(sources) == 1:
            return sources[0].generation
        return sum(source.generation for source in sources)

    async def _verify(self, token: str, audience: str | None, digest: bytes) -> Principal:
        """`digest` is the token's own cache key (without audience), for introspection."""
        if self._introspecting is not None and token.count(".") != 2:
            return await self._introspected(token, audience, digest, self._introspecting)
        header, claims = parse_unverified(token)
        alg = header.get("alg")
        # KEY_SHAPES names asymmetric algorithms only: never `none`, never an HMAC.
        if not isinstance(alg, str) or alg not in KEY_SHAPES:
            raise Denied(Reason.DISALLOWED_ALG, "the token's algorithm is never accepted")
        if "crit" in header:
            raise _malformed("the token has critical header extensions this gateway does not know")
        plan = self._plan_for(claims)
        if alg not in plan.issuer.algorithms:
            raise Denied(Reason.DISALLOWED_ALG, f"{alg} is not allowed for this issuer")
        check_claim_types(claims)
        self._check_type(header, plan)
        kid = header.get("kid")
        if "kid" in header and not isinstance(kid, str):  # null is not "no kid"
            raise _malformed("the kid header is not a string")
        key = await plan.keys.key_for(kid, alg)
        self._check_signature(token, key, alg)
        self._check_claims(claims, plan, audience)
        if plan.introspects_jwts:  # revocation: the issuer must still call the token active
            assert plan.introspector is not None
            answer = await plan.introspector.active_claims(token, digest)
            return self._principal(claims, plan, self._introspection_lifetime(answer, plan))
        return self._principal(claims, plan)

    async def _introspected(
        self, token: str, audience: str | None, digest: bytes, plan: _Plan
    ) -> Principal:
        """An opaque token: the issuer's answer, checked as a JWT's claims are (SPEC §6.4):
        `iss` when present must be the issuer, `aud` when present must name the API,
        `required_claims`, `exp`/`nbf`/`iat` with leeway; the scopes from `scope` and
        `scope_claims`."""
        assert plan.introspector is not None
        claims = await plan.introspector.active_claims(token, digest)
        if claims.get("iss", plan.issuer.issuer) != plan.issuer.issuer:
            raise Denied(Reason.INVALID_ISSUER, "the introspected token names another issuer")
        if not _is_access_token(claims):
            raise Denied(Reason.INVALID_TOKEN_TYPE, "the issuer says this is not an access token")
        self._check_claims(claims, plan, audience, audience_optional=True)
        return self._principal(claims, plan, self._introspection_lifetime(claims, plan))

    def _introspection_lifetime(self, answer: Mapping[str, Any], plan: _Plan) -> float:
        """Until when an introspection answer may be reused: `cache_ttl` from now, never past
        the token's `exp`."""
        assert plan.issuer.introspection is not None
        until = self._clock() + plan.issuer.introspection.cache_ttl
        exp = answer.get("exp")
        return until if exp is None else min(until, float(exp))

    def _principal(
        self, claims: dict[str, Any], plan: _Plan, cache_until: float | None = None
    ) -> Principal:
        claims["iss"] = plan.issuer.issuer  # equal, and shared by every token of the issuer
        scopes = self._shared(granted_scopes(claims, plan.issuer.scope_claims))
        kept = claims if self._kept is None else self._kept_of(claims)
        exp = claims.get("exp")  # a finite number if present: check_claim_types saw to it
        expires_at = None if exp is None else float(exp)
        return Principal(kept, scopes, plan.issuer.issuer, expires_at, cache_until=cache_until)

    def _kept_of(self, claims: Mapping[str, Any]) -> KeptClaims:
        names = self._shared(tuple([name for name in self._kept_order if name in claims]))
        return KeptClaims(names, tuple([claims[name] for name in names]))

    def _shared(self, value: _Shareable) -> _Shareable:
        """One object per distinct scope set or kept-claim names: most tokens of an API carry one
        of a few, and every cached principal then holds a reference to one, not a copy."""
        shared: _Shareable | None = self._shared_values.get(value)
        if shared is None:
            shared = value
            if len(self._shared_values) < _MAX_SHARED_VALUES:
                self._shared_values[value] = value
        return shared

    def _plan_for(self, claims: Mapping[str, Any]) -> _Plan:
        iss = claims.get("iss")
        plan = self._plans.get(iss) if isinstance(iss, str) else None
        if plan is None:
            raise Denied(Reason.INVALID_ISSUER, "the token's issuer is not trusted (iss)")
        return plan

    @staticmethod
    def _check_type(header: Mapping[str, Any], plan: _Plan) -> None:
        if plan.token_type is None:
            return
        typ = header.get("typ")
        if not isinstance(typ, str) or _media_type(typ) != plan.token_type:
            raise Denied(Reason.INVALID_TOKEN_TYPE, f"the token's typ is not {plan.token_type}")

    @staticmethod
    def _check_signature(token: str, key: jwt.PyJWK, alg: str) -> None:
        """The signature over the first two parts, with PyJWT's algorithm for the key: the key is
        bound to one algorithm, and a token naming another is refused (no alg confusion)."""
        if alg != key.algorithm_name:
            raise Denied(Reason.DISALLOWED_ALG, "the token's alg does not fit its key")
        signing_input, _, encoded = token.rpartition(".")
        try:
            signature = b64url_decode(encoded)
        except binascii.Error:  # a length no base64 text has (4n + 1)
            raise _malformed("the signature is not base64url") from None
        if not key.Algorithm.verify(signing_input.encode("ascii"), key.key, signature):
            raise Denied(Reason.BAD_SIGNATURE, "the token's signature does not verify")

    def _check_claims(
        self,
        claims: Mapping[str, Any],
        plan: _Plan,
        audience: str | None,
        *,
        audience_optional: bool = False,
    ) -> None:
        """RFC 7519 §4.1 with leeway, in PyJWT's order (the first failure names the denial):
        required claims, `iat` and `nbf` not in the future, `exp` not past, then the audience
        (which an introspection answer may leave out: `audience_optional`)."""
        for name in plan.issuer.required_claims:
            if claims.get(name) is None:
                raise Denied(Reason.MISSING_CLAIM, f"the token has no {name} claim")
        now = self._clock()
        leeway = plan.issuer.leeway
        for name in ("iat", "nbf"):
            if name in claims and int(claims[name]) > now + leeway:
                raise Denied(Reason.NOT_YET_VALID, "the token is not valid yet (nbf/iat)")
        if "exp" in claims and int(claims["exp"]) <= now - leeway:
            raise Denied(Reason.EXPIRED_TOKEN, "the token has expired (exp)")
        if "jti" in claims and not isinstance(claims["jti"], str):
            raise _malformed("the jti claim is not a string")
        audiences = (audience,) if audience is not None else plan.issuer.audiences
        if not audiences:
            return  # nothing configured to compare `aud` with
        aud = claims.get("aud")
        if not aud:
            if audience_optional:
                return
            raise Denied(Reason.MISSING_CLAIM, "the token has no aud claim")
        granted = (aud,) if isinstance(aud, str) else aud
        if not any(wanted in granted for wanted in audiences):
            raise Denied(Reason.INVALID_AUDIENCE, "the token is not meant for this API (aud)")
