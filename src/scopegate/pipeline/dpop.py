"""RFC 9449 DPoP at the resource server (SPEC §6.4): the names a proof and a bound token share,
the check of one request's proof, and the memory of proofs already used.

`thumbprint` is the RFC 7638 JWK thumbprint that a DPoP-bound token's `cnf.jkt` holds, and
`access_token_hash` the `ath` a proof carries for the token it is sent with.

`check_proof` is RFC 9449 §4.3. Every refusal is `Denied(invalid_dpop_proof)` with a detail
that names the check and never quotes the proof, the token or anything taken from them. The
checks, in order (when several fail, the first one names the denial):

1. one proof — exactly one `DPoP` field value, of at most `MAX_PROOF_SIZE` characters, which is
   measured before anything is parsed
2. syntax — a compact JWS of three canonical base64url parts whose header and claims are UTF-8
   JSON objects without duplicate member names (`verify.parse_unverified`), and a signature
3. `typ` — exactly `dpop+jwt` (§4.2; no `application/` prefix, no other case)
4. `alg` — an asymmetric JWS algorithm (`KEY_SHAPES`) among those accepted: never `none` or an
   HMAC, even if a caller's list named one (an HMAC key in a public header proves nothing)
5. `crit` — absent: no extension is understood (RFC 7515 §4.1.11)
6. `jwk` — a JSON object holding a public key only (no `d`, `p`, `q`, `dp`, `dq`, `qi`, `oth`,
   `k`), of the type and curve `alg` signs with, its own `alg`/`use`/`key_ops` (if any) allowing
   that, its key members canonical base64url (so that one key has one thumbprint), parsed by
   PyJWT's algorithm for `alg`; an RSA key of at least 2048 bits
7. signature — PyJWT's algorithm object verifies it with that key
8. claims — `jti` a non-empty string of at most `MAX_JTI_LENGTH` characters; `htm` the request's
   method, exactly (methods are case-sensitive); `htu` the request's URL (below); `iat` a finite
   number from `now - max_age` to `now + leeway`, both ends included; `ath` the hash of the
   access token; `nonce`, when present, a string
9. `nonce` — when the caller requires one, present and accepted by the caller: `NonceRequired`

The nonce comes last: a client told to use a fresh nonce should then succeed, and the
caller's `nonce` callable, which may keep state, never sees a proof that fails another check.

Left to the caller: the replay check (`refuse_replay`, with a `ReplayCache`), and comparing
`Proof.jkt` with the token's `cnf.jkt`, which is `token_binding_mismatch`, not a proof failure.

**Nonces.** `NonceRequired` is a `Denied` (reason `invalid_dpop_proof`), so a caller that knows
nothing of nonces still refuses. A caller that does catches it first and answers as RFC 9449 §9
says: `WWW-Authenticate: DPoP error="use_dpop_nonce"` and a fresh `DPoP-Nonce`. It is raised
for a missing nonce and for one the caller's `nonce` callable refuses (stale or unknown); a
`nonce` claim that is not a string is malformed, a plain `Denied`.

**`htu`.** RFC 9449 §4.3 compares it with the request's URL ignoring query and fragment, after
RFC 3986 §6.2.2 and §6.2.3 normalisation (`normalise_url`, applied to both):

- scheme and host lower-cased; only `http` and `https`, each with its default port (80, 443)
  removed whether written `:443`, `:` or `:0443`; an empty path is `/`;
- percent-escapes of unreserved characters decoded, other escapes' hex upper-cased, then dot
  segments removed (`%2e%2E` being the dot segment it spells), as `target.normalise_path`
  does to every request path before routing: the gateway serves `/a/../b` as `/b`, so a proof
  naming either names the resource that is served;
- everything else compares exactly and fails closed. Refused outright, never reinterpreted:
  userinfo (`https://api.example.com@evil.example/` names the host `evil.example`), a
  backslash (which WHATWG parsers read as `/`), raw non-ASCII or spaces, invalid escapes, escapes
  in the host, IPvFuture. Not made equal: `%2F` and `/` (a decoded slash would split a segment
  the gateway keeps whole), runs of slashes (not an RFC 3986 equivalence), trailing dots on host
  names, IDN and punycode spellings, IP addresses in other notations.

An attacker holding someone else's proof gains nothing from the equivalences: each one maps a
URL to the same scheme, origin and normalised path the gateway would route and forward, and a
proof is still only good for the one (method, URL) its signer named.

**Replay.** `ReplayCache` remembers each used proof by `Proof.replay_key` (the key's thumbprint
and the `jti`, RFC 9449 §11.1, hashed to a fixed size) until `iat + max_age`, the last moment
`check_proof` would accept it. Not by the proof's text: ECDSA signatures are malleable, and the
same proof with `s` replaced by `n - s` is another text that still verifies.

When the cache is full of unexpired entries, a new proof is refused, never one remembered entry
forgotten. Forgetting (oldest first, or soonest to expire) would let anyone able to send valid
proofs quickly push a captured proof of someone else's out of the cache and replay it inside its
window: a breach, silent. Refusing turns the same flood into a denial of service: visible, it
ends on its own no later than `max_age + leeway` after the flood stops (every entry expires by
then), and the rate limits in front bound any one client's share of the cache. Size it above
the proofs a deployment sees in `max_age + leeway` seconds at its peak.

Usage::

    proof = check_proof(
        request.headers.getall("DPoP"), method="GET", url="https://api.example.com/contacts",
        access_token=token, algorithms=("ES256", "EdDSA"), now=time.time(),
    )
    refuse_replay(proof, replays, now=time.time())
    if proof.jkt != principal.claims["cnf"]["jkt"]: ...   # token_binding_mismatch
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import heapq
import json
import math
import re
import string
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import jwt

from scopegate.config.algorithms import KEY_SHAPES
from scopegate.keys.claim_types import is_numeric_date
from scopegate.pipeline.target import remove_dot_segments
from scopegate.pipeline.verify import (
    b64url_decode,
    is_b64url,
    is_canonical_b64url,
    parse_unverified,
)
from scopegate.reasons import Denied, Reason

# RFC 7638 §3.2 (and RFC 8037 §2 for OKP): the members a thumbprint covers, per key type.
_THUMBPRINT_MEMBERS = {
    "RSA": ("e", "kty", "n"),
    "EC": ("crv", "kty", "x", "y"),
    "OKP": ("crv", "kty", "x"),
}

PROOF_TYPE = "dpop+jwt"
MAX_PROOF_SIZE = 8192  # characters: an RSA-8192 proof is under 3,000
MAX_JTI_LENGTH = 256  # RFC 9449 §4.2 asks for 96 random bits; this is generous
DEFAULT_MAX_AGE = 300.0
DEFAULT_LEEWAY = 5.0
DEFAULT_REPLAY_ENTRIES = 100_000

# Members only a private (or symmetric) JWK has: a proof that carries them gave its key away.
_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
_SCHEME_PORTS = {"http": 80, "https": 443}
_UNRESERVED = frozenset(string.ascii_letters + string.digits + "-._~")
# RFC 3986 §2: what a URI may hold as written (unreserved, reserved and `%`). No space, no
# backslash, no raw non-ASCII: an `htu` with one is not a URI, and is refused, not repaired.
_URI_CHARS = re.compile(r"[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]*")
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")
# host [":" port]: an IPv6 literal or a name of unreserved characters; no userinfo (`@`), no
# escapes, no sub-delims, at most five digits of port.
_AUTHORITY = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~]+)(?::([0-9]{0,5}))?")


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def thumbprint(jwk: Mapping[str, Any]) -> str:
    """The RFC 7638 SHA-256 thumbprint of a public JWK, base64url: the required members only,
    in lexicographic order, with no whitespace. `ValueError` for a key type it does not cover
    or a required member that is missing or not a string."""
    members = _THUMBPRINT_MEMBERS.get(jwk.get("kty"))  # type: ignore[arg-type]
    if members is None:
        raise ValueError("the key type is not RSA, EC or OKP")
    required = {name: jwk.get(name) for name in members}
    if not all(isinstance(value, str) for value in required.values()):
        raise ValueError("the key lacks a member its thumbprint needs")
    canonical = json.dumps(required, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
    return b64url(hashlib.sha256(canonical.encode("utf-8")).digest())


def access_token_hash(token: str) -> str:
    """RFC 9449 §4.2 `ath`: the base64url SHA-256 of the access token's ASCII text."""
    return b64url(hashlib.sha256(token.encode("ascii")).digest())


