"""Each section of a schema-checked document → its frozen `model` value, with the checks a
schema cannot make: URLs, algorithms, methods, header names, contradictions. Every problem is
collected. A part with a schema error is not built, and nothing more is said about it; its
sound keys are still checked.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from typing import Any, Literal, TypeVar, cast
from urllib.parse import SplitResult, urlsplit

from scopegate.config.algorithms import DEFAULT_ALGORITHMS, KEY_SHAPES, SIGNING_ALGORITHMS
from scopegate.config.errors import ConfigError, Path, at_path, quoted
from scopegate.config.model import (
    NO_SCOPES,
    NO_TOKEN_PASSES,
    Forwarding,
    Introspection,
    Issuer,
    JwksPolicy,
    Limits,
    Route,
    ScopeRule,
    Upstream,
    UpstreamTls,
)
from scopegate.config.reading import relative_to
from scopegate.config.tls_context import TlsFileError, client_context
from scopegate.config.yaml_nodes import Document

_ALGORITHM_CASE = {name.upper(): name for name in SIGNING_ALGORITHMS}
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # RFC 9110 token: methods, header names
_HOSTNAME = re.compile(r"[A-Za-z0-9_.-]+")
# Headers no claim may be sent in: hop-by-hop, framing, credentials, and those the proxy sets or
# strips (SPEC §3.4). A claim there would be lost, or would let a token steer the upstream.
_RESERVED_HEADERS = frozenset({
    "connection", "keep-alive", "proxy-connection", "proxy-authenticate", "proxy-authorization",
    "te", "trailer", "transfer-encoding", "upgrade", "host", "authorization", "content-length",
    "content-type", "content-encoding", "expect", "x-auth-scopes", "x-request-id", "forwarded",
    "x-real-ip", "x-original-url", "x-rewrite-url", "x-http-method-override", "x-http-method",
    "x-method-override",
})  # fmt: skip
T = TypeVar("T")


class Builder:
    """The document being built, and the problems found in it."""

    def __init__(self, document: Document) -> None:
        self.doc = document
        self.errors: list[ConfigError] = []
        self._shared: dict[object, object] = {}

    def shared(self, value: T) -> T:
        """One object for each distinct value: thousands of routes repeat a few upstream names,
        method sets and scope rules, and a reference to a scope rule costs far less than a copy
        of its frozensets."""
        return cast(T, self._shared.setdefault(value, value))

    def error(self, path: Path, message: str) -> None:
        self.errors.append(ConfigError(self.doc.source(path), at_path(path, message)))


def _written(cls: type[T], spec: dict[str, Any], **values: Any) -> T:
    """A model value from the schema-checked keys of `spec` that name its fields, and `values`.
    Fields the file leaves out keep the model's defaults, so that each is stated once. Lists
    become tuples; a number takes the type of its field's default (`leeway: 5` is 5.0)."""
    defaults: dict[str, Any] = {f.name: f.default for f in dataclasses.fields(cast(Any, cls))}

    def plain(key: str, value: Any) -> Any:
        if isinstance(value, list):
            return tuple(value)
        default = defaults[key]
        number = isinstance(default, int | float) and not isinstance(default, bool)
        return type(default)(value) if number and value is not None else value

    written = {key: plain(key, value) for key, value in spec.items() if key in defaults}
    return cls(**(written | values))


def _http_url(url: str, *, bare: bool = False) -> tuple[SplitResult, int] | str:
    """The parts and port of an absolute http(s) URL, or what is wrong with it. A `bare` one has
    no query, fragment or user info: an issuer (OpenID Connect Discovery §3), an upstream."""
    if any(c.isspace() or not c.isprintable() for c in url):
        return f"{quoted(url)} contains spaces or control characters"
    try:  # urlsplit and .port refuse malformed authorities: bad [IPv6] brackets, ports
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        return f"{quoted(url)} is not a valid URL ({error})"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"{quoted(url)} is not an absolute http:// or https:// URL"
    if not valid_host(parts.hostname) or port == 0:
        return f"{quoted(url)} does not name a valid host and port"
    if bare and ("?" in url or "#" in url or "@" in parts.netloc):
        return f"{quoted(url)} must not have a query, fragment or user info"
    return parts, port or (443 if parts.scheme == "https" else 80)


def http_url_problem(url: str, *, bare: bool = False) -> str | None:
    """What is wrong with `url` as an absolute http(s) URL (see `_http_url`), or None."""
    checked = _http_url(url, bare=bare)
    return checked if isinstance(checked, str) else None


def valid_host(host: str) -> bool:
    """A DNS name or IPv4 address, or an IPv6 address without its brackets."""
    if ":" not in host:
        return _HOSTNAME.fullmatch(host) is not None
    try:
        ipaddress.IPv6Address(host)
    except ValueError:
        return False
    return True


