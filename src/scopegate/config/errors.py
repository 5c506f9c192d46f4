"""Configuration errors: each one positioned, all of them reported at once.

A message names the place and the key, the way an editor jumps to it::

    scopegate.yaml:14:7: routes[2].upstream: "contcts" is not a defined upstream (defined: contacts)
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from scopegate.config.model import Source


@dataclass(frozen=True, slots=True)
class ConfigError:
    source: Source
    message: str

    def __str__(self) -> str:
        return f"{self.source}: {self.message}"


class ConfigErrors(Exception):
    """Every problem found in a file; nothing of it is applied."""

    def __init__(self, errors: Iterable[ConfigError]) -> None:
        self.errors = sorted(errors, key=lambda e: (e.source.file, e.source.line, e.source.col))
        super().__init__(str(self))

    def __str__(self) -> str:
        return "\n".join(str(error) for error in self.errors)


def path_text(path: Iterable[str | int]) -> str:
    """`("routes", 2, "upstream")` → `routes[2].upstream`."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text or "(top level)"
