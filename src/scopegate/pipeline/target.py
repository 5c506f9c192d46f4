"""Step 1 of SPEC §3, the request target: origin-form only, normalised once.

The normalised path is both what routes are matched against and what is forwarded, so the
gateway and the upstream can never read one request as two different paths (the root of
Envoy CVE-2021-29492 and its relatives). Normalisation (RFC 3986 §6.2.2), in this order:

1. percent-decode unreserved characters (ALPHA DIGIT - . _ ~) and upper-case every other escape;
2. merge runs of `/` into one;
3. remove dot segments (§5.2.4); `..` above the root stays at the root.

Decoding comes first so that `%2e%2E` is the dot segment it spells, and happens once, so that
`%252e` (an escaped `%`, then `2e`) stays as it is and never becomes a dot on a second pass.

Refused with 400 `bad_path` (SPEC §3.1), the `detail` naming the rule that failed:

- targets not in origin-form (absolute-form, authority-form, `*`);
- anything outside printable ASCII as sent: NUL, control characters, space, raw non-ASCII;
- a raw `#`, which the client forwarding the path would read as the start of a fragment;
- a raw backslash, and encoded slash or backslash (`%2F`, `%5C`), which some servers decode
  into separators and others do not;
- invalid escapes (`%`, `%4`, `%G1`);
- escaped control characters (`%00`–`%1F`, `%7F`, either case of hex): an upstream that decodes
  them meets the NUL that ends a C string or the CR LF that ends a log line, as if sent raw;
- escapes whose bytes are not valid UTF-8 (overlong forms such as `%C0%AE`, lone or missing
  continuation bytes, encoded surrogates, code points above U+10FFFF, `%F5`–`%FF`): a lenient
  decoder reads `%C0%AE` as `.` and so finds dot segments this gateway never saw;
- `.`/`..` segments carrying `;` parameters, raw or escaped (`..;x`, `..%3Bx`, `.%3b`), which
  Tomcat-style servers treat as dot segments and others do not.

Valid escapes of other bytes, multi-byte UTF-8 included (`%C3%A9`), are kept as escapes with
their hex upper-cased.

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
from urllib.parse import unquote_to_bytes

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
# An escape of a byte outside ASCII: only a path with one can fail to be UTF-8.
_HIGH_ESCAPE = re.compile(r"%[89A-F]")
# A `.` or `..` segment followed by `;`, raw or escaped (escapes are upper-cased by then).
_DOT_WITH_PARAMS = re.compile(r"/\.{1,2}(?:;|%3B)")


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
    code = int(digits, 16)
    if code < 0x20 or code == 0x7F:
        raise _bad("percent-encoded control characters (%00-%1F, %7F) are not allowed in the path")
    char = chr(code)
    if char in "/\\":
        # Decoded, it would split or join segments differently here and upstream.
        raise _bad("encoded slashes and backslashes are not allowed in the path")
    if char in _UNRESERVED:
        return char
    return "%" + digits.upper()


def _check_utf8(decoded: str) -> None:
    """Refuse escapes whose bytes, read together, are not UTF-8; `decoded` has only valid,
    upper-cased escapes left.

    Python's strict decoder refuses overlong forms, surrogates and code points above U+10FFFF,
    which is what keeps `%C0%AE` from ever being read as a dot further down the line. Runs of
    escapes are decoded with the characters between them, so a sequence that an ASCII
    character interrupts is refused as truncated.
    """
    if not _HIGH_ESCAPE.search(decoded):
        return  # escapes of ASCII bytes only: nothing that could be invalid UTF-8
    try:
        unquote_to_bytes(decoded).decode("utf-8", "strict")
    except UnicodeDecodeError:
        raise _bad("percent-escapes must decode to valid UTF-8") from None


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
    _check_utf8(decoded)
    merged = _SLASHES.sub("/", decoded)
    if _DOT_WITH_PARAMS.search(merged):
        raise _bad("dot segments with parameters (..; or ..%3B) are not allowed")
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