class NonceRequired(Denied):
    """A proof that is sound but for its nonce: missing, or not one the server accepts now.

    Reason `invalid_dpop_proof`, like any failed proof; the caller answers it with
    `error="use_dpop_nonce"` (`error`) and a fresh `DPoP-Nonce` header (RFC 9449 §8, §9)."""

    error: ClassVar[str] = "use_dpop_nonce"


@dataclass(frozen=True, slots=True)
class Proof:
    """What a proof that passed every check of `check_proof` says."""

    jkt: str  # RFC 7638 thumbprint of the proof's `jwk`: compared with the token's `cnf.jkt`
    jti: str
    iat: float
    nonce: str | None

    @property
    def replay_key(self) -> str:
        """What `ReplayCache` remembers this proof by: its key and its `jti` (unique per key,
        RFC 9449 §11.1), hashed so that every entry has the same small size. One client's
        `jti` never collides with another's."""
        # The thumbprint is base64url, without a dot: the pair is read back one way only.
        # A `jti` may hold lone surrogates (JSON `\\ud800`); they are hashed, not refused.
        pair = f"{self.jkt}.{self.jti}".encode("utf-8", "surrogatepass")
        return b64url(hashlib.sha256(pair).digest())


def _invalid(detail: str) -> Denied:
    return Denied(Reason.INVALID_DPOP_PROOF, detail)


