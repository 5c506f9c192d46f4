"""Token verification (SPEC §3.3): every check its own reason, real RSA, EC and Ed25519 keys, keys
bound to their issuer. End-to-end counterpart: tests/e2e/test_deny.py."""

from __future__ import annotations

import base64
import json
import math
import re
import string
import time
from collections.abc import Callable
from typing import Any

import jwt
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from scopegate.config.model import Forwarding, Issuer
from scopegate.devtools.keys import SigningKey, generate
from scopegate.devtools.tokens import mint
from scopegate.pipeline import KeptClaims
from scopegate.pipeline.scopes import read_claim
from scopegate.pipeline.verify import (
    TokenVerifier,
    b64url_decode,
    is_b64url,
    is_canonical_b64url,
)
from scopegate.reasons import Denied, Reason
from scopegate.runtime import kept_claims

ISSUER = "https://id.example.com/"
OTHER = "https://other.example.com/"
AUDIENCE = "https://api.example.com"
RSA = generate("RS256", kid="rsa-1")
EC = generate("ES256", kid="ec-1")
ED = generate("EdDSA", kid="ed-1")
OTHER_KEY = generate("RS256", kid="other-1")


class StaticKeys:
    """A key source holding fixed keys: the same protocol the JWKS store serves."""

    generation = 0
    usable_for = math.inf

    def __init__(self, *keys: SigningKey) -> None:
        self._keys = {(k.kid, k.alg): jwt.PyJWK(k.public_jwk(), algorithm=k.alg) for k in keys}

    async def key_for(self, kid: str | None, alg: str) -> jwt.PyJWK:
        key = self._keys.get((kid, alg))  # type: ignore[arg-type]
        if key is None:
            raise Denied(Reason.UNKNOWN_KEY, "unknown key")
        return key


def verifier(**issuer_options: Any) -> TokenVerifier:
    issuer = Issuer(
        ISSUER, audiences=(AUDIENCE,), algorithms=("RS256", "ES256", "EdDSA"), **issuer_options
    )
    other = Issuer(OTHER, audiences=(AUDIENCE,), algorithms=("RS256",))
    return TokenVerifier(
        [issuer, other], {ISSUER: StaticKeys(RSA, EC, ED), OTHER: StaticKeys(OTHER_KEY)}
    )


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge(header: dict[str, Any], claims: dict[str, Any] | str, signature: bytes = b"sig") -> str:
    body = claims if isinstance(claims, str) else json.dumps(claims)
    return f"{b64(json.dumps(header).encode())}.{b64(body.encode())}.{b64(signature)}"


def claims(**extra: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"iss": ISSUER, "aud": AUDIENCE, "sub": "u", "iat": now, "exp": now + 300, **extra}


def token(key: SigningKey = RSA, **kwargs: Any) -> str:
    options: dict[str, Any] = {"issuer": ISSUER, "audience": AUDIENCE, "scopes": ("read",)}
    options.update(kwargs)
    return mint(key, **options)


B64URL_ALPHABET = string.ascii_uppercase + string.ascii_lowercase + string.digits + "-_"


def unused_bits(part: str) -> int:
    """How many low bits of `part`'s last character fall beyond its last byte (RFC 4648 §3.5)."""
    return {0: 0, 2: 4, 3: 2}[len(part) % 4]


def with_unused_bits(part: str, bits: int) -> str:
    """`part` with `bits` set in its last character's unused low bits: the same bytes to a
    lenient decoder, another spelling of them."""
    return part[:-1] + B64URL_ALPHABET[B64URL_ALPHABET.index(part[-1]) | bits]


def lenient_b64decode(part: str) -> bytes:
    """What the standard library's decoder makes of `part`, unused bits ignored."""
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def swap_signature(good: str, signature: bytes) -> str:
    head, body, _ = good.split(".")
    return f"{head}.{body}.{b64(signature)}"


def hs256_with_public_key() -> str:
    """The RS256 → HS256 confusion: HMAC-signed with the RSA public key's PEM as the secret."""
    from cryptography.hazmat.primitives import serialization

    pem = RSA.private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    import hashlib
    import hmac

    head = b64(json.dumps({"alg": "HS256", "kid": "rsa-1", "typ": "JWT"}).encode())
    body = b64(json.dumps(claims()).encode())
    mac = hmac.new(pem, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(mac)}"


