"""Request-target parsing and path normalisation (SPEC §3 step 1); end-to-end counterparts:
tests/e2e/test_allow.py and the `paths` family of tests/attacks."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scopegate.pipeline.target import Target, parse_target, remove_dot_segments
from scopegate.reasons import Denied, Reason
from tests.unit.strategies import (
    UNRESERVED,
    anything,
    hostile_paths,
    normal_paths,
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
    pytest.param(
        "/a%00b", "/a%00b", id="an escaped NUL stays escaped: it is the upstream's to judge"
    ),
    pytest.param("/%C0%AE%C0%AE/x", "/%C0%AE%C0%AE/x", id="overlong UTF-8 dots are not dots"),
    pytest.param("/%252e%252e/x", "/%252e%252e/x", id="decoded once: %25 never makes a new escape"),
    pytest.param("/a;b=c/d", "/a;b=c/d", id="parameters on ordinary segments kept"),
    pytest.param("/a;b/../c", "/c", id="dot-dot removes a segment with parameters"),
    pytest.param("/a/..%3Bx", "/a/..%3Bx", id="an escaped semicolon is no parameter delimiter"),
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
    pytest.param("/..;x/admin", "parameters", id="dot-dot with parameters"),
    pytest.param("/public/..;/contacts", "parameters", id="dot-dot with empty parameters"),
    pytest.param("/a/.;a/b", "parameters", id="dot with parameters"),
    pytest.param("/a/%2e%2e;x/b", "parameters", id="escaped dot-dot with parameters"),
    pytest.param("/a/%2E;/b", "parameters", id="escaped dot with parameters"),
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
            ]
        ),
        st.data(),
    )
    def test_a_forbidden_piece_anywhere_in_the_path_is_refused(
        self, raw: str, piece: str, data: st.DataObject
    ) -> None:
        """No surrounding text can make an encoded slash, a control character, non-ASCII, `#`
        or a broken escape acceptable."""
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
