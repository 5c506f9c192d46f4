"""Configuration errors: each one positioned, all of them reported at once, in plain words.

A message names the place and the key, so that an editor can jump to it::

    scopegate.yaml:14:7: routes[2].upstream: "contcts" is not a defined upstream (defined: contacts)

The loader collects every problem of a file before raising, the way oauth2-proxy's validators
do: fixing a configuration should take one run of `scopegate check`, not one per mistake. The
same `ConfigError` carries the warnings of `config.lint`.

`schema_errors` words the JSON Schema's findings for people: the schema's own `x-expected`
(what a value should be) and `x-message` (why a pattern failed) texts, a "did you mean" for
unknown keys, and the position of the value, or of the key itself for an unknown key.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from scopegate.config.model import Source
from scopegate.errors import ScopegateError

if TYPE_CHECKING:
    from jsonschema import Draft202012Validator, ValidationError

Path = tuple[str | int, ...]  # a place in the file: ("routes", 0, "path")

_PLAIN_KEY = re.compile(r"[^\s.\[\]\"\\]+")  # a key that reads unambiguously after a dot
__all__ = [
    "ConfigError", "ConfigErrors", "Path", "Positions", "at_path", "path_text", "quoted",
    "schema_errors",
]  # fmt: skip


class Positions(Protocol):
    """What wording schema errors needs of `yaml_nodes.Document` (named structurally, so that
    code reading errors never imports YAML): the data, where each part of it was written, and
    which parts were reported already."""

    data: Any
    reported: set[Path]
    interpolated: set[Path]

    def source(self, path: Path, *, key: bool = False) -> Source: ...
    def report(self, path: Path) -> None: ...


@dataclass(frozen=True, slots=True)
class ConfigError:
    """One problem, and where it was written."""

    source: Source
    message: str

    def __str__(self) -> str:
        return f"{self.source}: {self.message}"


class ConfigErrors(ScopegateError):
    """Every problem found in a file, in file order; nothing of that file is applied."""

    errors: list[ConfigError]

    def __init__(self, errors: Iterable[ConfigError]) -> None:
        # `sorted` is stable: two problems at one position keep the order they were found in.
        self.errors = sorted(errors, key=lambda e: (e.source.file, e.source.line, e.source.col))
        super().__init__(str(self))

    def __str__(self) -> str:
        return "\n".join(str(error) for error in self.errors)


def quoted(text: str, limit: int = 60) -> str:
    """`text` in double quotes, escaped so that one error stays one line, and cut when long:
    values come from the file and the environment, and may hold anything."""
    cut = text if len(text) <= limit else f"{text[: limit - 3]}..."
    escaped = json.dumps(cut, ensure_ascii=False)  # escapes quotes and C0 controls
    return "".join(c if c.isprintable() else f"\\u{ord(c):04x}" for c in escaped)


def path_text(path: Iterable[str | int]) -> str:
    """The dotted name of a place in the file: `("routes", 2, "upstream")` → `routes[2].upstream`,
    `("upstreams", "a b")` → `upstreams["a b"]`. The top level is the empty string."""
    text = ""
    for part in path:
        if isinstance(part, int) or not _PLAIN_KEY.fullmatch(part):
            text += f"[{part if isinstance(part, int) else quoted(part)}]"
        else:
            text += f".{part}" if text else part
    return text


def at_path(path: Iterable[str | int], message: str) -> str:
    """`message` prefixed with the place it is about, unless that place is the top level."""
    where = path_text(path)
    return f"{where}: {message}" if where else message


def describe(value: Any) -> str:
    """What the file holds, in the words of the file."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "nothing (null)"
    if isinstance(value, int | float):
        return f"the number {value}"
    if isinstance(value, str):
        return f"the text {quoted(value)}"
    if isinstance(value, list | dict):
        kind = "list" if isinstance(value, list) else "mapping"
        return f"an empty {kind}" if not value else f"a {kind}"
    return f"a YAML {type(value).__name__}"  # a date or binary: PyYAML's own types


_TYPE_WORDS = {"object": "a mapping", "array": "a list", "string": "text", "number": "a number",
               "integer": "a whole number", "boolean": "true or false", "null": "null"}  # fmt: skip


def _expected(error: ValidationError, interpolated: bool) -> str:
    schema, value = error.schema, error.instance
    wanted: Any = error.validator_value
    types: list[str] = wanted if isinstance(wanted, list) else [wanted]
    words = " or ".join(_TYPE_WORDS.get(name, name) for name in types)
    if isinstance(schema, dict) and "x-expected" in schema:
        words = str(schema["x-expected"])
    hint = ""
    if interpolated and isinstance(value, str):
        hint = " (a value with ${...} stays text: write the number itself)"
    elif isinstance(value, bool | int | float) and "string" in types and "object" not in types:
        hint = " (quote it to make it text)"
    return f"expected {words}, got {describe(value)}{hint}"


def _wording(error: ValidationError, interpolated: bool) -> str:
    value, schema = error.instance, error.schema
    limit: Any = error.validator_value
    shown = quoted(value) if isinstance(value, str) else describe(value)
    if error.validator in ("pattern", "not") and isinstance(schema, dict):
        return f"{shown} {schema.get('x-message', 'is not valid here')}"
    match error.validator:
        case "type":
            return _expected(error, interpolated)
        case "enum":
            return f"must be one of {', '.join(map(json.dumps, limit))}, got {shown}"
        case "minItems" | "minProperties" | "minLength":
            return "must not be empty" if limit == 1 else f"needs {limit} items or more"
        case "minimum":
            return f"must be at least {limit}, got {value}"
        case "exclusiveMinimum":
            return f"must be greater than {limit}, got {value}"
        case "maximum":
            return f"must be at most {limit}, got {value}"
    return str(error.message)


def _unknown_keys(document: Positions, path: Path, error: ValidationError) -> Iterator[ConfigError]:
    allowed = sorted(error.schema.get("properties", {})) if isinstance(error.schema, dict) else []
    instance: Any = error.instance
    for key in instance:
        if key not in allowed:
            close = difflib.get_close_matches(key, allowed, n=1)
            hint = f'did you mean "{close[0]}"?' if close else f"known: {', '.join(allowed)}"
            message = at_path(path, f"unknown key {quoted(key)} ({hint})")
            yield ConfigError(document.source((*path, key), key=True), message)


def schema_errors(document: Positions, validator: Draft202012Validator) -> list[ConfigError]:
    """Every schema error, positioned; the paths they make untrustworthy join
    `document.reported` afterwards, so that nothing is built from them nor said twice."""
    errors: list[ConfigError] = []
    broken: list[Path] = []
    missing: dict[Path, list[str]] = {}  # jsonschema reports the missing keys in `required` order
    for error in validator.iter_errors(document.data):
        path: Path = tuple(error.absolute_path)
        if any(path[:end] in document.reported for end in range(len(path) + 1)):
            continue  # an ${...} or a YAML value there was already reported
        if error.validator == "additionalProperties":  # the known keys are still worth building
            errors.extend(_unknown_keys(document, path, error))
            continue
        if error.validator == "required":
            required: Any = error.validator_value
            absent = [key for key in required if key not in error.instance]
            key = missing.setdefault(path, absent).pop(0)
            broken.append((*path, key))
            message = at_path(path, f"missing required key {quoted(key)}")
        else:
            broken.append(path)
            message = at_path(path, _wording(error, path in document.interpolated))
        errors.append(ConfigError(document.source(path), message))
    for path in broken:
        document.report(path)
    return errors
