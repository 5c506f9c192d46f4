"""Route compilation and choice (SPEC §2 and §3 step 2); end-to-end counterparts:
tests/e2e/test_deny.py and tests/e2e/test_cli.py (`check`)."""

from __future__ import annotations

import random
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scopegate.config.model import Route, Source
from scopegate.pipeline.patterns import MAX_SEGMENTS, Kind, parse_pattern
from scopegate.pipeline.routing import compile_routes
from scopegate.pipeline.target import parse_target
from scopegate.reasons import Denied
from tests.unit.strategies import methods, normal_paths, requests_near, route_sets, spellings


def route(name: str, path: str, *allowed: str, line: int = 1) -> Route:
    """A route to `u` at `routes.yaml:LINE:5`; no methods means all methods."""
    chosen = frozenset(allowed) if allowed else None
    return Route(name, path, "u", methods=chosen, source=Source("routes.yaml", line, 5))


TABLE = [
    route("list", "/contacts", "GET"),
    route("create", "/contacts", "POST"),
    route("read", "/contacts/{id}", "GET"),
    route("delete", "/contacts/{id}", "DELETE"),
    route("me", "/contacts/me", "GET"),
    route("public", "/public/{rest*}"),
    route("public-root", "/public"),
    route("admin", "/admin/{rest*}"),
    route("health", "/admin/health", "GET"),
    route("root", "/"),
    route("nested", "/a/{x}/c", "GET"),
    route("nested-literal", "/a/b/{y}", "GET"),
    route("deep-rest", "/a/{x}/{rest*}", "POST"),
    route("items-any", "/items/{id}"),
    route("items-get", "/items/{key}", "GET"),
]


def outcome(routes: list[Route], method: str, path: str) -> tuple[object, ...]:
    """What the table answers: (route name, params) or the denial with its `Allow`."""
    try:
        match = compile_routes(routes).table.match(method, path)
    except Denied as denied:
        return (str(denied.reason), denied.allow)
    assert match.path == path
    return (match.route.name, dict(match.params))