def check_proof(
    values: Sequence[str],
    *,
    method: str,
    url: str,
    access_token: str,
    algorithms: Collection[str],
    now: float,
    max_age: float = DEFAULT_MAX_AGE,
    leeway: float = DEFAULT_LEEWAY,
    nonce: Callable[[str], bool] | None = None,
) -> Proof:
    """The proof a request carries, checked as RFC 9449 §4.3 says (the module docstring lists
    the checks in order); `Denied(invalid_dpop_proof)` for the first that fails, `NonceRequired`
    when `nonce` is given and the proof's nonce is missing or refused by it.

    `values` are every `DPoP` header field value of the request, in order; `url` the request's
    public URL (scheme, authority, path; a query or fragment is ignored); `algorithms` those
    accepted for proofs, of which only asymmetric ones are ever used."""
    if isinstance(values, str):  # a str is a Sequence[str] too: a caller's mistake
        raise TypeError("values is every DPoP field value, not one")
    proof = _the_one_proof(values)
    header, claims = _parse(proof)
    alg = _check_header(header, algorithms)
    key = _public_key(header.get("jwk"), alg)
    _check_signature(proof, key)
    jti = _check_jti(claims)
    _check_request(claims, method, url)
    iat = _check_iat(claims, now, max_age, leeway)
    _check_ath(claims, access_token)
    said = _check_nonce(claims, nonce)
    return Proof(jkt=thumbprint(header["jwk"]), jti=jti, iat=iat, nonce=said)


def _the_one_proof(values: Sequence[str]) -> str:
    if not values:
        raise _invalid("the request carries no DPoP proof")
    if len(values) > 1:
        raise _invalid("the request carries more than one DPoP header")
    proof = values[0]
    if len(proof) > MAX_PROOF_SIZE:  # before parsing: no work for an oversized header
        raise _invalid(f"the DPoP proof is longer than {MAX_PROOF_SIZE} characters")
    return proof


