"""DPoP proofs (RFC 9449 §4.3, SPEC §6.4): every check its own refusal, real keys of every
accepted algorithm, `htu` normalisation, `iat` at the edges of its window, and the replay cache
bounded in time and in size."""

from __future__ import annotations

import base64
import json
import math
import string
import tracemalloc
from collections.abc import Callable, Mapping
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from hypothesis import given, settings
from hypothesis import strategies as st

from scopegate.config.algorithms import KEY_SHAPES
from scopegate.devtools.dpop import confirmation, make_proof, proof_jwk
from scopegate.devtools.keys import SigningKey, generate
from scopegate.pipeline import dpop
from scopegate.pipeline.dpop import (
    MAX_JTI_LENGTH,
    MAX_PROOF_SIZE,
    PROOF_TYPE,
    NonceRequired,
    Proof,
    ReplayCache,
    access_token_hash,
    check_proof,
    normalise_url,
    refuse_replay,
)
from scopegate.reasons import Denied, Reason
from tests.unit.strategies import UNRESERVED, anything, normal_paths

NOW = 1_700_000_000.0
URL = "https://api.example.com/contacts/7"
TOKEN = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ1c2VyLTEifQ.c2lnbmF0dXJlLW9mLXRoZS10b2tlbg"
EVERY_ALG = tuple(KEY_SHAPES)

_RSA = generate("RS256")
# One RSA key serves every RSA algorithm; the others need a key of their own type or curve.
KEYS: dict[str, SigningKey] = {
    alg: SigningKey(_RSA.kid, alg, _RSA.private_key) if shape.kty == "RSA" else generate(alg)
    for alg, shape in KEY_SHAPES.items()
}
EC = KEYS["ES256"]
OTHER_EC = generate("ES256")
P384 = KEYS["ES384"]
ED = KEYS["EdDSA"]
DROP = object()  # a member to leave out


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _text(value: Mapping[str, Any] | str) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def sign(header: Mapping[str, Any] | str, claims: Mapping[str, Any] | str, key: SigningKey) -> str:
    """A compact JWS of exactly this header and these claims (raw JSON text allowed), signed by
    `key` with its own algorithm by PyJWT, whatever the header says."""
    signing_input = f"{b64(_text(header).encode())}.{b64(_text(claims).encode())}"
    algorithm = jwt.get_algorithm_by_name(key.alg)
    signature = algorithm.sign(signing_input.encode(), algorithm.prepare_key(key.private_key))
    return f"{signing_input}.{b64(signature)}"


def good_header(key: SigningKey = EC) -> dict[str, Any]:
    return {"typ": PROOF_TYPE, "alg": key.alg, "jwk": proof_jwk(key)}


def good_claims() -> dict[str, Any]:
    return {
        "jti": "jti-1",
        "htm": "GET",
        "htu": URL,
        "iat": int(NOW),
        "ath": access_token_hash(TOKEN),
    }


def _changed(base: dict[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    for name, value in changes.items():
        if value is DROP:
            base.pop(name, None)
        else:
            base[name] = value
    return base


def forge(
    header: Mapping[str, Any] | None = None,
    claims: Mapping[str, Any] | None = None,
    *,
    key: SigningKey = EC,
    signer: SigningKey | None = None,
) -> str:
    """A proof of `key` with some header members and claims changed (`DROP` removes one),
    signed by `signer` (by default, `key` itself)."""
    made_header = _changed(good_header(key), header or {})
    made_claims = _changed(good_claims(), claims or {})
    return sign(made_header, made_claims, signer or key)


def forge_jwk(key: SigningKey = EC, **changes: Any) -> str:
    """A proof whose `jwk` has some members changed, signed by `key`."""
    return forge({"jwk": _changed(proof_jwk(key), changes)}, key=key)


def check(value: str, **overrides: Any) -> Proof:
    """`check_proof` for one `DPoP` field value, with this module's request unless overridden."""
    arguments: dict[str, Any] = {
        "method": "GET",
        "url": URL,
        "access_token": TOKEN,
        "algorithms": EVERY_ALG,
        "now": NOW,
    }
    arguments.update(overrides)
    return check_proof([value], **arguments)


def refusal(value: str, **overrides: Any) -> Denied:
    with pytest.raises(Denied) as caught:
        check(value, **overrides)
    assert caught.value.reason is Reason.INVALID_DPOP_PROOF
    assert caught.value.status == 401
    return caught.value


def assert_quotes_nothing(denied: Denied, *texts: str) -> None:
    """The detail quotes neither the proof, nor the token, nor any part of the proof."""
    for text in (*texts, TOKEN):
        for part in (text, *text.split(".")):
            if len(part) >= 4:
                assert part not in denied.detail
    assert "zq" not in denied.detail.lower()  # the marker planted in hostile values


def public_pem_hmac() -> str:
    """An HS256 "proof" keyed with the EC key's public JWK text: the alg confusion trick."""
    header = {"typ": PROOF_TYPE, "alg": "HS256", "jwk": proof_jwk(EC)}
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(good_claims()).encode())}"
    import hashlib
    import hmac

    mac = hmac.new(json.dumps(proof_jwk(EC)).encode(), signing_input.encode(), hashlib.sha256)
    return f"{signing_input}.{b64(mac.digest())}"


def short_rsa_proof() -> str:
    """A proof by a 1024-bit RSA key, signed by `cryptography` (PyJWT would warn)."""
    private = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    jwk = jwt.algorithms.RSAAlgorithm.to_jwk(private.public_key(), as_dict=True)
    header = {"typ": PROOF_TYPE, "alg": "RS256", "jwk": jwk}
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(good_claims()).encode())}"
    signature = private.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{b64(signature)}"


def off_curve_x() -> str:
    """A P-256 `jwk` whose point is not on the curve: same lengths, one bit of y flipped."""
    jwk = proof_jwk(EC)
    y = bytearray(base64.urlsafe_b64decode(jwk["y"] + "=="))
    y[-1] ^= 1
    return forge({"jwk": {**jwk, "y": b64(bytes(y))}})


def whole_private_key() -> str:
    """A proof that hands its private key over in its `jwk`."""
    private = EC.private_key
    assert isinstance(private, ec.EllipticCurvePrivateKey)
    return forge({"jwk": jwt.algorithms.ECAlgorithm.to_jwk(private, as_dict=True)})


def with_unused_bits(part: str, bits: int) -> str:
    alphabet = string.ascii_uppercase + string.ascii_lowercase + string.digits + "-_"
    return part[:-1] + alphabet[alphabet.index(part[-1]) | bits]


def replace_part(proof: str, index: int, part: str) -> str:
    parts = proof.split(".")
    parts[index] = part
    return ".".join(parts)


def jwk_member_with_unused_bits() -> str:
    jwk = proof_jwk(EC)  # x is 43 characters: its last carries 2 bits beyond the last byte
    return forge({"jwk": {**jwk, "x": with_unused_bits(jwk["x"], 0b01)}})


