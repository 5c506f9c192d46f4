"""Configuration loading (SPEC §2), the bad side: every mistake is an exact `FILE:LINE:COL:
message` line, all of a file's mistakes come at once in file order, and hostile YAML is refused
with a positioned error rather than a crash, a hang or a silently different configuration."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from scopegate.config.errors import ConfigError, ConfigErrors, path_text
from scopegate.config.load import load_config_text
from scopegate.config.model import Source

BASE = """\
issuers:
  - issuer: https://id.example.com/
    audiences: [api]
    algorithms: [RS256]
    leeway: 5
upstreams:
  api: http://127.0.0.1:8001
routes:
  - name: list
    path: /contacts
    methods: [GET]
    upstream: api
    scopes: [read:contacts]
  - path: /public/{rest*}
    upstream: api
    auth: none
"""


def edit(old: str, new: str) -> str:
    """BASE with `old` (which must occur exactly once) replaced: a case cannot silently test
    the unchanged file."""
    assert BASE.count(old) == 1, old
    return BASE.replace(old, new)


def errors_of(text: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigErrors) as caught:
        load_config_text(text, "f.yaml", env or {})
    return [str(error) for error in caught.value.errors]


def test_the_base_file_of_these_cases_is_valid() -> None:
    assert [route.name for route in load_config_text(BASE, "f.yaml", {}).routes] == [
        "list", "ANY /public/{rest*}"
    ]  # fmt: skip


HS256 = ("is refused: a shared secret cannot be published in a JWKS, and HMAC beside public "
         "keys invites algorithm confusion")  # fmt: skip
UPSTREAM_FORMS = (
    "an upstream URL, or a mapping with url, timeout, connect_timeout, preserve_host, tls"
)
SCOPE_FORMS = ("a list of scopes (all required), {any: [...]} (one of them) or a list of lists "
               "(OR of ANDs)")  # fmt: skip
NOT_A_SCOPE = "is not a scope name: a scope is one word, without spaces"

BAD = [
    # unknown keys: a typo never silently drops a setting
    pytest.param(edit("    leeway: 5", "    leway: 5"), ['f.yaml:5:5: issuers[0]: unknown key "leway" (did you mean "leeway"?)'], id="a typo in a key is an error that suggests the key"),
    pytest.param(edit("    scopes: [read", "    scope: [read"), ['f.yaml:13:5: routes[0]: unknown key "scope" (did you mean "scopes"?)'], id="scope for scopes never leaves a route unprotected"),
    pytest.param(BASE + "rotues: []\n", ['f.yaml:17:1: unknown key "rotues" (did you mean "routes"?)'], id="an unknown top-level key"),
    pytest.param(BASE + "telemetry: {}\n", ['f.yaml:17:1: unknown key "telemetry" (known: admin_listen, cors, enforce, forward, forwarded_client_cert, issuers, jwks, limits, listen, openapi, rate_limits, resource_metadata, routes, scopes, tls, upstreams)'], id="an unknown key with no close match lists the known ones"),
    pytest.param(edit("  api: http://127.0.0.1:8001", '  api: {url: "http://127.0.0.1:8001", timout: 5}'), ['f.yaml:7:39: upstreams.api: unknown key "timout" (did you mean "timeout"?)'], id="an unknown key inside an upstream mapping"),
    # report-only
    pytest.param(BASE + "enforce: warn\n", ['f.yaml:17:10: enforce: must be one of "enforce", "report", got "warn"'], id="enforce is enforce or report"),
    pytest.param(edit("    auth: none\n", "    auth: none\n    enforce: report\n"), ["f.yaml:17:14: routes[1].enforce: contradicts auth: none, which checks no token"], id="a public route has nothing to report"),
    # RFC 9728 metadata
    pytest.param(BASE + "resource_metadata:\n  public_url: https://gw.example/x?y\n", ['f.yaml:18:15: resource_metadata.public_url: "https://gw.example/x?y" must not have a query, fragment or user info'], id="public_url is a bare URL"),
    pytest.param(BASE + "resource_metadata:\n  public_url: https://gw.example\n  resource: https://r.example/#a\n", ['f.yaml:19:13: resource_metadata.resource: "https://r.example/#a" must not have a fragment (RFC 9728 §1.2)'], id="a resource identifier has no fragment"),
    pytest.param(edit("audiences: [api]", "audiences: [api, web]") + "resource_metadata:\n  public_url: https://gw.example\n", ['f.yaml:18:3: resource_metadata: set resource: the issuers name 2 audiences ("api", "web"), so which one identifies this resource cannot be told'], id="several audiences need the resource named"),
    # CORS
    pytest.param(edit("    auth: none\n", "    auth: none\n    websocket_token_query: access_token\n"), ["f.yaml:17:28: routes[1].websocket_token_query: needs websocket: true on this route"], id="a query token is for WebSocket routes only"),
    pytest.param(edit("    auth: none\n", "    auth: none\n    methods: [POST]\n    websocket: true\n"), ["f.yaml:18:16: routes[1].websocket: a WebSocket opens with GET, which methods leaves out"], id="a WebSocket route answers GET"),
    pytest.param(edit("    auth: none\n", "    auth: none\n    websocket: true\n    websocket_token_query: a&b\n"), ['f.yaml:18:28: routes[1].websocket_token_query: "a&b" must be a query parameter name, like access_token'], id="the query parameter is a plain name"),
    pytest.param(BASE + 'cors:\n  allow_origins: ["*"]\n  allow_credentials: true\n', ['f.yaml:18:18: cors.allow_origins: "*" with allow_credentials: true is refused: name each origin'], id="a wildcard origin with credentials"),
    pytest.param(BASE + "cors:\n  allow_origins: [https://a.example]\n  allow_methods: [get]\n  allow_headers: [x y]\n", ['f.yaml:19:19: cors.allow_methods[0]: "get": methods are case-sensitive; write "GET"', 'f.yaml:20:19: cors.allow_headers[0]: "x y" is not a header name'], id="methods and header names are checked"),
    # issuers
    pytest.param(edit("[RS256]", "[RS256, HS256, none]"), [f'f.yaml:4:25: issuers[0].algorithms[1]: "HS256" {HS256}', 'f.yaml:4:32: issuers[0].algorithms[2]: "none" is refused: an unsigned token proves nothing'], id="none and HS256 are refused, each with its reason"),
    pytest.param(edit("[RS256]", "[NONE]"), ['f.yaml:4:18: issuers[0].algorithms[0]: "NONE" is refused: an unsigned token proves nothing'], id="none is refused in any casing"),
    pytest.param(edit("[RS256]", "[rs256]"), ['f.yaml:4:18: issuers[0].algorithms[0]: "rs256": names are case-sensitive; write "RS256"'], id="a lower-case algorithm suggests its name"),
    pytest.param(edit("[RS256]", "[ES256K]"), ['f.yaml:4:18: issuers[0].algorithms[0]: "ES256K" is not supported (supported: RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, ES512, EdDSA)'], id="an unsupported algorithm lists the supported ones"),
    pytest.param(edit("[RS256]", "[]"), ["f.yaml:4:17: issuers[0].algorithms: must not be empty"], id="an empty algorithm list"),
    pytest.param(edit("leeway: 5", "leeway: five"), ['f.yaml:5:13: issuers[0].leeway: expected a number of seconds, got the text "five"'], id="a duration must be a number"),
    pytest.param(edit("leeway: 5", "leeway: true"), ["f.yaml:5:13: issuers[0].leeway: expected a number of seconds, got true"], id="a boolean is not a number"),
    pytest.param(edit("leeway: 5", "leeway: -1"), ["f.yaml:5:13: issuers[0].leeway: must be at least 0, got -1"], id="a negative duration"),
    pytest.param(edit("leeway: 5", "leeway: 1000000000000"), ["f.yaml:5:13: issuers[0].leeway: must be at most 1000000000, got 1000000000000"], id="an absurd duration"),
    pytest.param(edit("leeway: 5", "leeway: 1e3"), ['f.yaml:5:13: issuers[0].leeway: expected a number of seconds, got the text "1e3"'], id="YAML 1.1 reads 1e3 as text, and it is refused, not misread"),
    pytest.param(edit("issuer: https://id.example.com/", "issuer: id.example.com"), ['f.yaml:2:13: issuers[0].issuer: "id.example.com" is not an absolute http:// or https:// URL'], id="an issuer must be an absolute URL"),
    pytest.param(edit("issuer: https://id.example.com/", "issuer: https://id.example.com/?t=1"), ['f.yaml:2:13: issuers[0].issuer: "https://id.example.com/?t=1" must not have a query, fragment or user info'], id="an issuer has no query"),
    pytest.param(edit("    audiences: [api]\n", "    audiences: [api]\n    jwks_uri: ftp://id.example.com/keys\n"), ['f.yaml:4:15: issuers[0].jwks_uri: "ftp://id.example.com/keys" is not an absolute http:// or https:// URL'], id="jwks_uri must be http(s)"),
    pytest.param(edit("    audiences: [api]\n", ""), ['f.yaml:2:5: issuers[0]: missing required key "audiences"'], id="an issuer without audiences never skips the aud check"),
    pytest.param(edit("audiences: [api]", "audiences: []"), ["f.yaml:3:16: issuers[0].audiences: must not be empty"], id="an empty audience list"),
    pytest.param(edit("audiences: [api]", "audiences: [yes]"), ["f.yaml:3:17: issuers[0].audiences[0]: expected text, got true (quote it to make it text)"], id="YAML 1.1 yes is a boolean, and the message says to quote it"),
    pytest.param(edit("leeway: 5", "leeway: 5\n    token_type: 5"), ["f.yaml:6:17: issuers[0].token_type: expected text or null, got the number 5 (quote it to make it text)"], id="token_type must be text"),
    pytest.param(edit("issuers:\n  - issuer: https://id.example.com/\n    audiences: [api]\n    algorithms: [RS256]\n    leeway: 5\n", "issuers: []\n"), ["f.yaml:1:10: issuers: must not be empty"], id="at least one issuer"),
    pytest.param(edit("    leeway: 5\n", "    leeway: 5\n  - issuer: https://id.example.com/\n    audiences: [other]\n"), ['f.yaml:6:13: issuers[1].issuer: issuer "https://id.example.com/" is already used by issuers[0] (line 2)'], id="an issuer is configured once"),
    # upstreams
    pytest.param(edit("http://127.0.0.1:8001", "ftp://files"), ['f.yaml:7:8: upstreams.api: "ftp://files" is not an absolute http:// or https:// URL'], id="an upstream URL must be http(s)"),
    pytest.param(edit("http://127.0.0.1:8001", "http://127.0.0.1:8001/?a=1"), ['f.yaml:7:8: upstreams.api: "http://127.0.0.1:8001/?a=1" must not have a query, fragment or user info'], id="an upstream URL has no query"),
    pytest.param(edit("http://127.0.0.1:8001", "http://user:pw@127.0.0.1:8001"), ['f.yaml:7:8: upstreams.api: "http://user:pw@127.0.0.1:8001" must not have a query, fragment or user info'], id="an upstream URL has no user info"),
    pytest.param(edit("http://127.0.0.1:8001", "http://127.0.0.1:0"), ['f.yaml:7:8: upstreams.api: "http://127.0.0.1:0" does not name a valid host and port'], id="an upstream on port 0"),
    pytest.param(edit("http://127.0.0.1:8001", "http://127.0.0.1:99999"), ['f.yaml:7:8: upstreams.api: "http://127.0.0.1:99999" is not a valid URL (Port out of range 0-65535)'], id="an upstream port out of range"),
    pytest.param(edit("http://127.0.0.1:8001", "http://exa mple"), ['f.yaml:7:8: upstreams.api: "http://exa mple" contains spaces or control characters'], id="an upstream URL with a space"),
    pytest.param(edit("http://127.0.0.1:8001", "http://[::1"), ['f.yaml:7:8: upstreams.api: "http://[::1" is not a valid URL (Invalid IPv6 URL)'], id="an upstream with broken brackets"),
    pytest.param(edit("  api: http://127.0.0.1:8001", "  api: {url: http://127.0.0.1:8001, timeout: 0}"), ["f.yaml:7:46: upstreams.api.timeout: must be greater than 0, got 0"], id="an upstream timeout must be positive"),
    pytest.param(edit("http://127.0.0.1:8001", "5"), [f"f.yaml:7:8: upstreams.api: expected {UPSTREAM_FORMS}, got the number 5"], id="an upstream that is neither URL nor mapping"),
    pytest.param(edit("upstreams:\n  api: http://127.0.0.1:8001\n", "upstreams: {}\n"), ["f.yaml:6:12: upstreams: must not be empty"], id="at least one upstream"),
    pytest.param(edit("upstream: api\n    scopes", "upstream: contcts\n    scopes"), ['f.yaml:12:15: routes[0].upstream: "contcts" is not a defined upstream (defined: api)'], id="a route naming an undefined upstream"),
    # routes
    pytest.param(edit("path: /contacts", "path: contacts"), ['f.yaml:10:11: routes[0].path: "contacts" must start with /'], id="a path starts with a slash"),
    pytest.param(edit("methods: [GET]", "methods: [get]"), ['f.yaml:11:15: routes[0].methods[0]: "get": methods are case-sensitive; write "GET"'], id="a lower-case method suggests the upper-case one"),
    pytest.param(edit("methods: [GET]", "methods: []"), ["f.yaml:11:14: routes[0].methods: must not be empty"], id="an empty method list allows nothing and is refused"),
    pytest.param(edit("methods: [GET]", 'methods: ["*"]'), ['f.yaml:11:15: routes[0].methods[0]: "*": leave methods out to allow every method'], id="* is not a method"),
    pytest.param(edit("methods: [GET]", 'methods: ["GE T"]'), ['f.yaml:11:15: routes[0].methods[0]: "GE T" is not an HTTP method'], id="a method is a token"),
    pytest.param(edit("[read:contacts]", "[read contacts]"), [f'f.yaml:13:14: routes[0].scopes[0]: "read contacts" {NOT_A_SCOPE}'], id="a scope with a space"),
    pytest.param(edit("[read:contacts]", "[[a], [b c]]"), [f'f.yaml:13:20: routes[0].scopes[1][0]: "b c" {NOT_A_SCOPE}'], id="a scope with a space in a list of lists"),
    pytest.param(edit("[read:contacts]", "[a, [b]]"), ['f.yaml:13:14: routes[0].scopes[0]: expected a list of scopes, got the text "a"'], id="a list mixing scopes and lists"),
    pytest.param(edit("[read:contacts]", "[]"), ["f.yaml:13:13: routes[0].scopes: must not be empty"], id="an empty scope list is refused rather than needing nothing"),
    pytest.param(edit(" [read:contacts]", ""), [f"f.yaml:13:12: routes[0].scopes: expected {SCOPE_FORMS}, got nothing (null)"], id="scopes left empty is refused rather than needing nothing"),
    pytest.param(edit("[read:contacts]", "{any: []}"), ["f.yaml:13:19: routes[0].scopes.any: must not be empty"], id="an empty any"),
    pytest.param(edit("[read:contacts]", "{all: [a]}"), ['f.yaml:13:13: routes[0].scopes: missing required key "any"', 'f.yaml:13:14: routes[0].scopes: unknown key "all" (known: any)'], id="all is not a scope form"),
    pytest.param(edit("auth: none", "auth: none\n    scopes: [a]"), ["f.yaml:17:13: routes[1].scopes: contradicts auth: none, which checks no token"], id="scopes on a public route contradict it"),
    pytest.param(edit("auth: none", "auth: none\n    audience: api"), ["f.yaml:17:15: routes[1].audience: contradicts auth: none, which checks no token"], id="an audience on a public route contradicts it"),
    pytest.param(edit("auth: none", "auth: maybe"), ['f.yaml:16:11: routes[1].auth: must be one of "required", "none", "deny", got "maybe"'], id="auth is required, none or deny"),
    pytest.param(edit("    auth: none\n", "    auth: deny\n    scopes: [a]\n"), ["f.yaml:17:13: routes[1].scopes: contradicts auth: deny, which lets no token pass"], id="a deny route has no scopes"),
    pytest.param(edit("  - path: /public", "  - name: list\n    path: /public"), ['f.yaml:14:11: routes[1].name: route name "list" is already used by routes[0] (line 9)'], id="route names are unique metric labels"),
    pytest.param(edit("name: list", 'name: "list\\n"'), ['f.yaml:9:11: routes[0].name: "list\\n" must not hold control characters: a route name is a metric label'], id="a route name is a printable metric label"),
    pytest.param(edit("upstream: api\n    scopes", 'upstream: "a\\npi"\n    scopes'), ['f.yaml:12:15: routes[0].upstream: "a\\npi" is not a defined upstream (defined: api)'], id="a value is quoted and escaped, so one error stays one line"),
    pytest.param(BASE + "  - path: /public/{rest*}\n    upstream: api\n    auth: none\n", ['f.yaml:17:5: routes[2]: route name "ANY /public/{rest*}" is already used by routes[1] (line 14)'], id="default route names are unique too"),
    pytest.param(edit("auth: none", "auth: none\n    strip_prefix: /y"), ['f.yaml:17:19: routes[1].strip_prefix: "/y" is not a prefix of the route path "/public/{rest*}"'], id="strip_prefix must prefix the path"),
    pytest.param(edit("auth: none", "auth: none\n    strip_prefix: /public/"), ['f.yaml:17:19: routes[1].strip_prefix: "/public/" must be literal path segments, like /api or /api/v1'], id="strip_prefix has no trailing slash"),
    pytest.param(edit("auth: none", "auth: none\n    max_body_bytes: -1"), ["f.yaml:17:21: routes[1].max_body_bytes: must be at least 0, got -1"], id="a negative body limit"),
    pytest.param(BASE.split("routes:\n")[0] + "routes: []\n", ["f.yaml:8:9: routes: must not be empty"], id="at least one route"),
    # addresses
    pytest.param('listen: "8080"\n' + BASE, ['f.yaml:1:9: listen: "8080": expected host:port, e.g. 0.0.0.0:8080 for every interface'], id="listen needs a host"),
    pytest.param('listen: "::1:8080"\n' + BASE, ['f.yaml:1:9: listen: "::1:8080": write an IPv6 address in brackets: [::1]:8080'], id="an IPv6 listen address needs brackets"),
    pytest.param('listen: "[::1]:70000"\n' + BASE, ['f.yaml:1:9: listen: "[::1]:70000": expected a port from 0 to 65535 after the last :'], id="a port out of range"),
    pytest.param('admin_listen: "[nope]:1"\n' + BASE, ['f.yaml:1:15: admin_listen: "[nope]:1": "[nope]" is not an IPv6 address'], id="brackets hold an IPv6 address"),
    pytest.param("listen: 0.0.0.0:9100\n" + BASE, ["f.yaml:1:9: listen: listen (0.0.0.0:9100) and admin_listen (127.0.0.1:9100) cannot share a port"], id="the public and admin ports differ"),
    # sections
    pytest.param(BASE + "jwks: {min_refresh_interval: 900}\n", ["f.yaml:17:30: jwks.min_refresh_interval: min_refresh_interval (900) must not exceed cache_ttl (600)"], id="min_refresh_interval within cache_ttl"),
    pytest.param(BASE + "jwks: {cache_ttl: 10}\n", ["f.yaml:17:19: jwks.cache_ttl: min_refresh_interval (30) must not exceed cache_ttl (10)"], id="a short cache_ttl against the default interval"),
    pytest.param(BASE + "limits: {max_header_bytes: 100}\n", ["f.yaml:17:28: limits.max_header_bytes: must be at least 1024, got 100"], id="a header limit too small to work"),
    pytest.param(BASE + "limits: {max_body_bytes: 1.5}\n", ["f.yaml:17:26: limits.max_body_bytes: expected a whole number of bytes, got the number 1.5"], id="a byte limit is a whole number"),
    pytest.param(BASE + "forward: {claims_to_headers: {sub: Authorization}}\n", ['f.yaml:17:36: forward.claims_to_headers.sub: "Authorization" is reserved: scopegate sets or removes it itself'], id="a claim cannot be sent as Authorization"),
    pytest.param(BASE + "forward: {claims_to_headers: {sub: X-HTTP-Method-Override}}\n", ['f.yaml:17:36: forward.claims_to_headers.sub: "X-HTTP-Method-Override" is reserved: scopegate sets or removes it itself'], id="a claim cannot steer the upstream method"),
    pytest.param(BASE + "forward: {claims_to_headers: {sub: X_Auth_Scopes}}\n", ['f.yaml:17:36: forward.claims_to_headers.sub: "X_Auth_Scopes" is reserved: scopegate sets or removes it itself'], id="reserved names are matched with _ for -"),
    pytest.param(BASE + "forward: {claims_to_headers: {sub: X User}}\n", ['f.yaml:17:36: forward.claims_to_headers.sub: "X User" is not a valid header name'], id="a header name is a token"),
    pytest.param(BASE + "forward: {claims_to_headers: {sub: X-User, azp: x_user}}\n", ['f.yaml:17:49: forward.claims_to_headers.azp: "x_user" already carries the claim "sub"'], id="two claims in one header"),
    pytest.param(BASE + 'forward: {authorization: "yes"}\n', ['f.yaml:17:26: forward.authorization: expected true or false, got the text "yes"'], id="authorization is a boolean"),
    pytest.param(BASE + 'scopes:\n  "read contacts": Read\n', [f'f.yaml:18:3: scopes: "read contacts" {NOT_A_SCOPE}'], id="a catalogue scope with a space"),
    pytest.param(BASE + "scopes: [read:contacts]\n", ["f.yaml:17:9: scopes: expected a mapping of scope names to descriptions, got a list"], id="the catalogue is a mapping"),
    # environment
    pytest.param(edit("issuer: https://id.example.com/", "issuer: ${ISSUER}"), ["f.yaml:2:13: issuers[0].issuer: environment variable ISSUER is not set (write ${ISSUER:-default} to give a default)"], id="an unset variable without default"),
    pytest.param(edit("issuer: https://id.example.com/", "issuer: ${ISSUER:https://x/}"), ['f.yaml:2:13: issuers[0].issuer: "${" must start ${NAME} or ${NAME:-default} (they do not nest); write $$ for a literal $'], id="a malformed reference is not kept as text"),
    pytest.param(edit("issuer: https://id.example.com/", "issuer: ${A:-${B}}"), ['f.yaml:2:13: issuers[0].issuer: "${" must start ${NAME} or ${NAME:-default} (they do not nest); write $$ for a literal $'], id="references do not nest"),
    pytest.param(edit("leeway: 5", "leeway: ${LEEWAY:-5}"), ['f.yaml:5:13: issuers[0].leeway: expected a number of seconds, got the text "5" (a value with ${...} stays text: write the number itself)'], id="a substituted value stays text"),
    # duplicate keys: PyYAML would silently keep the last
    pytest.param(BASE + "routes: []\n", ['f.yaml:17:1: duplicate key "routes" (first at f.yaml:8:1)'], id="a duplicate top-level key"),
    pytest.param(edit("    auth: none", "    auth: none\n    auth: required"), ['f.yaml:17:5: routes[1]: duplicate key "auth" (first at f.yaml:16:5)'], id="a duplicate key in a route cannot flip auth back"),
    pytest.param(edit("[RS256]", "[RS256]\n    leeway: 30"), ['f.yaml:6:5: issuers[0]: duplicate key "leeway" (first at f.yaml:5:5)'], id="a duplicate key in an issuer"),
    pytest.param(edit("  api: http://127.0.0.1:8001", "  api: {url: http://a, url: http://b}"), ['f.yaml:7:24: upstreams.api: duplicate key "url" (first at f.yaml:7:9)'], id="a duplicate key in a flow mapping"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "expected"), BAD)
def test_a_bad_file_gives_exactly_these_errors(text: str, expected: list[str]) -> None:
    assert errors_of(text) == expected


def test_every_mistake_of_a_file_is_reported_at_once_in_file_order() -> None:
    text = (
        BASE.replace("leeway: 5", "leeway: -1")
        .replace("[RS256]", "[HS256]")
        .replace("upstream: api\n    scopes", "upstream: apii\n    scopes")
        .replace("methods: [GET]", "methods: [get]")
        .replace("auth: none", "auth: none\n    scopes: [x]")
        + "jwks: {cache_ttl: 0}\nforward: {claims_to_headers: {sub: Host}}\n"
    )
    assert errors_of(text) == [
        f'f.yaml:4:18: issuers[0].algorithms[0]: "HS256" {HS256}',
        "f.yaml:5:13: issuers[0].leeway: must be at least 0, got -1",
        'f.yaml:11:15: routes[0].methods[0]: "get": methods are case-sensitive; write "GET"',
        'f.yaml:12:15: routes[0].upstream: "apii" is not a defined upstream (defined: api)',
        "f.yaml:17:13: routes[1].scopes: contradicts auth: none, which checks no token",
        "f.yaml:18:19: jwks.cache_ttl: must be greater than 0, got 0",
        'f.yaml:19:36: forward.claims_to_headers.sub: "Host" is reserved: scopegate sets or removes it itself',
    ]  # fmt: skip


def test_a_reference_is_checked_on_a_route_with_other_mistakes() -> None:
    """A wrong upstream name is said in the same run as the route's schema errors."""
    text = edit("upstream: api\n    scopes", "upstream: apii\n    scopes").replace(
        "path: /contacts", "path: 5"
    )
    assert errors_of(text) == [
        "f.yaml:10:11: routes[0].path: expected text, got the number 5 (quote it to make it text)",
        'f.yaml:12:15: routes[0].upstream: "apii" is not a defined upstream (defined: api)',
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("", ["f.yaml:1:1: the file is empty"], id="an empty file"),
        pytest.param("# only a comment\n", ["f.yaml:1:1: the file is empty"], id="a file of comments"),
        pytest.param("~\n", ["f.yaml:1:1: expected a mapping of sections (issuers, upstreams, routes), got nothing (null)"], id="a null document"),
        pytest.param("- a\n", ["f.yaml:1:1: expected a mapping of sections (issuers, upstreams, routes), got a list"], id="a list document"),
        pytest.param("issuers: [\n", ["f.yaml:2:1: YAML syntax error: expected the node content, but found '<stream end>'"], id="an unclosed bracket"),
        pytest.param("issuers:\n  - a\n b: c\n", ["f.yaml:3:2: YAML syntax error: while parsing a block mapping (line 1), expected <block end>, but found '<block mapping start>'"], id="a bad indentation"),
        pytest.param("issuers:\n\t- a\n", ["f.yaml:2:1: YAML syntax error: found character '\\t' that cannot start any token"], id="a tab for indentation"),
        pytest.param("a: 1\n---\nb: 2\n", ["f.yaml:2:1: YAML syntax error: expected a single document in the stream (line 1), but found another document"], id="two documents"),
        pytest.param("a: &x 1\nb: *y\n", ["f.yaml:2:4: YAML syntax error: found undefined alias 'y'"], id="an undefined alias"),
    ],
)  # fmt: skip
def test_text_that_is_not_a_configuration_is_one_positioned_error(
    text: str, expected: list[str]
) -> None:
    assert errors_of(text) == expected


