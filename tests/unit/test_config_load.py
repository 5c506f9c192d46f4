"""Configuration loading (SPEC §2): a good file becomes exactly the `Config` it says; a bad one
gives every error at once as FILE:LINE:COL: message, and nothing else."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scopegate.config.errors import ConfigErrors
from scopegate.config.load import load_config, load_config_text
from scopegate.config.model import Address, ScopeRule, Upstream

EXAMPLE = Path(__file__).parents[2] / "config" / "scopegate.example.yaml"

GOOD = """\
listen: 127.0.0.1:${PORT:-8080}
admin_listen: "[::1]:9100"
issuers:
  - issuer: https://id.example.com/
    audiences: [https://api.example.com]
    algorithms: [RS256, ES256]
    scope_claims: [scope, realm_access.roles]
    leeway: 5
    token_type: at+jwt
jwks: {cache_ttl: 300, min_refresh_interval: 10}
upstreams:
  api: http://127.0.0.1:8001/base/
  slow: {url: "https://slow.internal", timeout: 60, preserve_host: true}
scopes:
  read:contacts: Read
routes:
  - path: /contacts
    methods: [GET]
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
  - path: /public
    upstream: api
    auth: none
"""


def load(text: str, **env: str) -> object:
    return load_config_text(text, "f.yaml", env)


def errors_of(text: str, **env: str) -> list[str]:
    with pytest.raises(ConfigErrors) as caught:
        load_config_text(text, "f.yaml", env)
    return [str(error) for error in caught.value.errors]


def test_a_good_file_builds_the_whole_config() -> None:
    config = load_config_text(GOOD, "f.yaml", {"PORT": "9000"})
    assert config.listen == Address("127.0.0.1", 9000)
    assert config.admin_listen == Address("::1", 9100)
    issuer = config.issuers[0]
    assert issuer.algorithms == ("RS256", "ES256")
    assert issuer.scope_claims == ("scope", "realm_access.roles")
    assert (issuer.leeway, issuer.token_type, issuer.jwks_uri) == (5.0, "at+jwt", None)
    assert config.jwks.cache_ttl == 300 and config.jwks.min_refresh_interval == 10
    assert config.upstreams["api"] == Upstream(
        "api", "http", "127.0.0.1", 8001, "/base", source=config.upstreams["api"].source
    )
    slow = config.upstreams["slow"]
    assert (slow.port, slow.timeout, slow.preserve_host, slow.authority) == (
        443,
        60.0,
        True,
        "slow.internal",
    )
    names = [route.name for route in config.routes]
    assert names == ["GET /contacts", "delete", "ANY /x/{rest*}", "ANY /public"]
    assert config.routes[1].scopes == ScopeRule(
        (frozenset({"delete:contacts"}), frozenset({"admin"}))
    )
    assert config.routes[2].scopes == ScopeRule((frozenset({"a", "b"}), frozenset({"c"})))
    assert config.routes[2].max_body_bytes == 0
    assert config.routes[3].auth == "none"
    assert config.forward.claims_to_headers == (("sub", "X-Auth-Subject"),)
    assert config.routes[0].source.line == 17


def test_the_shipped_example_loads() -> None:
    config = load_config(EXAMPLE, env={})
    assert config.upstreams["contacts"].port == 8001
    assert {route.name for route in config.routes} >= {"list-contacts", "delete-contact"}


BASE = GOOD.replace("listen: 127.0.0.1:${PORT:-8080}\n", "")

BAD = [
    pytest.param(BASE.replace("    leeway: 5\n", "    leway: 5\n"),
                 ['f.yaml:7:5: issuers[0]: unknown key "leway" (did you mean "leeway"?)'],
                 id="typo in a key is an error, with a suggestion"),
    pytest.param(BASE.replace("    scopes: [read:contacts]\n", "    scope: [read:contacts]\n", 1),
                 ['f.yaml:19:5: routes[0]: unknown key "scope" (did you mean "scopes"?)'],
                 id="scope instead of scopes never silently drops the rule"),
    pytest.param(BASE.replace("upstream: api\n    scopes: [read:contacts]", "upstream: apii\n    scopes: [read:contacts]"),
                 ['f.yaml:18:15: routes[0].upstream: "apii" is not a defined upstream (defined: api, slow)'],
                 id="route naming a missing upstream"),
    pytest.param(BASE.replace("[RS256, ES256]", "[RS256, HS256, none]"),
                 ['f.yaml:5:25: issuers[0].algorithms[1]: "HS256" is refused: a shared secret cannot be published in a JWKS, and HMAC beside public keys invites algorithm confusion',
                  'f.yaml:5:32: issuers[0].algorithms[2]: "none" is refused: an unsigned token proves nothing'],
                 id="none and HS algorithms refused"),
    pytest.param(BASE.replace("leeway: 5", "leeway: five"),
                 ["f.yaml:7:13: issuers[0].leeway: expected number, got a string"], id="duration must be a number"),
    pytest.param(BASE.replace("leeway: 5", "leeway: true"),
                 ["f.yaml:7:13: issuers[0].leeway: expected number, got a boolean"], id="a boolean is not a number"),
    pytest.param(BASE.replace("methods: [GET]", "methods: [get]"),
                 ['f.yaml:17:15: routes[0].methods[0]: "get": methods are case-sensitive; write "GET"'],
                 id="lower-case method"),
    pytest.param(BASE.replace("scopes: [read:contacts]\n  - name", "scopes: [read contacts]\n  - name"),
                 ['f.yaml:19:14: routes[0].scopes[0]: scope "read contacts" contains whitespace: scopes are single words'],
                 id="scope with a space"),
    pytest.param(BASE.replace("    auth: none\n", "    auth: none\n    scopes: [a]\n"),
                 ['f.yaml:33:13: routes[3].scopes: "scopes" on a route with auth: none would never be checked'],
                 id="scopes on a public route"),
    pytest.param(BASE.replace("  - name: delete\n", "  - name: GET /contacts\n"),
                 ['f.yaml:20:11: routes[1].name: route name "GET /contacts" is used twice (first at f.yaml:16:5)'],
                 id="duplicate route names"),
    pytest.param(BASE.replace("strip_prefix: /x", "strip_prefix: /y"),
                 ['f.yaml:28:19: routes[2].strip_prefix: "/y" is not a prefix of the route path "/x/{rest*}"'],
                 id="strip_prefix not a prefix"),
    pytest.param(BASE.replace("http://127.0.0.1:8001/base/", "ftp://files"),
                 ['f.yaml:11:8: upstreams.api: "ftp://files" is not an http:// or https:// URL with a host'],
                 id="upstream URL scheme"),
    pytest.param(BASE + "scopes: {}\n", ['f.yaml:33:1: duplicate key "scopes" (first at f.yaml:13:1)'],
                 id="duplicate top-level key"),
    pytest.param(BASE.replace("    audiences: [https://api.example.com]\n", ""),
                 ['f.yaml:3:5: issuers[0]: missing required key "audiences"'], id="issuer without audiences"),
    pytest.param(BASE.replace("    audiences: [https://api.example.com]\n", "    audiences: []\n"),
                 ["f.yaml:4:16: issuers[0].audiences: needs at least 1 item(s)"], id="empty audiences"),
    pytest.param("issuers: [\n", ["f.yaml:2:1: YAML: expected the node content, but found '<stream end>'"],
                 id="YAML syntax error"),
    pytest.param("", ["f.yaml:1:1: the file is empty"], id="empty file"),
    pytest.param("- a\n- b\n", ["f.yaml:1:1: the file must be a mapping"], id="not a mapping"),
    pytest.param(BASE.replace("issuer: https://id.example.com/", "issuer: ${ISSUER}"),
                 ["f.yaml:3:13: environment variable ISSUER is not set (write ${ISSUER:-default} to give a default)"],
                 id="unset environment variable"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "expected"), BAD)
def test_bad_files_report_exactly_these_errors(text: str, expected: list[str]) -> None:
    assert errors_of(text) == expected


def test_several_errors_are_reported_at_once_in_file_order() -> None:
    text = (
        BASE.replace("leeway: 5", "leeway: -1")
        .replace("methods: [GET]", "methods: [get]")
        .replace("upstream: slow", "upstream: nowhere")
    )
    errors = errors_of(text)
    assert len(errors) == 3
    assert [int(e.split(":")[1]) for e in errors] == sorted(int(e.split(":")[1]) for e in errors)


def test_interpolation_types_plain_values_and_keeps_quoted_ones() -> None:
    text = BASE.replace("leeway: 5", "leeway: ${LEEWAY:-7}").replace(
        "token_type: at+jwt", "token_type: '${TYP:-at+jwt}'"
    )
    config = load_config_text(text, "f.yaml", {"LEEWAY": "12"})
    assert config.issuers[0].leeway == 12.0
    assert config.issuers[0].token_type == "at+jwt"
    assert (
        load_config_text(BASE.replace("/base/", "/$$x/"), "f.yaml", {}).upstreams["api"].base_path
        == "/$x"
    )


def test_unreadable_file_is_a_positioned_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigErrors) as caught:
        load_config(tmp_path / "missing.yaml")
    assert str(caught.value).startswith(f"{tmp_path / 'missing.yaml'}:1:1: cannot read")


def test_alias_bombs_are_refused() -> None:
    bomb = "a: &a [1,1,1,1,1,1,1,1,1,1]\n"
    for level in "bcdefg":
        prev = chr(ord(level) - 1)
        bomb += f"{level}: &{level} [" + ",".join([f"*{prev}"] * 10) + "]\n"
    assert "expands to more than" in errors_of(bomb)[0]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=300))
def test_any_text_gives_a_config_or_positioned_errors(text: str) -> None:
    try:
        load_config_text(text, "f.yaml", {})
    except ConfigErrors as errors:
        assert errors.errors
        assert all(str(error).startswith("f.yaml:") for error in errors.errors)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, len(BASE) - 1), st.text(max_size=8))
def test_mutations_of_a_good_file_never_crash_the_loader(at: int, insert: str) -> None:
    text = BASE[:at] + insert + BASE[at + 1 :]
    try:
        load_config_text(text, "f.yaml", {})
    except ConfigErrors as errors:
        assert all(str(error).startswith("f.yaml:") for error in errors.errors)
