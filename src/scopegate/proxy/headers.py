"""Step 4 of SPEC §3, the header half: what the upstream and the client are allowed to see.

Order matters and is fixed here: every client-supplied header that could speak for scopegate is
removed first (hop-by-hop, `Connection`-named, spoofable forwarding and override headers, identity
headers in any spelling), and only then are scopegate's own values set. A client therefore can
never make scopegate drop a header it sets (`Connection: X-Auth-Subject`) or smuggle one in.

Usage::

    policy = HeaderPolicy(config.forward)
    upstream_head = policy.request_head(exchange)     # bytes, ready to send
    client_headers = response_headers(upstream_answer.headers, exchange.answer_headers)
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from scopegate.config.model import SCOPES_HEADER, Forwarding
from scopegate.pipeline import Principal
from scopegate.pipeline.scopes import read_claim
from scopegate.proxy.exchange import Exchange
from scopegate.server.request import Request

RawHeaders = Iterable[tuple[bytes, bytes]]
CLIENT_CERT_HEADER = "client-cert"  # RFC 9440

# RFC 9110 §7.6.1 and the de-facto ones every proxy drops (Keep-Alive, Proxy-Connection).
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)

# Set by scopegate from what it knows, or headers an upstream might trust to mean something about
# the request that only the edge may say (SPEC §3.4). Host and Content-Length are recomputed;
# Expect has been answered by scopegate itself. The path and URL override headers are those that
# proxies and frameworks have honoured in place of the request target: passed on, they would let
# a client reach a path other than the one its route was chosen (and authorised) for. Like every
# name here, they are dropped in any case and with `_` for `-` (`request_head` compares names so).
_REQUEST_DROPPED = frozenset(
    {
        "host",
        "content-length",
        "expect",
        "forwarded",
        "x-real-ip",
        "x-forwarded-host",
        "x-forwarded-proto",
        "x-forwarded-port",
        "x-forwarded-prefix",
        "x-original-url",
        "x-rewrite-url",
        "x-original-uri",
        "x-forwarded-path",
        "x-forwarded-uri",
        "x-override-url",
        "x-envoy-original-path",
        "x-http-method-override",
        "x-http-method",
        "x-method-override",
        "x-request-id",
    }
)


_RESPONSE_DROPPED = frozenset(name.encode("latin-1") for name in HOP_BY_HOP | {"content-length"})


def _canonical(name: str) -> str:
    """Header names as an upstream framework may read them: `X_Auth_Subject` is `x-auth-subject`."""
    return name.lower().replace("_", "-")


def connection_named(raw: RawHeaders) -> set[str]:
    """Lower-cased names listed in any `Connection` header: they are hop-by-hop for this message."""
    named: set[str] = set()
    for name, value in raw:
        if name.lower() == b"connection":
            named.update(
                token.strip().lower() for token in value.decode("latin-1").split(",") if token
            )
    return named


def claim_header_value(value: Any) -> str:
    """A claim as a header value: plain printable ASCII strings as they are, the rest as JSON."""
    if isinstance(value, str) and value.isascii() and value.isprintable():
        return value
    return json.dumps(value, ensure_ascii=True, separators=(",", ":"))


class HeaderPolicy:
    """What to strip and set on the way to the upstream, compiled once per configuration."""

    def __init__(self, forward: Forwarding, client_cert_header: str = CLIENT_CERT_HEADER) -> None:
        self._claims_to_headers = tuple(
            (claim, header.encode("ascii")) for claim, header in forward.claims_to_headers
        )
        identity = {_canonical(header) for _, header in forward.claims_to_headers}
        identity.add(_canonical(SCOPES_HEADER))
        if not forward.authorization:
            identity.add("authorization")
        # A client certificate forwarded by a proxy (RFC 9440) speaks for the TLS layer: it
        # reaches the upstream only from a proxy `forwarded_client_cert` trusts.
        certificate = {CLIENT_CERT_HEADER, _canonical(client_cert_header)}
        self._dropped_from_trusted = frozenset(
            name.encode("latin-1") for name in HOP_BY_HOP | _REQUEST_DROPPED | identity
        )
        self._dropped = self._dropped_from_trusted | {n.encode("latin-1") for n in certificate}

    def request_head(self, exchange: Exchange) -> bytes:
        """The request head to send upstream for `exchange`: its request line, the client's
        headers that may pass (bytes as received), then scopegate's own, then the body's framing.
        An upstream with `preserve_host` gets the client's `Host`."""
        request = exchange.request
        raw = request.raw_headers
        dropped = self._dropped_from_trusted if exchange.via_trusted_proxy else self._dropped
        dropped = _with_connection_named(dropped, raw)
        lines = [f"{request.method} {exchange.target} HTTP/1.1\r\n".encode("ascii")]
        forwarded_for: list[bytes] = []
        client_host = b""
        for name, value in raw:
            canonical = name.lower().replace(b"_", b"-")
            if canonical == b"host":
                client_host = value
            if canonical == b"x-forwarded-for":
                forwarded_for.append(value)
            elif canonical not in dropped:
                lines += (name, b": ", value, b"\r\n")
        if request.remote:
            forwarded_for.append(request.remote.encode("ascii"))
        if forwarded_for:
            lines += (b"X-Forwarded-For: ", b", ".join(forwarded_for), b"\r\n")
        lines += (b"X-Forwarded-Proto: ", request.scheme.encode("ascii"), b"\r\n")
        if client_host:
            lines += (b"X-Forwarded-Host: ", client_host, b"\r\n")
        upstream = exchange.upstream
        host = (
            client_host
            if upstream is None or upstream.preserve_host
            else upstream.authority.encode()
        )
        lines += (b"Host: ", host, b"\r\nX-Request-Id: ", exchange.request_id.encode("ascii"))
        lines.append(b"\r\n")
        if exchange.principal.authenticated:
            lines.append(self._identity(exchange.principal))
        lines += (_body_framing(request), b"\r\n")
        return b"".join(lines)

    def _identity(self, principal: Principal) -> bytes:
        """The identity header lines; worked out once per principal and policy (a cached token
        is the same principal on every request)."""
        if principal.derived_by is self:
            cached: bytes = principal.derived
            return cached
        lines: list[bytes] = []
        self._add_identity(lines, principal)
        block = b"".join(lines)
        object.__setattr__(principal, "derived", block)  # a memo, not a value change
        object.__setattr__(principal, "derived_by", self)
        return block

    def _add_identity(self, lines: list[bytes], principal: Principal) -> None:
        for claim, header in self._claims_to_headers:
            value = read_claim(principal.claims, claim)
            if value is not None:
                # ASCII without control characters (plain text or JSON): no line can be split.
                lines += (header, b": ", claim_header_value(value).encode("ascii"), b"\r\n")
        # A scope holding a control character could split the header: it is left out (it can
        # match no configured rule either, those are checked for whitespace at load time).
        scopes = " ".join(sorted(s for s in principal.scopes if s.isprintable())).encode()
        lines += (SCOPES_HEADER.encode("ascii"), b": ", scopes, b"\r\n")


