"""Request-target parsing and path normalisation (SPEC §3 step 1); end-to-end counterparts:
tests/e2e/test_allow.py and the `paths` family of tests/attacks."""

from __future__ import annotations

import re
from urllib.parse import quote, unquote, unquote_to_bytes

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scopegate.pipeline.target import Target, parse_target, remove_dot_segments
from scopegate.reasons import Denied, Reason
from tests.unit.strategies import (
    CONTROL_ESCAPES,
    UNRESERVED,
    anything,
    dot_parameter_segments,
    escaped_texts,
    hostile_paths,
    invalid_utf8_escapes,
    is_utf8,
    normal_paths,
    paths_around,
    queries,
    raw_paths,
    spellings,
)

NORMALISED = [
    pytest.param("/", "/", id="root stays root"),
    pytest.param("/a/./b", "/a/b", id="dot segment removed"),
    pytest.param("/a/b/../c", "/a/c", id="dot-dot removes the segment before it"),
    pytest.param("/../../a", "/a", id="dot-dot above the root stays at the root"),
    pytest.param("/a/b/../../../c", "/c", id="more dot-dots than segments stop at the root"),
    pytest.param("/a//b///c", "/a/b/c", id="runs of slashes merged"),
    pytest.param("//contacts", "/contacts", id="leading double slash is a path, not an authority"),
    pytest.param("/a/b/..", "/a/", id="final dot-dot leaves a trailing slash"),
    pytest.param("/a/.", "/a/", id="final dot leaves a trailing slash"),
    pytest.param("/a/", "/a/", id="trailing slash kept"),
    pytest.param("/%7Euser/%41%62", "/~user/Ab", id="unreserved escapes decoded"),
    pytest.param("/%7e%2d%5f", "/~-_", id="lower-case escapes of unreserved decoded"),
    pytest.param("/a%2e%2E/b", "/a../b", id="escaped dots inside a segment are just dots"),
    pytest.param("/%2e%2e/contacts", "/contacts", id="escaped dot-dot is a dot segment"),
    pytest.param("/public/%2E%2e/contacts", "/contacts", id="mixed-case escaped dot-dot"),
    pytest.param("/%2e./x", "/x", id="half-escaped dot-dot is a dot segment"),
    pytest.param("/a/%2E/b", "/a/b", id="escaped dot is a dot segment"),
    pytest.param("/...", "/...", id="three dots are an ordinary segment"),
    pytest.param("/.a/a./..b", "/.a/a./..b", id="dots beside other characters are ordinary"),
    pytest.param("/a%2ab", "/a%2Ab", id="reserved escapes kept, hex upper-cased"),
    pytest.param("/a%20b", "/a%20b", id="an escaped space stays escaped"),
    pytest.param("/caf%c3%a9", "/caf%C3%A9", id="UTF-8 escapes kept, hex upper-cased"),
    pytest.param("/%F0%9F%98%80", "/%F0%9F%98%80", id="a four-byte UTF-8 character kept"),
    pytest.param("/%F4%8F%BF%BF", "/%F4%8F%BF%BF", id="the last code point, U+10FFFF, kept"),
    pytest.param("/%E2%82%AC%41", "/%E2%82%ACA", id="an escape after a UTF-8 character decoded"),
    pytest.param("/%252e%252e/x", "/%252e%252e/x", id="decoded once: %25 never makes a new escape"),
    pytest.param("/a;b=c/d", "/a;b=c/d", id="parameters on ordinary segments kept"),
    pytest.param("/a;b/../c", "/c", id="dot-dot removes a segment with parameters"),
    pytest.param("/a%3Bb/x..%3B", "/a%3Bb/x..%3B", id="escaped semicolons outside dot segments"),
    pytest.param("/...%3Bx", "/...%3Bx", id="three dots and an escaped semicolon are ordinary"),
    pytest.param("/!$&'()*+,;=:@", "/!$&'()*+,;=:@", id="sub-delims, colon and at kept raw"),
]