def _parse(proof: str) -> tuple[dict[str, Any], dict[str, Any]]:
    try:
        header, claims = parse_unverified(proof)
    except Denied as refused:
        raise _invalid(f"the DPoP proof is malformed: {_syntax_detail(refused.detail)}") from None
    if proof.endswith("."):
        raise _invalid("the DPoP proof is not signed")
    return header, claims


def _syntax_detail(detail: str) -> str:
    """The parser's detail, unless it quotes something of the proof (a duplicate member's
    name, which it writes with `repr`): then one that says what failed and quotes nothing."""
    if "'" in detail or '"' in detail:
        return "a JSON member name repeats"
    return detail


def _check_header(header: Mapping[str, Any], algorithms: Collection[str]) -> str:
    """`typ`, `alg` and `crit`; the algorithm, known to be in `KEY_SHAPES`."""
    if header.get("typ") != PROOF_TYPE:
        raise _invalid(f"the DPoP proof's typ is not {PROOF_TYPE}")
    alg = header.get("alg")
    # KEY_SHAPES names asymmetric algorithms only: never `none`, never an HMAC.
    if not isinstance(alg, str) or alg not in KEY_SHAPES:
        raise _invalid("the DPoP proof's alg is never accepted (asymmetric algorithms only)")
    if alg not in algorithms:
        raise _invalid("the DPoP proof's alg is not among those accepted for proofs")
    if "crit" in header:
        raise _invalid("the DPoP proof has critical header extensions, which are not understood")
    return alg


def _public_key(jwk: Any, alg: str) -> jwt.PyJWK:
    """The proof's `jwk`, checked to be a public key for `alg` and bound to it."""
    if jwk is None:
        raise _invalid("the DPoP proof has no jwk header")
    if not isinstance(jwk, dict):
        raise _invalid("the DPoP proof's jwk is not a JSON object")
    if _PRIVATE_MEMBERS & jwk.keys():
        raise _invalid("the DPoP proof's jwk holds private key members")
    kty, crv = KEY_SHAPES[alg]
    if jwk.get("kty") != kty or (crv is not None and jwk.get("crv") != crv):
        raise _invalid("the DPoP proof's jwk is not a key of the type its alg signs with")
    if jwk.get("alg", alg) != alg or not _for_signatures(jwk):
        raise _invalid("the DPoP proof's jwk is not meant for its alg or for signatures")
    for name in _THUMBPRINT_MEMBERS[kty]:
        value = jwk.get(name)
        if name not in ("kty", "crv") and not _is_canonical_member(value):
            raise _invalid("the DPoP proof's jwk members are not canonical base64url")
    try:
        key = jwt.PyJWK(dict(jwk), algorithm=alg)
    except (jwt.PyJWTError, ValueError, TypeError, KeyError, AttributeError):
        raise _invalid("the DPoP proof's jwk is not a valid public key") from None
    # PyJWT would warn on every verification with a short key; such a key proves nothing.
    if key.Algorithm.check_key_length(key.key):
        raise _invalid("the DPoP proof's jwk is shorter than its alg allows")
    return key


def _for_signatures(jwk: Mapping[str, Any]) -> bool:
    """RFC 7517 §4.2–4.3: a `use` or `key_ops` the key carries must allow verifying."""
    key_ops = jwk.get("key_ops")
    if key_ops is not None and (not isinstance(key_ops, list) or "verify" not in key_ops):
        return False
    return bool(jwk.get("use", "sig") == "sig")


def _is_canonical_member(value: Any) -> bool:
    """A key member as RFC 7518 writes it: one spelling per value, so one thumbprint per key."""
    return (
        isinstance(value, str) and bool(value) and is_b64url(value) and is_canonical_b64url(value)
    )