def upstream(b: Builder, path: Path) -> Upstream | None:
    """The upstream at `path` (a URL, or a mapping with `url`); None if it has errors."""
    value = b.doc.get(path)
    spec = b.doc.trusted(path) if isinstance(value, dict) else {"url": value}
    where = (*path, "url") if isinstance(value, dict) else path
    if not isinstance(spec.get("url"), str) or not b.doc.clean(where):
        return None  # the schema said what is wrong with it
    parsed = _http_url(spec["url"], bare=True)
    if isinstance(parsed, str):
        b.error(where, parsed)
    if isinstance(parsed, str) or not b.doc.clean(path):
        return None
    (parts, port), source = parsed, b.doc.source(path)
    scheme, base_path = cast(Literal["http", "https"], parts.scheme), parts.path.rstrip("/")
    tls = _upstream_tls(b, (*path, "tls"), spec.get("tls"), scheme)
    if not b.doc.clean(path):
        return None
    return _written(Upstream, spec, name=str(path[-1]), scheme=scheme, host=parts.hostname,
                    port=port, base_path=base_path, tls=tls, source=source)  # fmt: skip


def _upstream_tls(
    b: Builder, path: Path, spec: dict[str, Any] | None, scheme: str
) -> UpstreamTls | None:
    """`upstreams.NAME.tls`, its files read now (SPEC §6.1); relative to the file's directory."""
    if spec is None:
        return None
    if scheme != "https":
        b.error(path, "tls is for an https:// upstream")
        return None
    if (spec.get("cert") is None) != (spec.get("key") is None):
        b.error(path, "cert and key go together: the client certificate and its key")
        return None

    def located(key: str) -> str | None:
        value = spec.get(key)
        return None if value is None else relative_to(b.doc.file, value)

    tls = UpstreamTls(ca=located("ca"), cert=located("cert"), key=located("key"),
                      server_name=spec.get("server_name"))  # fmt: skip
    try:
        client_context(tls)
    except TlsFileError as error:
        b.error((*path, error.key), str(error))
        return None
    return tls


def _algorithm_problem(name: str) -> str | None:
    if name in KEY_SHAPES:
        return None
    if name.lower() == "none":
        return f"{quoted(name)} is refused: an unsigned token proves nothing"
    if name.upper().startswith("HS"):
        return (f"{quoted(name)} is refused: a shared secret cannot be published in a JWKS, "
                "and HMAC beside public keys invites algorithm confusion")  # fmt: skip
    if name.upper() in _ALGORITHM_CASE:
        return f'{quoted(name)}: names are case-sensitive; write "{_ALGORITHM_CASE[name.upper()]}"'
    return f"{quoted(name)} is not supported (supported: {', '.join(SIGNING_ALGORITHMS)})"


def issuer(b: Builder, path: Path) -> Issuer | None:
    """The issuer at `path`, None if the schema found errors in it; its keys that the schema
    passed are checked either way."""
    spec = b.doc.trusted(path)
    if "issuer" in spec and isinstance(problem := _http_url(spec["issuer"], bare=True), str):
        b.error((*path, "issuer"), problem)
    if "jwks_uri" in spec and isinstance(problem := _http_url(spec["jwks_uri"]), str):
        b.error((*path, "jwks_uri"), problem)
    algorithms = spec.get("algorithms", DEFAULT_ALGORITHMS)
    for i, name in enumerate(algorithms):
        if refused := _algorithm_problem(name):
            b.error((*path, "algorithms", i), refused)
    introspection = _introspection(b, (*path, "introspection"))
    if spec.get("dpop_nonce") and spec.get("dpop") == "disabled":
        b.error((*path, "dpop_nonce"), "contradicts dpop: disabled, which accepts no proof")
    if not b.doc.clean(path):
        return None
    unique = tuple(dict.fromkeys(algorithms))
    return _written(
        Issuer, spec, algorithms=unique, introspection=introspection, source=b.doc.source(path)
    )


def _introspection(b: Builder, path: Path) -> Introspection | None:
    """`introspection:` of an issuer (RFC 7662), None when absent or wrong."""
    spec = b.doc.trusted(path)
    if not spec:
        return None
    endpoint = spec.get("endpoint")
    if endpoint is not None and isinstance(problem := _http_url(endpoint), str):
        b.error((*path, "endpoint"), problem)
    if not b.doc.clean(path):
        return None
    return _written(Introspection, spec)


def scope_rule(value: Any) -> ScopeRule:
    """The three file forms of SPEC §2 (schema-checked) → OR-of-AND alternatives."""
    if value is None:
        return NO_SCOPES
    if isinstance(value, dict):
        groups = [frozenset({scope}) for scope in value["any"]]
    elif all(isinstance(scope, str) for scope in value):
        groups = [frozenset(value)]
    else:
        groups = [frozenset(group) for group in value]
    return ScopeRule(tuple(dict.fromkeys(groups)))


def _methods(b: Builder, path: Path, methods: list[str] | None) -> frozenset[str] | None:
    for where, method in (((*path, i), method) for i, method in enumerate(methods or ())):
        if (problem := default_method_problem(method)) is not None:
            b.error(where, problem)
    return None if methods is None else frozenset(methods)


