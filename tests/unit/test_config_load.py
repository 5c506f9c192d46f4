"""Configuration loading (SPEC §2), the good side: a valid file becomes exactly the `Config` it
describes, defaults fill what it leaves out, `${NAME}` comes from the environment, and files are
read with their limits. Bad files are in `test_config_errors.py`, fuzzing in
`test_config_fuzz.py`."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from scopegate.config.errors import ConfigErrors
from scopegate.config.lint import catalogue_warnings
from scopegate.config.load import MAX_FILE_BYTES, load_config, load_config_text
from scopegate.config.model import (
    NO_SCOPES,
    Address,
    Config,
    Forwarding,
    Issuer,
    JwksPolicy,
    Limits,
    Route,
    ScopeRule,
    Source,
    Upstream,
)

EXAMPLE = Path(__file__).parents[2] / "config" / "scopegate.example.yaml"

GOOD = """\
listen: 127.0.0.1:${PORT:-8080}
admin_listen: "[::1]:9100"
issuers:
  - issuer: https://id.example.com/
    jwks_uri: https://id.example.com/keys
    audiences: [https://api.example.com, api]
    algorithms: [RS256, ES256, RS256]
    scope_claims: [scope, realm_access.roles]
    leeway: 5
    required_claims: [exp, iat]
    token_type: at+jwt
  - issuer: https://other.example.com/
    audiences: [api]
jwks: {cache_ttl: 300, min_refresh_interval: 10, max_stale: 60, timeout: 2}
upstreams:
  api: http://127.0.0.1:8001/base/
  slow: {url: "https://slow.internal", timeout: 60, connect_timeout: 2, preserve_host: true}
limits: {max_body_bytes: 1024, header_timeout: 3}
scopes:
  read:contacts: Read
  admin:
forward:
  authorization: false
  claims_to_headers: {sub: X-User, tenant.id: X-Tenant}
routes:
  - path: /contacts
    methods: [HEAD, GET]
    upstream: api
    scopes: [read:contacts]
  - name: delete
    path: /contacts/{id}
    methods: [DELETE]
    upstream: api
    scopes: {any: [delete:contacts, admin]}
  - path: /x/{rest*}
    upstream: slow
    scopes: [[a, b], [c]]
    strip_prefix: /x
    max_body_bytes: 0
    audience: https://x.example.com
  - path: /public
    upstream: api
    auth: none
"""


def at(line: int, col: int, file: str = "gw.yaml") -> Source:
    return Source(file, line, col)


def rule(*alternatives: set[str]) -> ScopeRule:
    return ScopeRule(tuple(frozenset(alternative) for alternative in alternatives))


EXPECTED = Config(
    issuers=(
        Issuer("https://id.example.com/", "https://id.example.com/keys",
               ("https://api.example.com", "api"), ("RS256", "ES256"),
               ("scope", "realm_access.roles"), 5.0, ("exp", "iat"), "at+jwt", source=at(4, 5)),
        Issuer("https://other.example.com/", audiences=("api",), source=at(12, 5)),
    ),
    upstreams={
        "api": Upstream("api", "http", "127.0.0.1", 8001, "/base", source=at(16, 8)),
        "slow": Upstream("slow", "https", "slow.internal", 443, "", 60.0, 2.0, True, at(17, 9)),
    },
    routes=(
        Route("GET,HEAD /contacts", "/contacts", "api", frozenset({"GET", "HEAD"}),
              scopes=rule({"read:contacts"}), source=at(26, 5)),
        Route("delete", "/contacts/{id}", "api", frozenset({"DELETE"}),
              scopes=rule({"delete:contacts"}, {"admin"}), source=at(30, 5)),
        Route("ANY /x/{rest*}", "/x/{rest*}", "slow", scopes=rule({"a", "b"}, {"c"}),
              audience="https://x.example.com", strip_prefix="/x", max_body_bytes=0,
              source=at(35, 5)),
        Route("ANY /public", "/public", "api", auth="none", source=at(41, 5)),
    ),
    listen=Address("127.0.0.1", 9000),
    admin_listen=Address("::1", 9100),
    jwks=JwksPolicy(cache_ttl=300.0, min_refresh_interval=10.0, max_stale=60.0, timeout=2.0),
    limits=Limits(max_body_bytes=1024, header_timeout=3.0),
    scopes={"read:contacts": "Read", "admin": ""},
    scope_sources={"read:contacts": at(20, 3), "admin": at(21, 3)},
    forward=Forwarding(authorization=False,
                       claims_to_headers=(("sub", "X-User"), ("tenant.id", "X-Tenant"))),
    file="gw.yaml",
)  # fmt: skip

MINIMAL = """\
issuers:
  - issuer: https://id.example.com/
    audiences: [api]
upstreams:
  api: http://[::1]:8001
routes:
  - path: /x
    upstream: api
"""


def test_a_good_file_builds_exactly_the_config_it_describes() -> None:
    assert load_config_text(GOOD, "gw.yaml", {"PORT": "9000"}) == EXPECTED


def test_numbers_take_the_type_of_their_field() -> None:
    """`leeway: 5` and `timeout: 2` are floats (seconds), byte limits stay ints: equality alone
    would not tell 5 from 5.0."""
    config = load_config_text(GOOD, "gw.yaml", {"PORT": "9000"})
    assert type(config.issuers[0].leeway) is float
    assert type(config.jwks.timeout) is float
    assert type(config.limits.max_body_bytes) is int
    assert type(config.upstreams["slow"].timeout) is float


def test_what_a_file_leaves_out_takes_the_documented_defaults() -> None:
    config = load_config_text(MINIMAL, "m.yaml", {})
    assert config.listen == Address("0.0.0.0", 8080)
    assert config.admin_listen == Address("127.0.0.1", 9100)
    assert config.issuers[0] == Issuer("https://id.example.com/", audiences=("api",),
                                       source=at(2, 5, "m.yaml"))  # fmt: skip
    assert (config.jwks, config.limits, config.forward) == (JwksPolicy(), Limits(), Forwarding())
    assert config.forward.claims_to_headers == (("sub", "X-Auth-Subject"),)
    assert config.upstreams["api"].authority == "[::1]:8001"
    route = config.routes[0]
    assert (route.name, route.methods, route.auth, route.scopes) == ("ANY /x", None, "required",
                                                                     NO_SCOPES)  # fmt: skip
    assert (config.scopes, catalogue_warnings(config)) == ({}, [])


def test_sections_left_empty_take_their_defaults() -> None:
    """`jwks:` with every key commented out is null: the defaults, not an error."""
    config = load_config_text(MINIMAL + "jwks:\nlimits:\nforward:\nscopes:\n", "m.yaml", {})
    assert (config.jwks, config.limits, config.forward, config.scopes) == (
        JwksPolicy(),
        Limits(),
        Forwarding(),
        {},
    )


def test_claims_to_headers_left_empty_forwards_no_claim() -> None:
    """Every entry commented out leaves `claims_to_headers:` null: that means none, not the
    default."""
    config = load_config_text(MINIMAL + "forward:\n  claims_to_headers:\n", "m.yaml", {})
    assert config.forward == Forwarding(authorization=True, claims_to_headers=())


def test_the_shipped_example_loads_cleanly() -> None:
    config = load_config(EXAMPLE, env={})
    assert config.issuers[0].issuer == "https://example.eu.auth0.com/"
    assert config.issuers[0].audiences == ("https://contacts.example.com",)
    assert config.issuers[0].scope_claims == ("scope", "permissions")
    assert config.upstreams["contacts"].origin == "http://127.0.0.1:8001"
    assert [(r.name, r.path, r.auth) for r in config.routes] == [
        ("list-contacts", "/contacts", "required"),
        ("create-contact", "/contacts", "required"),
        ("read-contact", "/contacts/{id}", "required"),
        ("delete-contact", "/contacts/{id}", "required"),
        ("contacts-feed", "/contacts/feed", "required"),
        ("public", "/public/{rest*}", "none"),
        ("health", "/healthz", "none"),
    ]
    feed = next(route for route in config.routes if route.name == "contacts-feed")
    assert feed.websocket and feed.websocket_token_query == "access_token"
    assert list(config.scopes) == ["read:contacts", "create:contacts", "delete:contacts"]
    assert catalogue_warnings(config) == []


def test_the_example_upstream_comes_from_the_environment() -> None:
    config = load_config(EXAMPLE, env={"CONTACTS_UPSTREAM": "https://contacts.internal:8443/v1"})
    assert config.upstreams["contacts"].origin == "https://contacts.internal:8443"
    assert config.upstreams["contacts"].base_path == "/v1"


def token_type(value: str, env: dict[str, str]) -> str | None:
    text = MINIMAL.replace("[api]\n", f"[api]\n    token_type: {value}\n")
    return load_config_text(text, "m.yaml", env).issuers[0].token_type


@pytest.mark.parametrize(
    ("written", "env", "expected"),
    [
        pytest.param("${T}", {"T": "at+jwt"}, "at+jwt", id="a set variable is used"),
        pytest.param("${T:-at+jwt}", {}, "at+jwt", id="an unset variable takes its default"),
        pytest.param("${T:-at+jwt}", {"T": ""}, "at+jwt", id="a set but empty one too, as in sh"),
        pytest.param("${T:-at+jwt}", {"T": "jwt"}, "jwt", id="a set variable beats the default"),
        pytest.param("'${A}+${B}'", {"A": "at", "B": "jwt"}, "at+jwt", id="several in one value"),
        pytest.param("a$$b", {}, "a$b", id="$$ is a literal dollar"),
        pytest.param("$${T}", {"T": "x"}, "${T}", id="$${T} is the literal text ${T}"),
        pytest.param("a$b", {}, "a$b", id="a lone $ is kept"),
        pytest.param("${T}", {"T": "${U}"}, "${U}", id="a value is not expanded again"),
        pytest.param("${T}", {"T": "null"}, "null", id="a value stays text: null is not None"),
        pytest.param("${T}", {"T": "{a: 1}"}, "{a: 1}", id="a value cannot inject structure"),
        pytest.param('"${T}"', {"T": "x"}, "x", id="quoted values are expanded alike"),
    ],
)  # fmt: skip
def test_environment_references_are_replaced(
    written: str, env: dict[str, str], expected: str
) -> None:
    assert token_type(written, env) == expected


def test_a_listen_port_from_the_environment_is_validated_after_substitution() -> None:
    text = "listen: 0.0.0.0:${PORT}\n" + MINIMAL
    assert load_config_text(text, "m.yaml", {"PORT": "8443"}).listen == Address("0.0.0.0", 8443)
    with pytest.raises(ConfigErrors) as caught:
        load_config_text(text, "m.yaml", {"PORT": "http"})
    assert str(caught.value) == (
        'm.yaml:1:9: listen: "0.0.0.0:http": expected a port from 0 to 65535 after the last :'
    )


def test_no_env_argument_means_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCOPEGATE_TEST_TYP", "at+jwt")
    text = MINIMAL.replace("[api]\n", "[api]\n    token_type: ${SCOPEGATE_TEST_TYP}\n")
    assert load_config_text(text, "m.yaml").issuers[0].token_type == "at+jwt"
    assert (
        load_config_text(text, "m.yaml", {"SCOPEGATE_TEST_TYP": "jwt"}).issuers[0].token_type
        == "jwt"
    )


def test_a_file_is_read_and_named_as_given(tmp_path: Path) -> None:
    path = tmp_path / "gw.yaml"
    path.write_text(GOOD, encoding="utf-8")
    config = load_config(path, {"PORT": "9000"})
    assert config.file == str(path)
    assert config.routes[0].source == Source(str(path), 26, 5)
    assert load_config(str(path), {"PORT": "9000"}).routes == config.routes


def errors_reading(path: str | os.PathLike[str]) -> list[str]:
    with pytest.raises(ConfigErrors) as caught:
        load_config(path, {})
    return [str(error) for error in caught.value.errors]


def test_a_missing_file_is_one_positioned_error(tmp_path: Path) -> None:
    missing = tmp_path / "missing.yaml"
    assert errors_reading(missing) == [f"{missing}:1:1: cannot read: No such file or directory"]


def test_a_directory_is_one_positioned_error(tmp_path: Path) -> None:
    assert errors_reading(tmp_path) == [f"{tmp_path}:1:1: cannot read: Is a directory"]


def test_a_file_over_one_mib_is_refused_before_parsing(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_bytes(MINIMAL.encode() + b"#" * MAX_FILE_BYTES)
    assert errors_reading(path) == [f"{path}:1:1: larger than 1048576 bytes: refused"]
    path.write_bytes(MINIMAL.encode() + b"#" * (MAX_FILE_BYTES - len(MINIMAL) - 1) + b"\n")
    assert load_config(path, {}).routes[0].path == "/x"  # exactly 1 MiB is still read


def test_text_that_is_not_utf8_is_refused_where_it_starts(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(MINIMAL.encode() + b"# caf\xe9\n")
    assert errors_reading(path) == [
        f"{path}:9:6: not UTF-8 text: invalid continuation byte (byte 0xe9)"
    ]


def test_catalogue_warnings_name_undeclared_and_unused_scopes() -> None:
    """With a catalogue, a scope a route requires but the catalogue lacks is a warning at the
    route (with the likely typo named), and a declared scope no route requires is one at its
    declaration."""
    config = load_config_text(GOOD.replace("  admin:\n", "  admin:\n  write:contacts: W\n"),
                              "gw.yaml", {"PORT": "9000"})  # fmt: skip
    assert [str(warning) for warning in catalogue_warnings(config)] == [
        'gw.yaml:31:5: route "delete" requires scope "delete:contacts", not declared in scopes: (did you mean "write:contacts"?)',
        'gw.yaml:36:5: route "ANY /x/{rest*}" requires scope "a", not declared in scopes:',
        'gw.yaml:36:5: route "ANY /x/{rest*}" requires scope "b", not declared in scopes:',
        'gw.yaml:36:5: route "ANY /x/{rest*}" requires scope "c", not declared in scopes:',
        'gw.yaml:22:3: scope "write:contacts" is declared in scopes: but no route requires it',
    ]


def test_enforce_report_is_every_route_s_default_and_a_route_may_keep_enforcing() -> None:
    text = MINIMAL.replace("routes:\n", "enforce: report\nroutes:\n", 1)
    config = load_config_text(text, "m.yaml", {})
    assert config.enforce == "report"
    assert {route.enforce for route in config.routes} == {"report"}
    strict = text + "  - path: /strict\n    upstream: api\n    enforce: enforce\n"
    routes = {route.path: route.enforce for route in load_config_text(strict, "m.yaml", {}).routes}
    assert routes["/strict"] == "enforce"
    assert set(routes.values()) == {"report", "enforce"}
    assert {r.enforce for r in load_config_text(MINIMAL, "m.yaml", {}).routes} == {"enforce"}


def test_resource_metadata_defaults_to_the_one_audience_and_names_its_url() -> None:
    text = MINIMAL + "resource_metadata:\n  public_url: https://gw.example/\n"
    metadata = load_config_text(text, "m.yaml", {}).resource_metadata
    assert metadata is not None
    assert (metadata.public_url, metadata.resource, metadata.documentation) == (
        "https://gw.example",
        "api",
        None,
    )
    assert metadata.url == "https://gw.example/.well-known/oauth-protected-resource"
    assert load_config_text(MINIMAL, "m.yaml", {}).resource_metadata is None


def test_cors_origins_that_are_not_origins_are_warnings_with_their_place() -> None:
    text = MINIMAL + (
        "cors:\n  allow_origins: [https://app.example.com, https://app.example.com/,"
        " https://App.example.com, app.example.com, '*']\n"
    )
    config = load_config_text(text, "m.yaml", {})
    assert config.cors is not None
    assert config.cors.any_origin and "https://app.example.com" in config.cors.allow_origins
    assert [w.split(": ", 1)[0] for w in config.load_warnings] == [
        "m.yaml:10:44",
        "m.yaml:10:70",
        "m.yaml:10:95",
    ]
    assert all(w.endswith(", so it never matches") for w in config.load_warnings)
    assert load_config_text(MINIMAL, "m.yaml", {}).cors is None
