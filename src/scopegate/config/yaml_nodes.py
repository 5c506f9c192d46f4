"""YAML → plain data, keeping where every key and value was written, with `${NAME}` expanded.

PyYAML composes nodes that carry their marks; this module walks them once, building plain
values and an index from each value's path (`("routes", 0, "path")`) to its `Source`, so that
every later error can say `FILE:LINE:COL`. It refuses what PyYAML would silently accept or
choke on: duplicate keys (PyYAML keeps the last: a typo'd duplicate could weaken a rule), merge
keys (made to override silently), custom tags, NaN and infinities, nesting past `MAX_DEPTH`,
self-referencing aliases, alias expansion past `MAX_NODES` (billion laughs). Keys are read as
written: `on:` is the key "on", not the YAML 1.1 boolean True.

Interpolation: `${NAME}` and `${NAME:-default}` in string values come from the environment (the
default also replaces a set but empty variable, as in sh); `$$` is a literal `$`; any other `${`
is an error. The result stays a string, never re-read as YAML: a variable cannot make a value a
number, a boolean or null, nor inject structure. Keys are not interpolated.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from scopegate.config.errors import ConfigError, ConfigErrors, Path, at_path, quoted
from scopegate.config.model import Source

MAX_NODES = 100_000
MAX_DEPTH = 64
_REFERENCE = re.compile(
    r"\$(?:(?P<dollar>\$)|\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\}|(?P<bad>\{))"
)
_COLLECTION_TAGS = ("tag:yaml.org,2002:map", "tag:yaml.org,2002:seq")
_MERGE_TAG = "tag:yaml.org,2002:merge"


@dataclass
class Document:
    """The plain data of a file, and where each piece of it was written."""

    data: Any
    file: str
    values: dict[Path, Source] = field(default_factory=dict)
    keys: dict[Path, Source] = field(default_factory=dict)  # path of a mapping entry -> its key
    reported: set[Path] = field(default_factory=set)  # values found wrong and already reported
    interpolated: set[Path] = field(default_factory=set)  # values that contained ${...}
    _tainted: set[Path] = field(default_factory=set)  # reported paths and all their ancestors

    def source(self, path: Path, *, key: bool = False) -> Source:
        """The position of `path` (its key with `key=True`), else of its nearest ancestor."""
        index = self.keys if key else self.values
        while path:
            if path in index:
                return index[path]
            index, path = self.values, path[:-1]
        return self.values.get((), Source(self.file, 1, 1))

    def get(self, path: Path) -> Any:
        """The value at `path`, or None where the document has nothing there."""
        value = self.data
        for part in path:
            if isinstance(value, dict):
                value = value.get(part)  # a missing key: None, and None has no children
            elif isinstance(value, list) and isinstance(part, int) and 0 <= part < len(value):
                value = value[part]
            else:
                return None
        return value

    def report(self, path: Path) -> None:
        """Mark the value at `path` as wrong and reported: later steps neither use nor judge it."""
        self.reported.add(path)
        self._tainted.update(path[:end] for end in range(len(path) + 1))

    def clean(self, path: Path) -> bool:
        """True when nothing at, under or above `path` was reported: it can be built from."""
        above = any(path[:end] in self.reported for end in range(len(path)))
        return path not in self._tainted and not above

    def trusted(self, path: Path) -> dict[str, Any]:
        """The entries of the mapping at `path` (if any) that nothing was reported about."""
        value = self.get(path)
        entries = value.items() if isinstance(value, dict) else ()
        return {key: item for key, item in entries if self.clean((*path, key))}


def expand(text: str, env: Mapping[str, str]) -> tuple[str, list[str]]:
    """`text` with its environment references replaced, and a message for each bad one."""
    problems: list[str] = []

    def substitute(match: re.Match[str]) -> str:
        name, default = match["name"], match["default"]
        if match["dollar"]:
            return "$"
        if match["bad"] or (default is not None and "${" in default):
            problems.append('"${" must start ${NAME} or ${NAME:-default} (they do not nest); '
                            "write $$ for a literal $")  # fmt: skip
            return ""
        value = env.get(name)
        if default is not None and not value:
            return default
        if value is None:
            problems.append(f"environment variable {name} is not set "
                            f"(write ${{{name}:-default}} to give a default)")  # fmt: skip
            return ""
        return value

    return _REFERENCE.sub(substitute, text), problems


class _Loader(yaml.SafeLoader):
    """The safe loader, refusing nesting deep enough to exhaust the composer's recursion."""

    depth = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
                message = f"nested more than {MAX_DEPTH} levels deep"
                raise yaml.composer.ComposerError(None, None, message, mark)
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