class TestChoice:
    @pytest.mark.parametrize(
        ("method", "path", "name", "params"),
        [
            pytest.param("GET", "/contacts", "list", {}, id="literal route"),
            pytest.param("HEAD", "/contacts", "list", {}, id="HEAD is allowed wherever GET is"),
            pytest.param("POST", "/contacts", "create", {}, id="same path, the method picks the route"),
            pytest.param("GET", "/contacts/42", "read", {"id": "42"}, id="param captured"),
            pytest.param("GET", "/contacts/a%20b", "read", {"id": "a%20b"}, id="params keep their escapes"),
            pytest.param("GET", "/contacts/me", "me", {}, id="literal beats param"),
            pytest.param("DELETE", "/contacts/me", "delete", {"id": "me"}, id="a less specific route that allows the method"),
            pytest.param("GET", "/public/a/b/c", "public", {"rest": "a/b/c"}, id="rest takes the rest, without leading slash"),
            pytest.param("GET", "/public/", "public", {"rest": ""}, id="rest may be empty"),
            pytest.param("GET", "/public", "public-root", {}, id="a pattern that ends beats a rest matching nothing"),
            pytest.param("GET", "/admin", "admin", {"rest": ""}, id="rest matches zero segments"),
            pytest.param("GET", "/admin/health", "health", {}, id="literal beats rest"),
            pytest.param("POST", "/admin/health", "admin", {"rest": "health"}, id="method falls back to the rest route"),
            pytest.param("GET", "/", "root", {}, id="root"),
            pytest.param("GET", "/a/b/c", "nested-literal", {"y": "c"}, id="leftmost literal decides between equal lengths"),
            pytest.param("GET", "/a/z/c", "nested", {"x": "z"}, id="backtracks to the param branch"),
            pytest.param("POST", "/a/b/c", "deep-rest", {"x": "b", "rest": "c"}, id="backtracks past two literal routes for the method"),
            pytest.param("POST", "/a/b/c/d", "deep-rest", {"x": "b", "rest": "c/d"}, id="param then rest"),
            pytest.param("GET", "/items/1", "items-get", {"key": "1"}, id="explicit methods beat all methods on one pattern"),
            pytest.param("PUT", "/items/1", "items-any", {"id": "1"}, id="all methods take the rest; param names follow the route"),
        ],
    )  # fmt: skip
    def test_most_specific_route_wins(
        self, method: str, path: str, name: str, params: dict[str, str]
    ) -> None:
        """The most specific pattern that allows the method wins, whatever the file order."""
        assert outcome(TABLE, method, path) == (name, params)
        assert outcome(TABLE[::-1], method, path) == (name, params)

    @pytest.mark.parametrize(
        ("method", "path", "expected"),
        [
            pytest.param("GET", "/nothing", ("no_route", ()), id="no pattern matches: 404"),
            pytest.param("GET", "/contacts/", ("no_route", ()), id="a param never matches an empty segment"),
            pytest.param("GET", "/CONTACTS", ("no_route", ()), id="literals are case-sensitive"),
            pytest.param("GET", "/contacts/42/x", ("no_route", ()), id="a path deeper than every pattern"),
            pytest.param("GET", "/contacts;x", ("no_route", ()), id="a semicolon is part of the segment"),
            pytest.param("PUT", "/contacts/42", ("method_not_allowed", ("DELETE", "GET", "HEAD")), id="405 lists every allowed method, HEAD with GET"),
            pytest.param("PATCH", "/contacts", ("method_not_allowed", ("GET", "HEAD", "POST")), id="405 on a literal path"),
            pytest.param("PUT", "/contacts/me", ("method_not_allowed", ("DELETE", "GET", "HEAD")), id="Allow is the union over every route matching the path"),
            pytest.param("get", "/contacts", ("method_not_allowed", ("GET", "HEAD", "POST")), id="methods are case-sensitive"),
        ],
    )  # fmt: skip
    def test_refusals(self, method: str, path: str, expected: tuple[object, ...]) -> None:
        """No matching pattern is 404; a matching pattern without the method is 405 with Allow."""
        assert outcome(TABLE, method, path) == expected

    def test_refusals_carry_no_bearer_challenge(self) -> None:
        """404 and 405 are not about the token: they never ask for one."""
        table = compile_routes(TABLE).table
        for method, path in [("GET", "/nothing"), ("PUT", "/contacts")]:
            with pytest.raises(Denied) as caught:
                table.match(method, path)
            assert not caught.value.challenge
            assert caught.value.reason.status in {404, 405}

    def test_an_empty_table_matches_nothing(self) -> None:
        """With no routes every path is 404."""
        assert outcome([], "GET", "/") == ("no_route", ())

    def test_a_route_allowing_no_method_is_never_matched(self) -> None:
        """An empty method set (warned about at compile time) leaves a 404, not a 405 with an
        empty Allow."""
        routes = [Route("none", "/x", "u", methods=frozenset()), route("get", "/x/{id}", "GET")]
        assert outcome(routes, "GET", "/x") == ("no_route", ())
        assert outcome(routes, "GET", "/x/1") == ("get", {"id": "1"})


MIXED_TABLE = [
    route("thumbnail-any", "/img/thumbnail.{extension}", "GET"),
    route("json-any", "/img/{name}.json", "GET"),
    route("thumbnail-png", "/img/thumbnail.png", "GET"),
    route("image", "/img/{id}", "GET"),
    route("versioned", "/api/v{version}/items", "GET"),
    route("api-param", "/api/{anything}/items", "GET"),
    route("report", "/reports/r{year}", "POST"),
]