def response_headers(
    raw: RawHeaders,
    extra: list[tuple[bytes, bytes]],
    cors: list[tuple[bytes, bytes]] | None = None,
) -> list[tuple[bytes, bytes]]:
    """The upstream's response headers minus hop-by-hop ones (framing is scopegate's to set),
    then each of `extra` the upstream did not send itself. `cors`: scopegate's CORS headers,
    which replace the upstream's own `Access-Control-*` ones (its `Vary` is kept, and ours,
    `Vary: Origin`, added)."""
    raw = list(raw)
    dropped = _with_connection_named(_RESPONSE_DROPPED, raw)
    out = []
    present = set()
    for name, value in raw:
        lower = name.lower()
        if lower not in dropped and (cors is None or lower[:15] != b"access-control-"):
            out.append((name, value))
            present.add(lower)
    out += [(name, value) for name, value in extra if name.lower() not in present]
    return out if cors is None else out + cors


def _body_framing(request: Request) -> bytes:
    """The header line that frames the body sent upstream: the client's length, or chunked when
    the client's body has none (it arrived chunked); nothing when there is no body."""
    if request.content_length is not None:
        return b"Content-Length: %d\r\n" % request.content_length
    if request.body_exists:
        return b"Transfer-Encoding: chunked\r\n"
    return b""


def _with_connection_named(
    dropped: frozenset[bytes], raw: list[tuple[bytes, bytes]]
) -> frozenset[bytes]:
    """`dropped` plus what `Connection` headers name. Most messages have no `Connection` header
    or one naming only headers dropped anyway (`keep-alive`): then `dropped` as it is."""
    if not any(name.lower() == b"connection" for name, _ in raw):
        return dropped
    named = {name.encode("latin-1") for name in connection_named(raw)}
    return dropped if named <= dropped else dropped | named
