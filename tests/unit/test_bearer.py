"""Bearer token extraction (SPEC §3 step 3, RFC 6750 §2.1); end-to-end counterparts:
tests/e2e/test_deny.py and the `header` family of tests/attacks."""

from __future__ import annotations

import re
from urllib.parse import quote_plus, unquote_plus

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from scopegate.pipeline.bearer import (
    bearer_from_query,
    extract_bearer,
    is_b64token,
    take_query_token,
)
from scopegate.reasons import Denied, Reason
from tests.unit.strategies import anything, b64tokens, bearer_headers

LIMIT = 64
SECRET = "SECRETtoken"  # never to be seen in a denial's detail


class TestAccepted:
    @pytest.mark.parametrize(
        ("values", "token"),
        [
            pytest.param([f"Bearer {SECRET}"], SECRET, id="the canonical form"),
            pytest.param(["Bearer aZ09-._~+/"], "aZ09-._~+/", id="every b64token character"),
            pytest.param(["Bearer abc=="], "abc==", id="trailing padding"),
            pytest.param(["Bearer eyJh.eyJz.c2ln"], "eyJh.eyJz.c2ln", id="a JWT"),
            pytest.param(["bearer abc"], "abc", id="scheme in lower case"),
            pytest.param(["BEARER abc"], "abc", id="scheme in upper case"),
            pytest.param(["bEaReR abc"], "abc", id="scheme in mixed case"),
            pytest.param(["Bearer   abc"], "abc", id="several spaces: RFC 6750 writes 1*SP"),
            pytest.param([" Bearer abc\t "], "abc", id="whitespace around the field value is not part of it"),
            pytest.param(["Bearer " + "a" * LIMIT], "a" * LIMIT, id="a token exactly at the limit"),
        ],
    )  # fmt: skip
    def test_token_is_extracted(self, values: list[str], token: str) -> None:
        """The token of a well-formed `Bearer` header comes back unchanged."""
        assert extract_bearer(values, LIMIT) == token


class TestRefused:
    @pytest.mark.parametrize(
        ("values", "reason"),
        [
            pytest.param([], Reason.MISSING_TOKEN, id="no header"),
            pytest.param([""], Reason.MISSING_TOKEN, id="an empty header"),
            pytest.param(["Basic dXNlcjpw"], Reason.MISSING_TOKEN, id="another scheme"),
            pytest.param([f"Token {SECRET}"], Reason.MISSING_TOKEN, id="a look-alike scheme"),
            pytest.param([f"Bearer{SECRET}"], Reason.MISSING_TOKEN, id="no space after the scheme: another scheme"),
            pytest.param([f"Bearer,{SECRET}"], Reason.MISSING_TOKEN, id="a comma after the scheme"),
            pytest.param([f"\uff22earer {SECRET}"], Reason.MISSING_TOKEN, id="a full-width look-alike of the scheme"),
            pytest.param([f"B\u0435arer {SECRET}"], Reason.MISSING_TOKEN, id="a Cyrillic look-alike of the scheme"),
            pytest.param(["Bearer"], Reason.INVALID_REQUEST, id="scheme alone"),
            pytest.param(["Bearer "], Reason.INVALID_REQUEST, id="scheme and a space"),
            pytest.param(["Bearer     "], Reason.INVALID_REQUEST, id="scheme and only spaces"),
            pytest.param([f"Bearer\t{SECRET}"], Reason.MISSING_TOKEN, id="a tab is no separator: not the Bearer scheme"),
            pytest.param(["Bearer\t"], Reason.INVALID_REQUEST, id="a trailing tab is trimmed: scheme alone"),
            pytest.param([f"Bearer \t{SECRET}"], Reason.INVALID_REQUEST, id="a tab after the space"),
            pytest.param([f"Bearer {SECRET} x"], Reason.INVALID_REQUEST, id="space inside the token"),
            pytest.param([f"Bearer {SECRET}\tx"], Reason.INVALID_REQUEST, id="tab inside the token"),
            pytest.param([f"Bearer {SECRET},x"], Reason.INVALID_REQUEST, id="comma"),
            pytest.param([f"Bearer {SECRET}, Bearer other"], Reason.INVALID_REQUEST, id="two credentials in one header"),
            pytest.param([f"Bearer ={SECRET}"], Reason.INVALID_REQUEST, id="padding first"),
            pytest.param([f"Bearer {SECRET}=x"], Reason.INVALID_REQUEST, id="padding inside"),
            pytest.param([f'Bearer "{SECRET}"'], Reason.INVALID_REQUEST, id="quoted token"),
            pytest.param([f"Bearer {SECRET}\u00e9"], Reason.INVALID_REQUEST, id="non-ASCII"),
            pytest.param([f"Bearer {SECRET}\x00"], Reason.INVALID_REQUEST, id="NUL"),
            pytest.param([f"Bearer {SECRET}", f"Bearer {SECRET}"], Reason.INVALID_REQUEST, id="two Authorization headers"),
            pytest.param([f"Bearer {SECRET}", "Basic dXNlcjpw"], Reason.INVALID_REQUEST, id="a bearer and a basic header"),
            pytest.param(["Bearer " + SECRET * 6], Reason.MALFORMED_TOKEN, id="longer than the limit"),
            pytest.param(["Bearer " + SECRET * 6 + " !"], Reason.MALFORMED_TOKEN, id="the length is checked before the syntax"),
        ],
    )  # fmt: skip
    def test_bad_headers_are_refused(self, values: list[str], reason: Reason) -> None:
        """Each malformed header gets its reason, and no detail ever quotes the token."""
        with pytest.raises(Denied) as caught:
            extract_bearer(values, LIMIT)
        assert caught.value.reason is reason
        assert SECRET not in str(caught.value)
        assert "SECRET" not in caught.value.detail

    @pytest.mark.parametrize(
        ("reason", "status", "error"),
        [
            pytest.param(Reason.MISSING_TOKEN, 401, None, id="missing: 401 with a bare challenge"),
            pytest.param(
                Reason.INVALID_REQUEST, 400, "invalid_request", id="malformed request: 400"
            ),
            pytest.param(
                Reason.MALFORMED_TOKEN,
                401,
                "invalid_token",
                id="oversized token: 401 invalid_token",
            ),
        ],
    )
    def test_reasons_map_to_the_rfc_6750_answers(
        self, reason: Reason, status: int, error: str | None
    ) -> None:
        """The three reasons this stage raises are answered as SPEC §3 step 3 says."""
        assert (reason.status, reason.oauth_error) == (status, error)


