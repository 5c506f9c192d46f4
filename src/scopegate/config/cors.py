"""`cors:` (SPEC §6.2) as the file says it: origins, methods and header names checked.

An origin is what a browser sends in `Origin`: `scheme://host[:port]`, nothing after it. An entry
with a path or a trailing slash can never equal one, so it is a warning (`scopegate check`
prints it); `"*"` with credentials is an error, as the Fetch standard refuses it.
"""

from __future__ import annotations

import re
from typing import cast
from urllib.parse import urlsplit

from scopegate.config.build import Builder, default_method_problem
from scopegate.config.errors import ConfigError, quoted
from scopegate.config.model import Cors

_SECTION = ("cors",)
_DEFAULTS = Cors()
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # RFC 9110 token: header names


def cors(b: Builder, warnings: list[str]) -> Cors | None:
    """The policy, or None without a `cors:` section; origins that are not origins go to
    `warnings`, positioned."""
    if b.doc.get(_SECTION) is None or not b.doc.clean(_SECTION):
        return None
    spec = b.doc.trusted(_SECTION)
    origins = list(spec["allow_origins"])
    credentials = bool(spec.get("allow_credentials", False))
    if "*" in origins and credentials:
        b.error((*_SECTION, "allow_origins"),
                '"*" with allow_credentials: true is refused: name each origin')  # fmt: skip
    for index, origin in enumerate(origins):
        if origin != "*" and (why := origin_problem(origin)) is not None:
            where = b.doc.source((*_SECTION, "allow_origins", index))
            warnings.append(str(ConfigError(where, f"{quoted(origin)} {why}, so it never matches")))
    return Cors(
        allow_origins=frozenset(o for o in origins if o != "*"),
        any_origin="*" in origins,
        allow_methods=_methods(b, spec.get("allow_methods")),
        allow_headers=_header_names(b, "allow_headers", spec, _DEFAULTS.allow_headers),
        expose_headers=_header_names(b, "expose_headers", spec, _DEFAULTS.expose_headers),
        allow_credentials=credentials,
        max_age=int(spec.get("max_age", _DEFAULTS.max_age)),
    )


def origin_problem(origin: str) -> str | None:
    """Why `origin` is not a web origin as browsers send it, or None when it is one."""
    try:
        parts = urlsplit(origin)
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        return "is not a URL"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "is not an origin (scheme://host[:port])"
    if parts.path or parts.query or parts.fragment or "@" in parts.netloc:
        return "has a path, a trailing slash, a query or user info"
    if origin != origin.lower():
        return "has upper-case letters, which a browser's Origin never has"
    return None


def _methods(b: Builder, methods: list[str] | None) -> tuple[str, ...] | None:
    for index, method in enumerate(methods or ()):
        if (problem := default_method_problem(method)) is not None:
            b.error((*_SECTION, "allow_methods", index), problem)
    return None if methods is None else tuple(dict.fromkeys(methods))


def _header_names(
    b: Builder, key: str, spec: dict[str, object], default: tuple[str, ...]
) -> tuple[str, ...]:
    names = cast(list[str] | tuple[str, ...] | None, spec.get(key, default))  # schema-checked
    if names is None:
        return ()
    for index, name in enumerate(names):
        if not _TOKEN.fullmatch(str(name)):
            b.error((*_SECTION, key, index), f"{quoted(str(name))} is not a header name")
    return tuple(dict.fromkeys(str(name).lower() for name in names))