class TestMixedSegments:
    """Text around a parameter (`thumbnail.{extension}`, OpenAPI's path templating): more
    specific than `{param}`, less than a literal segment (SPEC §6.6)."""

    @pytest.mark.parametrize(
        ("method", "path", "expected"),
        [
            pytest.param("GET", "/img/thumbnail.jpg", ("thumbnail-any", {"extension": "jpg"}), id="text around a value"),
            pytest.param("GET", "/img/thumbnail.png", ("thumbnail-png", {}), id="a literal segment beats a mixed one"),
            pytest.param("GET", "/img/photo.json", ("json-any", {"name": "photo"}), id="a suffix"),
            pytest.param("GET", "/img/thumbnail.json", ("thumbnail-any", {"extension": "json"}), id="of two mixed segments, the first in text order"),
            pytest.param("GET", "/img/thumbnail.", ("image", {"id": "thumbnail."}), id="the value may not be empty: the param route takes it"),
            pytest.param("GET", "/img/.json", ("image", {"id": ".json"}), id="an empty value before the suffix is no match either"),
            pytest.param("GET", "/img/thumbnail.a.b", ("thumbnail-any", {"extension": "a.b"}), id="the value may hold the text again"),
            pytest.param("GET", "/img/thumbnail.a%20b", ("thumbnail-any", {"extension": "a%20b"}), id="the value keeps its escapes"),
            pytest.param("GET", "/api/v2/items", ("versioned", {"version": "2"}), id="a prefix"),
            pytest.param("GET", "/api/x2/items", ("api-param", {"anything": "x2"}), id="text that differs falls to the param route"),
            pytest.param("GET", "/api/v/items", ("api-param", {"anything": "v"}), id="the prefix alone is no match"),
            pytest.param("POST", "/reports/r2024", ("report", {"year": "2024"}), id="a mixed segment ends a pattern"),
            pytest.param("GET", "/reports/r2024", ("method_not_allowed", ("POST",)), id="405 names the mixed route's methods"),
            pytest.param("GET", "/reports/2024", ("no_route", ()), id="404 when the text is absent"),
        ],
    )  # fmt: skip
    def test_choice(self, method: str, path: str, expected: tuple[object, ...]) -> None:
        assert compile_routes(MIXED_TABLE).issues == ()
        assert outcome(MIXED_TABLE, method, path) == expected

    def test_precedence_is_literal_then_mixed_then_param_then_rest(self) -> None:
        """Kinds order by their value, and so do the shapes `check` lists routes by."""
        assert Kind.LITERAL < Kind.MIXED < Kind.PARAM < Kind.REST
        names = [r.name for r in compile_routes(MIXED_TABLE).table]
        assert names.index("thumbnail-png") < names.index("thumbnail-any") < names.index("image")
        assert names.index("versioned") < names.index("api-param")

    def test_two_names_around_the_same_text_are_ambiguous(self) -> None:
        """Names do not count: `a.{x}` and `a.{y}` match the same requests."""
        routes = [route("x", "/a.{x}", "GET", line=1), route("y", "/a.{y}", "GET", line=2)]
        errors = [str(issue) for issue in compile_routes(routes).errors]
        assert errors == [
            'routes.yaml:2:5: route "y" is ambiguous: it matches the same requests as route "x" at routes.yaml:1:5'
        ]

    def test_text_that_never_survives_normalisation_is_warned_about(self) -> None:
        """A mixed segment whose text a normalised path can never hold can never match."""
        warnings = compile_routes([route("w", "/a/%7E{x}", "GET")]).warnings
        assert [w.message for w in warnings] == [
            'route "w" can never match: segment "%7Ex" never appears in a normalised path ("/%7Ex" becomes "/~x")'
        ]

    def test_mixed_segments_parse_with_their_text(self) -> None:
        (segment,) = parse_pattern("/thumbnail.{extension}")
        assert (segment.kind, segment.text, segment.prefix, segment.suffix) == (
            Kind.MIXED,
            "extension",
            "thumbnail.",
            "",
        )
        assert segment.literal == "thumbnail.{}"


