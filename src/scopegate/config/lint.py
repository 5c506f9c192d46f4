"""Warnings about a valid configuration: the scope catalogue against what routes use."""

from __future__ import annotations

from scopegate.config.errors import ConfigError
from scopegate.config.model import UNKNOWN_SOURCE, Config


def catalogue_warnings(config: Config) -> list[ConfigError]:
    """Scopes a route needs but the `scopes:` catalogue does not declare (only when there is a
    catalogue: without one there is nothing to compare), and catalogue scopes no route uses."""
    if not config.scopes:
        return []
    warnings: list[ConfigError] = []
    used: set[str] = set()
    for route in config.routes:
        needed = route.scopes.all_scopes
        used |= needed
        for scope in sorted(needed - config.scopes.keys()):
            warnings.append(ConfigError(
                route.source,
                f'route {route.name} uses scope "{scope}", which scopes: does not declare',
            ))  # fmt: skip
    for scope in sorted(config.scopes.keys() - used):
        warnings.append(ConfigError(
            config.scope_sources.get(scope, UNKNOWN_SOURCE),
            f'scope "{scope}" is declared but no route requires it'
        ))  # fmt: skip
    return warnings
