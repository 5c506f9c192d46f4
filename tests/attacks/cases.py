"""Hostile requests, by family, each with the exact answer scopegate must give.

A case builds its raw request bytes from the running environment (so tokens are signed by the
real keys of the test issuer). `error` is the RFC 6750 code expected in `WWW-Authenticate`
("" for a bare challenge, None for no challenge at all). Unless `forwarded` says otherwise,
the recording upstream must have seen nothing.
"""

from __future__ import annotations

import base64
import json
import string
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from scopegate.devtools.keys import generate
from tests.e2e.conftest import AUDIENCE, Env

Build = Callable[[Env], bytes]


@dataclass(frozen=True)
class Attack:
    family: str
    name: str
    build: Build
    status: int
    error: str | None = None
    forwarded: str | None = None  # the target the upstream must see, for requests that pass


def raw(method: str, target: str, headers: list[tuple[str, str]] | None = None, body: bytes = b"",
        version: str = "HTTP/1.1", host: str | None = "gateway.test") -> bytes:  # fmt: skip
    """The request's bytes; `host` None sends no Host header at all."""
    lines = [f"{method} {target} {version}"]
    lines += [] if host is None else [f"Host: {host}"]
    lines.append("Connection: close")
    lines += [f"{name}: {value}" for name, value in headers or []]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def b64(data: bytes | str) -> str:
    data = data.encode() if isinstance(data, str) else data
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def claims(env: Env, **extra: Any) -> dict[str, Any]:
    now = int(time.time())
    base = {"iss": env.issuer, "aud": AUDIENCE, "sub": "attacker", "iat": now, "exp": now + 300,
            "scope": "read:contacts"}  # fmt: skip
    base.update(extra)
    return {k: v for k, v in base.items() if v is not None}


def forged(header: dict[str, Any], body: dict[str, Any] | str, signature: bytes = b"x") -> str:
    text = body if isinstance(body, str) else json.dumps(body)
    return f"{b64(json.dumps(header))}.{b64(text)}.{b64(signature)}"


def with_token(
    token: Callable[[Env], str], method: str = "GET", target: str = "/contacts"
) -> Build:
    return lambda env: raw(method, target, [("Authorization", f"Bearer {token(env)}")])


def signed(**kwargs: Any) -> Callable[[Env], str]:
    scopes = kwargs.pop("scopes", ("read:contacts",))
    return lambda env: env.token(scopes, **kwargs)


def resigned(mutate: Callable[[str], str], **kwargs: Any) -> Callable[[Env], str]:
    return lambda env: mutate(signed(**kwargs)(env))


def swap_signature(signature: bytes) -> Callable[[str], str]:
    return lambda token: ".".join([*token.split(".")[:2], b64(signature)])


B64URL_ALPHABET = string.ascii_uppercase + string.ascii_lowercase + string.digits + "-_"


def unused_bits_set(token: str) -> str:
    """The same token with the spare low bits of its signature's last character set: another
    spelling of the same signature bytes, which a lenient base64 decoder would take."""
    spare = {2: 0b1111, 3: 0b11}[len(token.rpartition(".")[2]) % 4]
    return token[:-1] + B64URL_ALPHABET[B64URL_ALPHABET.index(token[-1]) | spare]


def hs256_with_public_key(env: Env) -> str:
    import hashlib
    import hmac

    from cryptography.hazmat.primitives import serialization

    pem = env.rsa.private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    head = b64(json.dumps({"alg": "HS256", "kid": env.rsa.kid}))
    body = b64(json.dumps(claims(env)))
    mac = hmac.new(pem, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(mac)}"


def stranger(kid: str, **headers: Any) -> Callable[[Env], str]:
    key = generate("RS256", kid=kid)
    return lambda env: env.token(("read:contacts",), key=key, headers=headers or None)


def unsigned(alg: str) -> Callable[[Env], str]:
    return lambda env: forged({"alg": alg}, claims(env), b"")


