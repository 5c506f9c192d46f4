"""Step 1 of SPEC §3, the message half: HTTP/1 framing the gateway refuses to pass on.

llhttp, the server's parser, already rejects most of RFC 9112's ambiguous framing before a
request exists: `Content-Length` with `Transfer-Encoding`, repeated or non-numeric
`Content-Length`, obs-fold, bare LF, whitespace before the colon. What it lets through and is
refused here: HTTP versions other than 1.0 and 1.1, `Transfer-Encoding` on HTTP/1.0, a
`Transfer-Encoding` whose final coding is not `chunked`, a request head larger than
`max_header_bytes`, and a repeated header that must be single (`Host`: two of them would let
the gateway and the upstream disagree on which site is asked).
Every one of these closes the connection: after a framing doubt, nothing else on it can be trusted.
"""

from __future__ import annotations

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
    codings: list[str] = []
    singletons: set[bytes] = set()
    for name, value in raw_headers:
        lower = name.lower()
        if lower == b"transfer-encoding":
            codings.append(value.decode("latin-1"))
        elif lower in SINGLETONS:
            if lower in singletons:
                raise _framing_error(f"more than one {name.decode('latin-1')} header")
            singletons.add(lower)
    if not codings:
        return
    if version == (1, 0):
        raise _framing_error("Transfer-Encoding is not allowed on HTTP/1.0")
    final = ",".join(codings).split(",")[-1].strip().lower()
    if final != "chunked":
        raise _framing_error("the final transfer coding must be chunked")