REFUSED = [
    pytest.param("", "origin-form", id="empty target"),
    pytest.param("*", "asterisk-form", id="asterisk-form"),
    pytest.param("http://evil.example/a", "absolute-form", id="absolute-form"),
    pytest.param("evil.example:443", "origin-form", id="authority-form"),
    pytest.param("a/b", "origin-form", id="relative path"),
    pytest.param("/a%2Fb", "encoded slash", id="encoded slash"),
    pytest.param("/a%2fb", "encoded slash", id="encoded slash, lower case"),
    pytest.param("/a%5Cb", "encoded slash", id="encoded backslash"),
    pytest.param("/a%5cb", "encoded slash", id="encoded backslash, lower case"),
    pytest.param("/..%2F..%2Fetc", "encoded slash", id="encoded slash hiding dot segments"),
    pytest.param("/a\\b", "backslash", id="raw backslash"),
    pytest.param("/a\x00b", "control", id="NUL"),
    pytest.param("/a\x1fb", "control", id="control character"),
    pytest.param("/a\tb", "control", id="tab"),
    pytest.param("/a\r\nb", "control", id="CR LF"),
    pytest.param("/a\x7fb", "control", id="DEL"),
    pytest.param("/caf\u00e9", "percent-encoded", id="raw non-ASCII"),
    pytest.param(
        "/caf\udcc3\udca9", "percent-encoded", id="undecodable bytes as surrogate escapes"
    ),
    pytest.param("/\uff0e\uff0e/x", "percent-encoded", id="full-width dots"),
    pytest.param("/a b", "percent-encoded", id="raw space"),
    pytest.param("/a%", "invalid percent-escape", id="truncated escape"),
    pytest.param("/a%4", "invalid percent-escape", id="one-digit escape"),
    pytest.param("/a%G1", "invalid percent-escape", id="non-hex escape"),
    pytest.param("/a%%41", "invalid percent-escape", id="escaped percent sign written raw"),
    pytest.param("/a#frag", "fragment", id="raw fragment"),
    pytest.param("/a%00b", "control", id="escaped NUL"),
    pytest.param("/a%0d%0aX-Injected:%201", "control", id="escaped CR LF"),
    pytest.param("/a%1F", "control", id="escaped unit separator"),
    pytest.param("/a%7f", "control", id="escaped DEL"),
    pytest.param("/%C0%AE%C0%AE/x", "UTF-8", id="overlong two-byte dots"),
    pytest.param("/%c0%af", "UTF-8", id="overlong two-byte slash"),
    pytest.param("/%E0%80%AE", "UTF-8", id="overlong three-byte dot"),
    pytest.param("/%F0%80%80%AE", "UTF-8", id="overlong four-byte dot"),
    pytest.param("/a%80b", "UTF-8", id="lone continuation byte"),
    pytest.param("/%E2%82", "UTF-8", id="truncated sequence at the end"),
    pytest.param("/%E2%82x%AC", "UTF-8", id="sequence interrupted by a plain character"),
    pytest.param("/%ED%A0%80", "UTF-8", id="surrogate encoded in UTF-8"),
    pytest.param("/%F4%90%80%80", "UTF-8", id="code point above U+10FFFF"),
    pytest.param("/%F5%80%80%80", "UTF-8", id="lead byte F5"),
    pytest.param("/%ff", "UTF-8", id="byte FF"),
    pytest.param("/..;x/admin", "parameters", id="dot-dot with parameters"),
    pytest.param("/public/..;/contacts", "parameters", id="dot-dot with empty parameters"),
    pytest.param("/a/.;a/b", "parameters", id="dot with parameters"),
    pytest.param("/a/%2e%2e;x/b", "parameters", id="escaped dot-dot with parameters"),
    pytest.param("/a/%2E;/b", "parameters", id="escaped dot with parameters"),
    pytest.param("/a/..%3Bx", "parameters", id="dot-dot with an escaped semicolon"),
    pytest.param("/a/.%3b/b", "parameters", id="dot with a lower-case escaped semicolon"),
    pytest.param("/%2e%2e%3Bx/admin", "parameters", id="all escaped: dot-dot and semicolon"),
    pytest.param("/a?b#c", "fragment", id="fragment after the query"),
    pytest.param("/a?b c", "percent-encoded", id="raw space in the query"),
    pytest.param("/a?b\x00", "control", id="NUL in the query"),
    pytest.param("/a?\r\nX-Injected: 1", "control", id="CR LF in the query"),
    pytest.param("/a?q=caf\u00e9", "percent-encoded", id="raw non-ASCII in the query"),
]


class TestNormalisation:
    @pytest.mark.parametrize(("raw", "path"), NORMALISED)
    def test_paths_are_normalised(self, raw: str, path: str) -> None:
        """Unreserved escapes are decoded, slashes merged and dot segments removed, once."""
        assert parse_target(raw).path == path

    @pytest.mark.parametrize(("raw", "path"), NORMALISED)
    def test_normal_forms_are_fixed_points(self, raw: str, path: str) -> None:
        """Normalising a normal form changes nothing, so what is matched is what is forwarded."""
        assert parse_target(path).path == path


