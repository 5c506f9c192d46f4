"""Route compilation and choice (SPEC §2 and §3.2); end-to-end counterpart: tests/e2e/test_deny.py."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scopegate.config.model import Route
from scopegate.pipeline.routing import compile_routes, parse_pattern
from scopegate.pipeline.target import parse_target
from scopegate.reasons import Denied, Reason
from tests.unit.strategies import request_paths, route_sets


def route(name: str, path: str, *methods: str) -> Route:
    return Route(
        name=name, path=path, upstream="u", methods=frozenset(methods) if methods else None
    )


TABLE = [
    route("list", "/contacts", "GET"),
    route("create", "/contacts", "POST"),
    route("read", "/contacts/{id}", "GET"),
    route("delete", "/contacts/{id}", "DELETE"),
    route("me", "/contacts/me", "GET"),
    route("public", "/public/{rest*}"),
    route("admin", "/admin/{rest*}"),
    route("health", "/admin/health", "GET"),
    route("root", "/"),
    route("nested", "/a/{x}/c", "GET"),
    route("nested-literal", "/a/b/{y}", "GET"),
]


@pytest.mark.parametrize(
    ("method", "path", "name", "params"),
    [
        pytest.param("GET", "/contacts", "list", {}, id="literal route"),
        pytest.param("HEAD", "/contacts", "list", {}, id="HEAD wherever GET"),
        pytest.param("POST", "/contacts", "create", {}, id="same path, the method picks"),
        pytest.param("GET", "/contacts/42", "read", {"id": "42"}, id="param captured"),
        pytest.param("GET", "/contacts/me", "me", {}, id="literal beats param"),
        pytest.param("DELETE", "/contacts/me", "delete", {"id": "me"},
                     id="a less specific route that allows the method"),
        pytest.param("GET", "/public/a/b/c", "public", {"rest": "a/b/c"}, id="rest takes the rest"),
        pytest.param("GET", "/public", "public", {"rest": ""}, id="rest may be empty"),
        pytest.param("GET", "/admin/health", "health", {}, id="literal beats rest"),
        pytest.param("POST", "/admin/health", "admin", {"rest": "health"},
                     id="method falls back to the rest route"),
        pytest.param("GET", "/", "root", {}, id="root"),
        pytest.param("GET", "/a/b/c", "nested-literal", {"y": "c"},
                     id="leftmost literal decides between equal lengths"),
        pytest.param("GET", "/a/z/c", "nested", {"x": "z"}, id="backtracks to the param branch"),
    ],
)  # fmt: skip
def test_most_specific_route_wins(
    method: str, path: str, name: str, params: dict[str, str]
) -> None:
    match = compile_routes(TABLE).table.match(method, path)
    assert (match.route.name, dict(match.params)) == (name, params)


def test_no_route_is_404() -> None:
    with pytest.raises(Denied) as caught:
        compile_routes(TABLE).table.match("GET", "/nothing")
    assert caught.value.reason is Reason.NO_ROUTE


def test_wrong_method_is_405_with_every_allowed_method() -> None:
    with pytest.raises(Denied) as caught:
        compile_routes(TABLE).table.match("PUT", "/contacts/42")
    assert caught.value.reason is Reason.METHOD_NOT_ALLOWED
    assert caught.value.allow == ("DELETE", "GET", "HEAD")


def test_a_param_never_matches_an_empty_segment() -> None:
    with pytest.raises(Denied):
        compile_routes(TABLE).table.match("GET", "/contacts/")


@pytest.mark.parametrize(
    ("path", "message"),
    [
        pytest.param("/a/{rest*}/b", "must be the last segment", id="rest not last"),
        pytest.param("/a/x{id}", "whole segment", id="param inside a segment"),
        pytest.param("/a/{id}/{id}", "appears twice", id="duplicate parameter"),
        pytest.param("/a/{1x}", "whole segment", id="parameter name not an identifier"),
        pytest.param("a/b", "must start with /", id="relative path"),
    ],
)
def test_invalid_patterns_are_errors(path: str, message: str) -> None:
    compiled = compile_routes([route("bad", path)])
    assert [issue.severity for issue in compiled.issues] == ["error"]
    assert message in compiled.issues[0].message


@pytest.mark.parametrize(
    ("first", "second", "ambiguous"),
    [
        pytest.param(route("a", "/x/{id}", "GET"), route("b", "/x/{key}", "GET"), True,
                     id="same shape, same method"),
        pytest.param(route("a", "/x/{id}"), route("b", "/x/{key}"), True, id="both all methods"),
        pytest.param(route("a", "/x/{id}", "GET"), route("b", "/x/{key}", "HEAD"), True,
                     id="HEAD implied by GET overlaps"),
        pytest.param(route("a", "/x/{id}", "GET"), route("b", "/x/{key}", "POST"), False,
                     id="same shape, other methods"),
        pytest.param(route("a", "/x/{id}", "GET"), route("b", "/x/{key}"), False,
                     id="explicit methods beat all methods"),
        pytest.param(route("a", "/x/{id}", "GET"), route("b", "/x/y", "GET"), False,
                     id="literal is more specific"),
    ],
)  # fmt: skip
def test_ambiguous_routes_are_errors(first: Route, second: Route, ambiguous: bool) -> None:
    errors = compile_routes([first, second]).errors
    assert bool(errors) is ambiguous
    if ambiguous:
        assert "ambiguous" in errors[0].message and "route a" in errors[0].message


@pytest.mark.parametrize(
    "path",
    [
        pytest.param("/a/../b", id="dot-dot segment"),
        pytest.param("/a/./b", id="dot segment"),
        pytest.param("/a//b", id="double slash"),
        pytest.param("/%41", id="decodable escape"),
        pytest.param("/a%2Fb", id="encoded slash is always refused"),
        pytest.param("/a%2ab", id="lower-case hex is never normal"),
    ],
)
def test_routes_that_can_never_match_are_warned_about(path: str) -> None:
    compiled = compile_routes([route("never", path)])
    assert [issue.severity for issue in compiled.issues] == ["warning"]
    assert "can never match" in compiled.issues[0].message


def test_ten_thousand_routes_build_and_match() -> None:
    routes = [route(f"r{i}", f"/tenant{i}/items/{{id}}", "GET") for i in range(10_000)]
    table = compile_routes(routes).table
    assert len(table) == 10_000
    assert table.match("GET", "/tenant9999/items/7").route.name == "r9999"


def test_parse_pattern_kinds() -> None:
    kinds = [segment.kind for segment in parse_pattern("/a/{b}/{c*}")]
    assert kinds == ["literal", "param", "rest"]


def _outcome(routes: list[Route], method: str, path: str) -> tuple[str, ...]:
    try:
        match = compile_routes(routes).table.match(method, path)
    except Denied as denied:
        return (str(denied.reason), *denied.allow)
    return (match.route.name, *(f"{k}={v}" for k, v in sorted(match.params.items())))


@settings(max_examples=200, deadline=None)
@given(route_sets(), st.sampled_from(["GET", "POST", "DELETE", "PUT"]), request_paths, st.randoms())
def test_order_in_the_file_never_changes_the_answer(
    routes: list[Route], method: str, path: str, rnd: random.Random
) -> None:
    shuffled = list(routes)
    rnd.shuffle(shuffled)
    assert _outcome(routes, method, path) == _outcome(shuffled, method, path)


@settings(max_examples=200, deadline=None)
@given(route_sets(), request_paths)
def test_the_chosen_route_really_matches_the_path(routes: list[Route], path: str) -> None:
    try:
        match = compile_routes(routes).table.match("GET", path)
    except Denied:
        return
    segments = parse_pattern(match.route.path)
    parts = path.split("/")[1:]
    for index, segment in enumerate(segments):
        if segment.kind == "rest":
            assert match.params[segment.text] == "/".join(parts[index:])
            return
        assert index < len(parts)
        if segment.kind == "literal":
            assert parts[index] == segment.text
        else:
            assert parts[index] == match.params[segment.text] != ""
    assert len(parts) == len(segments)


ENCODINGS = st.sampled_from(
    ["/admin/../admin/users", "/public/../admin/users", "/public/%2e%2e/admin/users",
     "//admin//users", "/admin/./users", "/%61dmin/users", "/admin/users/.", "/x/y/../../admin/users"]
)  # fmt: skip


@settings(max_examples=50, deadline=None)
@given(ENCODINGS)
def test_no_encoding_reaches_a_protected_route_by_another_route(raw: str) -> None:
    """Whatever spelling normalises to /admin/users is matched as /admin/users, by the
    protected route — never by the public one it was spelled through."""
    routes = [route("protected", "/admin/{rest*}"), route("public", "/public/{rest*}")]
    path = parse_target(raw).path
    match = compile_routes(routes).table.match("GET", path)
    assert path.startswith("/admin/users")
    assert match.route.name == "protected"
