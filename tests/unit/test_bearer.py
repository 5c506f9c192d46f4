"""Bearer token extraction (RFC 6750 §2.1, SPEC §3.3)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scopegate.pipeline.bearer import extract_bearer
from scopegate.reasons import Denied, Reason


@pytest.mark.parametrize(
    ("values", "token"),
    [
        pytest.param(["Bearer abc.def-_~+/="], "abc.def-_~+/=", id="every b64token character"),
        pytest.param(["bearer abc"], "abc", id="scheme in lower case"),
        pytest.param(["BEARER abc"], "abc", id="scheme in upper case"),
        pytest.param(["Bearer   abc"], "abc", id="several spaces after the scheme"),
    ],
)
def test_token_is_extracted(values: list[str], token: str) -> None:
    assert extract_bearer(values, 8192) == token


@pytest.mark.parametrize(
    ("values", "reason"),
    [
        pytest.param([], Reason.MISSING_TOKEN, id="no header"),
        pytest.param(["Basic dXNlcjpw"], Reason.MISSING_TOKEN, id="another scheme"),
        pytest.param(["Bearerabc"], Reason.MISSING_TOKEN, id="no space after the scheme"),
        pytest.param(["Bearer"], Reason.INVALID_REQUEST, id="scheme alone"),
        pytest.param(["Bearer "], Reason.INVALID_REQUEST, id="scheme and a space"),
        pytest.param(["Bearer a b"], Reason.INVALID_REQUEST, id="space inside the token"),
        pytest.param(["Bearer a\tb"], Reason.INVALID_REQUEST, id="tab inside the token"),
        pytest.param(["Bearer a,b"], Reason.INVALID_REQUEST, id="comma"),
        pytest.param(["Bearer =abc"], Reason.INVALID_REQUEST, id="padding first"),
        pytest.param(["Bearer a", "Bearer a"], Reason.INVALID_REQUEST, id="two headers"),
        pytest.param(["Bearer " + "a" * 8193], Reason.MALFORMED_TOKEN, id="longer than the limit"),
    ],
)
def test_bad_headers_are_refused(values: list[str], reason: Reason) -> None:
    with pytest.raises(Denied) as caught:
        extract_bearer(values, 8192)
    assert caught.value.reason is reason
    assert "aaaa" not in caught.value.detail


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(max_size=40), max_size=3))
def test_any_header_gives_a_token_or_a_denial(values: list[str]) -> None:
    try:
        token = extract_bearer(values, 64)
    except Denied as denied:
        assert denied.reason in {
            Reason.MISSING_TOKEN,
            Reason.INVALID_REQUEST,
            Reason.MALFORMED_TOKEN,
        }
    else:
        assert token and " " not in token and len(token) <= 64