class TestIssues:
    @pytest.mark.parametrize(
        ("path", "message"),
        [
            pytest.param("", "empty", id="empty pattern"),
            pytest.param("a/b", "must start with /", id="relative pattern"),
            pytest.param("/a/{id", "unbalanced", id="unclosed brace"),
            pytest.param("/a/id}", "unbalanced", id="unopened brace"),
            pytest.param("/a/x{rest*}", "whole segment", id="rest with text around it"),
            pytest.param("/a/{a}{b}", "one parameter at most", id="two params in one segment"),
            pytest.param("/a/{a}.{b}", "one parameter at most", id="two params around text"),
            pytest.param("/a/x.{1x}", "not a name", id="mixed segment whose name is not one"),
            pytest.param("/a/{id}/x.{id}", "appears twice", id="param and mixed with one name"),
            pytest.param("/a/{}", "not a name", id="empty parameter name"),
            pytest.param("/a/{1x}", "not a name", id="name not an identifier"),
            pytest.param("/a/{a-b}", "not a name", id="dash in a name"),
            pytest.param("/a/{*}", "not a name", id="rest without a name"),
            pytest.param("/a/{rest*}/b", "must be the last segment", id="rest not last"),
            pytest.param("/a/{id}/{id}", "appears twice", id="duplicate parameter"),
            pytest.param("/{id}/{id*}", "appears twice", id="param and rest with one name"),
            pytest.param("/a" * (MAX_SEGMENTS + 1), "segments", id="too many segments"),
        ],
    )
    def test_invalid_patterns_are_errors_at_the_route(self, path: str, message: str) -> None:
        """An invalid pattern is an error positioned at the route, naming it and its path."""
        compiled = compile_routes([route("bad", path, line=7)])
        assert [issue.severity for issue in compiled.issues] == ["error"]
        text = str(compiled.errors[0])
        assert text.startswith('routes.yaml:7:5: route "bad": path ')
        assert message in text
        assert len(compiled.table) == 0

    def test_an_invalid_route_does_not_stop_the_others(self) -> None:
        """Every route is checked; valid ones still compile beside an invalid one."""
        compiled = compile_routes([route("bad", "/{x"), route("good", "/y"), route("bad2", "")])
        assert len(compiled.errors) == 2
        assert [r.name for r in compiled.table] == ["good"]

    @pytest.mark.parametrize(
        ("first", "second", "ambiguous"),
        [
            pytest.param(route("a", "/x/{id}", "GET"), route("b", "/x/{key}", "GET", line=9), True, id="same shape, param names differ, same method"),
            pytest.param(route("a", "/x/{id}"), route("b", "/x/{key}", line=9), True, id="both allow all methods"),
            pytest.param(route("a", "/x/{id}", "GET"), route("b", "/x/{key}", "HEAD", line=9), True, id="HEAD implied by GET overlaps"),
            pytest.param(route("a", "/x/{r*}", "POST", "PUT"), route("b", "/x/{s*}", "PUT", line=9), True, id="rest routes with a shared method"),
            pytest.param(route("a", "/x", "GET"), route("b", "/x", "GET", line=9), True, id="one literal path twice"),
            pytest.param(route("a", "/x/{id}", "GET"), route("b", "/x/{key}", "POST", line=9), False, id="same shape, disjoint methods"),
            pytest.param(route("a", "/x/{id}", "GET"), route("b", "/x/{key}", line=9), False, id="explicit methods beat all methods"),
            pytest.param(route("a", "/x/{id}", "GET"), route("b", "/x/y", "GET", line=9), False, id="a literal is more specific"),
            pytest.param(route("a", "/x/{id}", "GET"), route("b", "/x/{rest*}", "GET", line=9), False, id="a param is more specific than a rest"),
            pytest.param(route("a", "/x", "GET"), route("b", "/x/", "GET", line=9), False, id="a trailing slash is another path"),
        ],
    )  # fmt: skip
    def test_ambiguous_routes_are_errors(
        self, first: Route, second: Route, ambiguous: bool
    ) -> None:
        """Two routes that would both take one request with the same specificity are an error
        at the later one, naming the earlier one and its place."""
        errors = compile_routes([first, second]).errors
        assert bool(errors) is ambiguous
        if ambiguous:
            assert str(errors[0]) == (
                'routes.yaml:9:5: route "b" is ambiguous: it matches the same requests as '
                'route "a" at routes.yaml:1:5'
            )

    @pytest.mark.parametrize(
        ("path", "why"),
        [
            pytest.param("/a/../b", '"/.." becomes "/"', id="dot-dot segment"),
            pytest.param("/a/./b", '"/." becomes "/"', id="dot segment"),
            pytest.param("/a/.", '"/." becomes "/"', id="final dot segment"),
            pytest.param("/a//b", "empty segment", id="double slash"),
            pytest.param("/%41", '"/%41" becomes "/A"', id="decodable escape"),
            pytest.param("/%7e", '"/%7e" becomes "/~"', id="lower-case unreserved escape"),
            pytest.param("/a%2ab", '"/a%2ab" becomes "/a%2Ab"', id="lower-case hex is never normal"),
            pytest.param("/a%2Fb", "always refused", id="encoded slash is always refused"),
            pytest.param("/a b", "always refused", id="raw space"),
            pytest.param("/caf\u00e9", "always refused", id="raw non-ASCII"),
            pytest.param("/a#b", "always refused", id="raw hash"),
            pytest.param("/..;x/b", "always refused", id="dot-dot with parameters"),
            pytest.param("/a?b", "starts the query", id="question mark"),
        ],
    )  # fmt: skip
    def test_routes_that_can_never_match_are_warned_about(self, path: str, why: str) -> None:
        """A literal that normalisation would change or refuse can never meet a request."""
        compiled = compile_routes([route("never", path, line=3)])
        assert [issue.severity for issue in compiled.issues] == ["warning"]
        text = str(compiled.warnings[0])
        assert text.startswith('routes.yaml:3:5: route "never" can never match: ')
        assert why in text

    def test_a_route_with_no_method_is_warned_about(self) -> None:
        """An empty method set can never match anything."""
        compiled = compile_routes([Route("none", "/x", "u", methods=frozenset())])
        assert [str(issue) for issue in compiled.warnings] == [
            '<built-in>:1:1: route "none" can never match: it allows no method'
        ]

    @pytest.mark.parametrize(
        "path",
        ["/", "/a/", "/a%20b", "/a;b=c", "/~user", "/a/{id}/", "/{rest*}", "/a/..b", "/%C3%A9"],
    )
    def test_reachable_routes_raise_no_issue(self, path: str) -> None:
        """Patterns already in normal form compile silently."""
        assert compile_routes([route("fine", path)]).issues == ()