def default_method_problem(method: str) -> str | None:
    """What is wrong with `method` as a method a route (or CORS) names, or None."""
    if method in ("*", "ANY"):
        return f"{quoted(method)}: leave methods out to allow every method"
    if not _TOKEN.fullmatch(method):
        return f"{quoted(method)} is not an HTTP method"
    if method != method.upper():
        return f'"{method}": methods are case-sensitive; write "{method.upper()}"'
    return None


def default_route_name(path: str, methods: frozenset[str] | None) -> str:
    """`GET /contacts`, `DELETE,GET /x`, `ANY /x`: stable, readable metric labels."""
    return f"{'ANY' if methods is None else ','.join(sorted(methods))} {path}"


def route(b: Builder, path: Path) -> Route | None:
    """The route at `path`, None if the schema found errors in it; its keys that the schema
    passed are checked either way."""
    spec = b.doc.trusted(path)
    methods = _methods(b, (*path, "methods"), spec.get("methods"))
    if spec.get("auth") in ("none", "deny"):
        for key in ("scopes", "audience", "enforce", "acr_values", "max_age"):
            if spec.get(key) is not None:
                why = "checks no token" if spec["auth"] == "none" else "lets no token pass"
                b.error((*path, key), f"contradicts auth: {spec['auth']}, which {why}")
    _check_strip_prefix(b, path, spec)
    _check_websocket(b, path, spec, methods)
    if not b.doc.clean(path):
        return None
    body = spec.get("max_body_bytes")
    return _written(
        Route,
        spec,
        name=spec.get("name") or default_route_name(spec["path"], methods),
        upstream=b.shared(spec["upstream"]),
        methods=b.shared(methods),
        auth="required" if spec.get("auth") == "deny" else spec.get("auth", "required"),
        scopes=NO_TOKEN_PASSES
        if spec.get("auth") == "deny"
        else b.shared(scope_rule(spec.get("scopes"))),
        enforce=spec.get("enforce") or default_enforcement(b),
        max_body_bytes=None if body is None else int(body),  # the schema lets 1.0 through
        max_age=None if spec.get("max_age") is None else int(spec["max_age"]),
        source=b.doc.source(path),
    )


def default_enforcement(b: Builder) -> Literal["enforce", "report"]:
    """The top-level `enforce`, which every route without its own takes."""
    value = b.doc.get(("enforce",))
    return "report" if value == "report" else "enforce"


def _check_strip_prefix(b: Builder, path: Path, spec: dict[str, Any]) -> None:
    prefix, route_path, where = spec.get("strip_prefix"), spec.get("path"), (*path, "strip_prefix")
    if prefix is None or route_path is None:
        return
    if not prefix.startswith("/") or prefix.endswith("/") or "{" in prefix:
        b.error(where, f"{quoted(prefix)} must be literal path segments, like /api or /api/v1")
    elif not (route_path == prefix or route_path.startswith(prefix + "/")):
        b.error(where, f"{quoted(prefix)} is not a prefix of the route path {quoted(route_path)}")


def _check_websocket(
    b: Builder, path: Path, spec: dict[str, Any], methods: frozenset[str] | None
) -> None:
    """A WebSocket opens with a GET (RFC 6455 §4.1); a token in the query is for upgrades."""
    if not spec.get("websocket"):
        if spec.get("websocket_token_query") is not None:
            b.error((*path, "websocket_token_query"), "needs websocket: true on this route")
        return
    if methods is not None and "GET" not in methods:
        b.error((*path, "websocket"), "a WebSocket opens with GET, which methods leaves out")


def forwarding(b: Builder) -> Forwarding:
    spec = b.doc.trusted(("forward",))
    authorization = spec.get("authorization", True)
    if "claims_to_headers" not in spec:
        return Forwarding(authorization)  # the default {sub: X-Auth-Subject}
    pairs = tuple((spec["claims_to_headers"] or {}).items())  # null: every entry commented out
    carried: dict[str, str] = {}
    for claim, header in pairs:
        where, folded = ("forward", "claims_to_headers", claim), header.lower().replace("_", "-")
        if not _TOKEN.fullmatch(header):
            b.error(where, f"{quoted(header)} is not a valid header name")
        elif folded in _RESERVED_HEADERS or folded.startswith("x-forwarded-"):
            b.error(where, f"{quoted(header)} is reserved: scopegate sets or removes it itself")
        elif folded in carried:
            b.error(where, f"{quoted(header)} already carries the claim {quoted(carried[folded])}")
        carried.setdefault(folded, claim)
    return Forwarding(authorization, pairs)


def limits(b: Builder) -> Limits:
    return _written(Limits, b.doc.trusted(("limits",)))


def jwks(b: Builder) -> JwksPolicy:
    spec = b.doc.trusted(("jwks",))
    policy = _written(JwksPolicy, spec)
    shortest, ttl = policy.min_refresh_interval, policy.cache_ttl
    if shortest > ttl and b.doc.clean(("jwks",)):  # at the one written; the interval if both
        key = "min_refresh_interval" if "min_refresh_interval" in spec else "cache_ttl"
        message = f"min_refresh_interval ({shortest:g}) must not exceed cache_ttl ({ttl:g})"
        b.error(("jwks", key), message)
    return policy
