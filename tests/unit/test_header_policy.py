"""What reaches the upstream's and the client's header sections (SPEC §3.4), for any headers a
client or an upstream could send. End-to-end counterpart: tests/e2e/test_headers.py."""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

from hypothesis import given, settings
from hypothesis import strategies as st

from scopegate.config.model import Forwarding, Upstream
from scopegate.pipeline import ANONYMOUS, Principal
from scopegate.proxy.exchange import Exchange
from scopegate.proxy.headers import HOP_BY_HOP, HeaderPolicy, response_headers
from scopegate.server.request import Request

IDENTITY = ("X-Auth-Subject", "X-Auth-Tenant", "X-Auth-Scopes")
POLICY = HeaderPolicy(
    Forwarding(claims_to_headers=(("sub", "X-Auth-Subject"), ("org.id", "X-Auth-Tenant")))
)
USER = Principal(
    {"sub": "alice", "org": {"id": 42}}, frozenset({"read", "write"}), "https://id.example/"
)

# Names a client might send: identity headers in any spelling, hop-by-hop ones, forwarding ones,
# and ordinary ones.
_NAMES = st.sampled_from(
    [
        "X-Auth-Subject", "x-auth-subject", "X_Auth_Subject", "X-AUTH-SCOPES", "x_auth_tenant",
        "Connection", "Keep-Alive", "Transfer-Encoding", "TE", "Upgrade", "Proxy-Authorization",
        "Host", "Content-Length", "X-Forwarded-For", "X-Forwarded-Host", "Forwarded",
        "X-Request-Id", "Authorization", "Accept", "X-Custom", "Cookie", "X-Trace",
    ]
)  # fmt: skip
_VALUES = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=20)
_CONNECTION_VALUES = st.sampled_from(
    ["close", "keep-alive", "X-Custom", "X-Auth-Subject", "Cookie"]
)


@st.composite
def client_headers(draw: st.DrawFn) -> list[tuple[bytes, bytes]]:
    headers = []
    for name in draw(st.lists(_NAMES, max_size=12)):
        value = draw(_CONNECTION_VALUES if name == "Connection" else _VALUES)
        headers.append((name.encode(), value.encode()))
    return headers


@dataclass
class ClientHead:
    """What the header policy reads of a client's request: its head, as received, no body."""

    raw_headers: list[tuple[bytes, bytes]]
    remote: str | None
    method: str = "GET"
    scheme: str = "http"
    content_length: int | None = None
    body_exists: bool = False


def request_head(
    policy: HeaderPolicy,
    raw: list[tuple[bytes, bytes]],
    principal: Principal,
    *,
    client_ip: str | None,
    upstream_host: str | None,
    request_id: str,
) -> bytes:
    """The head `policy` sends for `GET /x` with `raw` headers; `upstream_host` None: the
    upstream keeps the client's `Host`."""
    upstream = Upstream("u", "http", upstream_host or "unused", 80,
                        preserve_host=upstream_host is None)  # fmt: skip
    request = cast(Request, ClientHead(raw, client_ip))
    exchange = Exchange(request, request_id, principal=principal, upstream=upstream, target="/x")
    return policy.request_head(exchange)


def lines_of(head: bytes) -> list[tuple[str, str]]:
    text = head.decode("latin-1")
    assert text.endswith("\r\n\r\n")
    request_line, *fields = text[:-4].split("\r\n")
    assert request_line == "GET /x HTTP/1.1"
    parsed = []
    for field in fields:
        name, sep, value = field.partition(": ")
        assert sep, f"not a header line: {field!r}"
        parsed.append((name, value))
    return parsed


def canonical(name: str) -> str:
    return name.lower().replace("_", "-")


@settings(max_examples=300)
@given(raw=client_headers(), authenticated=st.booleans())
def test_identity_headers_come_only_from_the_verified_token(
    raw: list[tuple[bytes, bytes]], authenticated: bool
) -> None:
    principal = USER if authenticated else ANONYMOUS
    head = request_head(
        POLICY,
        raw,
        principal,
        client_ip="10.0.0.1",
        upstream_host="api.internal",
        request_id="rid-1",
    )
    fields = lines_of(head)
    names = [canonical(name) for name, _ in fields]
    identity = {canonical(h): value for h, value in fields if canonical(h) in
                {canonical(i) for i in IDENTITY}}  # fmt: skip
    if authenticated:
        assert identity == {"x-auth-subject": "alice", "x-auth-tenant": "42",
                            "x-auth-scopes": "read write"}  # fmt: skip
        assert all(names.count(canonical(i)) == 1 for i in IDENTITY)
    else:
        assert identity == {}
    assert not HOP_BY_HOP & set(names)
    assert names.count("host") == 1 and ("Host", "api.internal") in fields
    assert names.count("x-request-id") == 1 and ("X-Request-Id", "rid-1") in fields
    assert "forwarded" not in names and "content-length" not in names
    forwarded_for = [value for name, value in fields if name == "X-Forwarded-For"]
    assert len(forwarded_for) == 1 and forwarded_for[0].endswith("10.0.0.1")


