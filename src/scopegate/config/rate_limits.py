"""`rate_limits:` (SPEC §6.5) as the file says it: the store's URL, unique rule names, and routes
that exist.

The store is `memory` (each process counts alone: right for one process, wrong as soon as there
are workers or replicas, which `check` says) or a Redis URL, `redis://` or `rediss://` (TLS),
with an optional password and database number. The password stays in the value the gateway
connects with and is left out of everything printed.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any
from urllib.parse import urlsplit

from scopegate.config.build import Builder
from scopegate.config.errors import quoted
from scopegate.config.model import RateLimitRule, RateLimits, RedisStore

_SECTION = ("rate_limits",)
_DEFAULTS = RateLimits(rules=())


def rate_limits(b: Builder, route_names: Collection[str]) -> RateLimits | None:
    """The limits, or None without a `rate_limits:` section (or with errors in it). Rule names
    and the routes they name are checked wherever the schema let them through."""
    if b.doc.get(_SECTION) is None:
        return None
    spec = b.doc.trusted(_SECTION)
    store = _store(b, spec["store"]) if "store" in spec else None
    rules = b.doc.get((*_SECTION, "rules"))
    seen: set[str] = set()
    for index in range(len(rules) if isinstance(rules, list) else 0):
        path = (*_SECTION, "rules", index)
        rule = b.doc.trusted(path)
        if "name" in rule:
            if rule["name"] in seen:
                b.error((*path, "name"), f"{quoted(rule['name'])} is named twice")
            seen.add(rule["name"])
        for position, name in enumerate(rule.get("routes") or ()):
            if name not in route_names:
                b.error((*path, "routes", position), f"no route is named {quoted(name)}")
    if not b.doc.clean(_SECTION):
        return None
    return RateLimits(
        rules=tuple(_rule(rule) for rule in spec["rules"]),
        store=store,
        on_store_error=spec.get("on_store_error", _DEFAULTS.on_store_error),
        timeout=float(spec.get("timeout", _DEFAULTS.timeout)),
    )


def _rule(spec: dict[str, Any]) -> RateLimitRule:
    routes = spec.get("routes")
    return RateLimitRule(
        name=spec["name"],
        key=spec["key"],
        limit=int(spec["limit"]),
        window=float(spec["window"]),
        routes=None if routes is None else frozenset(routes),
    )


def _store(b: Builder, value: str) -> RedisStore | None:
    if value == "memory":
        return None
    where = (*_SECTION, "store")
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError as error:
        b.error(where, f"{quoted(_hidden(value))} is not a valid URL ({error})")
        return None
    if parts.scheme not in ("redis", "rediss") or not parts.hostname:
        b.error(where, f"{quoted(_hidden(value))}: memory, or a redis:// or rediss:// URL")
        return None
    database = parts.path.lstrip("/")
    if database and not database.isdigit():
        b.error(where, f"{quoted(_hidden(value))}: the path is a database number, like /0")
        return None
    if parts.query or parts.fragment or port == 0:
        b.error(where, f"{quoted(_hidden(value))}: host, port and database only")
        return None
    return RedisStore(url=value, display=_hidden(value))


def _hidden(url: str) -> str:
    """`url` with any password replaced, for messages and logs."""
    scheme, _, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    if not at:
        return url
    user, colon, _ = credentials.partition(":")
    return f"{scheme}://{user}{':***' if colon else ''}@{host}"
