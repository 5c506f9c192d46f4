"""Step 2 of SPEC §3: the route a normalised path and method meet, compiled once at load.

Patterns are segments: literal, `{name}` (exactly one segment) or `{name*}` (the rest, last
only). The table is a trie of segments, so a match costs one dict lookup per path segment
whatever the number of routes — never a scan of regular expressions.

Choice does not depend on the order of the file: the most specific route wins, comparing
segment by segment from the left (literal beats `{param}` beats `{rest*}`); among routes whose
pattern matches, the first in that order that allows the method wins, and for one pattern a
route naming its methods beats one allowing all. Matching the path but no method is 405, with
`Allow` naming every method some matching route allows.

Usage::

    compiled = compile_routes(config.routes)      # compiled.errors / compiled.warnings
    match = compiled.table.match("GET", "/contacts/42")   # RouteMatch(route, path, {"id": "42"})
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal

from scopegate.config.model import Route, Source
from scopegate.pipeline import RouteMatch
from scopegate.pipeline.target import normalise_path
from scopegate.reasons import Denied, Reason

_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(\*?)\}")
_ALL_METHODS = "*"


@dataclass(frozen=True, slots=True)
class RouteIssue:
    source: Source
    message: str
    severity: Literal["error", "warning"]

    def __str__(self) -> str:
        return f"{self.source}: {self.message}"


@dataclass(frozen=True, slots=True)
class _Segment:
    kind: Literal["literal", "param", "rest"]
    text: str  # the literal, or the parameter's name


def parse_pattern(pattern: str) -> list[_Segment]:
    """A route path as segments; raises ValueError naming what is wrong."""
    if not pattern.startswith("/"):
        raise ValueError("a route path must start with /")
    parts = pattern.split("/")[1:]
    segments: list[_Segment] = []
    names: set[str] = set()
    for index, part in enumerate(parts):
        match = _PARAM.fullmatch(part)
        if match is None:
            if "{" in part or "}" in part:
                raise ValueError(f"segment {part!r}: a parameter must be a whole segment")
            segments.append(_Segment("literal", part))
            continue
        name, star = match.groups()
        if name in names:
            raise ValueError(f"parameter {{{name}}} appears twice")
        names.add(name)
        if star and index != len(parts) - 1:
            raise ValueError(f"{{{name}*}} must be the last segment")
        segments.append(_Segment("rest" if star else "param", name))
    return segments


def _shape(segments: list[_Segment]) -> tuple[str, ...]:
    """What two patterns share when they match exactly the same paths."""
    return tuple(
        "l:" + s.text if s.kind == "literal" else ("{}" if s.kind == "param" else "{*}")
        for s in segments
    )


@dataclass
class _Node:
    literals: dict[str, _Node] = field(default_factory=dict)
    param: _Node | None = None
    rest: list[tuple[Route, str]] = field(default_factory=list)  # (route, rest name)
    here: list[Route] = field(default_factory=list)  # routes whose pattern ends at this node


def _ordered(routes: list[Route]) -> list[Route]:
    """Explicit methods before all-methods; otherwise as written (ambiguity is an error)."""
    return sorted(routes, key=lambda route: route.methods is None)


class RouteTable:
    def __init__(self) -> None:
        self._root = _Node()
        self._routes: list[tuple[tuple[int, ...], Route]] = []
        self._names: dict[str, list[str]] = {}  # route name -> its {param} names, in order

    def _add(self, route: Route, segments: list[_Segment]) -> None:
        node = self._root
        names: list[str] = []
        for segment in segments:
            if segment.kind == "literal":
                node = node.literals.setdefault(segment.text, _Node())
            elif segment.kind == "param":
                names.append(segment.text)
                if node.param is None:
                    node.param = _Node()
                node = node.param
            else:
                node.rest.append((route, segment.text))
                node.rest.sort(key=lambda entry: entry[0].methods is None)
                break
        else:
            node.here.append(route)
            node.here[:] = _ordered(node.here)
        self._names[route.name] = names
        rank = tuple({"literal": 0, "param": 1, "rest": 2}[s.kind] for s in segments)
        self._routes.append((rank, route))

    def __len__(self) -> int:
        return len(self._routes)

    def __iter__(self) -> Iterator[Route]:
        """Routes most specific first, as `check` prints them."""
        return (
            route for _, route in sorted(self._routes, key=lambda item: (item[0], item[1].path))
        )

    def match(self, method: str, path: str) -> RouteMatch:
        parts = path.split("/")[1:]
        allowed: set[str] = set()
        found = self._search(self._root, parts, 0, [], method, allowed)
        if found is not None:
            route, values, rest = found
            return RouteMatch(route, path, self._params(route, values, rest))
        if allowed:
            methods = tuple(sorted(allowed - {_ALL_METHODS}))
            raise Denied(
                Reason.METHOD_NOT_ALLOWED, f"{method} is not allowed here", allow=methods,
                challenge=False,
            )  # fmt: skip
        raise Denied(Reason.NO_ROUTE, "no route matches this path", challenge=False)

    def _params(
        self, route: Route, values: list[str], rest: tuple[str, str] | None
    ) -> dict[str, str]:
        names = self._names[route.name]
        params = dict(zip(names, values, strict=False))
        if rest is not None:
            params[rest[0]] = rest[1]
        return params

    def _search(
        self,
        node: _Node,
        parts: list[str],
        index: int,
        values: list[str],
        method: str,
        allowed: set[str],
    ) -> tuple[Route, list[str], tuple[str, str] | None] | None:
        """Depth-first, most specific branch first; the first route allowing `method` wins."""
        if index == len(parts):
            route = _first_allowing(node.here, method, allowed)
            if route is not None:
                return route, list(values), None
        else:
            child = node.literals.get(parts[index])
            if child is not None:
                found = self._search(child, parts, index + 1, values, method, allowed)
                if found is not None:
                    return found
            if node.param is not None and parts[index] != "":
                values.append(parts[index])
                found = self._search(node.param, parts, index + 1, values, method, allowed)
                values.pop()
                if found is not None:
                    return found
        for route, name in node.rest:
            if _allows(route, method, allowed):
                return route, list(values), (name, "/".join(parts[index:]))
        return None


def _allows(route: Route, method: str, allowed: set[str]) -> bool:
    methods = route.allowed_methods
    if methods is None:
        allowed.add(_ALL_METHODS)
        return True
    allowed.update(methods)
    return method in methods


def _first_allowing(routes: list[Route], method: str, allowed: set[str]) -> Route | None:
    for route in routes:
        if _allows(route, method, allowed):
            return route
    return None


def _unreachable(route: Route, segments: list[_Segment]) -> str | None:
    """Why no normalised path can ever reach `route`, if that is so."""
    if route.methods is not None and not route.methods:
        return "it allows no method"
    for index, segment in enumerate(segments):
        if segment.kind != "literal":
            continue
        if segment.text == "" and index != len(segments) - 1:
            return "it contains // and requests have runs of / merged"
        try:
            normal = normalise_path("/" + segment.text)
        except Denied as denied:
            return f"segment {segment.text!r} is always refused ({denied.detail})"
        if normal != "/" + segment.text:
            return f"segment {segment.text!r} never appears in a normalised path ({normal[1:]!r})"
    return None


def _overlap(a: Route, b: Route) -> bool:
    methods_a, methods_b = a.allowed_methods, b.allowed_methods
    if methods_a is None or methods_b is None:
        return methods_a is None and methods_b is None
    return bool(methods_a & methods_b)


@dataclass(frozen=True, slots=True)
class CompiledRoutes:
    table: RouteTable
    issues: tuple[RouteIssue, ...]

    @property
    def errors(self) -> tuple[RouteIssue, ...]:
        return tuple(issue for issue in self.issues if issue.severity == "error")

    @property
    def warnings(self) -> tuple[RouteIssue, ...]:
        return tuple(issue for issue in self.issues if issue.severity == "warning")


def compile_routes(routes: Sequence[Route]) -> CompiledRoutes:
    """The route table, with every invalid, ambiguous or unreachable route reported."""
    table = RouteTable()
    issues: list[RouteIssue] = []
    by_shape: dict[tuple[str, ...], list[Route]] = {}
    for route in routes:
        try:
            segments = parse_pattern(route.path)
        except ValueError as error:
            issues.append(RouteIssue(route.source, f"route {route.name}: {error}", "error"))
            continue
        reason = _unreachable(route, segments)
        if reason is not None:
            issues.append(
                RouteIssue(route.source, f"route {route.name} can never match: {reason}", "warning")
            )
        for other in by_shape.setdefault(_shape(segments), []):
            if _overlap(route, other):
                issues.append(RouteIssue(
                    route.source,
                    f"route {route.name} is ambiguous: it matches the same requests as route "
                    f"{other.name} at {other.source}",
                    "error",
                ))  # fmt: skip
        by_shape[_shape(segments)].append(route)
        table._add(route, segments)
    return CompiledRoutes(table, tuple(issues))