class TestRefusals:
    @pytest.mark.parametrize(("raw", "detail"), REFUSED)
    def test_dangerous_targets_are_refused_as_bad_path(self, raw: str, detail: str) -> None:
        """Each refusal is a 400 `bad_path` without a bearer challenge, saying what was wrong."""
        with pytest.raises(Denied) as caught:
            parse_target(raw)
        assert caught.value.reason is Reason.BAD_PATH
        assert caught.value.reason.status == 400
        assert not caught.value.challenge
        assert detail in caught.value.detail


class TestQuery:
    @pytest.mark.parametrize(
        ("raw", "query"),
        [
            pytest.param("/a", None, id="no question mark: no query"),
            pytest.param("/a?", "", id="bare question mark: empty query"),
            pytest.param(
                "/a?b=1&a=%zz&c=/../", "b=1&a=%zz&c=/../", id="invalid escapes and dots kept"
            ),
            pytest.param("/a?x?y", "x?y", id="only the first question mark splits"),
            pytest.param("/a?p=%2F%5C%2e", "p=%2F%5C%2e", id="encoded slashes are fine in a query"),
            pytest.param(
                "/a?p=a\\b", "p=a\\b", id="a backslash is the upstream's business in a query"
            ),
            pytest.param("/a?%7E=%7e", "%7E=%7e", id="escapes are not normalised in the query"),
        ],
    )
    def test_query_is_kept_byte_for_byte(self, raw: str, query: str | None) -> None:
        """The query is split off at the first `?` and passed on untouched."""
        assert parse_target(raw) == Target("/a", query)

    def test_a_question_mark_escaped_in_the_path_stays_in_the_path(self) -> None:
        """`%3F` is part of the path, never the start of a query."""
        assert parse_target("/a%3fb?c") == Target("/a%3Fb", "c")


def _rfc_remove_dot_segments(path: str) -> str:
    """RFC 3986 §5.2.4 transcribed step by step (A to E), as an independent oracle."""
    out = ""
    while path:
        if path.startswith(("../", "./")):
            path = path[path.index("/") + 1 :]
        elif path.startswith("/./") or path == "/.":
            path = "/" + path[3:]
        elif path.startswith("/../") or path == "/..":
            path = "/" + path[4:]
            out = out[: max(out.rfind("/"), 0)]
        elif path in {".", ".."}:
            path = ""
        else:
            end = path.find("/", 1)
            segment = path if end == -1 else path[:end]
            out, path = out + segment, path[len(segment) :]
    return out


_dotty_paths = st.lists(st.sampled_from(["a", "b", ".", "..", "...", ".a", ""]), max_size=8).map(
    lambda parts: re.sub("/{2,}", "/", "/" + "/".join(parts))
)


