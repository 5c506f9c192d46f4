"""Step 2 of SPEC §3 (and the route choice of SPEC §2): the route a normalised path and method
meet, from a table compiled once at load.

The table is a trie of pattern segments (see `patterns`), so a match costs a dict lookup per
path segment, whatever the number of routes; no regular expression runs per request.

Choice does not depend on the order of the file: the most specific route wins, comparing
segment by segment from the left (literal beats text around a parameter, `thumbnail.{ext}`,
beats `{param}` beats `{rest*}`; of two such mixed segments, the first in text order; a
pattern that ends beats a `{rest*}` matching nothing); of the routes matching the path, the
first in that order allowing the method wins, and on one pattern explicit methods beat all
methods. Matching the path but no method is 405, with `Allow` naming every method those routes
allow.

Usage::

    compiled = compile_routes(config.routes)      # compiled.errors / compiled.warnings
    raise_route_errors(compiled)                  # ConfigErrors, when compiled.errors
    match = compiled.table.match("GET", "/contacts/42")   # RouteMatch(route, path, {"id": "42"})
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from scopegate.config.errors import ConfigError, ConfigErrors
from scopegate.config.model import Route, Source
from scopegate.pipeline import RouteMatch
from scopegate.pipeline.patterns import (
    Kind,
    PatternError,
    Segment,
    Shape,
    parse_pattern,
    shape,
    unreachable,
)
from scopegate.reasons import Denied, Reason


@dataclass(frozen=True, slots=True)
class RouteIssue:
    """A problem found compiling the routes: `FILE:LINE:COL: message`, whatever its severity."""

    source: Source
    message: str
    severity: Literal["error", "warning"]

    def __str__(self) -> str:
        return f"{self.source}: {self.message}"


@dataclass(frozen=True, slots=True)
class _Entry:
    """A route as stored in the trie, with what matching needs worked out once."""

    route: Route
    allowed: frozenset[str] | None  # `route.allowed_methods`: HEAD wherever GET
    names: tuple[str, ...]  # the {param} names, in path order
    rest: str | None  # the {rest*} name, if the pattern has one

    @classmethod
    def of(cls, route: Route, segments: tuple[Segment, ...], shared: dict[object, Any]) -> _Entry:
        """`shared` gives one object per distinct value across the table: thousands of routes
        have a few `{param}` name lists and method sets."""
        names = tuple(s.text for s in segments if s.kind in (Kind.PARAM, Kind.MIXED))
        rest = segments[-1].text if segments[-1].kind is Kind.REST else None
        allowed = route.allowed_methods
        return cls(
            route, shared.setdefault(allowed, allowed), shared.setdefault(names, names), rest
        )


_NO_ENTRIES: tuple[_Entry, ...] = ()


def _order(route: Route, segments: tuple[Segment, ...]) -> tuple[object, ...]:
    """Most specific first (segment by segment; literal text breaks ties, so a listing groups by
    prefix), then explicit methods before all, then by name: whatever the file's order, the
    same."""
    methods = route.methods
    return (shape(segments), methods is None, sorted(methods or ()), route.name)


class _Node:
    """One trie node. Most nodes of a large table have one child and no entries of their own,
    so every container is made only when first needed: a table has several nodes per route."""

    __slots__ = ("here", "literals", "mixed", "param", "rest")

    def __init__(self) -> None:
        self.literals: dict[str, _Node] | None = None
        # (prefix, suffix, child) of each mixed segment here, in the table's order
        self.mixed: tuple[tuple[str, str, _Node], ...] | None = None
        self.param: _Node | None = None
        self.here: tuple[_Entry, ...] = _NO_ENTRIES  # patterns that end at this node
        self.rest: tuple[_Entry, ...] = _NO_ENTRIES  # patterns whose {rest*} starts here


class _Search:
    """One depth-first walk of the trie for one request, most specific branch first.

    A trie node sits at one depth and is reached by one edge, and each step consumes one path
    segment, so a walk visits every node at most once: hostile paths cost at most the size of
    the table, never an exponential number of backtracks.
    """

    __slots__ = ("allowed", "method", "parts", "values")

    def __init__(self, method: str, path: str) -> None:
        self.method = method
        self.parts = path.split("/")[1:]
        self.values: list[str] = []
        self.allowed: set[str] = set()  # methods of every route that matched the path

    def walk(self, node: _Node, index: int) -> tuple[_Entry, dict[str, str]] | None:
        if index == len(self.parts):
            entry = self._first_allowing(node.here)
            if entry is not None:
                return entry, dict(zip(entry.names, self.values, strict=True))
        else:
            found = self._descend(node, index)
            if found is not None:
                return found
        entry = self._first_allowing(node.rest)
        if entry is None or entry.rest is None:
            return None
        params = dict(zip(entry.names, self.values, strict=True))
        params[entry.rest] = "/".join(self.parts[index:])
        return entry, params

    def _descend(self, node: _Node, index: int) -> tuple[_Entry, dict[str, str]] | None:
        part = self.parts[index]
        child = None if node.literals is None else node.literals.get(part)
        if child is not None:
            found = self.walk(child, index + 1)
            if found is not None:
                return found
        if node.mixed is not None:  # None in a table without mixed segments: one test
            found = self._descend_mixed(node.mixed, part, index)
            if found is not None:
                return found
        if node.param is None or not part:
            return None
        self.values.append(part)
        found = self.walk(node.param, index + 1)
        self.values.pop()
        return found

    def _descend_mixed(
        self, mixed: tuple[tuple[str, str, _Node], ...], part: str, index: int
    ) -> tuple[_Entry, dict[str, str]] | None:
        for prefix, suffix, child in mixed:
            end = len(part) - len(suffix)
            if end > len(prefix) and part.startswith(prefix) and part.endswith(suffix):
                self.values.append(part[len(prefix) : end])
                found = self.walk(child, index + 1)
                self.values.pop()
                if found is not None:
                    return found
        return None

    def _first_allowing(self, entries: tuple[_Entry, ...]) -> _Entry | None:
        for entry in entries:
            if entry.allowed is None or self.method in entry.allowed:
                return entry
            self.allowed.update(entry.allowed)
        return None


class RouteTable:
    """The compiled routes: `match` per request, iteration (most specific first) for `check`."""

    def __init__(self, routes: Sequence[tuple[Route, tuple[Segment, ...]]] = ()) -> None:
        self._root = _Node()
        ordered = sorted(routes, key=lambda pair: _order(*pair))
        self._routes = tuple(route for route, _ in ordered)
        shared: dict[object, Any] = {}
        for route, segments in ordered:
            self._insert(_Entry.of(route, segments, shared), segments)

    def _insert(self, entry: _Entry, segments: tuple[Segment, ...]) -> None:
        node = self._root
        for segment in segments:
            if segment.kind is Kind.REST:
                node.rest += (entry,)
                return
            if segment.kind is Kind.PARAM:
                node.param = node.param or _Node()
                node = node.param
            elif segment.kind is Kind.MIXED:
                node = self._mixed_child(node, segment)
            else:
                if node.literals is None:
                    node.literals = {}
                node = node.literals.setdefault(sys.intern(segment.text), _Node())
        node.here += (entry,)

    @staticmethod
    def _mixed_child(node: _Node, segment: Segment) -> _Node:
        """The child for `segment`'s text, made on first use: routes are inserted most specific
        first, so children keep their shapes' order."""
        for prefix, suffix, child in node.mixed or ():
            if (prefix, suffix) == (segment.prefix, segment.suffix):
                return child
        child = _Node()
        node.mixed = (*(node.mixed or ()), (segment.prefix, segment.suffix, child))
        return child

    def __len__(self) -> int:
        return len(self._routes)

    def __iter__(self) -> Iterator[Route]:
        """Routes most specific first, as `check` prints them; the same for any file order."""
        return iter(self._routes)

    def methods_on(self, path: str) -> frozenset[str] | None:
        """Every method the routes matching `path` allow; None when one of them allows every
        method (the empty method is allowed only by such a route)."""
        search = _Search("", path)
        if search.walk(self._root, 0) is not None:
            return None
        return frozenset(search.allowed)

    def match(self, method: str, path: str) -> RouteMatch:
        """The route for `method` on `path` (already normalised by `target.parse_target`).

        Raises `Denied(no_route)` (404) or `Denied(method_not_allowed, allow=...)` (405).
        """
        search = _Search(method, path)
        found = search.walk(self._root, 0)
        if found is not None:
            entry, params = found
            return RouteMatch(entry.route, path, params)
        if search.allowed:
            raise Denied(
                Reason.METHOD_NOT_ALLOWED,
                f"{method} is not allowed on this path",
                allow=tuple(sorted(search.allowed)),
                challenge=False,
            )
        raise Denied(Reason.NO_ROUTE, "no route matches this path", challenge=False)


