"""Hypothesis strategies for the pure pipeline stages, in one place (as attrs keeps its own)."""

from __future__ import annotations

from hypothesis import strategies as st

from scopegate.config.model import Route, ScopeRule

UNRESERVED = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"
SUB_DELIMS = "!$&'()*+,;=:@"

#: One path segment as a client might send it: plain characters, escapes of any byte
#: (reserved or not, upper or lower case hex), dots.
segment_pieces = st.one_of(
    st.text(alphabet=UNRESERVED + SUB_DELIMS, min_size=1, max_size=4),
    st.integers(0, 255).map(lambda b: f"%{b:02x}"),
    st.integers(0, 255).map(lambda b: f"%{b:02X}"),
    st.sampled_from([".", "..", "%2e", "%2E%2e"]),
)


@st.composite
def raw_paths(draw: st.DrawFn) -> str:
    """Origin-form paths, valid or not: many segments, empty ones (`//`), dots, escapes."""
    segments = draw(st.lists(st.lists(segment_pieces, max_size=3).map("".join), max_size=8))
    return "/" + "/".join(segments)


#: Any text at all, for "never crashes" properties.
anything = st.text(max_size=60)

scope_words = st.sampled_from(
    ["read:contacts", "write:contacts", "delete:contacts", "admin", "read", "READ:contacts",
     "read:contacts_all", "openid"]
)  # fmt: skip


@st.composite
def scope_rules(draw: st.DrawFn) -> ScopeRule:
    """OR-of-AND requirements with one to three alternatives of one to three scopes."""
    alternatives = draw(
        st.lists(st.frozensets(scope_words, min_size=1, max_size=3), min_size=1, max_size=3)
    )
    return ScopeRule(tuple(alternatives))


granted_sets = st.frozensets(scope_words, max_size=5)

literal_segments = st.sampled_from(["contacts", "public", "admin", "v1", "me", "items"])


@st.composite
def route_patterns(draw: st.DrawFn) -> str:
    """Route paths of literal, `{param}` and a final `{rest*}` segment."""
    count = draw(st.integers(1, 4))
    parts = []
    for index in range(count):
        kind = draw(st.sampled_from(["literal", "literal", "param"]))
        parts.append(draw(literal_segments) if kind == "literal" else f"{{p{index}}}")
    if draw(st.booleans()):
        parts.append("{rest*}")
    return "/" + "/".join(parts)


@st.composite
def route_sets(draw: st.DrawFn) -> list[Route]:
    """Distinct-shaped routes (so none is ambiguous), each with a method set or all methods."""
    patterns = draw(st.lists(route_patterns(), min_size=1, max_size=12, unique_by=_shape_key))
    routes = []
    for index, pattern in enumerate(patterns):
        methods = draw(
            st.one_of(
                st.none(), st.just(frozenset({"GET"})), st.just(frozenset({"POST", "DELETE"}))
            )
        )
        routes.append(Route(name=f"r{index}", path=pattern, upstream="u", methods=methods))
    return routes


def _shape_key(pattern: str) -> str:
    import re

    return re.sub(r"\{[^}*]+\}", "{}", pattern)


#: Concrete request paths built from the same vocabulary as the routes.
request_paths = st.lists(
    st.one_of(literal_segments, st.sampled_from(["42", "x", "", "a%20b"])), max_size=6
).map(lambda parts: "/" + "/".join(parts))