T = "invalid_token"
FORGERY = [
    Attack("forgery", f"alg {alg}", with_token(unsigned(alg)), 401, T)
    for alg in ("none", "None", "NONE", "nOnE")
] + [
    Attack("forgery", "HS256 signed with the RSA public key", with_token(hs256_with_public_key), 401, T),
    Attack("forgery", "HS512 header", with_token(lambda env: forged({"alg": "HS512", "kid": env.rsa.kid}, claims(env))), 401, T),
    Attack("forgery", "algorithm not allowed for the issuer (ES384)", with_token(lambda env: env.token(key=generate("ES384", kid=env.ec.kid))), 401, T),
    Attack("forgery", "PS256 under an RS256 kid", with_token(lambda env: env.token(key=generate("PS256", kid=env.rsa.kid))), 401, T),
    Attack("forgery", "EC alg naming the RSA key", with_token(lambda env: forged({"alg": "ES256", "kid": env.rsa.kid}, claims(env))), 401, T),
    Attack("forgery", "signature stripped", with_token(resigned(swap_signature(b""))), 401, T),
    Attack("forgery", "signature zeroed", with_token(resigned(swap_signature(bytes(256)))), 401, T),
    Attack("forgery", "signature with unused bits set", with_token(resigned(unused_bits_set)), 401, T),
    Attack("forgery", "ECDSA signature with unused bits set", with_token(lambda env: unused_bits_set(env.token(key=env.ec))), 401, T),
    Attack("forgery", "ECDSA psychic signature r=s=0", with_token(lambda env: swap_signature(bytes(64))(env.token(key=env.ec))), 401, T),
    Attack("forgery", "claims altered after signing", with_token(lambda env: ".".join([env.token().split(".")[0], b64(json.dumps(claims(env, scope="admin"))), env.token().split(".")[2]])), 401, T),
    Attack("forgery", "kid path traversal", with_token(stranger("../../../../dev/null")), 401, T),
    Attack("forgery", "kid SQL injection", with_token(stranger("' OR '1'='1")), 401, T),
    Attack("forgery", "kid as a number", with_token(lambda env: forged({"alg": "RS256", "kid": 7}, claims(env))), 401, T),
    Attack("forgery", "embedded jwk header", with_token(stranger("evil-1", jwk=generate("RS256").public_jwk())), 401, T),
    Attack("forgery", "jku header to an attacker's keys", with_token(stranger("evil-2", jku="https://evil.example/jwks.json")), 401, T),
    Attack("forgery", "x5u header", with_token(stranger("evil-3", x5u="https://evil.example/cert.pem")), 401, T),
    Attack("forgery", "x5c header", with_token(stranger("evil-4", x5c=["MIIBIjAN"])), 401, T),
    Attack("forgery", "crit header", with_token(signed(headers={"crit": ["b64"], "b64": False})), 401, T),
    Attack("forgery", "JWE compact serialisation", with_token(lambda env: "eyJhbGciOiJSU0EtT0FFUCJ9.a.b.c.d"), 401, T),
    Attack("forgery", "nested JWT as the payload", with_token(lambda env: forged({"alg": "RS256", "cty": "JWT"}, json.dumps(env.token())[1:-1])), 401, T),
    Attack("forgery", "empty parts", with_token(lambda env: ".."), 401, T),
]  # fmt: skip

NOW = int(time.time())
CLAIMS = [
    Attack("claims", "expired", with_token(signed(lifetime=-3600)), 401, T),
    Attack("claims", "not yet valid", with_token(signed(extra_claims={"nbf": NOW + 3600})), 401, T),
    Attack("claims", "issued in the future", with_token(signed(extra_claims={"iat": NOW + 3600})), 401, T),
    Attack("claims", "no exp", with_token(signed(extra_claims={"exp": None})), 401, T),
    Attack("claims", "exp as a string", with_token(signed(extra_claims={"exp": str(NOW + 300)})), 401, T),
    Attack("claims", "wrong audience", with_token(signed(audience="https://billing.example.com")), 401, T),
    Attack("claims", "audience array without ours", with_token(signed(audience=["https://a.example", "https://b.example"])), 401, T),
    Attack("claims", "no audience", with_token(signed(extra_claims={"aud": None})), 401, T),
    Attack("claims", "audience as a number", with_token(signed(extra_claims={"aud": 1})), 401, T),
    Attack("claims", "unknown issuer", with_token(signed(issuer="https://evil.example.com/")), 401, T),
    Attack("claims", "issuer with a trailing slash added", with_token(lambda env: env.token(issuer=env.issuer + "/")), 401, T),
    Attack("claims", "duplicate claim names", with_token(lambda env: forged({"alg": "RS256", "kid": env.rsa.kid}, '{"iss":"x","iss":"y"}')), 401, T),
    Attack("claims", "scope as a number", with_token(signed(scopes=None, extra_claims={"scope": 42})), 403, "insufficient_scope"),
    Attack("claims", "scope as nested arrays", with_token(signed(scopes=None, extra_claims={"scope": [["read:contacts"]]})), 403, "insufficient_scope"),
    Attack("claims", "scope substring", with_token(signed(scopes=("read:contacts_all",))), 403, "insufficient_scope"),
    Attack("claims", "scope prefix", with_token(signed(scopes=("read",))), 403, "insufficient_scope"),
    Attack("claims", "scope in another case", with_token(signed(scopes=("READ:CONTACTS",))), 403, "insufficient_scope"),
    Attack("claims", "scope with a Cyrillic look-alike", with_token(signed(scopes=("re\u0430d:contacts",))), 403, "insufficient_scope"),
    Attack("claims", "scope glued with a comma", with_token(signed(scopes=("read:contacts,admin",))), 403, "insufficient_scope"),
    Attack("claims", "scope in a claim not configured", with_token(signed(scopes=None, extra_claims={"permissions": ["read:contacts"]})), 403, "insufficient_scope"),
]  # fmt: skip

