"""Step 1 of SPEC §3, the message half: HTTP/1 framing the gateway refuses to pass on.

llhttp, the server's parser, already rejects most of RFC 9112's ambiguous framing before a
request exists: `Content-Length` with `Transfer-Encoding`, repeated or non-numeric
`Content-Length`, obs-fold, bare LF, whitespace before the colon. What it lets through and is
refused here: HTTP versions other than 1.0 and 1.1, `Transfer-Encoding` on HTTP/1.0, a
`Transfer-Encoding` whose final coding is not `chunked`, a request head larger than
`max_header_bytes`, a repeated header that must be single (`Host`: two of them would let
the gateway and the upstream disagree on which site is asked), an HTTP/1.1 request without
`Host`, and a `Host` that is not a `host[:port]` (see `valid_host`). All of these are 400.
A `Transfer-Encoding` other than `chunked` alone (`gzip, chunked`) is 501: the gateway would
otherwise have to decode a coding it does not implement, or pass on a body whose meaning it
changed by dropping it.
Every one of these closes the connection: after a framing doubt, nothing else on it can be trusted.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable

from scopegate.reasons import Denied, Reason

SUPPORTED_VERSIONS = frozenset({(1, 0), (1, 1)})
# Fields defined as a single value (RFC 9110), where a second copy can only be an attack or a
# bug; the set aiohttp refuses too.
SINGLETONS = frozenset(
    {
        b"host",
        b"content-length",
        b"content-location",
        b"content-range",
        b"content-type",
        b"etag",
        b"max-forwards",
        b"server",
        b"user-agent",
    }
)


# `host[:port]` as the gateway passes it on (in X-Forwarded-Host, or as Host with
# `preserve_host`). A name is held to what DNS names are made of: dot-separated labels of
# letters, digits, `-`, and RFC 3986's other unreserved `_` and `~`, with an optional final dot
# (an IPv4 address is such a name). Percent-escapes and sub-delims (`,` `;` `=` `!` ...) are
# refused although RFC 3986 allows them, and so are empty labels: an upstream that reads the
# value as a list, a URL or an escaped name would see another site than the one the gateway was
# asked for. An IP literal is `[IPv6]`, checked by `ipaddress` (no zone id, no IPvFuture); a port
# is 1 to 5 digits. Whitespace around the value is not part of it (RFC 9112 §5), and llhttp
# leaves trailing whitespace in.
_HOST = re.compile(
    rb"[ \t]*(?:[A-Za-z0-9_~-]+(?:\.[A-Za-z0-9_~-]+)*\.?|\[([0-9A-Fa-f:.]+)\])"
    rb"(?::([0-9]{1,5}))?[ \t]*"
)
_MAX_PORT = 65535
# Clients send the same few Host values on every request: those found valid are remembered, so
# that a request costs a set lookup instead of a regular expression. Bounded, so that a client
# sending a new value each time only pays the check.
_HOSTS_REMEMBERED = 256
_HOSTS_SEEN_VALID: set[bytes] = set()


def valid_host(value: bytes) -> bool:
    """Whether a `Host` value is a `host[:port]` the gateway will pass on; an empty one names
    no site and is not."""
    match = _HOST.fullmatch(value)
    if match is None:
        return False
    if match.lastindex is None:  # a name without a port: nothing is left to check
        return True
    literal, port = match.groups()
    if port is not None and int(port) > _MAX_PORT:
        return False
    if literal is None:
        return True
    try:
        ipaddress.IPv6Address(literal.decode("ascii"))
    except ValueError:
        return False
    return True


def _framing_error(detail: str) -> Denied:
    return Denied(Reason.INVALID_REQUEST, detail, challenge=False)


def head_too_large(max_header_bytes: int) -> Denied:
    """The 431 of a head over the limit: counted here once the head is whole, and by the server
    while it is still arriving (so that an endless head is cut off)."""
    return Denied(
        Reason.HEADERS_TOO_LARGE,
        f"the request line and headers exceed {max_header_bytes} bytes",
        challenge=False,
    )


def head_size(method: str, target: str, raw_headers: Iterable[tuple[bytes, bytes]]) -> int:
    """Bytes of the request line and header section as sent (give or take optional spaces)."""
    size = len(method) + len(target) + len(" HTTP/1.1\r\n") + 2
    for name, value in raw_headers:
        size += len(name) + len(value) + 4  # ": " and CRLF
    return size


def check_framing(
    version: tuple[int, int],
    method: str,
    target: str,
    raw_headers: Iterable[tuple[bytes, bytes]],
    max_header_bytes: int,
) -> None:
    """Raise `Denied` for a request whose framing the gateway will not forward."""
    if version not in SUPPORTED_VERSIONS:
        raise _framing_error(f"HTTP/{version[0]}.{version[1]} is not served on this port")
    raw_headers = list(raw_headers)
    if head_size(method, target, raw_headers) > max_header_bytes:
        raise head_too_large(max_header_bytes)
    codings: list[bytes] = []
    singletons: set[bytes] = set()
    host: bytes | None = None
    for name, value in raw_headers:
        lower = name.lower()
        if lower == b"transfer-encoding":
            codings.append(value)
        elif lower in SINGLETONS:
            if lower in singletons:
                raise _framing_error(f"more than one {name.decode('latin-1')} header")
            singletons.add(lower)
            if lower == b"host":
                host = value
    if host is None:
        if version == (1, 1):
            raise _framing_error("an HTTP/1.1 request must carry a Host header")
    elif host not in _HOSTS_SEEN_VALID:
        if not valid_host(host):
            raise _framing_error("the Host header is not a valid host[:port]")
        if len(_HOSTS_SEEN_VALID) < _HOSTS_REMEMBERED:
            _HOSTS_SEEN_VALID.add(host)
    if codings:
        _check_codings(version, codings)


def _check_codings(version: tuple[int, int], codings: list[bytes]) -> None:
    if version == (1, 0):
        raise _framing_error("Transfer-Encoding is not allowed on HTTP/1.0")
    if b",".join(codings).rsplit(b",", 1)[-1].strip(b" \t").lower() != b"chunked":
        raise _framing_error("the final transfer coding must be chunked")
    if len(codings) > 1 or codings[0].strip(b" \t").lower() != b"chunked":
        raise Denied(
            Reason.INVALID_REQUEST,
            "no transfer coding but chunked alone is implemented",
            challenge=False,
            status_override=501,
        )
