"""Reading the repository's Dockerfile and .dockerignore the way Docker does, for the tests.

`instructions` joins continuation lines, drops comments and names each instruction's build
stage; `exec_form` reads a JSON-array argument; `ignored` applies .dockerignore's rules (Go
`filepath.Match` patterns plus `**`, a pattern also covering everything under a matched
directory, the last matching rule winning, `!` re-including).
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).parents[2]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"


@dataclass(frozen=True)
class Instruction:
    keyword: str  # upper case: FROM, RUN, ...
    arguments: str
    stage: int  # 0 for the first FROM's stage


def instructions(text: str | None = None) -> list[Instruction]:
    source = DOCKERFILE.read_text() if text is None else text
    found: list[Instruction] = []
    stage = -1
    pending = ""
    for raw in source.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue  # comment lines inside a continued instruction are dropped
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        whole = pending + line
        pending = ""
        keyword, _, arguments = whole.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            stage += 1
        found.append(Instruction(keyword, " ".join(arguments.split()), stage))
    return found


def stages(found: list[Instruction]) -> list[list[Instruction]]:
    count = max(i.stage for i in found) + 1
    return [[i for i in found if i.stage == n] for n in range(count)]


def exec_form(arguments: str) -> list[str] | None:
    """The argument list of an exec-form instruction, or None for the shell form."""
    if not arguments.startswith("["):
        return None
    parsed = json.loads(arguments)
    assert isinstance(parsed, list) and all(isinstance(a, str) for a in parsed), arguments
    return parsed


def env(found: list[Instruction]) -> dict[str, str]:
    """ENV settings in order, later ones winning (`KEY=value` pairs or `KEY value`)."""
    values: dict[str, str] = {}
    for instruction in found:
        if instruction.keyword != "ENV":
            continue
        words = shlex.split(instruction.arguments)
        if "=" not in words[0]:
            values[words[0]] = " ".join(words[1:])
            continue
        for word in words:
            key, _, value = word.partition("=")
            values[key] = value
    return values


def _pattern(rule: str) -> re.Pattern[str]:
    rule = rule.strip().strip("/")
    regex = ""
    index = 0
    while index < len(rule):
        char = rule[index]
        if rule.startswith("**", index):
            regex += ".*"
            index += 2
            if rule.startswith("/", index):
                regex += "/?"  # `**/x` also matches `x` at the top
                index += 1
            continue
        if char == "*":
            regex += "[^/]*"
        elif char == "?":
            regex += "[^/]"
        elif char == "[":
            end = rule.index("]", index)
            regex += rule[index : end + 1]
            index = end
        else:
            regex += re.escape(char)
        index += 1
    return re.compile(regex)


def ignored(path: str, rules: list[str] | None = None) -> bool:
    """Whether .dockerignore keeps `path` (relative, with `/`) out of the build context."""
    if rules is None:
        lines = DOCKERIGNORE.read_text().splitlines()
        rules = [r.strip() for r in lines if r.strip() and not r.strip().startswith("#")]
    parts = path.strip("/").split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    result = False
    for rule in rules:
        negated = rule.startswith("!")
        pattern = _pattern(rule[1:] if negated else rule)
        if any(pattern.fullmatch(prefix) for prefix in prefixes):
            result = not negated
    return result