Case = Callable[[], str]
DUPLICATE_HEADER = (
    b64(b'{"alg":"RS256","alg":"none"}') + "." + b64(json.dumps(claims()).encode()) + ".x"
)

REFUSED: list[Any] = [
    pytest.param(lambda: "abc", Reason.MALFORMED_TOKEN, id="one part"),
    pytest.param(lambda: "a.b", Reason.MALFORMED_TOKEN, id="two parts"),
    pytest.param(lambda: "a.b.c.d.e", Reason.MALFORMED_TOKEN, id="five parts: an encrypted JWE"),
    pytest.param(lambda: "e30.e30.!!!", Reason.MALFORMED_TOKEN, id="signature not base64url"),
    pytest.param(lambda: forge({"alg": "RS256"}, "[1,2]"), Reason.MALFORMED_TOKEN, id="claims not an object"),
    pytest.param(lambda: forge({"alg": "RS256"}, "{nope"), Reason.MALFORMED_TOKEN, id="claims not JSON"),
    pytest.param(lambda: forge({"alg": "RS256"}, '{"iss":"a","iss":"b"}'), Reason.MALFORMED_TOKEN, id="duplicate claim names"),
    pytest.param(lambda: DUPLICATE_HEADER, Reason.MALFORMED_TOKEN, id="duplicate header names"),
    pytest.param(lambda: forge({"alg": "RS256"}, '{"exp": NaN}'), Reason.MALFORMED_TOKEN, id="NaN is not JSON"),
    pytest.param(lambda: forge({"alg": "none"}, claims(), b""), Reason.DISALLOWED_ALG, id="alg none"),
    pytest.param(lambda: forge({"alg": "None"}, claims(), b""), Reason.DISALLOWED_ALG, id="alg None"),
    pytest.param(lambda: forge({"alg": "NONE"}, claims(), b""), Reason.DISALLOWED_ALG, id="alg NONE"),
    pytest.param(lambda: forge({"alg": "nOnE"}, claims(), b""), Reason.DISALLOWED_ALG, id="alg nOnE"),
    pytest.param(lambda: forge({"kid": "rsa-1"}, claims()), Reason.DISALLOWED_ALG, id="no alg at all"),
    pytest.param(hs256_with_public_key, Reason.DISALLOWED_ALG, id="HS256 signed with the RSA public key"),
    pytest.param(lambda: token(generate("ES384", kid="ec-1")), Reason.DISALLOWED_ALG, id="algorithm not on the issuer's list"),
    pytest.param(lambda: token(generate("PS256", kid="rsa-1")), Reason.DISALLOWED_ALG, id="PS256 not allowed even with a known kid"),
    pytest.param(lambda: swap_signature(token(), b""), Reason.BAD_SIGNATURE, id="signature stripped"),
    pytest.param(lambda: swap_signature(token(), bytes(256)), Reason.BAD_SIGNATURE, id="signature zeroed"),
    pytest.param(lambda: swap_signature(token(EC), bytes(64)), Reason.BAD_SIGNATURE, id="ECDSA psychic signature r=s=0"),
    pytest.param(lambda: token(generate("RS256", kid="rsa-1")), Reason.BAD_SIGNATURE, id="another key under a known kid"),
    pytest.param(lambda: token(generate("RS256", kid="stranger")), Reason.UNKNOWN_KEY, id="unknown kid"),
    pytest.param(lambda: token(generate("RS256", kid="../../etc/passwd")), Reason.UNKNOWN_KEY, id="kid path traversal"),
    pytest.param(lambda: token(generate("RS256", kid="x' OR '1'='1")), Reason.UNKNOWN_KEY, id="kid injection"),
    pytest.param(lambda: token(generate("RS256", kid="evil"), headers={"jwk": generate("RS256").public_jwk()}),
                 Reason.UNKNOWN_KEY, id="embedded jwk header is never used"),
    pytest.param(lambda: token(generate("RS256", kid="evil"), headers={"jku": "https://evil.example/jwks"}),
                 Reason.UNKNOWN_KEY, id="jku header is never used"),
    pytest.param(lambda: token(generate("RS256", kid="evil"), headers={"x5u": "https://evil.example/c"}),
                 Reason.UNKNOWN_KEY, id="x5u header is never used"),
    pytest.param(lambda: token(headers={"crit": ["exp"]}), Reason.MALFORMED_TOKEN, id="crit header"),
    pytest.param(lambda: token(generate("RS256", kid="evil"), headers={"x5c": ["MIIBIjANBgkq"]}),
                 Reason.UNKNOWN_KEY, id="x5c header is never used"),
    pytest.param(lambda: forge({"alg": "RS256", "kid": 7}, claims()), Reason.MALFORMED_TOKEN, id="kid as a number"),
    pytest.param(lambda: forge({"alg": "RS256", "kid": None}, claims()), Reason.MALFORMED_TOKEN, id="kid null is not an absent kid"),
    pytest.param(lambda: forge({"alg": ["RS256"]}, claims()), Reason.DISALLOWED_ALG, id="alg as an array"),
    pytest.param(lambda: forge({"alg": "none"}, claims(exp="soon"), b""), Reason.DISALLOWED_ALG, id="alg is checked before claim types"),
    pytest.param(lambda: forge({"alg": "HS256", "crit": ["b64"]}, claims()), Reason.DISALLOWED_ALG, id="alg is checked before crit"),
    pytest.param(lambda: token(issuer="https://evil.example.com/", extra_claims={"exp": "x"}), Reason.INVALID_ISSUER, id="iss is checked before claim types"),
    pytest.param(lambda: b64(json.dumps({"alg": "RS256"}).encode("utf-16")) + "." + b64(json.dumps(claims()).encode()) + ".x",
                 Reason.MALFORMED_TOKEN, id="header in UTF-16 is not UTF-8 JSON"),
    pytest.param(lambda: forge({"alg": "RS256"}, f'{{"iss": "{ISSUER}", "exp": 1e999}}'), Reason.MALFORMED_TOKEN, id="exp overflowing to infinity"),
    pytest.param(lambda: token(extra_claims={"exp": 10**400}), Reason.MALFORMED_TOKEN, id="exp too large for any date"),
    pytest.param(lambda: token(issuer="https://evil.example.com/"), Reason.INVALID_ISSUER, id="unknown issuer"),
    pytest.param(lambda: token(issuer=ISSUER.rstrip("/")), Reason.INVALID_ISSUER, id="issuer without its trailing slash"),
    pytest.param(lambda: forge({"alg": "RS256", "kid": "rsa-1"}, claims(iss=[ISSUER])), Reason.INVALID_ISSUER, id="iss as an array"),
    pytest.param(lambda: token(issuer=OTHER), Reason.UNKNOWN_KEY, id="another configured issuer's name with this issuer's key"),
    pytest.param(lambda: token(extra_claims={"iss": None}), Reason.INVALID_ISSUER, id="no iss"),
    pytest.param(lambda: token(lifetime=-120), Reason.EXPIRED_TOKEN, id="expired beyond leeway"),
    pytest.param(lambda: token(extra_claims={"nbf": int(time.time()) + 600}), Reason.NOT_YET_VALID, id="not yet valid"),
    pytest.param(lambda: token(extra_claims={"iat": int(time.time()) + 600}), Reason.NOT_YET_VALID, id="issued in the future"),
    pytest.param(lambda: token(extra_claims={"exp": None}), Reason.MISSING_CLAIM, id="no exp"),
    pytest.param(lambda: token(extra_claims={"exp": str(int(time.time()) + 300)}), Reason.MALFORMED_TOKEN, id="exp as a string"),
    pytest.param(lambda: token(extra_claims={"exp": True}), Reason.MALFORMED_TOKEN, id="exp as a boolean"),
    pytest.param(lambda: token(extra_claims={"aud": 7}), Reason.MALFORMED_TOKEN, id="aud as a number"),
    pytest.param(lambda: token(extra_claims={"aud": [AUDIENCE, 7]}), Reason.MALFORMED_TOKEN, id="aud array with a number"),
    pytest.param(lambda: token(extra_claims={"sub": {"id": 1}}), Reason.MALFORMED_TOKEN, id="sub as an object"),
    pytest.param(lambda: token(audience="https://other-api.example.com"), Reason.INVALID_AUDIENCE, id="wrong audience"),
    pytest.param(lambda: token(audience=["https://a.example", "https://b.example"]), Reason.INVALID_AUDIENCE, id="audience array without ours"),
    pytest.param(lambda: token(extra_claims={"aud": None}), Reason.MISSING_CLAIM, id="no aud"),
    pytest.param(lambda: token(extra_claims={"aud": []}), Reason.MISSING_CLAIM, id="empty aud array"),
    pytest.param(lambda: token(extra_claims={"aud": ""}), Reason.MISSING_CLAIM, id="empty aud string"),
    pytest.param(lambda: token(extra_claims={"jti": 7}), Reason.MALFORMED_TOKEN, id="jti as a number"),
    pytest.param(lambda: token()[:-2] + "A", Reason.MALFORMED_TOKEN, id="signature of a length no base64 has"),
    pytest.param(lambda: with_unused_bits(token(), 0b1111), Reason.MALFORMED_TOKEN, id="signature with unused bits set"),
    pytest.param(lambda: with_unused_bits(token(generate("RS256", kid="stranger")), 0b1), Reason.MALFORMED_TOKEN,
                 id="a non-canonical signature is refused before the key is looked up"),
    pytest.param(lambda: token(lifetime=-120, extra_claims={"nbf": int(time.time()) + 600}), Reason.NOT_YET_VALID,
                 id="nbf is checked before exp"),
    pytest.param(lambda: token(lifetime=-120, audience="https://other-api.example.com"), Reason.EXPIRED_TOKEN,
                 id="exp is checked before aud"),
    pytest.param(lambda: swap_signature(token(lifetime=-120), bytes(256)), Reason.BAD_SIGNATURE,
                 id="signature is checked before any claim"),
]  # fmt: skip


