"""Hypothesis strategies for the pure pipeline stages, all in one place (as attrs keeps its own).

Paths come in three kinds: `raw_paths` as a client might send them (valid or not), `normal_paths`
as `parse_target` returns them, and `spellings(path)`, the many raw forms of one normal path.
"""

from __future__ import annotations

import re
import string
from typing import Any

from hypothesis import strategies as st

from scopegate.config.model import Route, ScopeRule

UNRESERVED = string.ascii_letters + string.digits + "-._~"
SUB_DELIMS = "!$&'()*+,;=:@"
METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS")

#: Any character at all, surrogate escapes of undecodable bytes and controls included.
any_character = st.characters(exclude_categories=())

#: Any text at all, for "never anything but a Denied" properties.
anything = st.text(any_character, max_size=60)

#: An HTTP method, the common ones and HEAD.
methods = st.sampled_from(METHODS)

#: A piece of a raw path segment: plain characters, an escape of any byte in either case of hex,
#: or dots, plain or escaped.
segment_pieces = st.one_of(
    st.text(alphabet=UNRESERVED + SUB_DELIMS, min_size=1, max_size=4),
    st.integers(0, 255).map(lambda b: f"%{b:02x}"),
    st.integers(0, 255).map(lambda b: f"%{b:02X}"),
    st.sampled_from([".", "..", "%2e", "%2E%2e", ";", "%", "%4", "%G1"]),
)


@st.composite
def raw_paths(draw: st.DrawFn) -> str:
    """Origin-form paths, valid or not: many segments, empty ones (`//`), dots, escapes."""
    segments = draw(st.lists(st.lists(segment_pieces, max_size=3).map("".join), max_size=8))
    return "/" + "/".join(segments)


@st.composite
def hostile_paths(draw: st.DrawFn) -> str:
    """A raw path with arbitrary characters spliced in: controls, non-ASCII, surrogates, `#`."""
    path = draw(raw_paths())
    at = draw(st.integers(1, len(path)))
    return path[:at] + draw(st.text(any_character, min_size=1, max_size=3)) + path[at:]


#: A character beyond ASCII that UTF-8 can encode (any but the surrogates).
beyond_ascii = st.characters(min_codepoint=0x80, codec="utf-8")


def escape(data: bytes, upper: bool = True) -> str:
    """Every byte of `data` as a percent-escape, in upper- or lower-case hex."""
    return "".join(f"%{b:02X}" if upper else f"%{b:02x}" for b in data)


#: One character escaped as a normal form keeps it, in upper-case hex: a printable ASCII byte
#: that is neither unreserved nor `/` or `\`, or a character beyond ASCII as its UTF-8 bytes.
kept_escapes = st.one_of(
    st.integers(0x20, 0x7E)
    .filter(lambda b: chr(b) not in UNRESERVED + "/\\")
    .map(lambda b: f"%{b:02X}"),
    beyond_ascii.map(lambda char: escape(char.encode("utf-8"))),
)

#: A segment of a normalised path: never empty, never a dot segment, never one with parameters.
normal_segments = (
    st.lists(
        st.one_of(st.text(UNRESERVED + SUB_DELIMS, min_size=1, max_size=3), kept_escapes),
        min_size=1,
        max_size=3,
    )
    .map("".join)
    .filter(lambda s: s not in {".", ".."} and not s.startswith((".;", "..;", ".%3B", "..%3B")))
)


@st.composite
def normal_paths(draw: st.DrawFn) -> str:
    """Paths in the normal form `parse_target` returns, with or without a trailing slash."""
    segments = draw(st.lists(normal_segments, max_size=5))
    if draw(st.booleans()) and segments:
        segments.append("")  # a trailing slash
    return "/" + "/".join(segments)


def _escape_some(draw: st.DrawFn, segment: str) -> str:
    """Escape some unreserved characters, in either case of hex, and lower-case some escapes."""
    out: list[str] = []
    index = 0
    while index < len(segment):
        if segment[index] == "%":
            escape = segment[index : index + 3]
            out.append(escape.lower() if draw(st.booleans()) else escape)
            index += 3
            continue
        char = segment[index]
        hexes = [f"%{ord(char):02X}", f"%{ord(char):02x}"]
        out.append(draw(st.sampled_from([char, *hexes])) if char in UNRESERVED else char)
        index += 1
    return "".join(out)


