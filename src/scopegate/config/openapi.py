"""An OpenAPI 3.0 or 3.1 description → routes and a scope catalogue (SPEC §6.6).

One route per operation: named by its `operationId` (else `METHOD path`), its path template as
the route path (below the path of the first server's URL when asked), its one method, and the
requirement its security states (`openapi_security`). What cannot be mapped gets a note
positioned in the document. An operation whose security scopegate cannot check (none declared,
or every alternative naming schemes other than OAuth 2.0 and OpenID Connect) still gets its
route, one that no token passes (`auth: deny`): skipped, its requests would fall to a less
specific route (a skipped `/items/me` to `/items/{id}`) and be held to that route's weaker
requirement. So does a GET whose path's HEAD operation requires something else (HEAD is
answered by the GET route). Only a path key that is not a path template is skipped, since it
makes no route at all.

Usage::

    api = import_openapi("contacts.yaml", "contacts", server_path=True)
    api.routes, api.scopes, api.notes       # notes: ConfigError values, as warnings
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit

from scopegate.config.errors import ConfigError, Path, at_path, quoted
from scopegate.config.model import NO_SCOPES, NO_TOKEN_PASSES, Route, Source
from scopegate.config.openapi_document import OpenAPIDocument, read_openapi
from scopegate.config.openapi_security import SecurityMapping, map_security, scope_catalogue

_REFUSED = "no token passes until the document says what this operation requires"

OPERATION_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
_TEMPLATED = re.compile(r"(?P<before>[^{}]*)\{(?P<name>[^{}]+)\}(?P<after>[^{}]*)")
_NOT_A_NAME = re.compile(r"[^A-Za-z0-9_]")
_SERVER_VARIABLE = re.compile(r"\{([^{}]*)\}")


@dataclass(frozen=True)
class ImportedAPI:
    """The routes and scope catalogue of one description, and notes on what could not be
    mapped as the description says, and why."""

    routes: tuple[Route, ...]
    scopes: Mapping[str, str]
    notes: tuple[ConfigError, ...]


@dataclass(frozen=True)
class _Operation:
    method: str
    template: str
    spec: Mapping[str, Any]
    path: Path  # where the operation is written
    item: Mapping[str, Any]  # its path item


def import_openapi(
    file: str, upstream: str, *, server_path: bool = False, label: str | None = None,
    source: Source | None = None,
) -> ImportedAPI:  # fmt: skip
    """The description in `file` as routes to `upstream`; `ConfigErrors` when it is invalid.

    `label` names the file in each route's origin (default: `file`); `source` is where the
    routes are said to be written (default: each operation's place in the document).
    """
    document = read_openapi(file)
    schemes = _security_schemes(document)
    routes: list[tuple[Route, Path]] = []
    notes: list[ConfigError] = []
    for operation in _operations(document, notes):
        where = source or document.source(operation.path)
        built = _route(document, operation, schemes, upstream, server_path)
        if isinstance(built, str):
            notes.append(_note(document, operation.path, built))
            continue
        mapped, route = built
        notes.extend(_note(document, operation.path, text) for text in mapped.notes)
        origin = f"{label or file}#{operation.spec.get('operationId') or route.name}"
        routes.append((replace(route, origin=origin, source=where), operation.path))
    kept = _without_conflicting_head(routes, notes, document)
    return ImportedAPI(tuple(kept), scope_catalogue(schemes), tuple(notes))


def _note(document: OpenAPIDocument, path: Path, text: str) -> ConfigError:
    return ConfigError(document.source(path), at_path(path, text))


def _security_schemes(document: OpenAPIDocument) -> dict[str, Any]:
    names = (document.data.get("components") or {}).get("securitySchemes") or {}
    path = ("components", "securitySchemes")
    return {name: document.resolve((*path, name))[0] for name in names}


def _operations(document: OpenAPIDocument, notes: list[ConfigError]) -> Iterator[_Operation]:
    """Every operation of every path item ($ref followed), in the document's order."""
    for template in document.data.get("paths") or {}:
        if template.startswith("x-"):
            continue  # an extension, not a path
        item, item_path = document.resolve(("paths", template))
        problem = template_problem(template)
        if problem is not None:
            notes.append(_note(document, ("paths", template), problem + ": skipped"))
            continue
        for method in OPERATION_METHODS:
            if isinstance(item.get(method), Mapping):
                yield _Operation(method, template, item[method], (*item_path, method), item)


def template_problem(template: str) -> str | None:
    """Why a path key is not a path template scopegate can match, or None."""
    if not template.startswith("/") or "?" in template or "#" in template:
        return f"{quoted(template)} is not a path template"
    names: list[str] = []
    for segment in template.split("/")[1:]:
        if "{" not in segment and "}" not in segment:
            continue
        match = _TEMPLATED.fullmatch(segment)
        if match is None:
            return f"{quoted(template)}: segment {quoted(segment)} is not one {{name}} in text"
        names.append(route_parameter(match["name"]))
    if len(set(names)) != len(names):
        return f"{quoted(template)} names a parameter twice"
    return None


def route_parameter(name: str) -> str:
    """An OpenAPI parameter name as a route parameter name (letters, digits, `_`): names only
    label the matched values, so `{user-id}` matching as `{user_id}` changes nothing."""
    cleaned = _NOT_A_NAME.sub("_", name)
    return f"_{cleaned}" if cleaned[:1].isdigit() else cleaned


def route_path(template: str, prefix: str = "") -> str:
    """The route path of a path template, below `prefix` (a server's path, or "")."""
    parts = []
    for segment in template.split("/")[1:]:
        match = _TEMPLATED.fullmatch(segment)
        if match is None:
            parts.append(segment)
        else:
            parts.append(f"{match['before']}{{{route_parameter(match['name'])}}}{match['after']}")
    return prefix.rstrip("/") + "/" + "/".join(parts)


def server_prefix(document: OpenAPIDocument, operation: _Operation) -> str:
    """The path of the operation's (else its path item's, else the document's) first server,
    its variables at their defaults; "" when none is declared."""
    for holder in (operation.spec, operation.item, document.data):
        servers = holder.get("servers")
        if servers:
            server = servers[0]
            variables = server.get("variables") or {}

            def default(match: re.Match[str], variables: Mapping[str, Any] = variables) -> str:
                return str((variables.get(match[1]) or {}).get("default", ""))

            url = _SERVER_VARIABLE.sub(default, str(server.get("url", "")))
            return urlsplit(url).path.rstrip("/")
    return ""


def _security(document: OpenAPIDocument, operation: _Operation) -> Any:
    if "security" in operation.spec:
        return operation.spec["security"]
    return document.data.get("security")


def _route(
    document: OpenAPIDocument, operation: _Operation, schemes: Mapping[str, Any],
    upstream: str, server_path: bool,
) -> tuple[SecurityMapping, Route] | str:  # fmt: skip
    """The operation's route and how its security mapped, or why it has none."""
    method = operation.method.upper()
    prefix = server_prefix(document, operation) if server_path else ""
    path = route_path(operation.template, prefix)
    name = str(operation.spec.get("operationId") or f"{method} {path}")
    if not name.isprintable():
        return f"operationId {quoted(name)} holds control characters: not mapped"
    route = Route(name=name, path=path, upstream=upstream, methods=frozenset({method}))
    requirements = _security(document, operation)
    if requirements is None:
        text = f"{method} {operation.template} declares no security, nor does the document"
        note = f"{text}: {_REFUSED} (security: [] makes an operation public)"
        return SecurityMapping(public=False, rule=None, notes=(note,)), refused(route)
    mapped = map_security(requirements, schemes)
    if not mapped.public and mapped.rule is None:
        notes = (*mapped.notes, f"{method} {operation.template}: {_REFUSED}")
        return replace(mapped, notes=notes), refused(route)
    scopes = mapped.rule or NO_SCOPES
    return mapped, replace(route, auth="none" if mapped.public else "required", scopes=scopes)


def refused(route: Route) -> Route:
    """`route` with a requirement no token meets."""
    return replace(route, auth="required", scopes=NO_TOKEN_PASSES)


def _without_conflicting_head(
    routes: list[tuple[Route, Path]], notes: list[ConfigError], document: OpenAPIDocument
) -> list[Route]:
    """HEAD is answered wherever GET is (SPEC §3.1), so a HEAD operation beside a GET one is
    dropped; when the two require different things, the GET route refuses every token, lest
    HEAD get in by GET's requirement or GET by HEAD's."""
    gets = {route.path: route for route, _ in routes if route.methods == frozenset({"GET"})}
    dropped: set[str] = set()
    conflicting: set[str] = set()
    for head, where in routes:
        get = gets.get(head.path) if head.methods == frozenset({"HEAD"}) else None
        if get is None:
            continue
        dropped.add(head.name)
        if (head.auth, head.scopes) == (get.auth, get.scopes):
            notes.append(_note(document, where, f"HEAD {head.path}: answered by the GET route"))
            continue
        conflicting.add(get.name)
        text = f"HEAD {head.path} requires other than GET: {_REFUSED} (both)"
        notes.append(_note(document, where, text))
    return [
        refused(route) if route.name in conflicting else route
        for route, _ in routes
        if route.name not in dropped
    ]