@dataclass(frozen=True, slots=True)
class CompiledRoutes:
    """The table and every issue found building it; the table is usable only without errors."""

    table: RouteTable
    issues: tuple[RouteIssue, ...]

    @property
    def errors(self) -> tuple[RouteIssue, ...]:
        return tuple(issue for issue in self.issues if issue.severity == "error")

    @property
    def warnings(self) -> tuple[RouteIssue, ...]:
        return tuple(issue for issue in self.issues if issue.severity == "warning")


def _overlap(a: Route, b: Route) -> bool:
    """Whether one request method could reach both routes with the same specificity."""
    methods_a, methods_b = a.allowed_methods, b.allowed_methods
    if methods_a is None or methods_b is None:
        # Explicit methods beat all methods on one pattern, so only two "all" routes collide.
        return methods_a is None and methods_b is None
    return bool(methods_a & methods_b)


def _issues_of(route: Route, segments: Sequence[Segment], same: list[Route]) -> list[RouteIssue]:
    issues = [
        RouteIssue(
            route.source,
            f'route "{route.name}" is ambiguous: it matches the same requests as route '
            f'"{other.name}" at {other.source}',
            "error",
        )
        for other in same
        if _overlap(route, other)
    ]
    why = unreachable(route.methods, segments)
    if why is not None:
        message = f'route "{route.name}" can never match: {why}'
        issues.append(RouteIssue(route.source, message, "warning"))
    return issues


def compile_routes(routes: Sequence[Route]) -> CompiledRoutes:
    """The route table, with every invalid, ambiguous or unreachable route reported."""
    issues: list[RouteIssue] = []
    compiled: list[tuple[Route, tuple[Segment, ...]]] = []
    by_shape: dict[Shape, list[Route]] = {}
    for route in routes:
        try:
            segments = parse_pattern(route.path)
        except PatternError as error:
            message = f'route "{route.name}": path "{route.path}" is invalid: {error}'
            issues.append(RouteIssue(route.source, message, "error"))
            continue
        same = by_shape.setdefault(shape(segments), [])
        issues.extend(_issues_of(route, segments, same))
        same.append(route)
        compiled.append((route, segments))
    return CompiledRoutes(RouteTable(compiled), tuple(issues))


def raise_route_errors(compiled: CompiledRoutes) -> None:
    """Raise `ConfigErrors` naming every error of the route table, if it has any: a table that
    does not compile makes the file invalid, reported like any other mistake in it."""
    if compiled.errors:
        raise ConfigErrors(ConfigError(issue.source, issue.message) for issue in compiled.errors)