@pytest.mark.parametrize(("make", "reason"), REFUSED)
async def test_bad_tokens_are_refused_with_the_failed_check(make: Case, reason: Reason) -> None:
    bad = make()
    with pytest.raises(Denied) as caught:
        await verifier().verify(bad)
    assert caught.value.reason is reason
    assert caught.value.reason.status == 401
    assert bad not in caught.value.detail


@pytest.mark.parametrize("key", [RSA, EC, ED], ids=["RS256", "ES256", "EdDSA"])
async def test_valid_tokens_give_their_claims_and_scopes(key: SigningKey) -> None:
    principal = await verifier().verify(token(key, scopes=("read", "write")))
    assert principal.issuer == ISSUER
    assert principal.subject == "user-1"
    assert principal.scopes == {"read", "write"}


async def test_a_principal_keeps_only_the_claims_asked_for_and_is_still_cached() -> None:
    """What a cached token costs does not grow with what else it carries; `exp` still bounds it."""
    issuer = Issuer(ISSUER, audiences=(AUDIENCE,), algorithms=("RS256",))
    clock = [time.time()]
    lean = TokenVerifier(
        [issuer], {ISSUER: StaticKeys(RSA)}, kept_claims=kept_claims(Forwarding()),
        clock=lambda: clock[0],
    )  # fmt: skip
    fat = token(extra_claims={"azp": "app", "permissions": ["p"] * 50, "meta": {"t": 1}})
    principal = await lean.verify(fat)
    assert dict(principal.claims) == {"sub": "user-1", "azp": "app"}
    assert principal.client_id == "app"
    assert await lean.verify(fat) is principal  # a cache hit
    clock[0] += 301  # past exp (mint's lifetime is 300 s), which the principal no longer holds
    assert await lean.verify(fat) is not principal