_FastLoader: type[yaml.SafeLoader] | None = getattr(yaml, "CSafeLoader", None)
_OPENING = (yaml.MappingStartEvent, yaml.SequenceStartEvent)
_CLOSING = (yaml.MappingEndEvent, yaml.SequenceEndEvent)


def _compose_fast(text: str) -> tuple[yaml.SafeLoader, yaml.Node | None] | None:
    """The node tree by libyaml, which reads in C and leaves far less garbage behind than
    PyYAML's own reader: reading is what a large file's load time is mostly made of. Only for a
    text libyaml reads without complaint and nested within `MAX_DEPTH` (checked on the event
    stream first, which is not recursive); anything else (None) goes through the pure-Python
    loader, whose errors are the ones worded for the user."""
    if _FastLoader is None:
        return None
    try:
        depth = 0
        for event in yaml.parse(text, Loader=_FastLoader):
            if isinstance(event, _OPENING):
                depth += 1
                if depth > MAX_DEPTH:
                    return None
            elif isinstance(event, _CLOSING):
                depth -= 1
        loader = _FastLoader(text)
        return loader, loader.get_single_node()
    except yaml.YAMLError:
        return None


class _Walker:
    def __init__(
        self, loader: yaml.SafeLoader, file: str, env: Mapping[str, str] | None, max_nodes: int
    ) -> None:
        self.loader, self.file, self.env, self.visited = loader, file, env, 0
        self.max_nodes = max_nodes
        self.document = Document(None, file)
        self.errors: list[ConfigError] = []
        self.open: set[int] = set()  # ids of the collections being walked, to catch cycles

    def at(self, node: yaml.Node) -> Source:
        return Source(self.file, node.start_mark.line + 1, node.start_mark.column + 1)

    def fail(self, node: yaml.Node, path: Path, message: str) -> None:
        self.errors.append(ConfigError(self.at(node), at_path(path, message)))

    def walk(self, node: yaml.Node, path: Path) -> Any:
        self.visited += 1
        if self.visited > self.max_nodes:
            message = f"the document expands to more than {self.max_nodes} values (alias bomb?)"
            top = self.document.values.get(path[:1], self.at(node))  # the section that explodes
            raise ConfigErrors([ConfigError(top, message)])  # the whole document is refused
        self.document.values[path] = self.at(node)
        if isinstance(node, yaml.ScalarNode):
            return self.scalar(node, path)
        if id(node) in self.open:
            message = "an alias refers to a value containing it"
            raise ConfigErrors([ConfigError(self.at(node), message)])
        if node.tag not in _COLLECTION_TAGS:
            self.fail(node, path, f"unsupported tag {node.tag.replace('tag:yaml.org,2002:', '!!')}")
            self.document.report(path)
            return None
        self.open.add(id(node))
        try:
            if isinstance(node, yaml.MappingNode):
                return self.mapping(node, path)
            return [self.walk(item, (*path, i)) for i, item in enumerate(node.value)]
        finally:
            self.open.discard(id(node))

    def mapping(self, node: yaml.MappingNode, path: Path) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == _MERGE_TAG:
                what = "merge keys (<<)" if key_node.tag == _MERGE_TAG else "a key that is not text"
                self.fail(key_node, path, f"{what} cannot be used here: write the keys out")
                self.document.report(path)  # the mapping lacks what that key meant to hold
                continue
            name, key_path = key_node.value, (*path, key_node.value)
            if name in result:
                first = self.document.keys[key_path]
                self.fail(key_node, path, f"duplicate key {quoted(name)} (first at {first})")
                continue
            self.document.keys[key_path] = self.at(key_node)
            result[name] = self.walk(value_node, key_path)
        return result

    def scalar(self, node: yaml.ScalarNode, path: Path) -> Any:
        try:
            value = self.loader.construct_object(node)
        except Exception as error:  # PyYAML's constructors raise whatever their parsing does
            self.fail(node, path, _unreadable(node, error))
            self.document.report(path)
            return None
        if isinstance(value, float) and not math.isfinite(value):
            self.fail(node, path, f"{node.value} is not a finite number")  # a float literal
            self.document.report(path)
        if not isinstance(value, str) or "$" not in value or self.env is None:
            return value
        expanded, problems = expand(value, self.env)
        self.document.interpolated.add(path)
        for problem in problems:
            self.fail(node, path, problem)
            self.document.report(path)
        return expanded


