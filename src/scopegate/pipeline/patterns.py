"""Route path patterns (SPEC §2, `routes[].path`), the syntax half of step 2 of SPEC §3.

A pattern is `/`-separated segments: a literal, `{name}` (one whole, non-empty segment),
literal text around one `{name}` (`thumbnail.{extension}`: that text around a non-empty value,
as OpenAPI path templates write it) or `{name*}` (the rest of the path, zero or more segments;
last only). `routing` builds its table
from the parsed segments; this module also says when a literal can never be met, because
requests are matched in their normalised form (`target.normalise_path`).

Usage::

    segments = parse_pattern("/contacts/{id}")      # PatternError if invalid
    why = unreachable(route.methods, segments)      # None, or why no request can reach it
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum

from scopegate.errors import ScopegateError
from scopegate.pipeline.target import normalise_path
from scopegate.reasons import Denied

# A pattern deeper than this is refused: matching recurses once per segment.
MAX_SEGMENTS = 64
_PARAM = re.compile(r"\{([^{}]*)\}")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class Kind(IntEnum):
    """What a pattern segment is; the value is its precedence (lower is more specific)."""

    LITERAL = 0
    MIXED = 1  # text around a parameter: fewer segments match it than a bare {param}
    PARAM = 2
    REST = 3


@dataclass(frozen=True, slots=True)
class Segment:
    kind: Kind
    text: str  # the literal, or the parameter's name
    prefix: str = ""  # MIXED only: the text before the parameter
    suffix: str = ""  # MIXED only: the text after it

    @property
    def literal(self) -> str:
        """The text a request must have here; "" for a parameter, whatever its name, and the
        text around `{}` for a mixed segment."""
        if self.kind is Kind.MIXED:
            return f"{self.prefix}{{}}{self.suffix}"
        return self.text if self.kind is Kind.LITERAL else ""


Shape = tuple[tuple[Kind, str], ...]


def shape(segments: Sequence[Segment]) -> Shape:
    """What two patterns share exactly when they match the same paths: names do not count.

    Shapes also sort most specific first, segment by segment: literal, then mixed, then param,
    then rest; two mixed segments by their text.
    """
    return tuple((segment.kind, segment.literal) for segment in segments)


class PatternError(ScopegateError):
    """A route path that is not a valid pattern; the message says why."""


def parse_pattern(pattern: str) -> tuple[Segment, ...]:
    """A route path as segments; raises `PatternError`.

    >>> [(s.kind.name, s.text) for s in parse_pattern("/a/{id}/t.{ext}/{rest*}")]
    [('LITERAL', 'a'), ('PARAM', 'id'), ('MIXED', 'ext'), ('REST', 'rest')]
    """
    if not pattern:
        raise PatternError("the path is empty")
    if not pattern.startswith("/"):
        raise PatternError("a route path must start with /")
    parts = pattern.split("/")[1:]
    if len(parts) > MAX_SEGMENTS:
        raise PatternError(f"it has more than {MAX_SEGMENTS} segments")
    segments = tuple(_segment(part) for part in parts)
    _check_params(segments)
    return segments


def _segment(part: str) -> Segment:
    if "{" not in part and "}" not in part:
        return Segment(Kind.LITERAL, part)
    match = _PARAM.search(part)
    if match is None or part.count("{") != 1 or part.count("}") != 1:
        if part.count("{") != part.count("}") or match is None:
            raise PatternError(f'segment "{part}" has unbalanced braces')
        raise PatternError(f'segment "{part}": a segment holds one parameter at most')
    name = match.group(1)
    prefix, suffix = part[: match.start()], part[match.end() :]
    kind = Kind.REST if name.endswith("*") else Kind.PARAM
    name = name.removesuffix("*")
    if not _NAME.fullmatch(name):
        raise PatternError(f'segment "{part}": "{name}" is not a name (letters, digits, _)')
    if not (prefix or suffix):
        return Segment(kind, name)
    if kind is Kind.REST:
        raise PatternError(f'segment "{part}": {{{name}*}} must be a whole segment')
    return Segment(Kind.MIXED, name, prefix, suffix)


def _check_params(segments: tuple[Segment, ...]) -> None:
    for segment in segments[:-1]:
        if segment.kind is Kind.REST:
            raise PatternError(f"{{{segment.text}*}} must be the last segment")
    names = Counter(s.text for s in segments if s.kind is not Kind.LITERAL)  # MIXED too
    twice = sorted(name for name, count in names.items() if count > 1)
    if twice:
        raise PatternError(f'parameter "{twice[0]}" appears twice')


def unreachable(methods: frozenset[str] | None, segments: Sequence[Segment]) -> str | None:
    """Why no request can ever reach a route with these methods and segments, if that is so.

    Literals are compared with normalised paths, so one that `target.normalise_path` would
    change or refuse is never met.
    """
    if methods is not None and not methods:
        return "it allows no method"
    last = len(segments) - 1
    for index, segment in enumerate(segments):
        if segment.kind is Kind.LITERAL:
            why = _never_seen(segment.text, index == last)
        elif segment.kind is Kind.MIXED:  # its text, around a plain value, must survive
            why = _never_seen(f"{segment.prefix}x{segment.suffix}", False)
        else:
            continue
        if why is not None:
            return why
    return None


def _never_seen(text: str, last: bool) -> str | None:
    if not text and not last:
        return "its path has an empty segment (//), and runs of / are merged in requests"
    if "?" in text:
        return f'segment "{text}" contains "?", which starts the query of a request'
    try:
        normal = normalise_path("/" + text)
    except Denied as denied:
        return f'segment "{text}" is always refused ({denied.detail})'
    if normal != "/" + text:
        return f'segment "{text}" never appears in a normalised path ("/{text}" becomes "{normal}")'
    return None