_CLAIM_NAMES = st.sampled_from(["sub", "azp", "client_id", "meta", "meta.tenant", "org", "x"])
_CLAIM_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=5,
)


@settings(max_examples=500, deadline=None)
@given(
    claims=st.dictionaries(_CLAIM_NAMES, _CLAIM_VALUES, max_size=7),
    asked=st.lists(_CLAIM_NAMES | st.text(max_size=3)),
)
def test_kept_claims_read_as_the_dict_they_replace(
    claims: dict[str, Any], asked: list[str]
) -> None:
    """A principal's compact claims answer every read as a dict of the same claims would."""
    names = tuple(sorted(claims))
    kept = KeptClaims(names, tuple(claims[name] for name in names))
    assert kept == claims and dict(kept) == claims and len(kept) == len(claims)
    for name in asked:
        assert kept.get(name) == claims.get(name) and (name in kept) == (name in claims)
        assert read_claim(kept, name) == read_claim(claims, name)
        if name in claims:
            assert kept[name] == claims[name]
        else:
            with pytest.raises(KeyError):
                kept[name]


def test_the_kept_claims_are_the_logged_ones_the_binding_and_every_forwarded_one() -> None:
    forward = Forwarding(claims_to_headers=(("meta.tenant", "X-Tenant"), ("org", "X-Org")))
    expected = {"sub", "azp", "client_id", "cnf", "meta", "meta.tenant", "org"}
    assert kept_claims(forward) == expected