#: Raw segments that normalise away in place: a dot, or a detour down and back up.
_detours = st.one_of(
    st.sampled_from([".", "%2e", "%2E"]),
    st.text(string.ascii_lowercase, min_size=1, max_size=3).map(lambda s: s + "/.."),
    st.text(string.ascii_lowercase, min_size=1, max_size=3).map(lambda s: s + "/%2e%2E"),
)


@st.composite
def spellings(draw: st.DrawFn, path: str) -> str:
    """A raw path that `parse_target` normalises to the normal path `path`.

    Unreserved characters escaped, escapes in lower case, `./` and `x/../` detours, `..` at the
    root, runs of slashes, and a trailing slash spelt `/.` or `/x/..`.
    """
    parts = path.split("/")[1:]
    raw: list[str] = draw(st.lists(st.sampled_from(["..", "%2E%2E"]), max_size=2))
    for index, part in enumerate(parts):
        raw.extend(draw(st.lists(_detours, max_size=2)))
        if not part and index == len(parts) - 1 and draw(st.booleans()):
            raw.append(draw(st.sampled_from([".", "%2e", "q/..", "q/%2E."])))
        else:
            raw.append(_escape_some(draw, part))
    slashes = draw(st.lists(st.sampled_from(["/", "/", "//", "///"]), min_size=len(raw)))
    return "".join(s + r for s, r in zip(slashes, raw, strict=False)) or "/"


#: Every escape of a control character (%00-%1F and %7F), in both cases of hex.
CONTROL_ESCAPES = tuple(
    sorted({spelling for b in [*range(0x20), 0x7F] for spelling in (f"%{b:02X}", f"%{b:02x}")})
)


def is_utf8(data: bytes) -> bool:
    """Python's own strict decoder: the oracle of what UTF-8 is."""
    try:
        data.decode("utf-8", "strict")
    except UnicodeDecodeError:
        return False
    return True


def utf8_layout(code: int, length: int) -> bytes:
    """`code` laid out in UTF-8's bit pattern over `length` bytes (2 to 4), whether or not UTF-8
    allows it: overlong forms, surrogates and code points above U+10FFFF included."""
    tail = []
    for _ in range(length - 1):
        tail.append(0x80 | (code & 0x3F))
        code >>= 6
    lead = (0xFF << (8 - length)) & 0xFF
    return bytes([lead | code, *reversed(tail)])


def _high_bytes(min_size: int) -> st.SearchStrategy[bytes]:
    """Up to three bytes beyond ASCII: escaped, they can only fail as UTF-8, never as controls
    or slashes."""
    return st.lists(st.integers(0x80, 0xFF), min_size=min_size, max_size=3).map(bytes)


_continuations = st.lists(st.integers(0x80, 0xBF), min_size=1, max_size=3).map(bytes)


@st.composite
def _overlong(draw: st.DrawFn) -> bytes:
    """A character in more bytes than it needs, the dot and the slash most of all."""
    length = draw(st.integers(2, 4))
    fits = {2: 0x80, 3: 0x800, 4: 0x10000}[length]  # below this, a shorter form exists
    code = draw(st.one_of(st.sampled_from([0x2E, 0x2F, 0x5C, 0x00]), st.integers(0, fits - 1)))
    return utf8_layout(code, length)


@st.composite
def _truncated(draw: st.DrawFn) -> bytes:
    """A multi-byte character with one or more of its continuation bytes missing."""
    encoded = draw(beyond_ascii).encode()
    return encoded[: draw(st.integers(1, len(encoded) - 1))]


#: Byte sequences that are not UTF-8, by kind, each checked against Python's decoder: overlong
#: forms, encoded surrogates, code points above U+10FFFF, lone continuation bytes, truncated
#: characters, bytes UTF-8 never uses (C0, C1, F5-FF), and random bytes beyond ASCII.
invalid_utf8 = st.one_of(
    _overlong(),
    st.integers(0xD800, 0xDFFF).map(lambda code: utf8_layout(code, 3)),
    st.integers(0x110000, 0x1FFFFF).map(lambda code: utf8_layout(code, 4)),
    _continuations,
    _truncated(),
    st.tuples(st.sampled_from([0xC0, 0xC1, *range(0xF5, 0x100)]), _high_bytes(0)).map(
        lambda pair: bytes([pair[0]]) + pair[1]
    ),
    _high_bytes(1),
).filter(lambda data: not is_utf8(data))