def _check_signature(proof: str, key: jwt.PyJWK) -> None:
    """The signature over the first two parts, by PyJWT's algorithm for the key's `alg`."""
    signing_input, _, encoded = proof.rpartition(".")
    try:
        signature = b64url_decode(encoded)
    except binascii.Error:  # unreachable after the canonical check; kept as a guard
        raise _invalid("the DPoP proof's signature is not base64url") from None
    if not key.Algorithm.verify(signing_input.encode("ascii"), key.key, signature):
        raise _invalid("the DPoP proof's signature does not verify with its jwk")


def _check_jti(claims: Mapping[str, Any]) -> str:
    if "jti" not in claims:
        raise _invalid("the DPoP proof has no jti claim")
    jti = claims["jti"]
    if not isinstance(jti, str) or not jti:
        raise _invalid("the DPoP proof's jti is not a non-empty string")
    if len(jti) > MAX_JTI_LENGTH:
        raise _invalid(f"the DPoP proof's jti is longer than {MAX_JTI_LENGTH} characters")
    return jti


def _check_request(claims: Mapping[str, Any], method: str, url: str) -> None:
    """`htm` and `htu`: the proof was made for this method and this URL."""
    if "htm" not in claims:
        raise _invalid("the DPoP proof has no htm claim")
    htm = claims["htm"]
    if not isinstance(htm, str):
        raise _invalid("the DPoP proof's htm is not a string")
    if htm != method:
        raise _invalid("the DPoP proof's htm is not this request's method")
    if "htu" not in claims:
        raise _invalid("the DPoP proof has no htu claim")
    htu = claims["htu"]
    if not isinstance(htu, str):
        raise _invalid("the DPoP proof's htu is not a string")
    normal_htu = normalise_url(htu)
    if normal_htu is None:
        raise _invalid("the DPoP proof's htu is not an absolute http(s) URL")
    normal_url = normalise_url(url)
    if normal_url is None:  # a Host header no URL can name: nothing a proof could match
        raise _invalid("the request's URL is not one a DPoP proof's htu can name")
    if normal_htu != normal_url:
        raise _invalid("the DPoP proof's htu is not this request's URL")


def _check_iat(claims: Mapping[str, Any], now: float, max_age: float, leeway: float) -> float:
    if "iat" not in claims:
        raise _invalid("the DPoP proof has no iat claim")
    iat = claims["iat"]
    if not is_numeric_date(iat):
        raise _invalid("the DPoP proof's iat is not a number")
    if iat < now - max_age:
        raise _invalid("the DPoP proof is too old (iat)")
    if iat > now + leeway:
        raise _invalid("the DPoP proof is issued in the future (iat)")
    return float(iat)


def _check_ath(claims: Mapping[str, Any], access_token: str) -> None:
    if "ath" not in claims:
        raise _invalid("the DPoP proof has no ath claim")
    try:
        expected = access_token_hash(access_token)
    except UnicodeEncodeError:  # no proof is for a token that is not ASCII
        expected = None
    if claims["ath"] != expected:
        raise _invalid("the DPoP proof's ath is not the hash of this access token")


def _check_nonce(claims: Mapping[str, Any], accepts: Callable[[str], bool] | None) -> str | None:
    said: str | None = claims.get("nonce")
    if "nonce" in claims and not isinstance(said, str):
        raise _invalid("the DPoP proof's nonce is not a string")
    if accepts is None:
        return said
    if said is None:
        raise NonceRequired(
            Reason.INVALID_DPOP_PROOF, "the DPoP proof has no nonce; one is required"
        )
    if not accepts(said):
        raise NonceRequired(Reason.INVALID_DPOP_PROOF, "the DPoP proof's nonce is not current")
    return said


