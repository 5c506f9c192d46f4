"""The `openapi:` section (SPEC §6.6): each entry's description read, validated and mapped
while the file loads, so that a reload (SIGHUP) reads the descriptions anew.

    openapi:
      - {file: contacts.yaml, upstream: contacts, server_path: true}

A file is found relative to the configuration file's directory. Every generated route is
said to be written at its entry, so that a collision with a route of `routes:` (same name, or
the same requests) is an error there; its origin (`contacts.yaml#listContacts`) names the
operation. An invalid description is an error of the configuration, positioned in the
description; operations that cannot be mapped are warnings.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from scopegate.config.build import Builder
from scopegate.config.errors import ConfigErrors, Path, quoted
from scopegate.config.model import Route, Source
from scopegate.config.openapi import import_openapi
from scopegate.config.reading import relative_to


@dataclass
class ImportedSection:
    """What every entry gave: routes with the place of their entry, the descriptions' scope
    catalogue with where each came from, and the notes on what could not be mapped as written."""

    routes: list[tuple[Path, Route]] = field(default_factory=list)
    scopes: dict[str, str] = field(default_factory=dict)
    scope_sources: dict[str, Source] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def imported_routes(b: Builder) -> ImportedSection:
    """Every clean entry of `openapi:` imported; problems go to `b.errors`."""
    section = ImportedSection()
    entries = b.doc.get(("openapi",))
    if not isinstance(entries, list):
        return section
    for index in range(len(entries)):
        path: Path = ("openapi", index)
        if b.doc.clean(path) and _upstream_defined(b, path):
            _import_entry(b, path, section)
    return section


def _upstream_defined(b: Builder, path: Path) -> bool:
    name, defined = b.doc.get((*path, "upstream")), b.doc.get(("upstreams",))
    if not isinstance(defined, dict) or name in defined:
        return True  # an upstreams section that is wrong itself was reported already
    names = ", ".join(quoted(known)[1:-1] for known in sorted(defined))
    b.error((*path, "upstream"), f"{quoted(name)} is not a defined upstream (defined: {names})")
    return False


def _import_entry(b: Builder, path: Path, section: ImportedSection) -> None:
    spec = b.doc.trusted(path)
    written, source = spec["file"], b.doc.source(path)
    try:
        api = import_openapi(
            relative_to(b.doc.file, written), b.shared(spec["upstream"]),
            server_path=spec.get("server_path", False), label=written, source=source,
        )  # fmt: skip
    except ConfigErrors as errors:
        b.errors.extend(errors.errors)
        return
    section.routes.extend((path, route) for route in api.routes)
    for scope, text in api.scopes.items():
        section.scopes.setdefault(scope, text)
        section.scope_sources.setdefault(scope, source)
    section.warnings.extend(str(note) for note in api.notes)


def check_routes_present(b: Builder) -> None:
    """A file needs routes: written under `routes:`, or generated from `openapi:`."""
    absent = b.doc.get(("routes",)) is None and b.doc.get(("openapi",)) is None
    if absent and isinstance(b.doc.data, dict):
        b.error((), 'missing required key "routes" (or "openapi", which generates them)')