@st.composite
def invalid_utf8_escapes(draw: st.DrawFn) -> str:
    """An invalid UTF-8 sequence, every byte escaped, each in either case of hex."""
    return "".join(escape(bytes([b]), upper=draw(st.booleans())) for b in draw(invalid_utf8))


#: A `.` or `..` segment with parameters: dots raw or escaped, then `;` raw or escaped.
dot_parameter_segments = st.builds(
    lambda dots, mark, rest: "".join(dots) + mark + rest,
    st.lists(st.sampled_from([".", "%2e", "%2E"]), min_size=1, max_size=2),
    st.sampled_from([";", "%3B", "%3b"]),
    st.text(string.ascii_letters + string.digits + "=;", max_size=6),
)

#: The pieces a valid path is made of here: plain text without dots or `;`, escapes that stay
#: escaped (ASCII and whole UTF-8 characters). None of them can join a forbidden piece placed
#: beside it into something valid.
_path_atoms = st.one_of(
    st.text(string.ascii_letters + string.digits + "-_~!$&'()*+,=:@", min_size=1, max_size=3),
    kept_escapes,
)


@st.composite
def paths_around(draw: st.DrawFn, piece: str, *, whole_segment: bool = False) -> str:
    """A valid path with `piece` placed in it: alone, as its first, a middle or its last
    segment, or (unless it must be a `whole_segment`) at the start, inside or at the end of one
    of its segments, between the characters and escapes of the valid path."""
    segments = draw(st.lists(st.lists(_path_atoms, min_size=1, max_size=3), max_size=4))
    at = draw(st.integers(0, len(segments)))
    if whole_segment or not segments or draw(st.booleans()):
        segments.insert(at, [piece])
    else:
        atoms = segments[min(at, len(segments) - 1)]
        atoms.insert(draw(st.integers(0, len(atoms))), piece)
    trailing = "/" if draw(st.booleans()) else ""
    return "/" + "/".join("".join(atoms) for atoms in segments) + trailing


@st.composite
def escaped_texts(draw: st.DrawFn) -> tuple[str, list[str]]:
    """A raw path whose segments are arbitrary text beyond ASCII, percent-encoded as UTF-8 in
    either case of hex, and the texts it spells. Unreserved ASCII is sometimes escaped too; no
    segment is a dot segment, and none holds `/`, `\\` or a control character."""
    texts = draw(
        st.lists(
            st.text(
                st.one_of(
                    beyond_ascii,
                    st.characters(
                        min_codepoint=0x20, max_codepoint=0x7E, exclude_characters="./\\"
                    ),
                ),
                min_size=1,
                max_size=6,
            ).filter(lambda text: not text.isascii()),
            min_size=1,
            max_size=3,
        )
    )
    raw: list[str] = []
    for text in texts:
        pieces = []
        for char in text:
            keep = char in UNRESERVED and draw(st.booleans())
            pieces.append(char if keep else escape(char.encode("utf-8"), draw(st.booleans())))
        raw.append("".join(pieces))
    return "/" + "/".join(raw), texts


#: A query as a client sends it: printable ASCII without space or `#`, escapes valid or not.
queries = st.text(alphabet=[chr(c) for c in range(0x21, 0x7F) if chr(c) != "#"], max_size=20)

#: Literal segments of route patterns, shared with request paths so that they meet.
literal_words = st.sampled_from(["contacts", "public", "admin", "v1", "me", "items"])

#: Text around a parameter (`{}`), as OpenAPI path templates write it: two of them overlap
#: (`thumb.json` meets both `thumb.{}` and `{}.json`).
MIXED_SHAPES = ("thumb.{}", "{}.json", "v{}")

#: Request path segments: the literals, values a parameter would take, and segments that
#: meet (or nearly meet: an empty value) the mixed shapes.
path_words = st.one_of(
    literal_words,
    st.sampled_from(["42", "x", "a%20b", "~u"]),
    st.sampled_from(["thumb.png", "thumb.json", "a.json", ".json", "thumb.", "v2", "v"]),
)


@st.composite
def route_shapes(draw: st.DrawFn) -> tuple[str, ...]:
    """A pattern shape: literals, `{}` for a parameter, text around a parameter, and maybe
    `{*}` for a final rest."""
    count = draw(st.integers(0, 4))
    pieces = st.one_of(literal_words, st.just("{}"), st.sampled_from(MIXED_SHAPES))
    parts = [draw(pieces) for _ in range(count)]
    if draw(st.booleans()):
        parts.append("{*}")
    return tuple(parts) if parts else ("",)