HEADER = [
    Attack("header", "no Authorization", lambda env: raw("GET", "/contacts"), 401, ""),
    Attack("header", "empty Authorization", lambda env: raw("GET", "/contacts", [("Authorization", "")]), 401, ""),
    Attack("header", "Basic scheme", lambda env: raw("GET", "/contacts", [("Authorization", "Basic YTpi")]), 401, ""),
    Attack("header", "Digest scheme", lambda env: raw("GET", "/contacts", [("Authorization", 'Digest username="a"')]), 401, ""),
    Attack("header", "Bearer without a token", lambda env: raw("GET", "/contacts", [("Authorization", "Bearer")]), 400, "invalid_request"),
    Attack("header", "two Authorization headers", lambda env: raw("GET", "/contacts", [("Authorization", f"Bearer {env.token()}")] * 2), 400, "invalid_request"),
    Attack("header", "tab instead of space", lambda env: raw("GET", "/contacts", [("Authorization", f"Bearer\t{env.token()}")]), 401, ""),
    Attack("header", "two tokens in one header", lambda env: raw("GET", "/contacts", [("Authorization", f"Bearer {env.token()} {env.token()}")]), 400, "invalid_request"),
    Attack("header", "token with a quote", lambda env: raw("GET", "/contacts", [("Authorization", 'Bearer "abc"')]), 400, "invalid_request"),
    Attack("header", "huge token", lambda env: raw("GET", "/contacts", [("Authorization", "Bearer " + "a" * 9000)]), 401, T),
    Attack("header", "token in the query string", lambda env: raw("GET", f"/contacts?access_token={env.token()}"), 401, ""),
    Attack("header", "token in a cookie", lambda env: raw("GET", "/contacts", [("Cookie", f"access_token={env.token()}")]), 401, ""),
]  # fmt: skip

