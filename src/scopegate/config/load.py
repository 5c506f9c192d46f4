"""Loading a configuration file (SPEC §2): the steps, and the checks across sections.

Usage::

    config = load_config("scopegate.yaml")       # raises ConfigErrors with every problem

1. `yaml_nodes` — YAML → plain data with positions; `${NAME}` expanded; duplicate keys refused
2. `schema.json` — structure, types, unknown keys (worded by `errors.schema_errors`)
3. `build` — each section → its frozen `model` value, with the checks a schema cannot make
4. `openapi_section` — the OpenAPI descriptions named in `openapi:`, read and mapped to routes
5. here — what spans sections: references to upstreams, unique names, distinct ports

Each step reports everything it finds, and skips what an earlier step already reported, so
one mistake is said once and every mistake is said in one run.

The commands load through `commands.loading`, which also checks the route table as a whole;
`load_config_text` serves the demo's built-in file and the tests.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from functools import cache
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator

from scopegate.config import build, cors, lint, metadata, openapi_section, rate_limits, tls
from scopegate.config.build import Builder, valid_host
from scopegate.config.errors import (
    ConfigError,
    ConfigErrors,
    Path,
    describe,
    path_text,
    quoted,
    schema_errors,
)
from scopegate.config.model import Address, Config, Issuer, Route, Source
from scopegate.config.reading import MAX_FILE_BYTES, read_config_bytes
from scopegate.config.yaml_nodes import Document, read_document

__all__ = ["MAX_FILE_BYTES", "load_config", "load_config_text"]

_WILDCARDS = frozenset({"0.0.0.0", "::"})
_LISTEN, _ADMIN = Address("0.0.0.0", 8080), Address("127.0.0.1", 9100)  # SPEC §2 defaults


@cache
def _validator() -> Draft202012Validator:
    schema = json.loads(resources.files("scopegate.config").joinpath("schema.json").read_text())
    return Draft202012Validator(_inline_refs(schema, schema.get("$defs", {})))


def _inline_refs(node: Any, defs: Mapping[str, Any]) -> Any:
    """`node` with each `{"$ref": "#/$defs/NAME"}` that has no other keyword replaced by that
    definition (the schema has no recursive ones). Resolving a reference costs jsonschema more
    than checking what it points to, and every route refers to several, so a large file's load
    time was much of it spent resolving. A reference beside other keywords stays as it is."""
    if isinstance(node, list):
        return [_inline_refs(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref")
    if len(node) == 1 and isinstance(ref, str) and ref.startswith("#/$defs/"):
        return _inline_refs(defs[ref.removeprefix("#/$defs/")], defs)
    return {key: _inline_refs(value, defs) for key, value in node.items()}


def load_config(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> Config:
    """Read and load the file at `path` (UTF-8, at most `MAX_FILE_BYTES`); `env=None` means
    `os.environ`. Raises `ConfigErrors`, at 1:1 when the file itself is the problem."""
    return load_config_bytes(read_config_bytes(path), os.fspath(path), env)


def load_config_bytes(raw: bytes, name: str, env: Mapping[str, str] | None = None) -> Config:
    """`load_config` for bytes already read from the file called `name`."""
    start = Source(name, 1, 1)
    if len(raw) > MAX_FILE_BYTES:
        message = f"larger than {MAX_FILE_BYTES} bytes: refused"
        raise ConfigErrors([ConfigError(start, message)])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        line = raw.count(b"\n", 0, error.start) + 1
        col = error.start - raw.rfind(b"\n", 0, error.start)
        message = f"not UTF-8 text: {error.reason} (byte 0x{raw[error.start]:02x})"
        raise ConfigErrors([ConfigError(Source(name, line, col), message)]) from None
    return load_config_text(text, name, env)


def load_config_text(text: str, filename: str, env: Mapping[str, str] | None = None) -> Config:
    """The `Config` that `text` describes; `filename` only positions the errors.

    Raises `ConfigErrors` with every problem found, and never anything else.
    """
    if len(text) > MAX_FILE_BYTES:
        message = f"larger than {MAX_FILE_BYTES} characters: refused"
        raise ConfigErrors([ConfigError(Source(filename, 1, 1), message)])
    document, errors = read_document(text, filename, os.environ if env is None else env)
    if not isinstance(document.data, dict):
        if document.data is not None or not errors:  # else: empty, or not YAML, as reported
            got = describe(document.data)
            message = f"expected a mapping of sections (issuers, upstreams, routes), got {got}"
            errors.append(ConfigError(Source(filename, 1, 1), message))
        raise ConfigErrors(errors)
    errors += schema_errors(document, _validator())
    builder = Builder(document)
    config = _assemble(builder)
    if errors or builder.errors:
        raise ConfigErrors(errors + builder.errors)
    return config


def _assemble(b: Builder) -> Config:
    """The `Config` of a checked document; problems go to `b.errors`, and then the result is
    not to be used (the parts with errors hold defaults)."""
    doc = b.doc
    upstreams = [build.upstream(b, path) for path in _items(doc, "upstreams", dict)]
    issuers = [(path, build.issuer(b, path)) for path in _items(doc, "issuers", list)]
    routes = [(path, build.route(b, path)) for path in _items(doc, "routes", list)]
    openapi_section.check_routes_present(b)
    imported = openapi_section.imported_routes(b)
    warnings = list(imported.warnings)
    _check_references(b)
    _check_unique(b, "issuer", [((*p, "issuer"), p, i.issuer) for p, i in issuers if i])
    _check_one_introspecting_issuer(b, issuers)
    _check_route_names(b, routes, imported.routes)
    listen, admin = _listeners(b)
    scopes, scope_sources = lint.catalogue(b)
    built_issuers = tuple(issuer for _, issuer in issuers if issuer)
    built_routes = tuple(route for _, route in routes if route) + tuple(
        route for _, route in imported.routes
    )
    return Config(
        issuers=built_issuers,
        upstreams={upstream.name: upstream for upstream in upstreams if upstream},
        routes=built_routes,
        listen=listen,
        admin_listen=admin,
        jwks=build.jwks(b),
        limits=build.limits(b),
        scopes=imported.scopes | scopes,  # the file's own descriptions win
        scope_sources=imported.scope_sources | scope_sources,
        forward=build.forwarding(b),
        enforce=build.default_enforcement(b),
        resource_metadata=metadata.resource_metadata(b, built_issuers),
        file=doc.file,
        cors=cors.cors(b, warnings),
        rate_limits=rate_limits.rate_limits(b, {route.name for route in built_routes}),
        tls=tls.tls(b),
        forwarded_client_cert=tls.forwarded_client_cert(b),
        load_warnings=tuple(warnings),
    )


def _check_one_introspecting_issuer(b: Builder, issuers: list[tuple[Path, Issuer | None]]) -> None:
    """SPEC §6.4: an opaque token names no issuer, so it goes to the one issuer that introspects;
    with two, which one would be a guess."""
    introspecting = [path for path, issuer in issuers if issuer and issuer.introspection]
    for path in introspecting[1:]:
        first = b.doc.source((*introspecting[0], "introspection"))
        b.error(
            (*path, "introspection"),
            f"only one issuer may introspect opaque tokens (the first is at {first})",
        )


def _check_route_names(
    b: Builder, written: list[tuple[Path, Route | None]], imported: list[tuple[Path, Route]]
) -> None:
    """Route names are unique across `routes:` and what `openapi:` generates."""
    # A default name ("GET /x") has no place of its own in the file: point at its route.
    doc = b.doc
    names = [((*p, "name") if "name" in doc.get(p) else p, p, r.name) for p, r in written if r]
    names += [(p, p, route.name) for p, route in imported]  # at the openapi: entry
    _check_unique(b, "route name", names)


def _items(doc: Document, section: str, kind: type[list[Any] | dict[str, Any]]) -> list[Path]:
    """The paths of the items of a list or mapping section, with errors or not."""
    value = doc.get((section,))
    if not isinstance(value, kind):
        return []
    keys = value if isinstance(value, dict) else range(len(value))
    return [(section, key) for key in keys]


def _check_references(b: Builder) -> None:
    """Each route's `upstream` must be defined: checked on routes with other mistakes too, since
    a wrong reference is worth saying in the same run."""
    defined, routes = b.doc.get(("upstreams",)), b.doc.get(("routes",))
    if not isinstance(defined, dict) or not defined or not isinstance(routes, list):
        return  # the schema has said what is wrong with the section itself
    for index, spec in enumerate(routes):
        where = ("routes", index, "upstream")
        name = spec.get("upstream") if isinstance(spec, dict) else None
        if isinstance(name, str) and name not in defined and b.doc.clean(where):
            names = ", ".join(quoted(name)[1:-1] for name in sorted(defined))
            b.error(where, f"{quoted(name)} is not a defined upstream (defined: {names})")


def _check_unique(b: Builder, what: str, named: list[tuple[Path, Path, str]]) -> None:
    """Each `(where, owner, value)` whose value an earlier owner has is an error at `where`."""
    first: dict[str, Path] = {}
    for where, owner, value in named:
        if value in first:
            seen = first[value]
            line = b.doc.source(seen).line
            b.error(
                where, f"{what} {quoted(value)} is already used by {path_text(seen)} (line {line})"
            )
        first.setdefault(value, owner)


def parse_address(text: str) -> Address:
    """`host:port` or `[v6]:port` → `Address`; raises ValueError saying what is wrong."""
    host, bracketed, port = text.rpartition(":")
    if bracketed and host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        if not valid_host(host) or ":" not in host:
            raise ValueError(f'"[{host}]" is not an IPv6 address')
    elif ":" in host:
        raise ValueError("write an IPv6 address in brackets: [::1]:8080")
    elif not host or not valid_host(host):
        raise ValueError("expected host:port, e.g. 0.0.0.0:8080 for every interface")
    if not (port.isascii() and port.isdigit() and int(port) <= 65535):
        raise ValueError("expected a port from 0 to 65535 after the last :")
    return Address(host, int(port))


def _address(b: Builder, key: str, default: Address) -> Address | None:
    """The address at top-level `key`: `default` when absent, None when wrong (and reported)."""
    text = b.doc.get((key,))
    if not b.doc.clean((key,)):
        return None
    if text is None:
        return default
    try:
        return parse_address(text)
    except ValueError as error:
        b.error((key,), f"{quoted(text)}: {error}")
        return None


def _listeners(b: Builder) -> tuple[Address, Address]:
    """`listen` and `admin_listen`, checked against each other: two listeners on one port
    cannot both bind, which is better said now than at start-up."""
    public, admin = _address(b, "listen", _LISTEN), _address(b, "admin_listen", _ADMIN)
    if public and admin and public.port == admin.port != 0:
        hosts = {public.host, admin.host}
        where = "admin_listen" if b.doc.get(("admin_listen",)) else "listen"  # the one written
        if len(hosts) == 1 or hosts & _WILDCARDS:
            b.error((where,), f"listen ({public}) and admin_listen ({admin}) cannot share a port")
    return public or _LISTEN, admin or _ADMIN