Case = Callable[[], str]

# One refusal a row: how the proof is made, and the words of the detail that name the check.
REFUSED: list[Any] = [
    # syntax
    pytest.param(lambda: "", "malformed", id="empty"),
    pytest.param(lambda: "zqabc", "malformed", id="one part"),
    pytest.param(lambda: "zqa.zqb", "malformed", id="two parts"),
    pytest.param(lambda: "a.b.c.d.e", "malformed", id="five parts: a JWE"),
    pytest.param(lambda: replace_part(forge(), 0, "!!!" + forge().split(".")[0]), "malformed", id="header not base64url"),
    pytest.param(lambda: replace_part(forge(), 2, forge().split(".")[2] + "=="), "malformed", id="padded signature"),
    pytest.param(lambda: with_unused_bits(forge(), 0b11), "malformed", id="signature with unused bits set"),
    pytest.param(lambda: forge()[:-2] + "A", "malformed", id="signature of a length no base64 has"),
    pytest.param(lambda: sign("{nope", good_claims(), EC), "malformed", id="header not JSON"),
    pytest.param(lambda: sign("[1, 2]", good_claims(), EC), "malformed", id="header a JSON array"),
    pytest.param(lambda: sign(good_header(), '"claims"', EC), "malformed", id="claims a JSON string"),
    pytest.param(lambda: sign(json.dumps(good_header())[:-1] + ', "zqdup": 1, "zqdup": 2}', good_claims(), EC), "malformed",
                 id="duplicate header member"),
    pytest.param(lambda: sign(json.dumps(good_header())[:-1] + f', "typ": "{PROOF_TYPE}"}}', good_claims(), EC), "malformed",
                 id="typ twice, same value"),
    pytest.param(lambda: sign(good_header(), json.dumps(good_claims())[:-1] + ', "jti": "zq-other"}', EC), "malformed",
                 id="jti twice"),
    pytest.param(lambda: sign(good_header(), json.dumps(good_claims())[:-1] + ', "zqx": NaN}', EC), "malformed",
                 id="NaN is not JSON"),
    pytest.param(lambda: b64(json.dumps(good_header()).encode("utf-16")) + "." + forge().split(".", 1)[1], "malformed",
                 id="header in UTF-16"),
    pytest.param(lambda: forge().rpartition(".")[0] + ".", "not signed", id="signature stripped"),
    # typ
    pytest.param(lambda: forge({"typ": DROP}), "typ", id="no typ"),
    pytest.param(lambda: forge({"typ": "JWT"}), "typ", id="typ JWT"),
    pytest.param(lambda: forge({"typ": "at+jwt"}), "typ", id="typ of an access token"),
    pytest.param(lambda: forge({"typ": "DPoP+JWT"}), "typ", id="typ in another case"),
    pytest.param(lambda: forge({"typ": "application/dpop+jwt"}), "typ", id="typ with application/"),
    pytest.param(lambda: forge({"typ": [PROOF_TYPE]}), "typ", id="typ an array"),
    # alg
    pytest.param(lambda: forge({"alg": DROP}), "alg is never accepted", id="no alg"),
    pytest.param(lambda: replace_part(forge({"alg": "none"}), 2, "c2ln"), "alg is never accepted", id="alg none"),
    pytest.param(lambda: replace_part(forge({"alg": "NONE"}), 2, "c2ln"), "alg is never accepted", id="alg NONE"),
    pytest.param(public_pem_hmac, "alg is never accepted", id="HS256 keyed with the public jwk"),
    pytest.param(lambda: forge({"alg": "ES256K"}), "alg is never accepted", id="alg ES256K"),
    pytest.param(lambda: forge({"alg": "zqRS256"}), "alg is never accepted", id="alg unknown"),
    pytest.param(lambda: forge({"alg": ["ES256"]}), "alg is never accepted", id="alg an array"),
    # crit
    pytest.param(lambda: forge({"crit": ["b64"], "b64": True}), "critical", id="crit b64"),
    pytest.param(lambda: forge({"crit": []}), "critical", id="crit empty"),
    # jwk
    pytest.param(lambda: forge({"jwk": DROP}), "no jwk", id="no jwk"),
    pytest.param(lambda: forge({"jwk": None}), "no jwk", id="jwk null"),
    pytest.param(lambda: forge({"jwk": json.dumps(proof_jwk(EC))}), "jwk is not a JSON object", id="jwk a JSON text"),
    pytest.param(lambda: forge({"jwk": [proof_jwk(EC)]}), "jwk is not a JSON object", id="jwk an array"),
    pytest.param(whole_private_key, "private", id="jwk the whole private key"),
    *[
        pytest.param(lambda name=name: forge_jwk(EC, **{name: "AQAB"}), "private", id=f"jwk with {name}")
        for name in ("d", "p", "q", "dp", "dq", "qi", "oth", "k")
    ],
    pytest.param(lambda: forge_jwk(KEYS["RS256"], oth=[{"r": "AQAB", "d": "AQAB", "t": "AQAB"}]), "private", id="RSA jwk with oth"),
    pytest.param(lambda: forge({"jwk": proof_jwk(KEYS["RS256"])}), "type its alg signs with", id="RSA jwk under ES256"),
    pytest.param(lambda: forge({"jwk": proof_jwk(P384)}), "type its alg signs with", id="P-384 jwk under ES256"),
    pytest.param(lambda: forge({"jwk": proof_jwk(EC)}, key=P384), "type its alg signs with", id="P-256 jwk under ES384"),
    pytest.param(lambda: forge_jwk(ED, crv="Ed448"), "type its alg signs with", id="Ed448 jwk under EdDSA"),
    pytest.param(lambda: forge_jwk(ED, crv="X25519"), "type its alg signs with", id="X25519 jwk under EdDSA"),
    pytest.param(lambda: forge_jwk(EC, kty="oct"), "type its alg signs with", id="jwk of kty oct"),
    pytest.param(lambda: forge_jwk(EC, kty=DROP), "type its alg signs with", id="jwk without kty"),
    pytest.param(lambda: forge_jwk(EC, alg="ES384"), "meant for its alg", id="jwk alg another"),
    pytest.param(lambda: forge_jwk(KEYS["PS256"], alg="RS256"), "meant for its alg", id="RSA jwk for RS256 under PS256"),
    pytest.param(lambda: forge_jwk(EC, use="enc"), "meant for its alg", id="jwk use enc"),
    pytest.param(lambda: forge_jwk(EC, key_ops=["encrypt"]), "meant for its alg", id="jwk key_ops without verify"),
    pytest.param(lambda: forge_jwk(EC, key_ops="verify"), "meant for its alg", id="jwk key_ops not a list"),
    pytest.param(lambda: forge_jwk(EC, x=DROP), "canonical base64url", id="jwk without x"),
    pytest.param(lambda: forge_jwk(EC, y=7), "canonical base64url", id="jwk y a number"),
    pytest.param(lambda: forge_jwk(EC, x=""), "canonical base64url", id="jwk x empty"),
    pytest.param(lambda: forge_jwk(EC, x=proof_jwk(EC)["x"] + "="), "canonical base64url", id="jwk x padded"),
    pytest.param(lambda: forge_jwk(KEYS["RS256"], n=proof_jwk(KEYS["RS256"])["n"].replace("-", "+").replace("_", "/")),
                 "canonical base64url", id="jwk n in the standard alphabet"),
    pytest.param(jwk_member_with_unused_bits, "canonical base64url", id="jwk x with unused bits set"),
    pytest.param(lambda: forge_jwk(EC, x=b64(b"\x01" * 31)), "not a valid public key", id="jwk x too short for P-256"),
    pytest.param(off_curve_x, "not a valid public key", id="jwk point not on the curve"),
    pytest.param(lambda: forge_jwk(ED, x=b64(b"\x01" * 31)), "not a valid public key", id="Ed25519 jwk x too short"),
    pytest.param(lambda: forge_jwk(KEYS["RS256"], e=b64(b"\x02")), "not a valid public key", id="RSA jwk with even e"),
    pytest.param(short_rsa_proof, "shorter", id="RSA 1024-bit jwk"),
    # signature
    pytest.param(lambda: forge(signer=OTHER_EC), "signature does not verify", id="signed by another key than its jwk"),
    pytest.param(lambda: forge(key=KEYS["RS256"], signer=KEYS["PS256"]), "signature does not verify", id="PS256 signature under RS256"),
    pytest.param(lambda: forge({"jku": "https://zq.example/jwks", "kid": "zq"}, signer=OTHER_EC), "signature does not verify",
                 id="jku and kid never name the key"),
    pytest.param(lambda: replace_part(forge(), 2, b64(bytes(64))), "signature does not verify", id="ECDSA r = s = 0"),
    pytest.param(lambda: replace_part(forge(), 1, forge(claims={"htm": "POST"}).split(".")[1]), "signature does not verify",
                 id="claims changed after signing"),
    pytest.param(lambda: replace_part(forge(), 2, b64(b"\x00" * 63)), "signature does not verify", id="signature one byte short"),
    pytest.param(lambda: forge(claims={"iat": 1, "htm": "zqPOST"}, signer=OTHER_EC), "signature does not verify",
                 id="signature is checked before any claim"),
    # jti
    pytest.param(lambda: forge(claims={"jti": DROP}), "no jti", id="no jti"),
    pytest.param(lambda: forge(claims={"jti": ""}), "jti is not a non-empty string", id="jti empty"),
    pytest.param(lambda: forge(claims={"jti": 7}), "jti is not a non-empty string", id="jti a number"),
    pytest.param(lambda: forge(claims={"jti": None}), "jti is not a non-empty string", id="jti null"),
    pytest.param(lambda: forge(claims={"jti": "zq" * (MAX_JTI_LENGTH // 2) + "x"}), "jti is longer", id="jti too long"),
    # htm
    pytest.param(lambda: forge(claims={"htm": DROP}), "no htm", id="no htm"),
    pytest.param(lambda: forge(claims={"htm": ["GET"]}), "htm is not a string", id="htm an array"),
    pytest.param(lambda: forge(claims={"htm": "get"}), "htm is not this request's method", id="htm in lower case"),
    pytest.param(lambda: forge(claims={"htm": "POST"}), "htm is not this request's method", id="htm another method"),
    pytest.param(lambda: forge(claims={"htm": "GET "}), "htm is not this request's method", id="htm with a space"),
    # htu
    pytest.param(lambda: forge(claims={"htu": DROP}), "no htu", id="no htu"),
    pytest.param(lambda: forge(claims={"htu": {"zq": URL}}), "htu is not a string", id="htu an object"),
    pytest.param(lambda: forge(claims={"htu": "/contacts/7"}), "not an absolute http(s) URL", id="htu a path only"),
    pytest.param(lambda: forge(claims={"htu": "//api.example.com/contacts/7"}), "not an absolute http(s) URL", id="htu scheme-relative"),
    pytest.param(lambda: forge(claims={"htu": "ftp://api.example.com/contacts/7"}), "not an absolute http(s) URL", id="htu ftp"),
    pytest.param(lambda: forge(claims={"htu": "https:api.example.com/contacts/7"}), "not an absolute http(s) URL", id="htu without //"),
    pytest.param(lambda: forge(claims={"htu": "https://zq@api.example.com/contacts/7"}), "not an absolute http(s) URL", id="htu with userinfo"),
    pytest.param(lambda: forge(claims={"htu": "https://api.example.com@zq.example/contacts/7"}), "not an absolute http(s) URL",
                 id="htu with userinfo naming our host"),
    pytest.param(lambda: forge(claims={"htu": "https://api.example.com\\@zq.example/contacts/7"}), "not an absolute http(s) URL",
                 id="htu with a backslash"),
    pytest.param(lambda: forge(claims={"htu": "https://api.example.com/contacts/%zq"}), "not an absolute http(s) URL",
                 id="htu with an invalid escape"),
    pytest.param(lambda: forge(claims={"htu": "https://api.example.com/contacts/ 7"}), "not an absolute http(s) URL", id="htu with a space"),
    pytest.param(lambda: forge(claims={"htu": "https://api.example.com/cöntacts/7"}), "not an absolute http(s) URL", id="htu with raw non-ASCII"),
    pytest.param(lambda: forge(claims={"htu": "https://api%2Eexample.com/contacts/7"}), "not an absolute http(s) URL", id="htu host escaped"),
    pytest.param(lambda: forge(claims={"htu": "https://api.example.com:99999/contacts/7"}), "not an absolute http(s) URL", id="htu port too big"),
    pytest.param(lambda: forge(claims={"htu": "https://api.example.com:443443/contacts/7"}), "not an absolute http(s) URL", id="htu port too long"),
    pytest.param(lambda: forge(claims={"htu": "https:///contacts/7"}), "not an absolute http(s) URL", id="htu without host"),
    pytest.param(lambda: forge(claims={"htu": "https://[v1.zq]/contacts/7"}), "not an absolute http(s) URL", id="htu IPvFuture"),
    pytest.param(lambda: forge(claims={"htu": "https://api.example.com/contacts/8"}), "htu is not this request's URL", id="htu another path"),
    pytest.param(lambda: forge(claims={"htu": "https://api.example.com/contacts"}), "htu is not this request's URL", id="htu a parent path"),
    pytest.param(lambda: forge(claims={"htu": "https://api.example.com/contacts/7/"}), "htu is not this request's URL", id="htu trailing slash"),
    pytest.param(lambda: forge(claims={"htu": "https://api.example.com/Contacts/7"}), "htu is not this request's URL", id="htu path case"),
    pytest.param(lambda: forge(claims={"htu": "https://zq.example.com/contacts/7"}), "htu is not this request's URL", id="htu another host"),
    pytest.param(lambda: forge(claims={"htu": "https://api.example.com.zq.example/contacts/7"}), "htu is not this request's URL",
                 id="htu host with our name as prefix"),
    pytest.param(lambda: forge(claims={"htu": "https://api.example.com:8443/contacts/7"}), "htu is not this request's URL", id="htu another port"),
    pytest.param(lambda: forge(claims={"htu": "https://api.example.com:80/contacts/7"}), "htu is not this request's URL",
                 id="htu http's port on https"),
    pytest.param(lambda: forge(claims={"htu": "http://api.example.com/contacts/7"}), "htu is not this request's URL", id="htu http"),
    # iat
    pytest.param(lambda: forge(claims={"iat": DROP}), "no iat", id="no iat"),
    pytest.param(lambda: forge(claims={"iat": str(int(NOW))}), "iat is not a number", id="iat a string"),
    pytest.param(lambda: forge(claims={"iat": True}), "iat is not a number", id="iat a boolean"),
    pytest.param(lambda: forge(claims={"iat": None}), "iat is not a number", id="iat null"),
    pytest.param(lambda: forge(claims={"iat": 10**400}), "iat is not a number", id="iat too large for a float"),
    pytest.param(lambda: sign(good_header(), json.dumps(good_claims()).replace(str(int(NOW)), "1e999"), EC), "iat is not a number",
                 id="iat overflowing to infinity"),
    pytest.param(lambda: forge(claims={"iat": int(NOW) - 301}), "too old", id="iat a second too old"),
    pytest.param(lambda: forge(claims={"iat": 0}), "too old", id="iat at the epoch"),
    pytest.param(lambda: forge(claims={"iat": int(NOW) + 6}), "in the future", id="iat a second past the leeway"),
    # ath
    pytest.param(lambda: forge(claims={"ath": DROP}), "no ath", id="no ath"),
    pytest.param(lambda: forge(claims={"ath": access_token_hash(TOKEN + "x")}), "ath is not the hash", id="ath of another token"),
    pytest.param(lambda: forge(claims={"ath": access_token_hash(TOKEN).upper()}), "ath is not the hash", id="ath in another case"),
    pytest.param(lambda: forge(claims={"ath": access_token_hash(TOKEN) + "="}), "ath is not the hash", id="ath padded"),
    pytest.param(lambda: forge(claims={"ath": TOKEN}), "ath is not the hash", id="ath the token itself"),
    pytest.param(lambda: forge(claims={"ath": None}), "ath is not the hash", id="ath null"),
    # nonce (not asked for here, but when present it must be a string)
    pytest.param(lambda: forge(claims={"nonce": 7}), "nonce is not a string", id="nonce a number"),
]  # fmt: skip


@pytest.mark.parametrize(("make", "words"), REFUSED)
def test_every_failed_check_is_refused_and_named(make: Case, words: str) -> None:
    bad = make()
    denied = refusal(bad)
    assert words in denied.detail
    assert not isinstance(denied, NonceRequired)
    assert_quotes_nothing(denied, bad)


@pytest.mark.parametrize("alg", EVERY_ALG)
def test_a_sound_proof_of_every_algorithm_is_accepted(alg: str) -> None:
    key = KEYS[alg]
    proof = make_proof(key, "GET", URL, access_token=TOKEN, iat=NOW, jti="jti-" + alg)
    assert check(proof) == Proof(
        jkt=confirmation(key)["jkt"], jti="jti-" + alg, iat=NOW, nonce=None
    )


@pytest.mark.parametrize("alg", EVERY_ALG)
def test_an_algorithm_not_accepted_for_proofs_is_refused(alg: str) -> None:
    proof = make_proof(KEYS[alg], "GET", URL, access_token=TOKEN, iat=NOW)
    others = tuple(other for other in EVERY_ALG if other != alg)
    assert "not among those accepted" in refusal(proof, algorithms=others).detail


@pytest.mark.parametrize("alg", ["none", "HS256", "HS512"])
def test_symmetric_and_none_algorithms_are_refused_even_when_listed(alg: str) -> None:
    forged = replace_part(forge({"alg": alg}), 2, "c2ln")
    assert "never accepted" in refusal(forged, algorithms=(*EVERY_ALG, alg)).detail


def test_the_jwk_may_carry_more_than_its_key_without_changing_its_thumbprint() -> None:
    jwk = {**proof_jwk(EC), "kid": "k-1", "alg": "ES256", "use": "sig", "key_ops": ["verify"]}
    proof = check(forge({"jwk": jwk}))
    assert proof.jkt == confirmation(EC)["jkt"]


def test_a_header_without_any_proof_is_refused() -> None:
    with pytest.raises(Denied) as caught:
        check_proof([], method="GET", url=URL, access_token=TOKEN, algorithms=EVERY_ALG, now=NOW)
    assert caught.value.reason is Reason.INVALID_DPOP_PROOF
    assert "no DPoP proof" in caught.value.detail


@pytest.mark.parametrize(
    "values",
    [
        pytest.param(lambda: [forge(), forge()], id="the same proof twice"),
        pytest.param(lambda: [forge(), forge(claims={"jti": "jti-2"})], id="two sound proofs"),
        pytest.param(lambda: [forge(), ""], id="a proof and an empty field"),
    ],
)
def test_more_than_one_dpop_header_is_refused(values: Callable[[], list[str]]) -> None:
    fields = values()
    with pytest.raises(Denied) as caught:
        check_proof(
            fields, method="GET", url=URL, access_token=TOKEN, algorithms=EVERY_ALG, now=NOW
        )
    assert caught.value.reason is Reason.INVALID_DPOP_PROOF
    assert "more than one DPoP header" in caught.value.detail
    assert_quotes_nothing(caught.value, *fields)


def test_one_proof_passed_as_a_string_is_a_programming_error() -> None:
    with pytest.raises(TypeError):
        check_proof(
            forge(), method="GET", url=URL, access_token=TOKEN, algorithms=EVERY_ALG, now=NOW
        )


def _proof_of_length(length: int) -> str:
    """A sound proof of exactly `length` characters, padded with an unknown header member."""
    for jti_length in range(8, 12):
        unpadded = len(forge({"pad": ""}, {"jti": "j" * jti_length}))
        start = max(0, (length - unpadded) * 3 // 4 - 8)  # base64: 4 characters per 3 bytes
        for pad in range(start, length):
            made = forge({"pad": "x" * pad}, {"jti": "j" * jti_length})
            if len(made) == length:
                return made
            if len(made) > length:
                break
    raise AssertionError(f"no proof of {length} characters")


def test_a_proof_of_the_largest_size_is_read_and_one_character_more_is_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    largest = _proof_of_length(MAX_PROOF_SIZE)
    check(largest)
    too_large = _proof_of_length(MAX_PROOF_SIZE + 1)

    def parse_nothing(token: str) -> Any:
        raise AssertionError("an oversized proof was parsed")

    monkeypatch.setattr(dpop, "parse_unverified", parse_nothing)
    denied = refusal(too_large)
    assert "longer than 8192" in denied.detail
    assert_quotes_nothing(denied, too_large)


def test_a_duplicate_member_is_refused_without_naming_it() -> None:
    header = json.dumps(good_header())[:-1] + ', "zq-secret-name": 1, "zq-secret-name": 2}'
    denied = refusal(sign(header, good_claims(), EC))
    assert "repeats" in denied.detail
    assert "secret" not in denied.detail


def _inside_escape(path: str, index: int) -> bool:
    return "%" in path[max(0, index - 2) : index]


def reference_remove_dots(path: str) -> str:
    """RFC 3986 §5.2.4, step by step as written, for an absolute path."""
    source, output = path, ""
    while source:
        if source.startswith("/./"):
            source = source[2:]
        elif source == "/.":
            source = "/"
        elif source.startswith("/../") or source == "/..":
            source = "/" + source[4:] if source.startswith("/../") else "/"
            output = output[: output.rfind("/")] if "/" in output else ""
        else:
            end = source.find("/", 1)
            end = len(source) if end == -1 else end
            output, source = output + source[:end], source[end:]
    return output


@st.composite
def url_spellings(draw: st.DrawFn, path: str) -> str:
    """A URL that normalises to `https://api.example.com` + `path`: unreserved characters
    escaped in either case of hex, other escapes in lower case, `./` and `x/../` detours, the
    host and scheme in any case, the default port written, a query and a fragment."""
    scheme = "".join(draw(st.sampled_from([c, c.upper()])) for c in "https")
    host = "".join(draw(st.sampled_from([c, c.upper()])) for c in "api.example.com")
    port = draw(st.sampled_from(["", ":443", ":", ":0443"]))
    pieces: list[str] = []
    for segment in path.split("/")[1:]:  # "/" is one empty segment; a trailing "/" one more
        pieces.extend(
            draw(st.lists(st.sampled_from([".", "%2e", "zz/..", "q/%2E%2e"]), max_size=2))
        )
        pieces.append(_respell(draw, segment))
    tail = draw(st.sampled_from(["", "?", "?a=1&b=/..", "#", "#frag/..", "?q#f"]))
    return f"{scheme}://{host}{port}/{'/'.join(pieces)}{tail}"


def _respell(draw: st.DrawFn, segment: str) -> str:
    out: list[str] = []
    index = 0
    while index < len(segment):
        if segment[index] == "%":
            escape = segment[index : index + 3]
            out.append(draw(st.sampled_from([escape, escape.lower()])))
            index += 3
            continue
        char = segment[index]
        if char in UNRESERVED:
            out.append(draw(st.sampled_from([char, f"%{ord(char):02X}", f"%{ord(char):02x}"])))
        else:
            out.append(char)
        index += 1
    return "".join(out)


@st.composite
def url_soup(draw: st.DrawFn) -> str:
    """URL-shaped text from URL pieces, valid or not."""
    pieces = st.sampled_from(
        ["http", "https", "HTTPS", "://", ":", "@", "[", "]", "::1", "h", "H", "/", ".", "..",
         "%", "%2e", "%2F", "%7e", "%zz", "?", "#", "\\", "443", "80", "99999", " ", "é"]
    )  # fmt: skip
    return "".join(draw(st.lists(pieces, max_size=12)))


class TestMethodAndToken:
    def test_a_proof_for_another_method_is_refused(self) -> None:
        proof = make_proof(EC, "POST", URL, access_token=TOKEN, iat=NOW)
        assert "htm" in refusal(proof, method="GET").detail
        assert check(proof, method="POST").jti

    def test_methods_compare_case_sensitively(self) -> None:
        proof = make_proof(EC, "PATCH", URL, access_token=TOKEN, iat=NOW)
        assert "htm" in refusal(proof, method="patch").detail

    def test_a_proof_for_another_token_is_refused(self) -> None:
        proof = make_proof(EC, "GET", URL, access_token="another-token", iat=NOW)
        denied = refusal(proof)
        assert "ath" in denied.detail
        assert "another-token" not in denied.detail

    def test_a_proof_without_ath_is_refused_though_a_token_is_sent(self) -> None:
        proof = make_proof(EC, "GET", URL, access_token=None, iat=NOW)
        assert "no ath" in refusal(proof).detail

    def test_an_access_token_that_is_not_ascii_matches_no_proof(self) -> None:
        assert "ath" in refusal(forge(), access_token="tökén").detail


class TestHtu:
    """`htu` against the request's URL: RFC 3986 §6.2.2 and §6.2.3 equivalences only."""

    @pytest.mark.parametrize(
        ("htu", "url"),
        [
            pytest.param("https://API.Example.COM/contacts/7", URL, id="host case"),
            pytest.param("HTTPS://api.example.com/contacts/7", URL, id="scheme case"),
            pytest.param("https://api.example.com:443/contacts/7", URL, id="default port written"),
            pytest.param("https://api.example.com:/contacts/7", URL, id="empty port"),
            pytest.param("https://api.example.com:0443/contacts/7", URL, id="default port with a leading zero"),
            pytest.param(URL, "https://api.example.com:443/contacts/7", id="the request's URL with the default port"),
            pytest.param("http://api.example.com:80/x", "http://api.example.com/x", id="http default port"),
            pytest.param("https://api.example.com:8443/x", "https://API.example.com:8443/x", id="another port, written alike"),
            pytest.param("https://api.example.com", "https://api.example.com/", id="empty path is /"),
            pytest.param("https://api.example.com?x=1", "https://api.example.com/", id="empty path before a query"),
            pytest.param("https://api.example.com/%63ontacts/%37", URL, id="unreserved escapes"),
            pytest.param("https://api.example.com/%7Euser/a%2Db", "https://api.example.com/~user/a-b", id="tilde and dash escaped"),
            pytest.param("https://api.example.com/caf%c3%a9", "https://api.example.com/caf%C3%A9", id="hex case of other escapes"),
            pytest.param("https://api.example.com/a%2fb", "https://api.example.com/a%2Fb", id="escaped slash in either case"),
            pytest.param("https://api.example.com/contacts/./7", URL, id="a dot segment"),
            pytest.param("https://api.example.com/x/../contacts/7", URL, id="a detour"),
            pytest.param("https://api.example.com/x/%2e%2E/contacts/7", URL, id="an escaped detour"),
            pytest.param("https://api.example.com/../contacts/7", URL, id=".. at the root"),
            pytest.param("https://api.example.com/contacts/7/.", "https://api.example.com/contacts/7/", id="final dot leaves a slash"),
            pytest.param(URL + "?page=2#top", URL, id="query and fragment of htu"),
            pytest.param(URL, URL + "?page=2", id="the request's query"),
            pytest.param(URL + "#?x", URL, id="a ? inside the fragment"),
            pytest.param("https://[ABCD::1]:8443/x", "https://[abcd::1]:8443/x", id="IPv6 literal case"),
            pytest.param("https://api.example.com/a;b=c/@x:y", "https://api.example.com/a;b=c/@x:y", id="sub-delims in the path"),
        ],
    )  # fmt: skip
    def test_equivalent_urls_are_accepted(self, htu: str, url: str) -> None:
        assert normalise_url(htu) == normalise_url(url)
        check(forge(claims={"htu": htu}), url=url)

    @pytest.mark.parametrize(
        ("htu", "url"),
        [
            pytest.param("https://api.example.com/a%2Fb", "https://api.example.com/a/b", id="escaped slash is not a slash"),
            pytest.param("https://api.example.com/a%3Fb", "https://api.example.com/a?b", id="escaped ? is not a query"),
            pytest.param("https://api.example.com/a%23b", "https://api.example.com/a#b", id="escaped # is not a fragment"),
            pytest.param("https://api.example.com/a%41", "https://api.example.com/aa", id="escaped A is not a"),
            pytest.param("https://api.example.com/a//b", "https://api.example.com/a/b", id="runs of slashes"),
            pytest.param("https://api.example.com/a/", "https://api.example.com/a", id="trailing slash"),
            pytest.param("https://api.example.com./a", "https://api.example.com/a", id="trailing dot on the host"),
            pytest.param("https://127.1/a", "https://127.0.0.1/a", id="short IPv4 form"),
            pytest.param("https://[::1]/a", "https://[0:0::1]/a", id="other IPv6 spelling"),
            pytest.param("https://xn--caf-dma.example/a", "https://café.example/a", id="punycode and unicode"),
            pytest.param("https://api.example.com:8443/a", "https://api.example.com:8444/a", id="other port"),
            pytest.param("https://api.example.com:443/a", "http://api.example.com:443/a", id="same port, other scheme"),
            pytest.param("https://api.example.com/%c3%a9", "https://api.example.com/%C3%A8", id="other escaped byte"),
        ],
    )  # fmt: skip
    def test_urls_that_only_look_alike_are_refused(self, htu: str, url: str) -> None:
        assert normalise_url(htu) != normalise_url(url) or normalise_url(url) is None
        refusal(forge(claims={"htu": htu}), url=url)

    @pytest.mark.parametrize(
        "url",
        [
            "https://api.example.com/contacts/8",
            "https://admin.example.com/contacts/7",
            "https://api.example.com:8443/contacts/7",
            "http://api.example.com/contacts/7",
        ],
    )
    def test_a_proof_is_for_one_url_only(self, url: str) -> None:
        assert "htu is not this request's URL" in refusal(forge(), url=url).detail

    @pytest.mark.parametrize(
        "url",
        [
            "https://api.example.com:bad/contacts/7",
            "https://evil@api.example.com/contacts/7",
            "https://api example.com/contacts/7",
            "/contacts/7",
        ],
    )
    def test_a_request_url_no_proof_can_name_is_refused_not_crashed_on(self, url: str) -> None:
        assert "the request's URL" in refusal(forge(), url=url).detail

    def test_normal_form(self) -> None:
        assert normalise_url("HTTP://Api.Example.com:80/%7ea/./b/../%c3%a9?q#f") == (
            "http://api.example.com/~a/%C3%A9"
        )

    @settings(max_examples=200, deadline=None)
    @given(data=st.data())
    def test_every_spelling_of_a_normal_url_is_accepted(self, data: st.DataObject) -> None:
        path = data.draw(normal_paths())
        url = "https://api.example.com" + path
        assert normalise_url(url) == url  # a normal path is its own normal form
        htu = data.draw(url_spellings(path))
        assert normalise_url(htu) == url
        check(forge(claims={"htu": htu}), url=url)

    @settings(max_examples=200, deadline=None)
    @given(normal_paths(), normal_paths())
    def test_distinct_normal_paths_are_distinct_urls(self, one: str, other: str) -> None:
        base = "https://api.example.com"
        assert (normalise_url(base + one) == normalise_url(base + other)) == (one == other)

    @settings(max_examples=100, deadline=None)
    @given(normal_paths().filter(lambda p: any(c.isalpha() for c in p)), st.data())
    def test_one_changed_letter_is_another_url(self, path: str, data: st.DataObject) -> None:
        letters = [i for i, c in enumerate(path) if c.isalpha() and not _inside_escape(path, i)]
        if not letters:
            return
        at = data.draw(st.sampled_from(letters))
        changed = path[:at] + path[at].swapcase() + path[at + 1 :]
        base = "https://api.example.com"
        denied = refusal(forge(claims={"htu": base + changed}), url=base + path)
        assert "htu is not this request's URL" in denied.detail

    @settings(max_examples=300, deadline=None)
    @given(
        st.lists(
            st.sampled_from(["", ".", "..", "a", "b", "%2e", "%2E%2e", ".a", "a."]), max_size=8
        )
    )
    def test_dot_segments_go_as_rfc_3986_section_5_2_4_says(self, segments: list[str]) -> None:
        path = "/" + "/".join(segments)
        decoded = path.replace("%2e", ".").replace("%2E", ".")
        assert normalise_url("https://h" + path) == "https://h" + reference_remove_dots(decoded)

    @settings(max_examples=500, deadline=None)
    @given(st.one_of(anything, anything.map(lambda text: "https://h/" + text), url_soup()))
    def test_normalising_never_fails_and_is_idempotent(self, url: str) -> None:
        normal = normalise_url(url)
        if normal is not None:
            assert normalise_url(normal) == normal


class TestIat:
    """The window is [now - max_age, now + leeway], both ends included."""

    @pytest.mark.parametrize(
        ("offset", "max_age", "leeway", "words"),
        [
            pytest.param(-300, 300, 5, None, id="exactly max_age old"),
            pytest.param(-300.25, 300, 5, "too old", id="a quarter second older"),
            pytest.param(+5, 300, 5, None, id="exactly the leeway ahead"),
            pytest.param(+5.25, 300, 5, "in the future", id="a quarter second further"),
            pytest.param(0, 0, 0, None, id="no window but now"),
            pytest.param(-0.5, 0, 0, "too old", id="no window, half a second old"),
            pytest.param(+0.5, 0, 0, "in the future", id="no leeway, half a second ahead"),
            pytest.param(-59.5, 60, 0, None, id="fractional iat inside a short window"),
            pytest.param(-60, 60, 0, None, id="a short window's edge"),
            pytest.param(-61, 60, 0, "too old", id="beyond a short window"),
            pytest.param(+30, 300, 30, None, id="a larger leeway"),
        ],
    )
    def test_window_edges(
        self, offset: float, max_age: float, leeway: float, words: str | None
    ) -> None:
        proof = forge(claims={"iat": NOW + offset})
        if words is None:
            assert check(proof, max_age=max_age, leeway=leeway).iat == NOW + offset
        else:
            assert words in refusal(proof, max_age=max_age, leeway=leeway).detail

    def test_defaults_are_five_minutes_and_five_seconds(self) -> None:
        check(forge(claims={"iat": NOW - 300}))
        check(forge(claims={"iat": NOW + 5}))
        refusal(forge(claims={"iat": NOW - 301}))
        refusal(forge(claims={"iat": NOW + 6}))


class TestNonce:
    def test_a_proof_without_the_required_nonce_asks_for_one(self) -> None:
        with pytest.raises(NonceRequired) as caught:
            check(forge(), nonce=lambda value: True)
        assert isinstance(caught.value, Denied)  # a caller unaware of nonces still refuses
        assert caught.value.reason is Reason.INVALID_DPOP_PROOF
        assert caught.value.error == "use_dpop_nonce"
        assert "no nonce" in caught.value.detail

    def test_a_stale_nonce_asks_for_a_fresh_one(self) -> None:
        seen: list[str] = []

        def current(value: str) -> bool:
            seen.append(value)
            return value == "fresh"

        with pytest.raises(NonceRequired) as caught:
            check(forge(claims={"nonce": "zq-stale"}), nonce=current)
        assert "not current" in caught.value.detail
        assert "zq-stale" not in caught.value.detail
        assert seen == ["zq-stale"]

    def test_an_accepted_nonce_is_returned(self) -> None:
        proof = check(forge(claims={"nonce": "fresh"}), nonce=lambda value: value == "fresh")
        assert proof.nonce == "fresh"

    def test_a_nonce_is_not_required_unless_asked_for(self) -> None:
        assert check(forge()).nonce is None
        assert check(forge(claims={"nonce": "whatever"})).nonce == "whatever"

    def test_a_nonce_that_is_not_a_string_is_malformed_not_stale(self) -> None:
        with pytest.raises(Denied) as caught:
            check(forge(claims={"nonce": 12}), nonce=lambda value: True)
        assert not isinstance(caught.value, NonceRequired)
        assert "not a string" in caught.value.detail

    @pytest.mark.parametrize(
        "claims",
        [
            pytest.param({"htm": "POST"}, id="another method"),
            pytest.param({"iat": NOW - 3600}, id="stale iat"),
            pytest.param({"ath": DROP}, id="no ath"),
        ],
    )
    def test_the_nonce_is_consulted_only_for_an_otherwise_sound_proof(
        self, claims: dict[str, Any]
    ) -> None:
        asked: list[str] = []

        def record(value: str) -> bool:
            asked.append(value)
            return True

        with pytest.raises(Denied) as caught:
            check(forge(claims={**claims, "nonce": "n"}), nonce=record)
        assert not isinstance(caught.value, NonceRequired)
        assert asked == []


class TestNeverQuoted:
    @settings(max_examples=200, deadline=None)
    @given(
        st.sampled_from(["typ", "alg", "jti", "htm", "htu", "ath", "nonce", "iat", "jwk"]),
        st.text(max_size=40).map(lambda text: "zq" + text),
    )
    def test_no_detail_quotes_a_hostile_value(self, name: str, value: str) -> None:
        header_members = ("typ", "alg", "jwk")
        made = forge({name: value}) if name in header_members else forge(claims={name: value})
        with pytest.raises(Denied) as caught:
            check(made, nonce=lambda nonce: False)
        assert caught.value.reason is Reason.INVALID_DPOP_PROOF
        assert_quotes_nothing(caught.value, made)

    @settings(max_examples=300, deadline=None)
    @given(anything)
    def test_any_text_at_all_is_only_ever_refused(self, text: str) -> None:
        denied = refusal(text)
        assert_quotes_nothing(denied, text)

    @settings(max_examples=200, deadline=None)
    @given(
        st.dictionaries(
            st.sampled_from(["kty", "crv", "x", "y", "n", "e", "alg", "use", "key_ops", "d"]),
            st.recursive(
                st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                lambda inner: st.lists(inner, max_size=2) | st.dictionaries(st.text(max_size=2), inner, max_size=2),
                max_leaves=3,
            ),
        )
    )  # fmt: skip
    def test_a_hostile_jwk_is_only_ever_refused(self, changes: dict[str, Any]) -> None:
        made = forge({"jwk": {**proof_jwk(EC), **changes}})
        try:
            check(made)
        except Denied as denied:
            assert denied.reason is Reason.INVALID_DPOP_PROOF
            assert_quotes_nothing(denied, made)
        else:  # only changes that leave the key as it was
            assert {k: v for k, v in changes.items() if k in ("kty", "crv", "x", "y")} == {
                k: proof_jwk(EC)[k] for k in changes if k in ("kty", "crv", "x", "y")
            }


class TestReplayCache:
    def test_first_use_then_replay(self) -> None:
        cache = ReplayCache()
        assert cache.first_use("k", until=NOW + 10, now=NOW)
        assert not cache.first_use("k", until=NOW + 10, now=NOW + 1)
        assert cache.first_use("other", until=NOW + 10, now=NOW + 1)

    def test_a_key_is_remembered_until_its_time_and_forgotten_after(self) -> None:
        cache = ReplayCache()
        assert cache.first_use("k", until=NOW + 10, now=NOW)
        assert not cache.first_use("k", until=NOW + 20, now=NOW + 10)  # `until` included
        assert cache.first_use("k", until=NOW + 20, now=NOW + 10.001)
        assert not cache.first_use("k", until=NOW + 20, now=NOW + 11)  # remembered again

    def test_a_key_already_past_its_time_is_not_kept(self) -> None:
        cache = ReplayCache(max_entries=1)
        assert cache.first_use("late", until=NOW - 1, now=NOW)
        assert len(cache) == 0
        assert cache.first_use("k", until=NOW + 1, now=NOW)

    def test_expired_entries_are_pruned(self) -> None:
        cache = ReplayCache(max_entries=1_000)
        for index in range(1_000):
            assert cache.first_use(f"k{index}", until=NOW + index, now=NOW)
        assert len(cache) == 1_000
        assert cache.first_use("new", until=NOW + 2_000, now=NOW + 499.5)
        assert len(cache) == 501  # k0 … k499 gone, k500 … k999 and "new" left
        assert "k499" not in cache and "k500" in cache
        assert cache.first_use("k0", until=NOW + 2_000, now=NOW + 499.5)

    def test_a_full_cache_refuses_new_keys_and_forgets_none(self) -> None:
        cache = ReplayCache(max_entries=100)
        assert cache.first_use("victim", until=NOW + 300, now=NOW)
        for index in range(10_000):  # a flood of fresh proofs
            cache.first_use(f"flood-{index}", until=NOW + 300, now=NOW + 1)
            assert len(cache) <= 100
        assert len(cache) == 100
        assert not cache.first_use("victim", until=NOW + 300, now=NOW + 2)  # still refused
        assert not cache.first_use("newcomer", until=NOW + 300, now=NOW + 2)  # the cost: refused
        assert "newcomer" not in cache
        # The denial of service ends when the flood's entries expire.
        assert cache.first_use("newcomer", until=NOW + 700, now=NOW + 301)

    def test_memory_stays_bounded_under_a_flood(self) -> None:
        cache = ReplayCache(max_entries=2_000)
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            for index in range(2_000):
                cache.first_use(f"fill-{index:08d}", until=math.inf, now=NOW)
            full = tracemalloc.get_traced_memory()[0] - before
            for index in range(50_000):  # refused: nothing more is kept
                cache.first_use(f"more-{index:08d}", until=math.inf, now=NOW)
            flooded = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
        assert len(cache) == 2_000
        assert flooded <= full * 1.05

    def test_memory_stays_bounded_while_entries_come_and_go(self) -> None:
        cache = ReplayCache(max_entries=1_000)
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            now = NOW
            peaks: list[int] = []
            for round_ in range(20):
                for index in range(1_000):
                    now += 0.01
                    assert cache.first_use(f"r{round_}-{index:06d}", until=now + 9.99, now=now)
                peaks.append(tracemalloc.get_traced_memory()[0] - before)
        finally:
            tracemalloc.stop()
        assert len(cache) <= 1_000
        # Twenty thousand entries later, still the size of about a thousand. Not flat to the
        # byte: a dict keeps its table after deletions until it is rebuilt, and the heap list
        # its capacity, so a round may hold up to a table's doubling more; a cache that kept
        # what expired would hold twenty times as much by the last round.
        assert max(peaks[5:]) <= peaks[1] * 2

    @settings(max_examples=300, deadline=None)
    @given(
        st.integers(1, 5),
        st.lists(
            st.tuples(st.sampled_from("abcdefg"), st.integers(-3, 10), st.integers(-2, 4)),
            max_size=40,
        ),
    )
    def test_agrees_with_a_plain_model(self, size: int, calls: list[tuple[str, int, int]]) -> None:
        """A dict searched in full on every call: remembered while now <= until; a full cache
        refuses. Time may even go backwards."""
        cache = ReplayCache(max_entries=size)
        model: dict[str, float] = {}
        now = 0.0
        for key, lasts, step in calls:
            now += step
            model = {k: until for k, until in model.items() if until >= now}
            if key in model:
                expected = False
            elif now + lasts < now:
                expected = True
            elif len(model) >= size:
                expected = False
            else:
                model[key] = now + lasts
                expected = True
            assert cache.first_use(key, until=now + lasts, now=now) is expected
            assert len(cache) == len(model) <= size

    def test_nonsense_is_refused(self) -> None:
        with pytest.raises(ValueError, match="at least one"):
            ReplayCache(max_entries=0)
        with pytest.raises(ValueError, match="not a number"):
            ReplayCache().first_use("k", until=math.nan, now=NOW)


class TestRefuseReplay:
    def test_a_proof_is_accepted_once(self) -> None:
        cache = ReplayCache()
        proof = check(forge())
        refuse_replay(proof, cache, now=NOW)
        with pytest.raises(Denied) as caught:
            refuse_replay(check(forge()), cache, now=NOW + 1)
        assert caught.value.reason is Reason.INVALID_DPOP_PROOF
        assert "used before" in caught.value.detail

    def test_the_same_jti_of_another_key_is_another_proof(self) -> None:
        cache = ReplayCache()
        refuse_replay(check(forge(key=EC)), cache, now=NOW)
        refuse_replay(check(forge(key=ED)), cache, now=NOW)
        assert len(cache) == 2

    def test_remembered_for_exactly_as_long_as_the_proof_is_accepted(self) -> None:
        cache = ReplayCache()
        proof_text = forge()
        refuse_replay(check(proof_text), cache, now=NOW)
        last = NOW + 300  # iat + max_age: still accepted, so still remembered
        with pytest.raises(Denied, match="used before"):
            refuse_replay(check(proof_text, now=last), cache, now=last)
        later = last + 0.001
        assert "too old" in refusal(proof_text, now=later).detail

    def test_a_shorter_max_age_is_honoured(self) -> None:
        cache = ReplayCache()
        refuse_replay(check(forge(), max_age=60), cache, now=NOW, max_age=60)
        assert "jti-1" not in cache  # keyed by the hash, never by the raw jti
        assert cache.first_use("x", until=NOW + 100, now=NOW + 60.5)
        assert len(cache) == 1  # the proof's entry is gone after iat + 60

    def test_a_malleated_ecdsa_signature_is_still_a_replay(self) -> None:
        """(r, s) and (r, n - s) both verify: the cache must key on key and jti, not text."""
        original = forge()
        head, body, signature = original.split(".")
        raw = base64.urlsafe_b64decode(signature + "==")
        order = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
        s = int.from_bytes(raw[32:], "big")
        twin = f"{head}.{body}.{b64(raw[:32] + (order - s).to_bytes(32, 'big'))}"
        assert twin != original
        cache = ReplayCache()
        refuse_replay(check(original), cache, now=NOW)
        with pytest.raises(Denied, match="used before"):
            refuse_replay(check(twin), cache, now=NOW)

    def test_a_full_cache_says_so(self) -> None:
        cache = ReplayCache(max_entries=1)
        refuse_replay(check(forge()), cache, now=NOW)
        with pytest.raises(Denied) as caught:
            refuse_replay(check(forge(claims={"jti": "jti-2"})), cache, now=NOW)
        assert caught.value.reason is Reason.INVALID_DPOP_PROOF
        assert "too many proofs" in caught.value.detail

    @pytest.mark.parametrize("length", [1, 17, MAX_JTI_LENGTH])
    def test_every_entry_has_the_same_size(self, length: int) -> None:
        proof = Proof(jkt=confirmation(EC)["jkt"], jti="j" * length, iat=NOW, nonce=None)
        assert len(proof.replay_key) == 43

    def test_a_jti_with_a_lone_surrogate_is_remembered(self) -> None:
        proof = check(sign(good_header(), json.dumps(good_claims() | {"jti": "\ud800"}), EC))
        cache = ReplayCache()
        refuse_replay(proof, cache, now=NOW)
        with pytest.raises(Denied, match="used before"):
            refuse_replay(proof, cache, now=NOW)


def test_a_jti_of_the_largest_length_is_accepted() -> None:
    assert check(forge(claims={"jti": "j" * MAX_JTI_LENGTH})).jti == "j" * MAX_JTI_LENGTH


def test_ec_key_from_cryptography_matches_devtools() -> None:
    """The thumbprint a proof yields is the one a bound token's `cnf.jkt` carries."""
    key = SigningKey("k", "ES256", ec.generate_private_key(ec.SECP256R1()))
    proof = make_proof(key, "GET", URL, access_token=TOKEN, iat=NOW)
    assert check(proof).jkt == confirmation(key)["jkt"]
