"""Loading a configuration file: YAML with positions → JSON Schema → semantic build.

Usage::

    config = load_config("scopegate.yaml")       # raises ConfigErrors with every problem
"""

from __future__ import annotations

import difflib
import json
import os
from collections.abc import Mapping
from functools import cache
from importlib import resources
from typing import Any, cast

from jsonschema import Draft202012Validator, ValidationError

from scopegate.config.build import Builder, build_config
from scopegate.config.errors import ConfigError, ConfigErrors, path_text
from scopegate.config.model import Config, Source
from scopegate.config.yaml_nodes import Document, Path, read_document

MAX_FILE_BYTES = 1 << 20


@cache
def _validator() -> Draft202012Validator:
    schema = json.loads(resources.files("scopegate.config").joinpath("schema.json").read_text())
    return Draft202012Validator(schema)


_JSON_TYPES = {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean",
               int: "a number", float: "a number", type(None): "empty"}  # fmt: skip


def _describe(value: Any) -> str:
    return _JSON_TYPES.get(type(value), type(value).__name__)


def _schema_errors(document: Document) -> tuple[list[ConfigError], list[Path]]:
    errors: list[ConfigError] = []
    paths: list[Path] = []
    for error in _validator().iter_errors(document.data):
        path: Path = tuple(error.absolute_path)
        if path in document.unresolved:
            continue
        paths.append(path)
        errors.extend(_explain(document, path, error))
    return errors, paths


def _explain(document: Document, path: Path, error: ValidationError) -> list[ConfigError]:
    where = path_text(path)
    schema: Any = error.schema
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = sorted(schema.get("properties", {}))
        extra = [key for key in error.instance if key not in allowed]
        out = []
        for key in extra:
            close = difflib.get_close_matches(key, allowed, n=1)
            hint = f' (did you mean "{close[0]}"?)' if close else f" (known: {', '.join(allowed)})"
            out.append(ConfigError(document.source((*path, key), key=True),
                                   f'{where}: unknown key "{key}"{hint}'))  # fmt: skip
        return out
    if error.validator == "required":
        missing = str(error.message).split("'")[1]
        return [ConfigError(document.source(path), f'{where}: missing required key "{missing}"')]
    if error.validator == "type":
        wanted = error.validator_value
        wanted_text = " or ".join(wanted) if isinstance(wanted, list) else wanted
        got = _describe(error.instance)
        return [ConfigError(document.source(path), f"{where}: expected {wanted_text}, got {got}")]
    if error.validator in ("oneOf", "anyOf") and isinstance(schema, dict) and "x-error" in schema:
        return [ConfigError(document.source(path), f"{where}: {schema['x-error']}")]
    if error.validator == "enum":
        choices = ", ".join(json.dumps(v) for v in cast(list[Any], error.validator_value))
        return [ConfigError(document.source(path), f"{where}: must be one of {choices}")]
    return [ConfigError(document.source(path), f"{where}: {_plain(error)}")]


def _plain(error: ValidationError) -> str:
    value = error.validator_value
    messages = {
        "minItems": f"needs at least {value} item(s)",
        "minProperties": f"needs at least {value} entry",
        "minLength": "must not be empty",
        "minimum": f"must be at least {value}",
        "exclusiveMinimum": f"must be greater than {value}",
    }
    return messages.get(str(error.validator), str(error.message))


def load_config_text(text: str, filename: str, env: Mapping[str, str] | None = None) -> Config:
    document, errors = read_document(text, filename, os.environ if env is None else env)
    if document.data is None or (errors and not isinstance(document.data, dict)):
        raise ConfigErrors(errors or [ConfigError(Source(filename, 1, 1), "the file is empty")])
    if not isinstance(document.data, dict):
        raise ConfigErrors([ConfigError(Source(filename, 1, 1), "the file must be a mapping")])
    schema_errors, reported = _schema_errors(document)
    builder = Builder(document, [*reported, *document.unresolved])
    config = build_config(builder)
    errors += schema_errors + builder.errors
    if errors:
        raise ConfigErrors(errors)
    return config


def load_config(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> Config:
    name = os.fspath(path)
    try:
        with open(name, "rb") as handle:
            raw = handle.read(MAX_FILE_BYTES + 1)
    except OSError as error:
        raise ConfigErrors(
            [ConfigError(Source(name, 1, 1), f"cannot read: {error.strerror}")]
        ) from None
    if len(raw) > MAX_FILE_BYTES:
        raise ConfigErrors([ConfigError(Source(name, 1, 1), f"larger than {MAX_FILE_BYTES} bytes")])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ConfigErrors(
            [ConfigError(Source(name, 1, 1), f"not UTF-8 text: {error.reason}")]
        ) from None
    return load_config_text(text, name, env)