def _pattern(shape: tuple[str, ...], prefix: str) -> str:
    """A route path for `shape`, its parameters named `{prefix}{index}`."""
    parts = [
        p.replace("{}", f"{{{prefix}{i}}}").replace("{*}", f"{{{prefix}{i}*}}")
        for i, p in enumerate(shape)
    ]
    return "/" + "/".join(parts)


#: Method sets no two of which overlap, HEAD-implied-by-GET included; None is all methods.
DISJOINT_METHODS: tuple[frozenset[str] | None, ...] = (
    frozenset({"GET"}),
    frozenset({"POST", "DELETE"}),
    frozenset({"PUT"}),
    None,
)


@st.composite
def route_sets(draw: st.DrawFn) -> list[Route]:
    """Routes none of which is ambiguous: distinct shapes, and on a shared shape, routes with
    disjoint methods and different parameter names. Names are dealt at random, so neither
    names nor the order of the list can decide anything."""
    shapes = draw(st.lists(route_shapes(), min_size=1, max_size=6, unique=True))
    drafts: list[tuple[str, frozenset[str] | None]] = []
    for shape in shapes:
        siblings = draw(st.lists(st.sampled_from(DISJOINT_METHODS), min_size=1, unique=True))
        drafts.extend(
            (_pattern(shape, p), chosen) for p, chosen in zip("pqrs", siblings, strict=False)
        )
    names = draw(st.permutations([f"r{index}" for index in range(len(drafts))]))
    return [
        Route(name=name, path=path, upstream="u", methods=chosen)
        for name, (path, chosen) in zip(names, drafts, strict=True)
    ]


def _filled(draw: st.DrawFn, pattern: str) -> list[str]:
    """The segments of a request path that `pattern` matches, parameters filled in."""
    parts: list[str] = []
    for part in pattern.split("/")[1:]:
        if part.endswith("*}"):
            parts.extend(draw(st.lists(path_words, max_size=3)))
        elif "{" in part:
            before, _, rest = part.partition("{")
            value = draw(path_words.filter(bool))
            parts.append(before + value + rest.partition("}")[2])
        else:
            parts.append(part)
    return parts


@st.composite
def requests_near(draw: st.DrawFn, routes: list[Route]) -> tuple[str, str]:
    """A method and a normalised path that often meet one of `routes`: a pattern filled in and
    one of its methods, or any method on any path of the same words, maybe with a trailing
    slash."""
    if draw(st.booleans()):
        return draw(methods), "/" + "/".join(draw(st.lists(path_words, max_size=6)))
    target = draw(st.sampled_from(routes))
    parts = _filled(draw, target.path)
    if parts and parts[-1] and draw(st.integers(0, 3)) == 0:
        parts.append("")
    allowed = sorted(target.allowed_methods or METHODS)
    return draw(st.one_of(st.sampled_from(allowed), methods)), "/" + "/".join(parts)


#: Scope names, look-alikes included: a prefix, a longer scope, another case.
scope_words = st.sampled_from(
    ["read:contacts", "write:contacts", "delete:contacts", "admin", "read", "READ:contacts",
     "read:contacts_all", "openid"]
)  # fmt: skip


@st.composite
def scope_rules(draw: st.DrawFn) -> ScopeRule:
    """OR-of-AND requirements: one to three alternatives of one to three scopes."""
    alternatives = draw(
        st.lists(st.frozensets(scope_words, min_size=1, max_size=3), min_size=1, max_size=3)
    )
    return ScopeRule(tuple(alternatives))


#: What a token might grant.
granted_sets = st.frozensets(scope_words, max_size=5)

#: Claim values that grant nothing when they stand in a scope array.
junk_items: st.SearchStrategy[Any] = st.one_of(
    st.integers(), st.none(), st.booleans(), st.just([]), st.just({"a": "b"})
)


@st.composite
def scope_claims(draw: st.DrawFn) -> tuple[dict[str, Any], tuple[str, ...], frozenset[str]]:
    """Claims carrying scopes in `scope` (a string), `scp` (an array with junk items) and the
    nested `realm_access.roles`, with the claim names to read and the scopes they grant."""
    claims: dict[str, Any] = {}
    expected: set[str] = set()
    if draw(st.booleans()):
        words = draw(st.lists(scope_words, max_size=4))
        claims["scope"] = draw(st.sampled_from([" ", "  "])).join(words)
        expected.update(words)
    if draw(st.booleans()):
        words = draw(st.lists(scope_words, max_size=4))
        claims["scp"] = words + draw(st.lists(junk_items, max_size=2))
        expected.update(words)
    if draw(st.booleans()):
        words = draw(st.lists(scope_words, max_size=3))
        claims["realm_access"] = {"roles": words}
        expected.update(words)
    return claims, ("scope", "scp", "realm_access.roles"), frozenset(expected)