class TestTable:
    def test_iteration_is_most_specific_first_and_independent_of_file_order(self) -> None:
        """`check` lists routes grouped by prefix, literal before param before rest."""
        names = [r.name for r in compile_routes(TABLE).table]
        assert names == [r.name for r in compile_routes(TABLE[::-1]).table]
        assert names.index("me") < min(names.index("read"), names.index("delete"))
        assert names.index("health") < names.index("admin")
        assert names.index("public-root") < names.index("public")
        assert len(compile_routes(TABLE).table) == len(TABLE)

    def test_ten_thousand_routes_build_and_match(self) -> None:
        """A large table compiles without issues and answers from a trie."""
        routes = [route(f"r{i}", f"/tenant{i}/items/{{id}}", "GET") for i in range(10_000)]
        routes.append(route("fallback", "/{tenant}/{rest*}", "GET"))
        compiled = compile_routes(routes)
        assert compiled.issues == ()
        assert len(compiled.table) == 10_001
        match = compiled.table.match("GET", "/tenant9999/items/7")
        assert (match.route.name, dict(match.params)) == ("r9999", {"id": "7"})
        assert compiled.table.match("HEAD", "/tenant10000/items/7").route.name == "fallback"
        with pytest.raises(Denied) as caught:
            compiled.table.match("POST", "/tenant5/items/7")
        assert caught.value.allow == ("GET", "HEAD")

    def test_hostile_paths_cost_at_most_the_table(self) -> None:
        """Param chains beside literal chains cannot make matching backtrack exponentially:
        a path of 10,000 segments against 30-deep alternatives answers at once."""
        depth = 30
        routes = [
            route(
                "params", "/{p0}" + "".join(f"/{{p{i}}}" for i in range(1, depth)) + "/end", "GET"
            )
        ]
        routes += [route(f"lit{i}", "/a" * (i + 1) + "/stop", "GET") for i in range(depth)]
        assert outcome(routes, "GET", "/a" * depth + "/x")[0] == "no_route"
        assert outcome(routes, "GET", "/a" * 10_000)[0] == "no_route"
        assert outcome(routes, "GET", "/a" * depth + "/end")[0] == "params"


def _regex(pattern: str) -> re.Pattern[str]:
    """An independent reading of a pattern, for the oracle below."""
    pieces = []
    for part in pattern.split("/")[1:]:
        if part.endswith("*}"):
            pieces.append("(?:/(.*))?")
        elif "{" in part:  # a param, or text around one: the value is never empty
            before, _, rest = part.partition("{")
            after = rest.partition("}")[2]
            pieces.append("/" + re.escape(before) + "([^/]+)" + re.escape(after))
        else:
            pieces.append("/" + re.escape(part))
    return re.compile("".join(pieces))


def _specificity(part: str) -> tuple[int, str]:
    """Literal, then text around a param (by its text), then param, then rest."""
    if part.endswith("*}"):
        return (3, "")
    if part.startswith("{") and part.endswith("}"):
        return (2, "")
    if "{" in part:
        return (1, re.sub(r"\{\w+\}", "{}", part))
    return (0, part)