def _unreadable(node: yaml.ScalarNode, error: Exception) -> str:
    """Why a scalar has no value: an unknown tag, `!!int` on text, a date like 2001-02-30."""
    if isinstance(error, yaml.MarkedYAMLError):
        return str(error.problem)
    reason = str(error).split(":")[0] if isinstance(error, ValueError | OverflowError) else ""
    tag = node.tag.replace("tag:yaml.org,2002:", "!!")
    return f"cannot read {quoted(node.value)} as {tag}" + (f": {reason}" if reason else "")


def _yaml_error(error: yaml.YAMLError, text: str, file: str) -> ConfigError:
    """A PyYAML error, positioned: a refused character, a syntax error, nesting too deep."""
    if isinstance(error, yaml.reader.ReaderError):
        at = error.position
        code = error.character if isinstance(error.character, int) else ord(error.character)
        where = Source(file, text.count("\n", 0, at) + 1, at - text.rfind("\n", 0, at))
        return ConfigError(where, f"YAML does not allow the non-printable character U+{code:04X}")
    if not isinstance(error, yaml.MarkedYAMLError):
        return ConfigError(Source(file, 1, 1), f"not readable as YAML: {error}")
    mark, context = error.problem_mark or error.context_mark, error.context_mark
    line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
    message = f"YAML syntax error: {error.problem or error.context or 'unreadable'}"
    if error.problem and error.context and context and context.line + 1 != line:
        message = f"YAML syntax error: {error.context} (line {context.line + 1}), {error.problem}"
    return ConfigError(Source(file, line, col), message)


def read_document(
    text: str, file: str, env: Mapping[str, str] | None, *, max_nodes: int = MAX_NODES
) -> tuple[Document, list[ConfigError]]:
    """Plain data with positions, and every error met on the way (YAML syntax included);
    `data` is None when the text holds no YAML document. `env=None` leaves `${...}` as written:
    for documents that are not configuration files (an OpenAPI description's text is its own)."""
    loader: yaml.SafeLoader | None = None
    try:
        fast = _compose_fast(text)
        if fast is not None:
            loader, root = fast
        else:
            loader = _Loader(text)  # the reader checks every character first
            root = loader.get_single_node()
        walker = _Walker(loader, file, env, max_nodes)
        if root is None:
            return walker.document, [ConfigError(Source(file, 1, 1), "the file is empty")]
        walker.document.data = walker.walk(root, ())
    except yaml.YAMLError as error:  # also tags the safe loader refuses on collections
        return Document(None, file), [_yaml_error(error, text, file)]
    except ConfigErrors as refused:
        return Document(None, file), refused.errors
    finally:
        if loader is not None:
            loader.dispose()
    return walker.document, walker.errors
