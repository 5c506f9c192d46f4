"""Request-target parsing and path normalisation (SPEC §3.1); end-to-end counterpart:
tests/e2e/test_deny.py and test_allow.py."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings

from scopegate.pipeline.target import Target, parse_target
from scopegate.reasons import Denied, Reason
from tests.unit.strategies import anything, raw_paths

NORMALISED = [
    pytest.param("/", "/", id="root"),
    pytest.param("/a/./b", "/a/b", id="dot segment removed"),
    pytest.param("/a/b/../c", "/a/c", id="dot-dot removes one segment"),
    pytest.param("/../../a", "/a", id="dot-dot above the root stays at the root"),
    pytest.param("/a//b///c", "/a/b/c", id="runs of slashes merged"),
    pytest.param("/a/b/..", "/a/", id="trailing dot-dot keeps a directory"),
    pytest.param("/a/.", "/a/", id="trailing dot keeps a directory"),
    pytest.param("/%7Euser/%41%62", "/~user/Ab", id="unreserved escapes decoded"),
    pytest.param("/a%2e%2E/b", "/a../b", id="escaped dots inside a segment are just dots"),
    pytest.param("/%2e%2e/contacts", "/contacts", id="escaped dot-dot is a dot segment"),
    pytest.param("/a/%2E/b", "/a/b", id="escaped dot is a dot segment"),
    pytest.param("/a%2ab", "/a%2Ab", id="reserved escapes kept, hex upper-cased"),
    pytest.param("/a%20b", "/a%20b", id="space stays encoded"),
    pytest.param("/a;b=c/d", "/a;b=c/d", id="parameters on ordinary segments kept"),
]

REFUSED = [
    pytest.param("/a%2Fb", id="encoded slash"),
    pytest.param("/a%2fb", id="encoded slash, lower case"),
    pytest.param("/a%5Cb", id="encoded backslash"),
    pytest.param("/a\\b", id="raw backslash"),
    pytest.param("/a\x00b", id="NUL"),
    pytest.param("/a\x1fb", id="control character"),
    pytest.param("/a\x7fb", id="DEL"),
    pytest.param("/caf\u00e9", id="raw non-ASCII"),
    pytest.param("/a b", id="raw space"),
    pytest.param("/a%", id="truncated escape"),
    pytest.param("/a%4", id="one-digit escape"),
    pytest.param("/a%G1", id="non-hex escape"),
    pytest.param("/a#frag", id="raw fragment"),
    pytest.param("/..;x/admin", id="dot-dot with parameters"),
    pytest.param("/a/.;x/b", id="dot with parameters"),
    pytest.param("/a/%2e%2e;x/b", id="escaped dot-dot with parameters"),
    pytest.param("*", id="asterisk-form"),
    pytest.param("http://evil.example/a", id="absolute-form"),
    pytest.param("evil.example:443", id="authority-form"),
    pytest.param("", id="empty target"),
]


@pytest.mark.parametrize(("raw", "path"), NORMALISED)
def test_paths_are_normalised(raw: str, path: str) -> None:
    assert parse_target(raw).path == path


@pytest.mark.parametrize("raw", REFUSED)
def test_dangerous_targets_are_refused_as_bad_path(raw: str) -> None:
    with pytest.raises(Denied) as caught:
        parse_target(raw)
    assert caught.value.reason is Reason.BAD_PATH
    assert caught.value.reason.status == 400


@pytest.mark.parametrize(
    ("raw", "query"),
    [
        pytest.param("/a", None, id="no question mark: no query"),
        pytest.param("/a?", "", id="bare question mark: empty query"),
        pytest.param("/a?b=1&a=%zz&c=/../", "b=1&a=%zz&c=/../", id="query kept byte for byte"),
        pytest.param("/a?x?y", "x?y", id="only the first question mark splits"),
    ],
)
def test_query_is_kept_byte_for_byte(raw: str, query: str | None) -> None:
    assert parse_target(raw) == Target("/a", query)


@settings(max_examples=400, deadline=None)
@given(raw_paths())
def test_normalising_is_idempotent(raw: str) -> None:
    """What was normalised once is its own normal form: matching and forwarding agree."""
    try:
        once = parse_target(raw).path
    except Denied:
        return
    assert parse_target(once).path == once


@settings(max_examples=400, deadline=None)
@given(raw_paths())
def test_normal_form_has_no_dot_segments_empty_segments_or_decodable_escapes(raw: str) -> None:
    try:
        path = parse_target(raw).path
    except Denied as denied:
        assert denied.reason is Reason.BAD_PATH
        return
    assert path.startswith("/")
    assert "//" not in path
    segments = path.split("/")[1:]
    assert "." not in segments and ".." not in segments
    for escape in re.findall(r"%([0-9A-Fa-f]{2})", path):
        assert escape == escape.upper()
        assert (
            chr(int(escape, 16))
            not in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"
        )


@settings(max_examples=300, deadline=None)
@given(anything)
def test_any_text_gives_a_target_or_bad_path_never_a_crash(raw: str) -> None:
    try:
        target = parse_target(raw)
    except Denied as denied:
        assert denied.reason is Reason.BAD_PATH
    else:
        assert target.path.startswith("/")
