"""Reading an OpenAPI 3.0 or 3.1 description (SPEC §6.6): its text, with the position of every
value; its `$ref`s, resolved; and its validity, checked by openapi-spec-validator before
anything is made of it.

Usage::

    document = read_openapi("contacts.yaml")     # ConfigErrors, positioned in that file
    item, where = document.resolve(("paths", "/contacts"))   # follows $ref, says where it led

JSON is read as the YAML it also is, so both keep positions. Only references within the
document are followed: loading a configuration never reaches the network, nor files the
configuration does not name.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from jsonschema_path import SchemaPath
from openapi_spec_validator.shortcuts import get_validator_cls
from openapi_spec_validator.validation.exceptions import ValidatorDetectError
from referencing import Registry, Resource
from referencing.exceptions import Unresolvable

from scopegate.config.errors import ConfigError, ConfigErrors, Path, at_path, quoted
from scopegate.config.model import Source
from scopegate.config.yaml_nodes import Document, read_document

# Published descriptions reach several MiB; a configuration file's limits would refuse them.
MAX_DOCUMENT_BYTES = 32 << 20
MAX_DOCUMENT_VALUES = 2_000_000
MAX_VALIDATION_ERRORS = 20  # a document that is wrong everywhere is said so in a screenful
_SUPPORTED = ("3.0.", "3.1.")
_URI = "urn:scopegate:openapi-document"


@dataclass(frozen=True)
class OpenAPIDocument:
    """A valid description: its data, where each value was written, and its references."""

    document: Document
    _registry: Registry[Any]

    @property
    def data(self) -> dict[str, Any]:
        data: dict[str, Any] = self.document.data
        return data

    def source(self, path: Path) -> Source:
        return self.document.source(path)

    def resolve(self, path: Path) -> tuple[Any, Path]:
        """The value at `path`, a `$ref` there followed (a chain too), and the path it was
        found at; validation has already proved every reference resolvable."""
        value, seen = self.document.get(path), {path}
        while isinstance(value, dict) and isinstance(value.get("$ref"), str):
            path = _pointer_path(value["$ref"])
            if path in seen:
                raise ConfigErrors([ConfigError(self.source(path), "a $ref refers to itself")])
            seen.add(path)
            value = self._registry.resolver(_URI).lookup(value["$ref"]).contents
        return value, path


def read_openapi(file: str) -> OpenAPIDocument:
    """The valid description in `file`; `ConfigErrors`, positioned in it, otherwise."""
    text = _read_text(file)
    document, errors = read_document(text, file, None, max_nodes=MAX_DOCUMENT_VALUES)
    if errors:
        raise ConfigErrors(errors)
    start = Source(file, 1, 1)
    version = document.data.get("openapi") if isinstance(document.data, dict) else None
    if not isinstance(version, str) or not version.startswith(_SUPPORTED):
        raise ConfigErrors([ConfigError(start, _not_openapi(document.data))])
    registry: Registry[Any] = Registry().with_resource(_URI, Resource.opaque(document.data))
    errors = list(_reference_errors(document, registry))
    errors = errors or _validation_errors(document)
    if errors:
        raise ConfigErrors(errors)
    return OpenAPIDocument(document, registry)


def _read_text(file: str) -> str:
    start = Source(file, 1, 1)
    try:
        with open(file, "rb") as handle:
            raw = handle.read(MAX_DOCUMENT_BYTES + 1)
    except OSError as error:
        raise ConfigErrors([ConfigError(start, f"cannot read: {error.strerror}")]) from None
    if len(raw) > MAX_DOCUMENT_BYTES:
        message = f"larger than {MAX_DOCUMENT_BYTES} bytes: refused"
        raise ConfigErrors([ConfigError(start, message)])
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        message = f"not UTF-8 text: {error.reason} at byte {error.start}"
        raise ConfigErrors([ConfigError(start, message)]) from None


def _not_openapi(data: object) -> str:
    if isinstance(data, dict) and "swagger" in data:
        return "a Swagger 2.0 document: convert it to OpenAPI 3 first"
    if isinstance(data, dict) and "openapi" in data:
        return f"OpenAPI {quoted(str(data['openapi']))} is not supported: 3.0.x or 3.1.x only"
    return "not an OpenAPI document: it has no openapi: 3.0.x or 3.1.x field"


def _pointer_path(reference: str) -> Path:
    """`#/components/x~1y/0` → `("components", "x/y", "0")`: the place a local `$ref` names."""
    parts = reference.removeprefix("#").split("/")[1:]
    return tuple(part.replace("~1", "/").replace("~0", "~") for part in parts)


def _references(value: Any, path: Path) -> Iterator[tuple[str, Path]]:
    if isinstance(value, dict):
        reference = value.get("$ref")
        if isinstance(reference, str):
            yield reference, (*path, "$ref")
        for key, item in value.items():
            yield from _references(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _references(item, (*path, index))


def _reference_errors(document: Document, registry: Registry[Any]) -> Iterator[ConfigError]:
    """Each `$ref` that leaves the document or points to nothing, at the `$ref` itself."""
    resolver = registry.resolver(_URI)
    for reference, path in _references(document.data, ()):
        if not reference.startswith("#"):
            message = f"$ref {quoted(reference)}: only references within the document are read"
            yield ConfigError(document.source(path), at_path(path[:-1], message))
            continue
        try:
            resolver.lookup(reference)
        except Unresolvable:
            message = f"$ref {quoted(reference)} points to nothing in this document"
            yield ConfigError(document.source(path), at_path(path[:-1], message))


def _validation_errors(document: Document) -> list[ConfigError]:
    """What openapi-spec-validator finds, each at the value it is about."""
    errors: list[ConfigError] = []
    try:
        validator = get_validator_cls(document.data)(SchemaPath.from_dict(document.data))
        for error in validator.iter_errors():
            path: Path = tuple(getattr(error, "path", ()))
            message = str(getattr(error, "message", error)).splitlines()[0]
            errors.append(ConfigError(document.source(path), at_path(path, message)))
            if len(errors) == MAX_VALIDATION_ERRORS:
                break
    except ValidatorDetectError:
        errors.append(ConfigError(Source(document.file, 1, 1), _not_openapi(document.data)))
    except Exception as error:  # the validator gives up on some documents it found wrong
        if not errors:
            message = f"not a valid OpenAPI document: {type(error).__name__}: {error}"
            errors.append(ConfigError(Source(document.file, 1, 1), message[:300]))
    return errors