def hostile_value(value: str) -> list[str]:
    """The errors for `value` written as an issuer's leeway, beside a valid rest of the file."""
    return errors_of(edit("leeway: 5", f"leeway: {value}"))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("!!python/object/apply:os.system [echo]", "f.yaml:5:13: issuers[0].leeway: unsupported tag !!python/object/apply:os.system", id="python object tags are not constructed"),
        pytest.param("!!python/name:os.system", "f.yaml:5:13: issuers[0].leeway: could not determine a constructor for the tag 'tag:yaml.org,2002:python/name:os.system'", id="python name tags are not resolved"),
        pytest.param("!Ref x", "f.yaml:5:13: issuers[0].leeway: could not determine a constructor for the tag '!Ref'", id="custom scalar tags are refused"),
        pytest.param("!!set {a}", "f.yaml:5:13: issuers[0].leeway: unsupported tag !!set", id="tagged collections are refused"),
        pytest.param(".nan", "f.yaml:5:13: issuers[0].leeway: .nan is not a finite number", id="NaN would pass every comparison"),
        pytest.param("-.inf", "f.yaml:5:13: issuers[0].leeway: -.inf is not a finite number", id="infinity is refused"),
        pytest.param("2001-02-30", 'f.yaml:5:13: issuers[0].leeway: cannot read "2001-02-30" as !!timestamp: day is out of range for month', id="an impossible date"),
        pytest.param("9" * 5000, f'f.yaml:5:13: issuers[0].leeway: cannot read "{"9" * 57}..." as !!int: Exceeds the limit (4300 digits) for integer string conversion', id="an integer too long to convert"),
        pytest.param("!!int", 'f.yaml:5:13: issuers[0].leeway: cannot read "" as !!int', id="an explicit tag on nothing"),
        pytest.param("!!bool maybe", 'f.yaml:5:13: issuers[0].leeway: cannot read "maybe" as !!bool', id="an explicit tag on the wrong text"),
        pytest.param("{<<: {a: 1}}", "f.yaml:5:14: issuers[0].leeway: merge keys (<<) cannot be used here: write the keys out", id="merge keys override silently"),
        pytest.param("{[a]: 1}", "f.yaml:5:14: issuers[0].leeway: a key that is not text cannot be used here: write the keys out", id="a key that is a list"),
    ],
)  # fmt: skip
def test_yaml_that_could_change_meaning_or_crash_is_refused(value: str, expected: str) -> None:
    assert hostile_value(value) == [expected]