B = "bad_path"
PATHS = [
    Attack("paths", "encoded slash", lambda env: raw("GET", "/public/..%2Fcontacts"), 400),
    Attack("paths", "encoded slash, lower case", lambda env: raw("GET", "/public/..%2fcontacts"), 400),
    Attack("paths", "encoded backslash", lambda env: raw("GET", "/public/..%5Ccontacts"), 400),
    Attack("paths", "raw backslash", lambda env: raw("GET", "/public/..\\contacts"), 400),
    Attack("paths", "dot segments into a protected route", lambda env: raw("GET", "/public/../contacts"), 401, ""),
    Attack("paths", "encoded dot segments into a protected route", lambda env: raw("GET", "/public/%2e%2e/contacts"), 401, ""),
    Attack("paths", "mixed-case encoded dots", lambda env: raw("GET", "/public/%2E%2e/contacts"), 401, ""),
    Attack("paths", "double slashes onto a protected route", lambda env: raw("GET", "//contacts"), 401, ""),
    Attack("paths", "dot-dot with parameters", lambda env: raw("GET", "/public/..;/contacts"), 400),
    Attack("paths", "dot-dot with an encoded semicolon", lambda env: raw("GET", "/public/..%3Bx/contacts"), 400),
    Attack("paths", "encoded dot-dot with an encoded semicolon", lambda env: raw("GET", "/public/%2e%2e%3b/contacts"), 400),
    Attack("paths", "NUL byte", lambda env: raw("GET", "/public/a\x00b"), 400),
    Attack("paths", "encoded NUL", lambda env: raw("GET", "/public/a%00b"), 400),
    Attack("paths", "encoded CR LF, lower case", lambda env: raw("GET", "/public/a%0d%0aX-Injected:%201"), 400),
    Attack("paths", "encoded DEL", lambda env: raw("GET", "/public/a%7F"), 400),
    Attack("paths", "control byte", lambda env: raw("GET", "/public/a\x01b"), 400),
    Attack("paths", "raw non-ASCII", lambda env: raw("GET", "/public/caf\u00e9"), 400),
    Attack("paths", "overlong UTF-8 dots", lambda env: raw("GET", "/public/%C0%AE%C0%AE/contacts"), 400),
    Attack("paths", "overlong three-byte UTF-8 dots", lambda env: raw("GET", "/public/%e0%80%ae%e0%80%ae/contacts"), 400),
    Attack("paths", "surrogate encoded in UTF-8", lambda env: raw("GET", "/public/%ED%A0%80"), 400),
    Attack("paths", "code point above U+10FFFF", lambda env: raw("GET", "/public/%F4%90%80%80"), 400),
    Attack("paths", "lone UTF-8 continuation byte", lambda env: raw("GET", "/public/a%AEb"), 400),
    Attack("paths", "valid UTF-8 escapes are forwarded upper-cased", lambda env: raw("GET", "/public/caf%c3%a9"), 200, forwarded="/public/caf%C3%A9"),
    Attack("paths", "invalid escape", lambda env: raw("GET", "/public/%zz"), 400),
    Attack("paths", "raw fragment", lambda env: raw("GET", "/public/a#b"), 400),
    Attack("paths", "semicolon parameters are not a separator", lambda env: raw("GET", "/contacts;jsessionid=1"), 404),
    Attack("paths", "upper-case path is another path", lambda env: raw("GET", "/CONTACTS"), 404),
    Attack("paths", "absolute-form", lambda env: raw("GET", "http://evil.example/public/x"), 400),
    Attack("paths", "authority-form CONNECT", lambda env: raw("CONNECT", "evil.example:443"), 400),
    Attack("paths", "asterisk-form OPTIONS", lambda env: raw("OPTIONS", "*"), 400),
]  # fmt: skip

HEADERS = [
    Attack("headers", "duplicate Host", lambda env: raw("GET", "/public/x", [("Host", "evil.example")]), 400),
    Attack("headers", "space before the colon", lambda env: raw("GET", "/public/x", [("X-Auth-Subject ", "admin")]), 400),
    Attack("headers", "spoofed identity on a public route is stripped", lambda env: raw("GET", "/public/x", [("X-Auth-Subject", "admin"), ("X_Auth_Scopes", "admin")]), 200, forwarded="/public/x"),
    Attack("headers", "method override on a read-only token", lambda env: raw("GET", "/contacts", [("Authorization", f"Bearer {env.token()}"), ("X-HTTP-Method-Override", "DELETE")]), 200, forwarded="/contacts"),
    Attack("headers", "URL override headers", lambda env: raw("GET", "/public/x", [("X-Original-URL", "/contacts"), ("X-Rewrite-URL", "/contacts")]), 200, forwarded="/public/x"),
    Attack("headers", "Connection naming the identity header", lambda env: raw("GET", "/contacts", [("Authorization", f"Bearer {env.token()}"), ("Connection", "X-Auth-Subject")]), 200, forwarded="/contacts"),
    Attack("headers", "path override headers", lambda env: raw("GET", "/public/x", [("X-Original-URI", "/contacts"), ("X-Forwarded-Path", "/contacts"), ("X-Forwarded-Uri", "/contacts"), ("X-Override-URL", "/contacts"), ("X-Envoy-Original-Path", "/contacts")]), 200, forwarded="/public/x"),
    Attack("headers", "path override headers spelled with underscores", lambda env: raw("GET", "/public/x", [("X_Original_URI", "/contacts"), ("x_forwarded_path", "/contacts"), ("X_FORWARDED_URI", "/contacts"), ("X_Override_Url", "/contacts"), ("x_envoy_original_path", "/contacts")]), 200, forwarded="/public/x"),
    Attack("headers", "no Host on HTTP/1.1", lambda env: raw("GET", "/public/x", host=None), 400),
    Attack("headers", "HTTP/1.0 without Host is served", lambda env: raw("GET", "/public/x", version="HTTP/1.0", host=None), 200, forwarded="/public/x"),
    Attack("headers", "empty Host", lambda env: raw("GET", "/public/x", host=""), 400),
    Attack("headers", "Host with a space", lambda env: raw("GET", "/public/x", host="a b"), 400),
    Attack("headers", "Host as a list", lambda env: raw("GET", "/public/x", host="a,b"), 400),
    Attack("headers", "Host with userinfo", lambda env: raw("GET", "/public/x", host="user@a"), 400),
    Attack("headers", "Host with a path", lambda env: raw("GET", "/public/x", host="a/b"), 400),
    Attack("headers", "Host with an empty port", lambda env: raw("GET", "/public/x", host="a:"), 400),
    Attack("headers", "Host with a port out of range", lambda env: raw("GET", "/public/x", host="a:65536"), 400),
    Attack("headers", "Host with a bad IPv6 literal", lambda env: raw("GET", "/public/x", host="[::g]"), 400),
    Attack("headers", "Host with a percent-escape", lambda env: raw("GET", "/public/x", host="evil%2eexample"), 400),
]  # fmt: skip

