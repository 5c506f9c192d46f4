"""Property tests of the configuration loader: whatever the text, the answer is a `Config` or
`ConfigErrors` whose every line points into that text, never another exception. The inputs are
YAML-ish token soup (anchors, tags, flow brackets, `${...}`, YAML 1.1 look-alikes) and random
edits of the shipped example, which reach deep into the build step."""

from __future__ import annotations

import json
import re
from importlib.resources import files
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from scopegate.config.errors import ConfigErrors
from scopegate.config.load import _validator, load_config_text
from scopegate.config.yaml_nodes import expand, read_document

EXAMPLE = (Path(__file__).parents[2] / "config" / "scopegate.example.yaml").read_text()
LINES = EXAMPLE.splitlines(keepends=True)
ENV = {"CONTACTS_UPSTREAM": "http://127.0.0.1:8001", "N": "5", "EMPTY": ""}

FRAGMENTS = [
    "issuers:", "upstreams:", "routes:", "scopes:", "forward:", "jwks:", "limits:", "listen:",
    "issuer:", "audiences:", "algorithms:", "path:", "methods:", "upstream:", "auth:", "url:",
    "claims_to_headers:", "any:", "name:", "strip_prefix:", "max_body_bytes:", "leeway:",
    "- ", "  ", "\n", "\t", ": ", ", ", "[", "]", "{", "}", "? ", "---", "...", "|", ">", "#",
    "'", '"', "&a ", "*a", "&b ", "*b", "<<: ", "!!str ", "!!int ", "!!set ", "!!binary ",
    "!!python/object:os.system ", "!tag ", "%YAML 1.1\n", "${N}", "${UNSET}", "${N:-7}",
    "${EMPTY:-x}", "${", "$$", "$", "~", "null", "yes", "no", "on", "true", ".nan", ".inf",
    "-1", "0", "1e3", "1.5", "0x1F", "0o17", "1_000", "2001-02-30", "12:30:00", "9" * 30,
    "http://127.0.0.1:8001", "https://id.example.com/", "[::1]:80", "/x/{id}", "/{rest*}",
    "GET", "get", "RS256", "HS256", "none", "read:contacts", "a b", "é", "\u2028", "\x00",
    "\ufeff", "\x85", "\\", "%",
]  # fmt: skip

yaml_ish = st.lists(st.sampled_from(FRAGMENTS) | st.text(max_size=4), max_size=40).map("".join)


def assert_config_or_positioned_errors(text: str) -> None:
    try:
        load_config_text(text, "f.yaml", ENV)
    except ConfigErrors as raised:
        errors = raised.errors
        assert errors, "ConfigErrors without a single error"
        # YAML breaks lines at \r too, and PyYAML may point just past the end.
        last_line = len(re.split("\r\n|[\r\n\x85\u2028\u2029]", text)) + 1
        for error in errors:
            assert error.source.file == "f.yaml" and str(error).startswith("f.yaml:")
            assert 1 <= error.source.line <= last_line and error.source.col >= 1, str(error)
            assert error.message and "\n" not in error.message, str(error)
        positions = [(error.source.line, error.source.col) for error in errors]
        assert positions == sorted(positions)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=200) | yaml_ish)
def test_any_text_gives_a_config_or_positioned_errors(text: str) -> None:
    assert_config_or_positioned_errors(text)


@st.composite
def edited_example(draw: st.DrawFn) -> str:
    """The example with a few random edits: lines dropped, repeated, re-indented, values
    replaced by fragments, text inserted."""
    lines = list(LINES)
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(lines) - 1))
        edit = draw(st.sampled_from(["drop", "repeat", "indent", "dedent", "value", "insert"]))
        line = lines[at]
        if edit == "drop":
            del lines[at]
        elif edit == "repeat":
            lines.insert(at, line)
        elif edit == "indent":
            lines[at] = "  " + line
        elif edit == "dedent":
            lines[at] = line[2:] if line.startswith("  ") else line
        elif edit == "value" and ": " in line:
            key = line.split(": ", 1)[0]
            lines[at] = f"{key}: {draw(st.sampled_from(FRAGMENTS))}\n"
        else:
            col = draw(st.integers(0, len(line)))
            lines[at] = line[:col] + draw(yaml_ish) + line[col:]
        if not lines:
            break
    return "".join(lines)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(edited_example())
def test_edits_of_a_valid_file_give_a_config_or_positioned_errors(text: str) -> None:
    assert_config_or_positioned_errors(text)


def test_the_unedited_example_is_valid_for_the_edits_to_start_from() -> None:
    assert len(load_config_text(EXAMPLE, "f.yaml", ENV).routes) == 7


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=60))
def test_doubling_every_dollar_gives_the_text_back(text: str) -> None:
    """`$$` is the escape for `$`: any text, escaped, expands to itself and nothing is read
    from the environment."""
    assert expand(text.replace("$", "$$"), {"A": "x"}) == (text, [])


@settings(max_examples=200, deadline=None)
@given(
    st.text(max_size=30).filter(lambda s: "$" not in s),
    st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,8}", fullmatch=True),
    st.text(max_size=20),
)
def test_a_reference_is_replaced_by_its_value_and_nothing_else(
    around: str, name: str, value: str
) -> None:
    """The value is inserted as it is: not expanded again, whatever `$` it holds."""
    assert expand(f"{around}${{{name}}}{around}", {name: value}) == (f"{around}{value}{around}", [])


def _errors(validator: Draft202012Validator, document: Any) -> list[tuple[str, ...]]:
    return sorted(
        (*map(str, error.absolute_path), str(error.validator), error.message)
        for error in validator.iter_errors(document)
    )


_WRITTEN = Draft202012Validator(json.loads((files("scopegate.config") / "schema.json").read_text()))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(edited_example())
def test_the_schema_with_references_inlined_finds_what_the_schema_as_written_finds(
    text: str,
) -> None:
    """The loader validates against the schema with its references inlined (for speed): the
    errors, where they point, and the keyword each comes from are those of the file as written."""
    document = read_document(text, "f.yaml", ENV)[0].data
    assert _errors(_validator(), document) == _errors(_WRITTEN, document)


def test_references_beside_other_keywords_keep_both() -> None:
    """A reference with its own bounds (`minimum`, `minItems`) is checked against both."""
    document = {
        "limits": {"max_body_bytes": -1, "token_cache_size": "x", "max_connections": 0},
        "jwks": {"max_response_bytes": 0},
        "issuers": [{"issuer": 5, "audiences": [], "algorithms": []}],
        "upstreams": {"a": {"url": 7}},
        "routes": [{"path": 1, "upstream": "a", "scopes": {"any": [1]}}, {"path": "/x"}],
    }
    found = _errors(_validator(), document)
    assert found == _errors(_WRITTEN, document)
    assert {error[-2] for error in found} >= {"minimum", "minItems", "type", "required"}