class TestProperties:
    @settings(max_examples=200, deadline=None)
    @given(bearer_headers())
    def test_every_valid_header_gives_its_token(self, header: tuple[str, str]) -> None:
        """Any case of `Bearer`, one or more spaces, any b64token: the token comes back."""
        value, token = header
        assert extract_bearer([value], 1024) == token

    @settings(max_examples=200, deadline=None)
    @given(b64tokens, st.integers(0, 39))
    def test_a_token_over_the_limit_is_malformed_whatever_it_holds(
        self, token: str, limit: int
    ) -> None:
        """Only the length decides once the token is longer than the limit."""
        value = f"Bearer {token}"
        if len(token) > limit:
            with pytest.raises(Denied) as caught:
                extract_bearer([value], limit)
            assert caught.value.reason is Reason.MALFORMED_TOKEN
        else:
            assert extract_bearer([value], limit) == token

    @settings(max_examples=200, deadline=None)
    @given(
        b64tokens,
        st.characters(exclude_categories=(), exclude_characters="=-._~+/").filter(
            lambda c: not c.isascii() or not c.isalnum()
        ),
        st.data(),
    )
    def test_a_character_outside_b64token_is_an_invalid_request(
        self, token: str, char: str, data: st.DataObject
    ) -> None:
        """Whatever character outside b64token, wherever in the token: 400 invalid_request."""
        at = data.draw(st.integers(0, len(token)))
        # Whitespace around the value is trimmed, and spaces before the token are separators.
        assume(not (char in " \t" and at == len(token)) and not (char == " " and at == 0))
        with pytest.raises(Denied) as caught:
            extract_bearer([f"Bearer {token[:at]}{char}{token[at:]}"], 1024)
        assert caught.value.reason is Reason.INVALID_REQUEST

    @settings(max_examples=300, deadline=None)
    @given(st.lists(anything, max_size=3))
    def test_any_header_gives_a_token_or_a_denial(self, values: list[str]) -> None:
        """Arbitrary header values give a valid token or one of the three reasons, never a
        crash, and a token only from exactly one header."""
        try:
            token = extract_bearer(values, LIMIT)
        except Denied as denied:
            assert denied.reason in {
                Reason.MISSING_TOKEN,
                Reason.INVALID_REQUEST,
                Reason.MALFORMED_TOKEN,
            }
        else:
            assert len(values) == 1
            assert token and " " not in token and len(token) <= LIMIT
            assert token.isascii()