@pytest.mark.parametrize(
    ("extra", "leeway", "reason"),
    [
        pytest.param({"exp": -10}, 30, None, id="expired 10 s ago, within 30 s of leeway"),
        pytest.param({"exp": -10}, 0, Reason.EXPIRED_TOKEN, id="expired 10 s ago, no leeway"),
        pytest.param({"nbf": +20}, 30, None, id="nbf 20 s ahead, within 30 s of leeway"),
        pytest.param({"nbf": +20}, 0, Reason.NOT_YET_VALID, id="nbf 20 s ahead, no leeway"),
        pytest.param({"iat": +20}, 30, None, id="iat 20 s ahead, within 30 s of leeway"),
        pytest.param({"nbf": -5.5, "exp": +5.5}, 0, None, id="fractional dates are numbers too"),
    ],
)
async def test_leeway_is_honoured_for_every_time_claim(
    extra: dict[str, float], leeway: float, reason: Reason | None
) -> None:
    """Times in the table are seconds from now."""
    made = token(extra_claims={name: time.time() + offset for name, offset in extra.items()})
    if reason is None:
        await verifier(leeway=leeway).verify(made)
        return
    with pytest.raises(Denied) as caught:
        await verifier(leeway=leeway).verify(made)
    assert caught.value.reason is reason


async def test_audience_array_containing_ours_is_accepted() -> None:
    await verifier().verify(token(audience=["https://other.example", AUDIENCE]))


async def test_a_route_audience_replaces_the_issuers() -> None:
    special = token(audience="https://admin.example.com")
    await verifier().verify(special, audience="https://admin.example.com")
    with pytest.raises(Denied) as caught:
        await verifier().verify(token(), audience="https://admin.example.com")
    assert caught.value.reason is Reason.INVALID_AUDIENCE


@pytest.mark.parametrize(
    ("typ", "accepted"),
    [
        ("at+jwt", True),
        ("application/at+jwt", True),
        ("AT+JWT", True),
        ("JWT", False),
        (None, False),
    ],
)
async def test_token_type_is_checked_when_configured(typ: str | None, accepted: bool) -> None:
    headers = {"typ": typ} if typ else {"typ": None}
    made = token(headers=headers)
    if accepted:
        await verifier(token_type="at+jwt").verify(made)
        return
    with pytest.raises(Denied) as caught:
        await verifier(token_type="at+jwt").verify(made)
    assert caught.value.reason is Reason.INVALID_TOKEN_TYPE


async def test_required_claims_are_enforced() -> None:
    with pytest.raises(Denied) as caught:
        await verifier(required_claims=("exp", "jti")).verify(token())
    assert caught.value.reason is Reason.MISSING_CLAIM
    assert "jti" in caught.value.detail


async def test_scope_claims_are_read_as_configured() -> None:
    made = token(scopes=None, extra_claims={"permissions": ["delete:contacts"], "scp": "read"})
    principal = await verifier(scope_claims=("permissions", "scp")).verify(made)
    assert principal.scopes == {"delete:contacts", "read"}


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
async def test_arbitrary_text_is_never_accepted(text: str) -> None:
    with pytest.raises(Denied) as caught:
        await verifier().verify(text)
    assert caught.value.reason.status == 401


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 2), st.integers(0, 255), st.integers(0, 10_000))
async def test_flipping_any_byte_of_a_valid_token_never_allows_it(
    part: int, value: int, at: int
) -> None:
    good = token()
    pieces = good.split(".")
    raw = bytearray(base64.urlsafe_b64decode(pieces[part] + "=" * (-len(pieces[part]) % 4)))
    index = at % len(raw)
    if raw[index] == value:
        return
    raw[index] = value
    pieces[part] = b64(bytes(raw))
    with pytest.raises(Denied):
        await verifier().verify(".".join(pieces))


class MisboundKeys:
    """A faulty key source that answers every request with the RSA key bound to RS256."""

    generation = 0
    usable_for = math.inf

    async def key_for(self, kid: str | None, alg: str) -> jwt.PyJWK:
        return jwt.PyJWK(RSA.public_jwk(), algorithm="RS256")