@settings(max_examples=300)
@given(raw=client_headers())
def test_ordinary_headers_pass_unchanged_and_in_order(raw: list[tuple[bytes, bytes]]) -> None:
    head = request_head(POLICY, raw, USER, client_ip=None, upstream_host=None, request_id="r")
    named = {
        value.decode().strip().lower()
        for name, value in raw
        if name.lower() == b"connection"
        for value in value.split(b",")
    }
    ordinary = {"accept", "x-custom", "cookie", "x-trace", "authorization"} - named
    sent = [(n.decode(), v.decode()) for n, v in raw if canonical(n.decode()) in ordinary]
    received = [(n, v) for n, v in lines_of(head) if canonical(n) in ordinary]
    assert received == sent


@settings(max_examples=300)
@given(raw=client_headers())
def test_answers_lose_hop_by_hop_headers_and_gain_the_request_id_once(
    raw: list[tuple[bytes, bytes]],
) -> None:
    out = response_headers(raw, [(b"X-Request-Id", b"rid-1")])
    names = [name.decode().lower() for name, _ in out]
    assert not HOP_BY_HOP & set(names)
    assert "content-length" not in names
    assert names.count("x-request-id") == max(1, sum(n.lower() == b"x-request-id" for n, _ in raw))
    named = {
        token.strip().lower()
        for name, value in raw
        if name.lower() == b"connection"
        for token in value.decode().split(",")
    }
    assert not named & set(names)


def test_identity_worked_out_once_per_policy_follows_a_policy_change() -> None:
    """A cached principal keeps its identity lines; a reloaded policy never reuses another's."""
    principal = Principal({"sub": "bob", "org": {"id": 7}}, frozenset({"read"}), "https://i/")
    other = HeaderPolicy(Forwarding(claims_to_headers=(("org.id", "X-Org"),)))

    def identity(policy: HeaderPolicy) -> list[tuple[str, str]]:
        head = request_head(
            policy, [], principal, client_ip=None, upstream_host="u", request_id="r"
        )
        return [(n, v) for n, v in lines_of(head) if n.startswith("X-Auth") or n == "X-Org"]

    first = identity(POLICY)
    assert first == identity(POLICY)
    assert identity(other) == [("X-Org", "7"), ("X-Auth-Scopes", "read")]
    assert identity(POLICY) == first == [("X-Auth-Subject", "bob"), ("X-Auth-Tenant", "7"),
                                         ("X-Auth-Scopes", "read")]  # fmt: skip


# SPEC §3.4: what a client may never say to an upstream, under any spelling. The first group is
# removed outright; the second is removed and then set by scopegate itself.
REMOVED = ("Forwarded", "X-Real-IP", "X-Forwarded-Port", "X-Forwarded-Prefix", "X-Original-URL",
           "X-Rewrite-URL", "X-Original-URI", "X-Forwarded-Path", "X-Forwarded-Uri",
           "X-Override-URL", "X-Envoy-Original-Path", "X-HTTP-Method-Override", "X-HTTP-Method",
           "X-Method-Override")  # fmt: skip
REPLACED = ("X-Forwarded-Host", "X-Forwarded-Proto", "X-Request-Id", *IDENTITY)


@st.composite
def spellings(draw: st.DrawFn, names: tuple[str, ...]) -> str:
    """One of `names` with each letter in either case and each `-` possibly a `_`."""
    name = draw(st.sampled_from(names))
    flips = draw(st.lists(st.booleans(), min_size=len(name), max_size=len(name)))
    return "".join(
        (c.swapcase() if c.isalpha() else "_" if c == "-" else c) if flip else c
        for c, flip in zip(name, flips, strict=True)
    )


@settings(max_examples=500)
@given(
    spoofed=st.lists(spellings(REMOVED + REPLACED), min_size=1, max_size=8),
    authenticated=st.booleans(),
)
def test_no_spoofable_header_reaches_the_upstream_in_any_spelling(
    spoofed: list[str], authenticated: bool
) -> None:
    """Path, URL and method overrides, forwarding and identity headers: whatever a client
    sends under those names, in any case and with `_` for `-`, is not in the forwarded head."""
    raw = [(b"Host", b"gateway.test")]
    raw += [(name.encode(), f"spoofed-{i}".encode()) for i, name in enumerate(spoofed)]
    head = request_head(POLICY, raw, USER if authenticated else ANONYMOUS, client_ip="10.0.0.1",
                        upstream_host="api.internal", request_id="rid-1")  # fmt: skip
    assert b"spoofed-" not in head
    names = {canonical(name) for name, _ in lines_of(head)}
    assert not names & {canonical(name) for name in REMOVED}
