"""OpenAPI operations → routes (SPEC §6.6), through the real pipeline: for generated documents
and requests, what scopegate decides is what the document's security section states; and the
mapping rules one by one. End-to-end counterparts: tests/e2e/test_openapi_gateway.py."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scopegate.config.errors import ConfigErrors
from scopegate.config.model import NO_TOKEN_PASSES
from scopegate.config.openapi import import_openapi
from scopegate.pipeline.routing import compile_routes
from scopegate.pipeline.scopes import require
from scopegate.reasons import Denied
from tests.unit.strategies import (
    OPENAPI_TEMPLATES,
    TOKEN_SCHEME_NAMES,
    openapi_documents,
    path_parameters,
)

Decision = str  # "unrouted" | "public" | "allow" | "deny"


def documented(
    document: dict[str, Any], template: str, method: str, granted: frozenset[str]
) -> Decision:
    """What the document states for a bearer token granting `granted`: public, allowed or
    denied. Where it gives scopegate nothing it can check (no security at all, or only schemes
    other than OAuth 2.0 / OpenID Connect) no token passes: never public, never left to
    another route."""
    operation = document["paths"][template][method]
    requirements = operation.get("security", document.get("security"))
    if requirements is None:
        return "deny"
    if not requirements or {} in requirements:
        return "public"
    checkable = [r for r in requirements if TOKEN_SCHEME_NAMES & r.keys()]
    if not checkable:
        return "deny"
    for requirement in checkable:
        needed = {s for name in TOKEN_SCHEME_NAMES & requirement.keys() for s in requirement[name]}
        if needed <= granted:
            return "allow"
    return "deny"


def decided(routes: Any, method: str, path: str, granted: frozenset[str]) -> Decision:
    """What scopegate's route table and scope check decide."""
    try:
        match = routes.match(method.upper(), path)
    except Denied:
        return "unrouted"
    if match.route.auth == "none":
        return "public"
    try:
        require(match.route.scopes, granted)
    except Denied:
        return "deny"
    return "allow"


def imported(document: dict[str, Any], **options: Any) -> Any:
    with tempfile.TemporaryDirectory() as directory:
        file = Path(directory) / "api.json"
        file.write_text(json.dumps(document))
        return import_openapi(str(file), "api", **options)


@st.composite
def _requests(draw: st.DrawFn) -> tuple[dict[str, Any], str, str, frozenset[str]]:
    document = draw(openapi_documents())
    template = draw(st.sampled_from(sorted(document["paths"])))
    method = draw(st.sampled_from(sorted(set(document["paths"][template]) - {"parameters"})))
    granted = frozenset(draw(st.lists(st.sampled_from(["read", "write", "admin"]), unique=True)))
    return document, template, method, granted


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_requests())
def test_scopegate_decides_what_the_document_states(
    case: tuple[dict[str, Any], str, str, frozenset[str]],
) -> None:
    document, template, method, granted = case
    api = imported(document)
    compiled = compile_routes(api.routes)
    assert compiled.errors == ()
    path = OPENAPI_TEMPLATES[template]
    assert decided(compiled.table, method, path, granted) == documented(
        document, template, method, granted
    )


def _document(**operation: Any) -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {"title": "t", "version": "1"},
        "servers": [{"url": "https://api.example.com/{stage}", "variables": {"stage": {"default": "v2"}}}],
        "paths": {"/things/{thing-id}": {"parameters": path_parameters("/things/{thing-id}"), "get": {"operationId": "getThing", "responses": {"200": {"description": "ok"}}, **operation}}},
        "components": {"securitySchemes": {
            "oauth": {"type": "oauth2", "flows": {"implicit": {"authorizationUrl": "https://id.example.com/a", "scopes": {"read": "  Read\n things  "}}}},
            "key": {"type": "apiKey", "in": "header", "name": "X-Key"},
        }},
    }  # fmt: skip