#: Tokens in RFC 6750's b64token syntax, JWT-like or not.
b64tokens = st.from_regex(r"[A-Za-z0-9\-._~+/]{1,40}={0,2}", fullmatch=True)


@st.composite
def bearer_headers(draw: st.DrawFn) -> tuple[str, str]:
    """A valid `Authorization` value in any case of `Bearer`, one or more spaces, its token."""
    scheme = "".join(draw(st.sampled_from([c.lower(), c.upper()])) for c in "Bearer")
    token = draw(b64tokens)
    return f"{scheme}{' ' * draw(st.integers(1, 3))}{token}", token


#: OpenAPI security schemes by name: two that carry scopes in a bearer token, two that do not.
OPENAPI_SCHEMES: dict[str, dict[str, Any]] = {
    "oauth": {"type": "oauth2", "flows": {"clientCredentials": {
        "tokenUrl": "https://id.example.com/token",
        "scopes": {"read": "Read", "write": "Write", "admin": "Everything"}}}},
    "oidc": {"type": "openIdConnect",
             "openIdConnectUrl": "https://id.example.com/.well-known/openid-configuration"},
    "key": {"type": "apiKey", "in": "header", "name": "X-Key"},
    "basic": {"type": "http", "scheme": "basic"},
}  # fmt: skip
TOKEN_SCHEME_NAMES = frozenset({"oauth", "oidc"})
#: Path templates and a concrete path that meets each one and no other.
OPENAPI_TEMPLATES = {
    "/items": "/items",
    "/items/{id}": "/items/42",
    "/items/{id}/thumbnail.{ext}": "/items/42/thumbnail.png",
    "/files/{name}.json": "/files/report.json",
}
OPENAPI_METHODS = ("get", "put", "post", "delete", "patch")


@st.composite
def security_requirements(draw: st.DrawFn) -> list[dict[str, list[str]]]:
    """An OpenAPI `security` list: alternatives of schemes, scopes on the token schemes only."""
    no_scopes: st.SearchStrategy[list[str]] = st.just([])
    requirement = st.dictionaries(st.sampled_from(sorted(OPENAPI_SCHEMES)), no_scopes, max_size=3)
    requirements = draw(st.lists(requirement, max_size=3))
    for alternative in requirements:
        for name in alternative:
            if name in TOKEN_SCHEME_NAMES:
                alternative[name] = draw(
                    st.lists(st.sampled_from(["read", "write", "admin"]), unique=True, max_size=2)
                )
    return requirements


@st.composite
def openapi_documents(draw: st.DrawFn) -> dict[str, Any]:
    """OpenAPI 3.0 documents: some paths and methods, each operation with its own `security`,
    an empty one, or the document's (which may be absent)."""
    paths: dict[str, Any] = {}
    templates = draw(st.lists(st.sampled_from(sorted(OPENAPI_TEMPLATES)), min_size=1, unique=True))
    for number, template in enumerate(templates):
        chosen = draw(st.lists(st.sampled_from(OPENAPI_METHODS), min_size=1, unique=True))
        paths[template] = {method: _operation(draw, f"op{number}-{method}") for method in chosen}
        paths[template]["parameters"] = path_parameters(template)
    document: dict[str, Any] = {
        "openapi": draw(st.sampled_from(["3.0.3", "3.1.0"])),
        "info": {"title": "generated", "version": "1"},
        "paths": paths,
        "components": {"securitySchemes": OPENAPI_SCHEMES},
    }
    if draw(st.booleans()):
        document["security"] = draw(security_requirements())
    return document


def path_parameters(template: str) -> list[dict[str, Any]]:
    """The `in: path` parameters a valid document declares for `template`."""
    names = re.findall(r"\{([^{}]+)\}", template)
    return [
        {"name": n, "in": "path", "required": True, "schema": {"type": "string"}} for n in names
    ]


def _operation(draw: st.DrawFn, operation_id: str) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "operationId": operation_id,
        "responses": {"200": {"description": "ok"}},
    }
    if draw(st.booleans()):
        operation["security"] = draw(security_requirements())
    return operation