class TestProperties:
    @settings(max_examples=200, deadline=None)
    @given(raw_paths())
    def test_normalising_is_idempotent(self, raw: str) -> None:
        """What was normalised once is its own normal form."""
        try:
            once = parse_target(raw).path
        except Denied as denied:
            assert denied.reason is Reason.BAD_PATH
            return
        assert parse_target(once).path == once

    @settings(max_examples=200, deadline=None)
    @given(st.one_of(raw_paths(), normal_paths().flatmap(spellings)))
    def test_normal_form_has_no_dot_segments_empty_segments_or_decodable_escapes(
        self, raw: str
    ) -> None:
        """A normal path has no `//`, `/./`, `/../`, final `/.` or `/..`, and every escape left
        is upper-case and of a character that must stay escaped."""
        try:
            path = parse_target(raw).path
        except Denied as denied:
            assert denied.reason is Reason.BAD_PATH
            return
        assert path.startswith("/")
        for bad in ("//", "/./", "/../"):
            assert bad not in path
        assert not path.endswith(("/.", "/.."))
        for escape in re.findall(r"%(..)", path):
            assert escape == escape.upper()
            assert chr(int(escape, 16)) not in UNRESERVED + "/\\"
        assert all(0x21 <= ord(char) <= 0x7E for char in path)

    @settings(max_examples=200, deadline=None)
    @given(normal_paths().flatmap(lambda path: st.tuples(st.just(path), spellings(path))))
    def test_every_spelling_of_a_path_normalises_to_it(self, case: tuple[str, str]) -> None:
        """Escaped unreserved characters, lower-case hex, dot segments and doubled slashes never
        make one path into two."""
        path, raw = case
        assert parse_target(path).path == path
        assert parse_target(raw).path == path

    @settings(max_examples=200, deadline=None)
    @given(_dotty_paths)
    def test_dot_removal_agrees_with_the_rfc_algorithm(self, path: str) -> None:
        """Segment-wise dot removal gives what RFC 3986's buffer algorithm gives."""
        assert remove_dot_segments(path) == _rfc_remove_dot_segments(path)

    @settings(max_examples=200, deadline=None)
    @given(raw_paths(), queries)
    def test_any_printable_query_is_kept_byte_for_byte(self, raw: str, query: str) -> None:
        """Whatever the path, an acceptable query comes back exactly as it was sent."""
        try:
            target = parse_target(f"{raw}?{query}")
        except Denied:
            return
        assert target.query == query

    @settings(max_examples=200, deadline=None)
    @given(
        raw_paths(),
        st.sampled_from(
            [
                "%2F",
                "%2f",
                "%5C",
                "%5c",
                "\\",
                "\x00",
                "\x1f",
                "\x7f",
                "#",
                " ",
                "\u00e9",
                "\udcc3",
                "%G0",
                "%x",
                "%00",
                "%0a",
                "%1F",
                "%7f",
            ]
        ),
        st.data(),
    )
    def test_a_forbidden_piece_anywhere_in_the_path_is_refused(
        self, raw: str, piece: str, data: st.DataObject
    ) -> None:
        """No surrounding text can make an encoded slash, a control character raw or escaped,
        non-ASCII, `#` or a broken escape acceptable."""
        at = data.draw(st.integers(1, len(raw)))
        with pytest.raises(Denied) as caught:
            parse_target(raw[:at] + piece + raw[at:])
        assert caught.value.reason is Reason.BAD_PATH

    @settings(max_examples=300, deadline=None)
    @given(st.one_of(anything, anything.map(lambda text: "/" + text), hostile_paths()))
    def test_any_text_gives_a_target_or_bad_path_never_a_crash(self, raw: str) -> None:
        """Arbitrary input, surrogates and controls included, is a target or a `bad_path`."""
        try:
            target = parse_target(raw)
        except Denied as denied:
            assert denied.reason is Reason.BAD_PATH
        else:
            assert target.path.startswith("/")


def _refused_as(raw: str) -> str:
    """The detail of the `bad_path` denial that `raw` must get."""
    with pytest.raises(Denied) as caught:
        parse_target(raw)
    assert caught.value.reason is Reason.BAD_PATH
    assert not caught.value.challenge
    return caught.value.detail


class TestForbiddenEscapes:
    """Each class of escape SPEC §3.1 refuses, placed anywhere in an otherwise valid path."""

    @settings(max_examples=20, deadline=None)
    @pytest.mark.parametrize("escape", CONTROL_ESCAPES)
    @given(data=st.data())
    def test_every_escaped_control_character_is_refused_anywhere(
        self, escape: str, data: st.DataObject
    ) -> None:
        """`%00`-`%1F` and `%7F`, either case of hex, in any segment or alone, are `bad_path`."""
        raw = data.draw(paths_around(escape))
        assert "control" in _refused_as(raw)

    @settings(max_examples=500, deadline=None)
    @given(invalid_utf8_escapes().flatmap(lambda escape: paths_around(escape)))
    def test_escapes_of_invalid_utf8_are_refused_anywhere(self, raw: str) -> None:
        """Overlong forms, surrogates, code points above U+10FFFF, lone or missing continuation
        bytes and bytes UTF-8 never uses are `bad_path`, whatever valid path surrounds them."""
        assert not is_utf8(unquote_to_bytes(raw))  # Python's decoder agrees it is not UTF-8
        assert "UTF-8" in _refused_as(raw)

    @settings(max_examples=300, deadline=None)
    @given(
        dot_parameter_segments.flatmap(lambda segment: paths_around(segment, whole_segment=True))
    )
    def test_dot_segments_with_parameters_are_refused_anywhere(self, raw: str) -> None:
        """`.` and `..` with `;` parameters, dots and semicolon raw or escaped, are `bad_path`
        as the first, a middle or the last segment, or alone."""
        assert "parameters" in _refused_as(raw)

    @settings(max_examples=500, deadline=None)
    @given(escaped_texts())
    def test_escaped_utf8_of_any_text_is_kept_and_forwarded_escaped(
        self, case: tuple[str, list[str]]
    ) -> None:
        """Valid UTF-8 escapes are never refused: each character beyond ASCII stays escaped with
        upper-case hex, normalising again changes nothing, and the text decodes back intact."""
        raw, texts = case
        path = parse_target(raw).path
        assert path == "/" + "/".join(quote(text, safe="") for text in texts)
        assert parse_target(path).path == path
        assert unquote(path, errors="strict") == "/" + "/".join(texts)