def test_a_mapping_missing_a_refused_key_is_not_built_from() -> None:
    """A merge key at the top leaves the file's meaning unknown: nothing else is said or built,
    not even from a route missing its required keys."""
    assert errors_of("<<: {a: 1}\n" + BASE + "  - name: lonely\n") == [
        "f.yaml:1:1: merge keys (<<) cannot be used here: write the keys out"
    ]


def test_an_alias_bomb_is_refused_without_expanding_it() -> None:
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
    for level in "bcdefghi":
        bomb += f"{level}: &{level} [" + ", ".join([f"*{chr(ord(level) - 1)}"] * 10) + "]\n"
    assert errors_of(bomb) == [
        "f.yaml:5:4: the document expands to more than 100000 values (alias bomb?)"
    ]


def test_an_alias_inside_its_own_anchor_is_refused() -> None:
    assert errors_of("a: &a [1, *a]\n") == ["f.yaml:1:4: an alias refers to a value containing it"]


def test_deep_nesting_is_refused_before_it_exhausts_the_stack() -> None:
    assert errors_of("a: " + "[" * 5000 + "]" * 5000) == [
        "f.yaml:1:67: YAML syntax error: nested more than 64 levels deep"
    ]


def test_a_non_printable_character_is_refused_where_it_is() -> None:
    assert errors_of("a: 1\nb: x\x07y\n") == [
        "f.yaml:2:5: YAML does not allow the non-printable character U+0007"
    ]