async def test_a_key_bound_to_another_algorithm_is_never_used() -> None:
    """Defence in depth: even if a key source erred, PyJWT's algorithm binding holds."""
    issuer = Issuer(ISSUER, audiences=(AUDIENCE,), algorithms=("RS256", "PS256"))
    confused = TokenVerifier([issuer], {ISSUER: MisboundKeys()})
    with pytest.raises(Denied) as caught:
        await confused.verify(token(SigningKey("rsa-1", "PS256", RSA.private_key)))
    assert caught.value.reason is Reason.DISALLOWED_ALG


class CountingKeys(StaticKeys):
    def __init__(self, *keys: SigningKey) -> None:
        super().__init__(*keys)
        self.lookups = 0

    async def key_for(self, kid: str | None, alg: str) -> jwt.PyJWK:
        self.lookups += 1
        return await super().key_for(kid, alg)


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: token(issuer="https://evil.example.com/"), id="unknown issuer"),
        pytest.param(lambda: forge({"alg": "none"}, claims(), b""), id="alg none"),
        pytest.param(lambda: token(headers={"crit": ["exp"]}), id="crit header"),
        pytest.param(lambda: token(extra_claims={"exp": "later"}), id="exp as a string"),
        pytest.param(lambda: token(headers={"typ": "JWT"}), id="wrong typ"),
        pytest.param(
            lambda: with_unused_bits(token(headers={"typ": "at+jwt"}), 0b1000),
            id="signature with unused bits set, all else valid",
        ),
    ],
)
async def test_tokens_failing_early_checks_never_reach_the_key_source(make: Case) -> None:
    keys = CountingKeys(RSA)
    issuer = Issuer(ISSUER, audiences=(AUDIENCE,), token_type="at+jwt")
    with pytest.raises(Denied):
        await TokenVerifier([issuer], {ISSUER: keys}).verify(make())
    assert keys.lookups == 0


async def test_a_key_source_denial_is_passed_on_unchanged() -> None:
    class Unavailable(StaticKeys):
        async def key_for(self, kid: str | None, alg: str) -> jwt.PyJWK:
            raise Denied(Reason.ISSUER_UNAVAILABLE, "down", retry_after=30, challenge=False)

    issuer = Issuer(ISSUER, audiences=(AUDIENCE,))
    with pytest.raises(Denied) as caught:
        await TokenVerifier([issuer], {ISSUER: Unavailable()}).verify(token())
    assert (caught.value.reason, caught.value.retry_after) == (Reason.ISSUER_UNAVAILABLE, 30)


async def test_a_verdict_is_reused_only_under_the_same_key_set_and_audience() -> None:
    keys = CountingKeys(RSA)
    issuer = Issuer(ISSUER, audiences=(AUDIENCE, "https://b.example"))
    checker = TokenVerifier([issuer], {ISSUER: keys})
    made = token()
    await checker.verify(made)
    await checker.verify(made)
    assert keys.lookups == 1
    with pytest.raises(Denied) as caught:
        await checker.verify(
            made, audience="https://b.example"
        )  # the verdict was for the issuer's audiences
    assert caught.value.reason is Reason.INVALID_AUDIENCE
    keys.generation += 1  # the key set changed: the verdict is checked again
    await checker.verify(made)
    assert keys.lookups == 3


async def test_without_configured_audiences_aud_is_not_compared() -> None:
    issuer = Issuer(ISSUER, audiences=())
    await TokenVerifier([issuer], {ISSUER: StaticKeys(RSA)}).verify(token(audience="anything"))


_PYJWT_REASONS: list[tuple[type[Exception], Reason]] = [
    (jwt.MissingRequiredClaimError, Reason.MISSING_CLAIM),
    (jwt.ExpiredSignatureError, Reason.EXPIRED_TOKEN),
    (jwt.ImmatureSignatureError, Reason.NOT_YET_VALID),
    (jwt.InvalidAudienceError, Reason.INVALID_AUDIENCE),
    (jwt.InvalidSignatureError, Reason.BAD_SIGNATURE),
]


