"""Step 1 of SPEC §3, the request target: origin-form only, normalised once.

The normalised path is both what routes are matched against and what is forwarded, so the
gateway and the upstream can never read one request as two different paths (the root of
Envoy CVE-2021-29492 and its relatives). Normalisation (RFC 3986 §6.2.2), in this order:

1. percent-decode unreserved characters (ALPHA DIGIT - . _ ~) and upper-case every other escape;
2. merge runs of `/` into one;
3. remove dot segments (§5.2.4); `..` above the root stays at the root.

Decoding comes first so that `%2e%2E` is the dot segment it spells, and happens once, so that
`%252e` (an escaped `%`, then `2e`) stays as it is and never becomes a dot on a second pass.

Refused with 400 `bad_path`: targets not in origin-form (absolute-form, authority-form, `*`),
encoded slash or backslash (`%2F`, `%5C`), raw backslash, NUL and control characters, anything
outside printable ASCII, invalid escapes, a raw `#`, and `.`/`..` segments carrying `;`
parameters (`..;x`), which Tomcat-style servers treat as dot segments and others do not.

The query is passed on byte for byte, escapes and all; only what could never stand on a request
line (space, control characters, non-ASCII) or would be read as a fragment (`#`) by the client
that forwards it is refused there.

Usage::

    target = parse_target("/a/./b//%7Euser/../c?x=1")   # Target(path="/a/b/c", query="x=1")
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass

from scopegate.reasons import Denied, Reason

_UNRESERVED = frozenset(string.ascii_letters + string.digits + "-._~")
# A `%` with what follows it: two hex digits, or nothing when the escape is invalid.
_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})?")
_SLASHES = re.compile(r"/{2,}")
# Printable ASCII but space, `#` and `\`: what may stand in a path as sent.
_PATH_CHARS = re.compile(r"[!\"$-\[\]-~]*")
# Printable ASCII but space and `#`: what may stand in a query as sent.
_QUERY_CHARS = re.compile(r"[!\"$-~]*")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_DOT_WITH_PARAMS = re.compile(r"\.{1,2};")


@dataclass(frozen=True, slots=True)
class Target:
    """A request target split at its first `?`: the normalised path and the query as sent."""

    path: str
    query: str | None  # None: no `?` at all; "" for a bare `?`


def _bad(detail: str) -> Denied:
    # A malformed target has nothing to do with a bearer token: no WWW-Authenticate challenge.
    return Denied(Reason.BAD_PATH, detail, challenge=False)


def _refuse_characters(text: str, part: str) -> Denied:
    """The denial for a path or query that failed its character check, naming what failed."""
    if "#" in text:
        return _bad("a fragment (#) is not allowed in the request target")
    if _CONTROL.search(text):
        return _bad(f"control characters are not allowed in the {part}")
    if part == "path" and "\\" in text:
        return _bad("backslashes are not allowed in the path")
    return _bad(f"the {part} has characters that must be percent-encoded")


def _decode_escape(match: re.Match[str]) -> str:
    digits = match.group(1)
    if digits is None:
        raise _bad("the path has an invalid percent-escape")
    char = chr(int(digits, 16))
    if char in "/\\":
        # Decoded, it would split or join segments differently here and upstream.
        raise _bad("encoded slashes and backslashes are not allowed in the path")
    if char in _UNRESERVED:
        return char
    return "%" + digits.upper()


def remove_dot_segments(path: str) -> str:
    """RFC 3986 §5.2.4 for a path that starts with `/` and has no runs of `/` left.

    A final `.` or `..` leaves a trailing `/`, as the RFC's algorithm does: `/a/b/..` is `/a/`.
    """
    output: list[str] = []
    segments = path.split("/")[1:]
    last = len(segments) - 1
    for index, segment in enumerate(segments):
        if segment == "..":
            if output:
                output.pop()
        elif segment != ".":
            output.append(segment)
            continue
        if index == last:
            output.append("")
    return "/" + "/".join(output)


def normalise_path(raw_path: str) -> str:
    """The normal form of an origin-form path (no query); raises `Denied(bad_path)`.

    >>> normalise_path("/a/%2e%2E/%7euser//x/.")
    '/~user/x/'
    """
    if not _PATH_CHARS.fullmatch(raw_path):
        raise _refuse_characters(raw_path, "path")
    if "%" not in raw_path and "//" not in raw_path and "/." not in raw_path:
        return raw_path  # nothing to decode, merge or remove: already normal
    decoded = _ESCAPE.sub(_decode_escape, raw_path)
    merged = _SLASHES.sub("/", decoded)
    if any(_DOT_WITH_PARAMS.match(segment) for segment in merged.split("/")):
        raise _bad("dot segments with parameters (..;) are not allowed")
    return remove_dot_segments(merged)


def _check_origin_form(raw: str) -> None:
    if raw.startswith("/"):
        return
    if raw == "*":
        raise _bad("asterisk-form (*) is not served; only origin-form (/path?query) is")
    if "://" in raw:
        raise _bad("absolute-form targets are not served; only origin-form (/path?query) is")
    raise _bad("only origin-form request targets (/path?query) are served")


def parse_target(raw: str) -> Target:
    """Split and normalise a request-target as received on the request line.

    `raw` is the request-target as the server decoded it; bytes that were not UTF-8 arrive as
    surrogate escapes and, being outside printable ASCII, are refused like any other.
    """
    _check_origin_form(raw)
    path, mark, query = raw.partition("?")
    if mark and not _QUERY_CHARS.fullmatch(query):
        raise _refuse_characters(query, "query")
    return Target(normalise_path(path), query if mark else None)