def test_yaml_keys_are_read_as_written() -> None:
    """`on:` and `yes:` are keys named "on" and "yes", not YAML 1.1 booleans turned "True"."""
    config = load_config_text(BASE + "scopes:\n  on: a\n  yes: b\n  1.10: c\n", "f.yaml", {})
    assert list(config.scopes) == ["on", "yes", "1.10"]


def test_errors_render_and_sort_as_file_line_col() -> None:
    errors = ConfigErrors([ConfigError(Source("f.yaml", 3, 1), "c"),
                           ConfigError(Source("f.yaml", 1, 9), "b"),
                           ConfigError(Source("f.yaml", 1, 2), "a")])  # fmt: skip
    assert str(errors) == "f.yaml:1:2: a\nf.yaml:1:9: b\nf.yaml:3:1: c"
    assert [error.message for error in errors.errors] == ["a", "b", "c"]
    assert path_text(("routes", 2, "scopes", "any", 0)) == "routes[2].scopes.any[0]"


def _objects(schema: Any, where: str = "#") -> list[tuple[str, dict[str, Any]]]:
    """Every subschema that describes a mapping with named keys."""
    found = []
    if isinstance(schema, dict):
        if "properties" in schema:
            found.append((where, schema))
        for key, value in schema.items():
            found += _objects(value, f"{where}/{key}")
    elif isinstance(schema, list):
        for index, value in enumerate(schema):
            found += _objects(value, f"{where}/{index}")
    return found


def test_the_schema_is_valid_and_closed_everywhere() -> None:
    """Draft 2020-12, and every mapping with named keys refuses unknown ones."""
    schema = json.loads(resources.files("scopegate.config").joinpath("schema.json").read_text())
    Draft202012Validator.check_schema(schema)
    objects = _objects(schema)
    assert len(objects) >= 8
    assert [where for where, s in objects if s.get("additionalProperties") is not False] == []