def normalise_url(url: str) -> str | None:
    """`scheme://host[:port]/path` of an absolute http(s) URL in RFC 3986 §6.2.2/§6.2.3 normal
    form, without query and fragment; None for what is not such a URL or what this module
    refuses to reinterpret (see the module docstring).

    >>> normalise_url("HTTPS://API.Example.com:443/a/./%7euser/%2f?q#f")
    'https://api.example.com/a/~user/%2F'
    """
    base = url.partition("#")[0].partition("?")[0]
    if not _URI_CHARS.fullmatch(base) or _BAD_ESCAPE.search(base):
        return None
    scheme, separator, rest = base.partition("://")
    scheme = scheme.lower()
    default_port = _SCHEME_PORTS.get(scheme)
    if not separator or default_port is None:
        return None
    authority, _, path = rest.partition("/")
    match = _AUTHORITY.fullmatch(authority)
    if match is None:  # userinfo, no host, escapes or sub-delims in it, a bad port
        return None
    host, port = match.group(1).lower(), match.group(2)
    number = int(port) if port else default_port  # `host:` is the default port (§6.2.3)
    if number > 65535:
        return None
    origin = host if number == default_port else f"{host}:{number}"
    # Unreserved escapes decoded before dot segments go, so that `%2E%2E` is removed as `..`.
    path = remove_dot_segments(_ESCAPE.sub(_normal_escape, "/" + path))
    return f"{scheme}://{origin}{path}"


def _normal_escape(match: re.Match[str]) -> str:
    char = chr(int(match.group(1), 16))
    return char if char in _UNRESERVED else "%" + match.group(1).upper()


class ReplayCache:
    """The proofs used recently, each remembered until a time its caller names; pure, bounded.

    `first_use(key, until, now)` is True the first time `key` is seen and remembers it until
    `until` (included); False while it is remembered, and False when `max_entries` unexpired
    keys are remembered already (the module docstring says why a full cache refuses rather
    than forgets). Expired keys are dropped as time passes: a dict for lookups and a heap by
    expiry, each key pushed and popped once, so a call costs O(log n) amortised and the two
    never hold more than `max_entries` entries each.
    """

    __slots__ = ("_expiries", "_max_entries", "_until")

    def __init__(self, max_entries: int = DEFAULT_REPLAY_ENTRIES) -> None:
        if max_entries < 1:
            raise ValueError("a replay cache holds at least one entry")
        self._max_entries = max_entries
        self._until: dict[str, float] = {}
        # Exactly one (until, key) per key of `_until`: a key is added only while absent, and
        # leaves both at once when its time is past.
        self._expiries: list[tuple[float, str]] = []

    def first_use(self, key: str, until: float, now: float) -> bool:
        if math.isnan(until):  # would never expire, and would break the heap's order
            raise ValueError("until is not a number")
        self._forget_expired(now)
        if key in self._until:
            return False
        if until < now:
            return True  # nothing left to remember: it would be forgotten at once
        if len(self._until) >= self._max_entries:
            return False  # full: refuse rather than forget an unexpired proof
        self._until[key] = until
        heapq.heappush(self._expiries, (until, key))
        return True

    def _forget_expired(self, now: float) -> None:
        expiries = self._expiries
        while expiries and expiries[0][0] < now:
            _, key = heapq.heappop(expiries)
            del self._until[key]

    def __contains__(self, key: object) -> bool:
        """Whether `key` is remembered, as of the last `first_use`."""
        return key in self._until

    def __len__(self) -> int:
        return len(self._until)

    @property
    def max_entries(self) -> int:
        return self._max_entries


def refuse_replay(
    proof: Proof, seen: ReplayCache, *, now: float, max_age: float = DEFAULT_MAX_AGE
) -> None:
    """Remember `proof` until the last moment `check_proof` (with the same `max_age`) would
    accept it; `Denied(invalid_dpop_proof)` if it was used before, or if the cache is full."""
    key = proof.replay_key
    if seen.first_use(key, proof.iat + max_age, now):
        return
    if key in seen:
        raise _invalid("the DPoP proof was used before (jti)")
    raise _invalid("the DPoP proof cannot be checked for replay now: too many proofs in use")