# RFC 6750 §2.1's grammar, written as the regular expression the checker stands in for.
B64TOKEN_GRAMMAR = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
#: Text near the grammar's edges: its characters, padding anywhere, and some others.
near_b64token = st.text(
    st.one_of(
        st.sampled_from("aZ09-._~+/="),
        st.characters(exclude_categories=()),
        st.sampled_from(" \t\x00\x7f\u00e9\u212a\u0131\udcff:,;\\"),
    ),
    max_size=12,
)


class TestB64tokenCheck:
    @settings(max_examples=2000, deadline=None)
    @given(st.one_of(near_b64token, b64tokens, anything))
    def test_it_accepts_exactly_what_the_grammar_matches(self, text: str) -> None:
        """The translate-based check and the grammar's expression agree on any text (the
        Kelvin sign and dotless i lower-case to ASCII letters, and must not pass)."""
        assert is_b64token(text) is bool(B64TOKEN_GRAMMAR.fullmatch(text))

    @pytest.mark.parametrize(
        ("text", "expected"),
        [("a", True), ("a==", True), ("=", False), ("", False), ("a=b", False),
         ("a b", False), ("\u212a", False), ("a\n", False), ("-._~+/", True)],
    )  # fmt: skip
    def test_edges(self, text: str, expected: bool) -> None:
        assert is_b64token(text) is expected


class TestQueryToken:
    """RFC 6750 §2.3 for WebSocket upgrades (SPEC §6.3): the token leaves the query whole."""

    @pytest.mark.parametrize(
        ("query", "token", "rest"),
        [
            pytest.param("access_token=abc", "abc", "", id="alone"),
            pytest.param("a=1&access_token=abc&b=2", "abc", "a=1&b=2", id="between others"),
            pytest.param("access_token=a%2Bb%3D", "a+b=", "", id="form-decoded"),
            pytest.param("access%5Ftoken=abc", "abc", "", id="the name form-decoded too"),
            pytest.param("access_tokens=abc&x", None, "access_tokens=abc&x", id="absent"),
            pytest.param("access_token", "", "", id="without a value"),
        ],
    )
    def test_the_parameter_is_taken_out(self, query: str, token: str | None, rest: str) -> None:
        assert take_query_token(query, "access_token") == (token, rest)

    def test_twice_is_invalid_request(self) -> None:
        with pytest.raises(Denied) as denied:
            take_query_token("access_token=a&access_token=b", "access_token")
        assert denied.value.reason is Reason.INVALID_REQUEST

    @given(
        st.lists(st.text(alphabet="abcxyz_%=+0123456789", max_size=12), max_size=6),
        b64tokens,
        st.integers(min_value=0, max_value=6),
    )
    def test_every_other_parameter_is_kept_byte_for_byte(
        self, others: list[str], token: str, position: int
    ) -> None:
        assume(all(not p.startswith("access_token") and "&" not in p for p in others))
        assume(all(unquote_plus(p.partition("=")[0]) != "access_token" for p in others))
        parts = others[:]
        parts.insert(min(position, len(parts)), "access_token=" + quote_plus(token))
        found, rest = take_query_token("&".join(parts), "access_token")
        assert found == token
        assert rest == "&".join(others)

    def test_a_header_and_a_query_token_together_are_invalid_request(self) -> None:
        with pytest.raises(Denied) as denied:
            bearer_from_query(["Bearer abc"], "abc", LIMIT)
        assert denied.value.reason is Reason.INVALID_REQUEST

    def test_a_query_token_is_checked_as_a_header_token_would_be(self) -> None:
        assert bearer_from_query([], SECRET, LIMIT) == SECRET
        with pytest.raises(Denied) as denied:
            bearer_from_query([], "two words", LIMIT)
        assert denied.value.reason is Reason.INVALID_REQUEST
        assert "two words" not in str(denied.value)