class TestRules:
    def test_name_path_method_and_server_path(self) -> None:
        api = imported(_document(security=[{"oauth": ["read"]}]), server_path=True)
        (route,) = api.routes
        assert (route.name, route.path, route.methods) == (
            "getThing",
            "/v2/things/{thing_id}",
            frozenset({"GET"}),
        )
        assert route.origin is not None and route.origin.endswith("api.json#getThing")
        assert dict(api.scopes) == {"read": "Read things"}

    def test_without_server_path_the_template_is_the_path(self) -> None:
        (route,) = imported(_document(security=[{"oauth": []}])).routes
        assert route.path == "/things/{thing_id}" and route.scopes.needs_nothing

    def test_oauth_and_another_scheme_maps_the_scopes_and_says_so(self) -> None:
        api = imported(_document(security=[{"oauth": ["read"], "key": []}]))
        (route,) = api.routes
        assert route.scopes.alternatives == (frozenset({"read"}),)
        assert [
            "key (apiKey)" in note.message and "upstream" in note.message for note in api.notes
        ] == [True]

    @pytest.mark.parametrize("security", [[{"key": []}], [{"key": []}, {"undefined": []}]])
    def test_only_other_schemes_is_refused_never_public(
        self, security: list[dict[str, list[str]]]
    ) -> None:
        api = imported(_document(security=security))
        ((route),) = api.routes
        assert (route.auth, route.scopes) == ("required", NO_TOKEN_PASSES)
        assert "no token passes" in api.notes[-1].message

    def test_no_security_anywhere_is_refused(self) -> None:
        api = imported(_document())
        ((route),) = api.routes
        assert route.scopes == NO_TOKEN_PASSES
        assert "declares no security" in api.notes[0].message

    def test_a_refused_operation_is_not_left_to_a_less_specific_route(self) -> None:
        """`/things/me` with an API key only, beside `/things/{thing-id}` with OAuth: a request
        to /things/me meets its own route, which no token passes, not the other's scopes."""
        document = _document(security=[{"oauth": ["read"]}])
        document["paths"]["/things/me"] = {"get": {
            "operationId": "me", "security": [{"key": []}],
            "responses": {"200": {"description": "ok"}},
        }}  # fmt: skip
        table = compile_routes(imported(document).routes).table
        assert table.match("GET", "/things/me").route.name == "me"
        assert decided(table, "get", "/things/me", frozenset({"read", "write", "admin"})) == "deny"
        assert decided(table, "get", "/things/7", frozenset({"read"})) == "allow"

    def test_a_head_operation_beside_get_is_answered_by_get(self) -> None:
        document = _document(security=[{"oauth": ["read"]}])
        item = document["paths"]["/things/{thing-id}"]
        item["head"] = {
            "operationId": "headThing",
            "responses": {"200": {"description": "ok"}},
            "security": [{"oauth": ["read"]}],
        }
        assert [r.name for r in imported(document).routes] == ["getThing"]
        item["head"]["security"] = [{"oauth": ["admin"]}]
        ((get),) = imported(document).routes
        assert (get.name, get.scopes) == ("getThing", NO_TOKEN_PASSES)

    def test_a_path_key_that_is_not_a_template_is_skipped(self) -> None:
        document = _document(security=[])
        document["paths"]["/a/{b}{c}"] = {"parameters": path_parameters("/a/{b}{c}")}
        api = imported(document)
        assert [r.auth for r in api.routes] == ["none"]
        assert "is not one {name} in text" in api.notes[0].message


class TestBadDocuments:
    @pytest.mark.parametrize(
        ("text", "message"),
        [
            pytest.param("just: yaml\n", "api.json:1:1: not an OpenAPI document", id="not OpenAPI"),
            pytest.param('{"swagger": "2.0"}', "Swagger 2.0", id="Swagger 2"),
            pytest.param('{"openapi": "3.0.3",\n "info": {"title": "t", "version": "1"},\n "paths": {"/a": {"get": {"responses": 5}}}}', "api.json:3:40: paths./a.get.responses: 5 is not of type 'object'", id="invalid, positioned"),
            pytest.param('{"openapi": "3.0.3",\n "info": {"title": "t", "version": "1"},\n "paths": {"/a": {"$ref": "#/nowhere"}}}', 'api.json:3:27: paths./a: $ref "#/nowhere" points to nothing', id="a $ref to nowhere"),
            pytest.param('{"openapi": "3.0.3", "paths": {"/a": {"$ref": "other.yaml#/x"}}}', "only references within the document", id="a $ref to another file"),
            pytest.param("a: [", "YAML syntax error", id="unreadable"),
        ],
    )  # fmt: skip
    def test_each_is_a_positioned_error(self, tmp_path: Path, text: str, message: str) -> None:
        file = tmp_path / "api.json"
        file.write_text(text)
        with pytest.raises(ConfigErrors) as caught:
            import_openapi(str(file), "api")
        assert any(message in str(error) for error in caught.value.errors), str(caught.value)

    def test_a_missing_file(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigErrors) as caught:
            import_openapi(str(tmp_path / "absent.yaml"), "api")
        assert str(caught.value).endswith("absent.yaml:1:1: cannot read: No such file or directory")
