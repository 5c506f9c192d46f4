"""YAML → plain data, keeping where every value and key was written, with `${NAME}` expanded.

PyYAML composes the document into nodes that carry their marks; this module walks them once,
building plain Python values plus an index from each value's path (`("routes", 0, "path")`) to
its `Source`, so that every later error can say `FILE:LINE:COL`. Along the way it refuses what
PyYAML would silently accept: duplicate keys (the last would win, and a typo'd duplicate could
weaken a rule) and alias expansion past a size limit (billion laughs).

Interpolation: `${NAME}` and `${NAME:-default}` in string scalars come from the environment; `$$`
is a literal `$`. A plain (unquoted) scalar is typed after expansion as if the value had been
written there, so `port: ${PORT:-8080}` is a number; a quoted one stays a string.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from scopegate.config.errors import ConfigError
from scopegate.config.model import Source

Path = tuple[str | int, ...]
MAX_NODES = 100_000
_VARIABLE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_STR_TAG = "tag:yaml.org,2002:str"


@dataclass
class Document:
    """The plain data of a file, and where each piece of it was written."""

    data: Any
    file: str
    values: dict[Path, Source] = field(default_factory=dict)
    keys: dict[Path, Source] = field(default_factory=dict)  # path of a mapping entry -> its key
    unresolved: set[Path] = field(default_factory=set)  # values whose ${NAME} had no value

    def source(self, path: Path, *, key: bool = False) -> Source:
        """The position of `path` (its key with `key=True`), else of its nearest ancestor."""
        index = self.keys if key else self.values
        while path:
            if path in index:
                return index[path]
            index, path = self.values, path[:-1]
        return self.values.get((), Source(self.file, 1, 1))


class _Walker:
    def __init__(self, file: str, env: Mapping[str, str]) -> None:
        self.file = file
        self.env = env
        self.errors: list[ConfigError] = []
        self.document = Document(None, file)
        self.loader = yaml.SafeLoader("")
        self.visited = 0

    def at(self, node: yaml.Node) -> Source:
        return Source(self.file, node.start_mark.line + 1, node.start_mark.column + 1)

    def walk(self, node: yaml.Node, path: Path) -> Any:
        self.visited += 1
        if self.visited > MAX_NODES:
            raise _TooLarge
        self.document.values[path] = self.at(node)
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path)
        if isinstance(node, yaml.SequenceNode):
            return [self.walk(item, (*path, i)) for i, item in enumerate(node.value)]
        return self._scalar(node, path)

    def _mapping(self, node: yaml.MappingNode, path: Path) -> dict[Any, Any]:
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = self.loader.construct_object(key_node)
            if not isinstance(key, str | int | float | bool) and key is not None:
                self.errors.append(ConfigError(self.at(key_node), "mapping keys must be scalars"))
                continue
            name = str(key) if not isinstance(key, str) else key
            if name in result:
                first = self.document.keys[(*path, name)]
                self.errors.append(
                    ConfigError(self.at(key_node), f'duplicate key "{name}" (first at {first})')
                )
                continue
            self.document.keys[(*path, name)] = self.at(key_node)
            result[name] = self.walk(value_node, (*path, name))
        return result

    def _scalar(self, node: yaml.Node, path: Path) -> Any:
        value = self.loader.construct_object(node)
        if not isinstance(value, str) or "$" not in value:
            return value
        before = len(self.errors)
        expanded = self._expand(value, node)
        if len(self.errors) != before:
            self.document.unresolved.add(path)  # already reported: no second error about it
            return expanded
        if node.tag == _STR_TAG and getattr(node, "style", None) is None:
            tag = self.loader.resolve(yaml.ScalarNode, expanded, (True, False))  # type: ignore[no-untyped-call]
            return self.loader.construct_object(yaml.ScalarNode(tag, expanded))
        return expanded

    def _expand(self, value: str, node: yaml.Node) -> str:
        def substitute(match: re.Match[str]) -> str:
            if match.group(0) == "$$":
                return "$"
            name, default = match.group(1), match.group(2)
            if name in self.env and (self.env[name] or default is None):
                return self.env[name]
            if default is not None:
                return default
            self.errors.append(
                ConfigError(self.at(node), f"environment variable {name} is not set (write "
                            f"${{{name}:-default}} to give a default)")
            )  # fmt: skip
            return ""

        return _VARIABLE.sub(substitute, value)


class _TooLarge(Exception):
    pass


def _syntax_error(error: yaml.MarkedYAMLError, file: str) -> ConfigError:
    mark = error.problem_mark or error.context_mark
    line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
    problem = error.problem or error.context or "invalid YAML"
    return ConfigError(Source(file, line, col), f"YAML: {problem}")


def read_document(
    text: str, file: str, env: Mapping[str, str]
) -> tuple[Document, list[ConfigError]]:
    """Plain data with positions, and every error met on the way (YAML syntax included)."""
    walker = _Walker(file, env)
    try:
        loader = yaml.SafeLoader(text)  # reading starts here: it may refuse the characters
    except yaml.YAMLError as error:
        return walker.document, [ConfigError(Source(file, 1, 1), f"YAML: {error}")]
    try:
        root = loader.get_single_node()
        if root is None:
            return walker.document, [ConfigError(Source(file, 1, 1), "the file is empty")]
        # Constructing scalars can fail too: unknown tags such as !!python/object or `=`.
        walker.document.data = walker.walk(root, ())
    except yaml.MarkedYAMLError as error:
        return walker.document, [_syntax_error(error, file)]
    except yaml.YAMLError as error:
        return walker.document, [ConfigError(Source(file, 1, 1), f"YAML: {error}")]
    except _TooLarge:
        message = f"the document expands to more than {MAX_NODES} nodes"
        return walker.document, [ConfigError(Source(file, 1, 1), message)]
    finally:
        loader.dispose()
    return walker.document, walker.errors