SMUGGLING = [
    Attack("smuggling", "Content-Length with Transfer-Encoding", lambda env: raw("POST", "/public/x", [("Content-Length", "4"), ("Transfer-Encoding", "chunked")], b"0\r\n\r\n"), 400),
    Attack("smuggling", "Transfer-Encoding with Content-Length", lambda env: raw("POST", "/public/x", [("Transfer-Encoding", "chunked"), ("Content-Length", "4")], b"0\r\n\r\n"), 400),
    Attack("smuggling", "conflicting Content-Length", lambda env: raw("POST", "/public/x", [("Content-Length", "3"), ("Content-Length", "5")], b"abcde"), 400),
    Attack("smuggling", "repeated equal Content-Length", lambda env: raw("POST", "/public/x", [("Content-Length", "3"), ("Content-Length", "3")], b"abc"), 400),
    Attack("smuggling", "Content-Length list", lambda env: raw("POST", "/public/x", [("Content-Length", "3, 3")], b"abc"), 400),
    Attack("smuggling", "signed Content-Length", lambda env: raw("POST", "/public/x", [("Content-Length", "+3")], b"abc"), 400),
    Attack("smuggling", "negative Content-Length", lambda env: raw("POST", "/public/x", [("Content-Length", "-1")]), 400),
    Attack("smuggling", "Transfer-Encoding on HTTP/1.0", lambda env: raw("POST", "/public/x", [("Transfer-Encoding", "chunked")], b"0\r\n\r\n", version="HTTP/1.0"), 400),
    Attack("smuggling", "final coding not chunked", lambda env: raw("POST", "/public/x", [("Transfer-Encoding", "chunked, identity")], b"0\r\n\r\n"), 400),
    Attack("smuggling", "obfuscated chunked", lambda env: raw("POST", "/public/x", [("Transfer-Encoding", "xchunked")], b"0\r\n\r\n"), 400),
    Attack("smuggling", "a coding before chunked", lambda env: raw("POST", "/public/x", [("Transfer-Encoding", "gzip, chunked")], b"0\r\n\r\n"), 501),
    Attack("smuggling", "identity before chunked", lambda env: raw("POST", "/public/x", [("Transfer-Encoding", "identity, chunked")], b"0\r\n\r\n"), 501),
    Attack("smuggling", "a coding and chunked in two headers", lambda env: raw("POST", "/public/x", [("Transfer-Encoding", "gzip"), ("Transfer-Encoding", "chunked")], b"0\r\n\r\n"), 501),
    Attack("smuggling", "obs-fold continuation", lambda env: raw("GET", "/public/x", [("X-A", "a\r\n b")]), 400),
    Attack("smuggling", "HTTP/2.0 on the HTTP/1 port", lambda env: raw("GET", "/public/x", version="HTTP/2.0"), 400),
    Attack("smuggling", "HTTP/0.9-style version", lambda env: raw("GET", "/public/x", version="HTTP/0.9"), 400),
]  # fmt: skip

SIZE = [
    Attack("size", "one header line over the limit", lambda env: raw("GET", "/public/x", [("X-Big", "a" * 20000)]), 431),
    Attack("size", "header section over the limit", lambda env: raw("GET", "/public/x", [(f"X-H{i}", "a" * 1000) for i in range(20)]), 431),
    Attack("size", "request line over the limit", lambda env: raw("GET", "/public/" + "a" * 20000), 431),
    Attack("size", "declared body over the route limit", lambda env: raw("POST", "/small", [("Authorization", f"Bearer {env.token(())}"), ("Content-Length", "11")], b"x" * 11), 413),
    Attack("size", "no token and a huge declared body", lambda env: raw("POST", "/small", [("Content-Length", "99999999999")]), 401, ""),
]  # fmt: skip

ALL = FORGERY + CLAIMS + HEADER + PATHS + HEADERS + SMUGGLING + SIZE
