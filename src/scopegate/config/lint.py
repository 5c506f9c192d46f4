"""The `scopes:` catalogue: read from the file, then compared with what the routes require.

Like the API Scopes tab of an identity provider, the catalogue lists the scopes an API knows.
A route requiring a scope the catalogue lacks is most often a typo (`read:contact`), and such a
route denies every token: it fails closed, so this is a warning for `scopegate check` rather
than an error that would stop a reload. A file without a catalogue gets no warnings: there is
nothing to compare with.
"""

from __future__ import annotations

import difflib

from scopegate.config.build import Builder
from scopegate.config.errors import ConfigError, at_path, quoted
from scopegate.config.model import UNKNOWN_SOURCE, Config, Source

__all__ = ["catalogue", "catalogue_warnings"]


def catalogue(b: Builder) -> tuple[dict[str, str], dict[str, Source]]:
    """The catalogue's descriptions and where each scope was declared; a scope name holding
    whitespace is an error, since a token's scopes are split on spaces."""
    spec = b.doc.trusted(("scopes",))
    for name in spec:
        if not name or any(c.isspace() for c in name):
            message = f"{quoted(name)} is not a scope name: a scope is one word, without spaces"
            where = b.doc.source(("scopes", name), key=True)
            b.errors.append(ConfigError(where, at_path(("scopes",), message)))
    sources = {name: b.doc.source(("scopes", name), key=True) for name in spec}
    return {name: text or "" for name, text in spec.items()}, sources


def catalogue_warnings(config: Config) -> list[ConfigError]:
    """Scopes that routes require but the catalogue does not declare, at each such route, then
    catalogue scopes that no route requires, at their declaration; in file order each."""
    if not config.scopes:
        return []
    return [*_undeclared(config), *_unused(config)]


def _undeclared(config: Config) -> list[ConfigError]:
    declared = sorted(config.scopes)
    warnings = []
    for route in config.routes:
        for scope in sorted(route.scopes.all_scopes - config.scopes.keys()):
            close = difflib.get_close_matches(scope, declared, n=1)
            hint = f' (did you mean "{close[0]}"?)' if close else ""
            message = f"route {quoted(route.name)} requires scope {quoted(scope)}"
            warnings.append(ConfigError(route.source, f"{message}, not declared in scopes:{hint}"))
    return warnings


def _unused(config: Config) -> list[ConfigError]:
    required = frozenset().union(*(route.scopes.all_scopes for route in config.routes))
    return [
        ConfigError(
            config.scope_sources.get(scope, UNKNOWN_SOURCE),
            f"scope {quoted(scope)} is declared in scopes: but no route requires it",
        )
        for scope in config.scopes
        if scope not in required
    ]