def oracle(routes: list[Route], method: str, path: str) -> tuple[object, ...]:
    """SPEC §2 read literally: try every route's regex, sort the matches by specificity."""
    matches = [(r, m) for r in routes if (m := _regex(r.path).fullmatch(path))]
    matches.sort(
        key=lambda rm: ([_specificity(p) for p in rm[0].path.split("/")[1:]], rm[0].methods is None)
    )
    allowed: set[str] = set()
    for candidate, found in matches:
        methods_of = candidate.allowed_methods
        if methods_of is None or method in methods_of:
            names = re.findall(r"\{(\w+)\*?\}", candidate.path)
            return (
                candidate.name,
                {n: g or "" for n, g in zip(names, found.groups(), strict=True)},
            )
        allowed |= methods_of
    return ("method_not_allowed", tuple(sorted(allowed))) if matches else ("no_route", ())


@st.composite
def _cases(draw: st.DrawFn) -> tuple[list[Route], str, str]:
    """Routes, and a method and path near them."""
    routes = draw(route_sets())
    method, path = draw(requests_near(routes))
    return routes, method, path


Case = tuple[list[Route], str, str]


class TestProperties:
    @settings(max_examples=300, deadline=None)
    @given(_cases())
    def test_the_trie_agrees_with_a_literal_reading_of_the_spec(self, case: Case) -> None:
        """Route, params, 404 and 405 with Allow are what scanning every route would give."""
        routes, method, path = case
        assert compile_routes(routes).issues == ()
        assert outcome(routes, method, path) == oracle(routes, method, path)

    @settings(max_examples=150, deadline=None)
    @given(_cases(), st.randoms(use_true_random=False))
    def test_order_in_the_file_never_changes_the_answer(
        self, case: Case, rnd: random.Random
    ) -> None:
        """Shuffling the routes changes neither the answer nor the listing."""
        routes, method, path = case
        shuffled = list(routes)
        rnd.shuffle(shuffled)
        assert outcome(routes, method, path) == outcome(shuffled, method, path)
        assert list(compile_routes(routes).table) == list(compile_routes(shuffled).table)

    @settings(max_examples=150, deadline=None)
    @given(_cases())
    def test_the_chosen_route_really_matches_the_path(self, case: Case) -> None:
        """Segment by segment, the chosen pattern accounts for the whole path, and it allows
        the method."""
        routes, method, path = case
        try:
            match = compile_routes(routes).table.match(method, path)
        except Denied:
            return
        segments = parse_pattern(match.route.path)
        parts = path.split("/")[1:]
        for index, segment in enumerate(segments):
            if segment.kind is Kind.REST:
                assert match.params[segment.text] == "/".join(parts[index:])
                break
            assert index < len(parts)
            expected = match.params[segment.text] if segment.kind is Kind.PARAM else segment.text
            if segment.kind is Kind.MIXED:
                value = match.params[segment.text]
                expected = segment.prefix + value + segment.suffix
                assert value
            assert parts[index] == expected
        else:
            assert len(parts) == len(segments)
        assert match.route.allowed_methods is None or method in match.route.allowed_methods

    @settings(max_examples=150, deadline=None)
    @given(_cases().flatmap(lambda case: st.tuples(st.just(case), spellings(case[2]))))
    def test_every_spelling_of_a_path_meets_the_same_route(self, pair: tuple[Case, str]) -> None:
        """Normalise then match: no encoding of a path can reach another route than the path."""
        (routes, method, path), raw = pair
        assert outcome(routes, method, parse_target(raw).path) == outcome(routes, method, path)

    @settings(max_examples=100, deadline=None)
    @given(st.sampled_from(["/admin/users", "/admin/users/"]).flatmap(spellings))
    def test_no_spelling_steers_around_a_protected_literal_route(self, raw: str) -> None:
        """Whatever spelling normalises to the protected path is matched by the protected
        route, never by the public routes it could be spelt through."""
        routes = [
            route("protected", "/admin/users", "GET"),
            route("protected-dir", "/admin/users/", "GET"),
            route("public", "/public/{rest*}", "GET"),
            route("anything", "/{rest*}", "GET"),
            route("admin-other", "/admin/{x}", "GET"),
        ]
        path = parse_target(raw).path
        name = outcome(routes, "GET", path)[0]
        assert name == ("protected" if path == "/admin/users" else "protected-dir")

    @settings(max_examples=100, deadline=None)
    @given(route_sets(), normal_paths(), methods)
    def test_any_normal_path_is_a_match_or_a_404_or_405(
        self, routes: list[Route], path: str, method: str
    ) -> None:
        """Arbitrary normalised paths, escapes and odd characters included, are answered as the
        literal reading of the spec answers them."""
        assert outcome(routes, method, path) == oracle(routes, method, path)
