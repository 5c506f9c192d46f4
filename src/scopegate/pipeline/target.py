"""Step 1 of SPEC §3, the request target: origin-form only, normalised once.

The normalised path is both what routes are matched against and what is forwarded, so the
gateway and the upstream can never read one request as two different paths (the root of
Envoy CVE-2021-29492 and its relatives). Normalisation (RFC 3986 §6.2.2):

1. percent-decode unreserved characters (ALPHA DIGIT - . _ ~) and upper-case every other escape;
2. merge runs of `/` into one;
3. remove dot segments (§5.2.4); `..` above the root stays at the root.

Refused with 400 `bad_path`: targets not in origin-form (absolute-form, authority-form, `*`),
encoded slash or backslash (`%2F`, `%5C`), raw backslash, NUL and control characters, anything
outside printable ASCII, invalid escapes, a raw `#`, and `.`/`..` segments carrying `;`
parameters (`..;x`), which some servers treat as dot segments and others do not.

Usage::

    target = parse_target("/a/./b//%7Euser/../c?x=1")   # Target(path="/a/b/c", query="x=1")
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from scopegate.reasons import Denied, Reason

_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_ESCAPE = re.compile(r"%(..)?", re.DOTALL)
_HEX = frozenset("0123456789abcdefABCDEF")
_SLASHES = re.compile(r"/{2,}")
# Printable ASCII except space, backslash and `#`: what may stand in a path as sent.
_ALLOWED_RAW = re.compile(r"[!$-\[\]-~\"]*")
_DOT_WITH_PARAMS = re.compile(r"^\.{1,2};")


@dataclass(frozen=True, slots=True)
class Target:
    path: str
    query: str | None  # None: no `?` at all; "" for a bare `?`


def _bad(detail: str) -> Denied:
    return Denied(Reason.BAD_PATH, detail, challenge=False)


def _decode_escape(match: re.Match[str]) -> str:
    digits = match.group(1)
    if digits is None or len(digits) != 2 or not set(digits) <= _HEX:
        raise _bad("the path has an invalid percent-escape")
    char = chr(int(digits, 16))
    if char in "/\\":
        raise _bad("encoded slashes and backslashes are not allowed in the path")
    if char in _UNRESERVED:
        return char
    return "%" + digits.upper()


def remove_dot_segments(path: str) -> str:
    """RFC 3986 §5.2.4 for a path starting with `/`, once slashes have been merged."""
    output: list[str] = []
    segments = path.split("/")[1:]
    for index, segment in enumerate(segments):
        last = index == len(segments) - 1
        if segment == "..":
            if output:
                output.pop()
            if last:
                output.append("")
        elif segment == ".":
            if last:
                output.append("")
        else:
            output.append(segment)
    return "/" + "/".join(output)


def normalise_path(raw_path: str) -> str:
    """The normal form of an origin-form path (no query); raises `Denied(bad_path)`."""
    if not _ALLOWED_RAW.fullmatch(raw_path):
        if "\\" in raw_path:
            raise _bad("backslashes are not allowed in the path")
        if "#" in raw_path:
            raise _bad("a fragment (#) is not allowed in the request target")
        raise _bad("the path has characters that must be percent-encoded")
    decoded = _ESCAPE.sub(_decode_escape, raw_path)
    merged = _SLASHES.sub("/", decoded)
    if any(_DOT_WITH_PARAMS.match(segment) for segment in merged.split("/")):
        raise _bad("dot segments with parameters (..;) are not allowed")
    return remove_dot_segments(merged)


def parse_target(raw: str) -> Target:
    """Split and normalise a request-target as received on the request line."""
    if not raw.startswith("/"):
        raise _bad("only origin-form request targets (/path?query) are served")
    path, mark, query = raw.partition("?")
    return Target(normalise_path(path), query if mark else None)
