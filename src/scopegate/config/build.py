"""Plain, schema-checked data → the frozen `Config`, with every semantic problem collected.

The JSON Schema (`schema.json`) has already checked structure, types and unknown keys; here are
the checks a schema cannot express: URLs and addresses, algorithms, header names, references
between sections, contradictions, uniqueness. Items whose structure was already reported are
skipped, so one mistake is said once.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any, Literal, cast
from urllib.parse import urlsplit

from scopegate.config.errors import ConfigError, path_text
from scopegate.config.model import (
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
)  # fmt: skip
from scopegate.config.yaml_nodes import Document, Path

SUPPORTED_ALGORITHMS = (
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA",
)  # fmt: skip
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # RFC 9110 token: methods, header names
_RESERVED_HEADERS = frozenset(
    {"host", "authorization", "content-length", "transfer-encoding", "connection", "keep-alive",
     "proxy-connection", "proxy-authenticate", "proxy-authorization", "te", "trailer", "upgrade",
     "x-auth-scopes", "x-forwarded-for", "x-forwarded-host", "x-forwarded-proto", "x-request-id"}
)  # fmt: skip


class Builder:
    def __init__(self, document: Document, reported: Iterable[Path]) -> None:
        self.doc = document
        self.reported = set(reported)
        self.errors: list[ConfigError] = []

    def error(self, path: Path, message: str, *, key: bool = False) -> None:
        self.errors.append(
            ConfigError(self.doc.source(path, key=key), f"{path_text(path)}: {message}")
        )

    def clean(self, path: Path) -> bool:
        """True when no schema error lies at or under `path`."""
        return not any(bad[: len(path)] == path for bad in self.reported)

    def at(self, path: Path) -> Source:
        return self.doc.source(path)

    def items(self, path: Path) -> list[tuple[Path, Any]]:
        value = self.get(path)
        if isinstance(value, list):
            return [((*path, i), item) for i, item in enumerate(value) if self.clean((*path, i))]
        if isinstance(value, dict):
            return [((*path, k), v) for k, v in value.items() if self.clean((*path, k))]
        return []

    def get(self, path: Path, default: Any = None) -> Any:
        value: Any = self.doc.data
        for part in path:
            value = _child(value, part, _MISSING)
            if value is _MISSING:
                return default
        return value


_MISSING = object()


def _child(value: Any, part: str | int, missing: object) -> Any:
    if isinstance(value, dict):
        return value.get(part, missing)
    if isinstance(value, list) and isinstance(part, int) and 0 <= part < len(value):
        return value[part]
    return missing


def parse_address(text: str) -> Address:
    """`host:port` or `[v6]:port`; raises ValueError."""
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if not rest.startswith(":"):
            raise ValueError("expected [address]:port")
        port_text = rest[1:]
    else:
        host, _, port_text = text.rpartition(":")
    if not host or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError("expected host:port with a port from 0 to 65535")
    return Address(host, int(port_text))


def http_url_problem(url: str) -> str | None:
    try:
        parts = urlsplit(url)
    except ValueError:
        return f'"{url}" is not a valid URL'
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f'"{url}" is not an absolute http(s) URL'
    return None


def _upstream(b: Builder, path: Path, name: str, value: Any) -> Upstream | None:
    spec = {"url": value} if isinstance(value, str) else value
    url = spec["url"]
    try:  # urlsplit and .port both refuse malformed authorities (bad IPv6 brackets, ports)
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        b.error(
            (*path, "url") if isinstance(value, dict) else path,
            f'"{url}" is not a valid URL (check the port and any [IPv6] brackets)',
        )
        return None
    where = (*path, "url") if isinstance(value, dict) else path
    if parts.scheme not in ("http", "https") or not parts.hostname:
        b.error(where, f'"{url}" is not an http:// or https:// URL with a host')
        return None
    if parts.query or parts.fragment or parts.username or parts.password:
        b.error(where, f'"{url}" must not have a query, fragment or user info')
        return None
    scheme = cast(Literal["http", "https"], parts.scheme)
    return Upstream(
        name=name,
        scheme=scheme,
        host=parts.hostname,
        port=port or (443 if scheme == "https" else 80),
        base_path=parts.path.rstrip("/"),
        timeout=float(spec.get("timeout", 30.0)),
        connect_timeout=float(spec.get("connect_timeout", 5.0)),
        preserve_host=bool(spec.get("preserve_host", False)),
        source=b.at(path),
    )


def _algorithms(b: Builder, path: Path, names: list[str]) -> tuple[str, ...]:
    for i, name in enumerate(names):
        if name.lower() == "none":
            b.error((*path, i), '"none" is refused: an unsigned token proves nothing')
        elif name.upper().startswith("HS"):
            b.error((*path, i), f'"{name}" is refused: a shared secret cannot be published in a '
                    "JWKS, and HMAC beside public keys invites algorithm confusion")  # fmt: skip
        elif name not in SUPPORTED_ALGORITHMS:
            b.error(
                (*path, i), f'"{name}" is not supported (one of {", ".join(SUPPORTED_ALGORITHMS)})'
            )
    return tuple(names)


def _issuer(b: Builder, path: Path, spec: dict[str, Any]) -> Issuer:
    problem = http_url_problem(spec["issuer"])
    if problem:
        b.error((*path, "issuer"), problem)
    if "jwks_uri" in spec and (problem := http_url_problem(spec["jwks_uri"])):
        b.error((*path, "jwks_uri"), problem)
    return Issuer(
        issuer=spec["issuer"],
        jwks_uri=spec.get("jwks_uri"),
        audiences=tuple(spec["audiences"]),
        algorithms=_algorithms(b, (*path, "algorithms"), spec.get("algorithms", ["RS256"])),
        scope_claims=tuple(spec.get("scope_claims", ("scope", "scp"))),
        leeway=float(spec.get("leeway", 30.0)),
        required_claims=tuple(spec.get("required_claims", ("exp",))),
        token_type=spec.get("token_type"),
        source=b.at(path),
    )


def _scope_names(b: Builder, path: Path, names: Iterable[tuple[Path, str]]) -> None:
    for where, name in names:
        if any(c.isspace() for c in name):
            b.error(where, f'scope "{name}" contains whitespace: scopes are single words')


def scope_rule(b: Builder, path: Path, value: Any) -> ScopeRule:
    """The three file forms of SPEC §2 → OR-of-AND alternatives."""
    if value is None or value == []:
        return ScopeRule()
    if isinstance(value, dict):
        words = [((*path, "any", i), s) for i, s in enumerate(value["any"])]
        _scope_names(b, path, words)
        return ScopeRule(tuple(frozenset({s}) for _, s in words))
    if all(isinstance(item, str) for item in value):
        _scope_names(b, path, [((*path, i), s) for i, s in enumerate(value)])
        return ScopeRule((frozenset(value),))
    for i, group in enumerate(value):
        _scope_names(b, path, [((*path, i, j), s) for j, s in enumerate(group)])
    return ScopeRule(tuple(frozenset(group) for group in value))


def _methods(b: Builder, path: Path, methods: list[str] | None) -> frozenset[str] | None:
    if methods is None:
        return None
    for i, method in enumerate(methods):
        if not _TOKEN.fullmatch(method):
            b.error((*path, i), f'"{method}" is not an HTTP method')
        elif method != method.upper():
            b.error((*path, i), f'"{method}": methods are case-sensitive; write "{method.upper()}"')
    return frozenset(methods)


def default_route_name(path: str, methods: frozenset[str] | None) -> str:
    return f"{'ANY' if methods is None else ','.join(sorted(methods))} {path}"


def _route(b: Builder, path: Path, spec: dict[str, Any]) -> Route:
    methods = _methods(b, (*path, "methods"), spec.get("methods"))
    if not spec["path"].startswith("/"):
        b.error((*path, "path"), f'"{spec["path"]}" must start with /')
    auth = spec.get("auth", "required")
    if auth == "none":
        for key in ("scopes", "audience"):
            if spec.get(key) is not None:
                b.error((*path, key), f'"{key}" on a route with auth: none would never be checked')
    _strip_prefix(b, path, spec)
    return Route(
        name=spec.get("name") or default_route_name(spec["path"], methods),
        path=spec["path"],
        upstream=spec["upstream"],
        methods=methods,
        auth=auth,
        scopes=scope_rule(b, (*path, "scopes"), spec.get("scopes")),
        audience=spec.get("audience"),
        strip_prefix=spec.get("strip_prefix"),
        max_body_bytes=spec.get("max_body_bytes"),
        source=b.at(path),
    )


def _check_upstream_names(b: Builder, known: dict[str, Upstream]) -> None:
    """Every route's `upstream` must be defined: checked even on routes with other mistakes,
    since a wrong reference is worth saying in the same run."""
    if not b.clean(("upstreams",)):
        return
    defined = ", ".join(sorted(known)) or "none"
    for index, spec in enumerate(b.get(("routes",)) or []):
        name = spec.get("upstream") if isinstance(spec, dict) else None
        if isinstance(name, str) and name not in known:
            message = f'"{name}" is not a defined upstream (defined: {defined})'
            b.error(("routes", index, "upstream"), message)


def _strip_prefix(b: Builder, path: Path, spec: dict[str, Any]) -> None:
    prefix = spec.get("strip_prefix")
    if prefix is None:
        return
    where = (*path, "strip_prefix")
    if not prefix.startswith("/") or (prefix.endswith("/") and prefix != "/"):
        b.error(where, f'"{prefix}" must start with / and not end with /')
    elif not (spec["path"] == prefix or spec["path"].startswith(prefix + "/")):
        b.error(where, f'"{prefix}" is not a prefix of the route path "{spec["path"]}"')


def _unique(
    b: Builder, entries: Iterable[tuple[Path, str]], what: str, fold: Callable[[str], str]
) -> None:
    seen: dict[str, Path] = {}
    for path, value in entries:
        first = seen.setdefault(fold(value), path)
        if first != path:
            b.error(path, f'{what} "{value}" is used twice (first at {b.at(first)})')


def _address(b: Builder, key: str, default: Address) -> Address:
    text = b.get((key,))
    if not isinstance(text, str) or not b.clean((key,)):
        return default
    try:
        return parse_address(text)
    except ValueError as error:
        b.error((key,), f'"{text}": {error}')
        return default


def _forwarding(b: Builder) -> Forwarding:
    spec = b.get(("forward",)) or {}
    mapping = spec.get("claims_to_headers")
    if not b.clean(("forward",)) or mapping is None:
        return Forwarding(
            authorization=bool(spec.get("authorization", True)) if b.clean(("forward",)) else True
        )
    pairs: list[tuple[str, str]] = []
    for claim, header in mapping.items():
        where = ("forward", "claims_to_headers", claim)
        if not _TOKEN.fullmatch(header):
            b.error(where, f'"{header}" is not a valid header name')
        elif header.lower().replace("_", "-") in _RESERVED_HEADERS:
            b.error(where, f'"{header}" is set by scopegate itself and cannot carry a claim')
        pairs.append((claim, header))
    _unique(b, [(("forward", "claims_to_headers", c), h) for c, h in pairs], "header",
            lambda h: h.lower().replace("_", "-"))  # fmt: skip
    return Forwarding(
        authorization=bool(spec.get("authorization", True)), claims_to_headers=tuple(pairs)
    )


def _jwks(b: Builder) -> JwksPolicy:
    spec = b.get(("jwks",)) or {}
    if not b.clean(("jwks",)):
        return JwksPolicy()
    defaults = JwksPolicy()
    policy = JwksPolicy(
        cache_ttl=float(spec.get("cache_ttl", defaults.cache_ttl)),
        min_refresh_interval=float(spec.get("min_refresh_interval", defaults.min_refresh_interval)),
        max_stale=float(spec.get("max_stale", defaults.max_stale)),
        timeout=float(spec.get("timeout", defaults.timeout)),
        max_response_bytes=int(spec.get("max_response_bytes", defaults.max_response_bytes)),
    )
    if policy.min_refresh_interval > policy.cache_ttl:
        b.error(("jwks", "min_refresh_interval"), "must not be longer than jwks.cache_ttl")
    return policy


def build_config(b: Builder) -> Config:
    upstreams: dict[str, Upstream] = {}
    for path, value in b.items(("upstreams",)):
        upstream = _upstream(b, path, str(path[-1]), value)
        if upstream is not None:
            upstreams[upstream.name] = upstream
    issuers = [_issuer(b, path, spec) for path, spec in b.items(("issuers",))]
    _unique(b, [(("issuers", i, "issuer"), x.issuer) for i, x in enumerate(issuers)], "issuer", str)
    catalogue = {str(k): str(v or "") for k, v in (b.get(("scopes",)) or {}).items()}
    _scope_names(b, ("scopes",), [(("scopes", k), k) for k in catalogue])
    # A route naming an upstream whose own entry was broken is not reported twice.
    known = upstreams | {str(p[-1]): cast(Upstream, None) for p, _ in b.items(("upstreams",))}
    routes = [_route(b, path, spec) for path, spec in b.items(("routes",))]
    _check_upstream_names(b, known)
    _unique(b, [(("routes", i, "name"), r.name) for i, r in enumerate(routes)], "route name", str)
    limits_spec = b.get(("limits",)) or {}
    return Config(
        issuers=tuple(issuers),
        upstreams=upstreams,
        routes=tuple(routes),
        listen=_address(b, "listen", Address("0.0.0.0", 8080)),
        admin_listen=_address(b, "admin_listen", Address("127.0.0.1", 9100)),
        jwks=_jwks(b),
        limits=Limits(**limits_spec) if b.clean(("limits",)) else Limits(),
        scopes=catalogue,
        scope_sources={k: b.doc.source(("scopes", k), key=True) for k in catalogue},
        forward=_forwarding(b),
        file=b.doc.file,
    )
