"""`scopegate import-openapi FILE --upstream NAME [--server-path]` (SPEC §6.6): an OpenAPI
description's operations as `scopes:` and `routes:` YAML, to paste into a configuration beside
its issuers and upstreams. What cannot be mapped goes to stderr as `FILE:LINE:COL: message`.

The routes are compiled as `check` compiles them, so what is printed is a table `check`
accepts: an invalid document, or operations that collide, print nothing and exit 1.
"""

from __future__ import annotations

import json
from typing import TextIO

from scopegate.config.errors import ConfigErrors
from scopegate.config.model import NO_TOKEN_PASSES, Route
from scopegate.config.openapi import ImportedAPI, import_openapi
from scopegate.pipeline.routing import compile_routes


def _text(value: str) -> str:
    """A YAML scalar that reads back as `value` whatever it holds: JSON strings are YAML."""
    return json.dumps(value)


def _scopes(route: Route) -> str | None:
    """The route's `scopes:` in the file's forms; None when any valid token will do."""
    rule = route.scopes
    if rule.needs_nothing:
        return None
    groups = [sorted(alternative) for alternative in rule.alternatives]
    if len(groups) == 1:
        return "[" + ", ".join(map(_text, groups[0])) + "]"
    return "[" + ", ".join("[" + ", ".join(map(_text, g)) + "]" for g in groups) + "]"


def _route_lines(route: Route) -> list[str]:
    lines = [
        f"  # {route.origin}",
        f"  - name: {_text(route.name)}",
        f"    path: {_text(route.path)}",
        f"    methods: [{', '.join(sorted(route.methods or ()))}]",
        f"    upstream: {_text(route.upstream)}",
    ]
    if route.auth == "none":
        lines.append("    auth: none")
    elif route.scopes == NO_TOKEN_PASSES:
        lines.append("    auth: deny  # its security cannot be checked here: see the notes")
    elif (scopes := _scopes(route)) is not None:
        lines.append(f"    scopes: {scopes}")
    return lines


def render(api: ImportedAPI) -> str:
    """The `scopes:` catalogue and the `routes:` of `api`, as configuration YAML."""
    lines = ["scopes:" if api.scopes else "scopes: {}"]
    lines += [f"  {_text(scope)}: {_text(text)}" for scope, text in sorted(api.scopes.items())]
    lines.append("routes:" if api.routes else "routes: []")
    for route in api.routes:
        lines += _route_lines(route)
    return "\n".join(lines) + "\n"


def run_import(file: str, upstream: str, server_path: bool, out: TextIO, err: TextIO) -> int:
    """Print the routes of `file` (exit 0), or every error (exit 1); what could not be mapped
    as the description says is reported on `err` either way."""
    try:
        api = import_openapi(file, upstream, server_path=server_path)
    except ConfigErrors as errors:
        for error in errors.errors:
            print(error, file=err)
        return 1
    for note in api.notes:
        print(f"note: {note}", file=err)
    compiled = compile_routes(api.routes)
    for issue in compiled.errors:
        print(issue, file=err)
    if compiled.errors:
        return 1
    print(render(api), end="", file=out)
    return 0