def _pyjwt_verdict(good: str, audiences: tuple[str, ...], leeway: float) -> Reason | None:
    """What PyJWT's own `decode` says of a token, in our reasons."""
    try:
        jwt.decode(
            good,
            jwt.PyJWK(RSA.public_jwk(), algorithm="RS256"),
            algorithms=["RS256"],
            audience=list(audiences) or None,
            issuer=ISSUER,
            leeway=leeway,
            options={"require": ["exp"], "verify_aud": bool(audiences)},
        )
    except jwt.PyJWTError as error:
        return next(reason for kind, reason in _PYJWT_REASONS if isinstance(error, kind))
    return None


# Seconds from now, kept 3 s clear of every decision edge (now, now ± leeway): the two checks
# read the clock microseconds apart, and must not straddle a second.
_OFFSETS = st.one_of(
    st.none(), st.integers(-400, 400).filter(lambda o: all(abs(o - e) > 2 for e in (0, 30, -30)))
)


@settings(max_examples=150, deadline=None)
@given(
    exp=_OFFSETS,
    nbf=_OFFSETS,
    iat=_OFFSETS,
    aud=st.sampled_from([None, "", [], AUDIENCE, [AUDIENCE], ["https://x.example"], "https://y"]),
    audiences=st.sampled_from([(), (AUDIENCE,), ("https://x.example", AUDIENCE)]),
    leeway=st.sampled_from([0.0, 30.0]),
    tamper=st.booleans(),
)
async def test_claim_checks_agree_with_pyjwt_decode(
    exp: int | None,
    nbf: int | None,
    iat: int | None,
    aud: Any,
    audiences: tuple[str, ...],
    leeway: float,
    tamper: bool,
) -> None:
    """The claim and signature checks are ours (one parse per token); PyJWT's `decode` is the
    reference they must agree with, failure for failure."""
    now = int(time.time())
    extra = {
        name: (None if offset is None else now + offset)
        for name, offset in (("exp", exp), ("nbf", nbf), ("iat", iat))
    }
    extra["aud"] = aud
    good = token(extra_claims=extra)
    if tamper:
        good = swap_signature(good, bytes(256))
    expected = _pyjwt_verdict(good, audiences, leeway)
    issuer = Issuer(ISSUER, audiences=audiences, algorithms=("RS256",), leeway=leeway)
    ours = TokenVerifier([issuer], {ISSUER: StaticKeys(RSA)}, cache_size=0)
    try:
        await ours.verify(good)
        verdict = None
    except Denied as denied:
        verdict = denied.reason
    assert verdict == expected


async def test_verdicts_carry_over_only_to_a_verifier_that_checks_the_same_way() -> None:
    from dataclasses import replace

    from scopegate.config.model import Source

    issuer = Issuer(ISSUER, audiences=(AUDIENCE,), algorithms=("RS256",))
    keys = StaticKeys(RSA)
    kept = kept_claims(Forwarding())
    old = TokenVerifier([issuer], {ISSUER: keys}, kept_claims=kept)
    await old.verify(token())
    moved = replace(issuer, source=Source("scopegate.yaml", 40, 5))  # only where it is written

    def successor(issuer: Issuer, keys: StaticKeys, kept: frozenset[str]) -> int:
        return TokenVerifier([issuer], {ISSUER: keys}, kept_claims=kept, carry_over=old).remembered

    assert successor(moved, keys, kept) == 1
    assert successor(replace(issuer, leeway=0), keys, kept) == 0
    assert successor(replace(issuer, scope_claims=("scp",)), keys, kept) == 0
    assert successor(issuer, StaticKeys(RSA), kept) == 0  # another key source
    assert successor(issuer, keys, kept | {"email"}) == 0


class TestBase64urlAlphabet:
    GRAMMAR = re.compile(r"[A-Za-z0-9_-]*")

    @settings(max_examples=2000, deadline=None)
    @given(
        st.text(
            st.one_of(
                st.sampled_from("aZ09-_+/=."),
                st.characters(exclude_categories=()),
                st.sampled_from("\u212a\u0131\udcff\x00 "),
            ),
            max_size=12,
        )
    )
    def test_it_accepts_exactly_the_alphabet(self, text: str) -> None:
        """What the translate-based check accepts is what `[A-Za-z0-9_-]*` fully matches: no
        `+`, `/` or `=` (base64, not base64url), nothing outside ASCII."""
        assert is_b64url(text) is bool(self.GRAMMAR.fullmatch(text))


class TestCanonicalBase64url:
    """RFC 4648 §3.5: one spelling per token, so one verdict and one cache entry per token."""

    @settings(max_examples=150, deadline=None)
    @given(
        key=st.sampled_from([RSA, EC, ED]),
        subject=st.text(string.ascii_letters, min_size=1, max_size=3),
        pad=st.text(string.ascii_letters, max_size=2),
        part=st.integers(0, 2),
        data=st.data(),
    )
    async def test_unused_bits_set_in_any_part_make_the_token_malformed(
        self, key: SigningKey, subject: str, pad: str, part: int, data: st.DataObject
    ) -> None:
        """Setting any unused bit of the last character of the header, the claims or the
        signature of a valid, already cached token gets `malformed_token`, and is not cached."""
        good = token(key, subject=subject, headers={"pad": pad})
        pieces = good.split(".")
        for piece in pieces:
            assert b64(b64url_decode(piece)) == piece  # canonical parts round-trip
        spare = unused_bits(pieces[part])
        assume(spare)
        bits = data.draw(st.integers(1, (1 << spare) - 1), label="bits")
        altered = with_unused_bits(pieces[part], bits)
        assert lenient_b64decode(altered) == lenient_b64decode(pieces[part])  # same bytes
        pieces[part] = altered
        checker = verifier()
        await checker.verify(good)
        assert checker.remembered == 1
        with pytest.raises(Denied) as caught:
            await checker.verify(".".join(pieces))
        assert caught.value.reason is Reason.MALFORMED_TOKEN
        assert "canonical" in caught.value.detail
        assert checker.remembered == 1

    @settings(max_examples=500, deadline=None)
    @given(st.binary(max_size=40))
    def test_encoded_bytes_are_canonical_and_round_trip(self, raw: bytes) -> None:
        """What any encoder writes is canonical, and decodes to the bytes it encoded."""
        text = b64(raw)
        assert is_canonical_b64url(text)
        assert b64url_decode(text) == raw

    @settings(max_examples=2000, deadline=None)
    @given(st.text(B64URL_ALPHABET, max_size=10))
    def test_canonical_exactly_when_re_encoding_gives_the_text_back(self, text: str) -> None:
        """With the standard library's lenient decoder as the oracle: a text is canonical
        exactly when its length is not 4n + 1 and encoding what it decodes to gives it back."""
        if len(text) % 4 == 1:
            assert not is_canonical_b64url(text)
            return
        assert is_canonical_b64url(text) is (b64(lenient_b64decode(text)) == text)


class LapsingKeys:
    """Keys usable until a moment on `clock`, then refused as the JWKS store refuses keys older
    than `max_stale`."""

    generation = 0

    def __init__(self, clock: Callable[[], float], until: float) -> None:
        self._clock = clock
        self._until = until
        self._keys = StaticKeys(RSA)
        self.lookups = 0

    @property
    def usable_for(self) -> float:
        return self._until - self._clock()

    async def key_for(self, kid: str | None, alg: str) -> jwt.PyJWK:
        self.lookups += 1
        if self.usable_for < 0:
            raise Denied(Reason.ISSUER_UNAVAILABLE, "stale", retry_after=30, challenge=False)
        return await self._keys.key_for(kid, alg)


async def test_a_cached_verdict_ends_when_its_issuers_keys_stop_being_usable() -> None:
    """Past max_stale the uncached path answers 503; so does a token verified before, however
    far its exp, while another issuer's tokens are verified again and cached as before."""
    now = [time.time()]
    keys = LapsingKeys(lambda: now[0], until=now[0] + 60)
    other_keys = CountingKeys(OTHER_KEY)
    checker = TokenVerifier(
        [Issuer(ISSUER, audiences=(AUDIENCE,)), Issuer(OTHER, audiences=(AUDIENCE,))],
        {ISSUER: keys, OTHER: other_keys},
        clock=lambda: now[0],
    )
    made, other = token(), token(OTHER_KEY, issuer=OTHER)
    for _ in range(2):
        await checker.verify(made)
        await checker.verify(other)
    now[0] += 59
    await checker.verify(made)
    assert (keys.lookups, other_keys.lookups) == (1, 1)  # both from the cache so far
    now[0] += 2
    with pytest.raises(Denied) as caught:
        await checker.verify(made)
    assert (caught.value.reason, caught.value.retry_after) == (Reason.ISSUER_UNAVAILABLE, 30)
    assert keys.lookups == 2
    for _ in range(2):
        await checker.verify(other)
    assert other_keys.lookups == 2  # verified again once, then from the cache
