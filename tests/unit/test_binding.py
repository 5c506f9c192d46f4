"""RFC 8705 thumbprints and RFC 9440 `Client-Cert` values (pipeline/binding.py)."""

from __future__ import annotations

import base64
import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scopegate.pipeline.binding import check_binding, forwarded_certificate, thumbprint
from scopegate.reasons import Denied, Reason


@given(st.binary(min_size=1, max_size=2048))
def test_a_thumbprint_is_unpadded_base64url_sha256_and_a_header_value_round_trips(
    der: bytes,
) -> None:
    expected = base64.urlsafe_b64encode(hashlib.sha256(der).digest()).decode().rstrip("=")
    assert thumbprint(der) == expected and len(expected) == 43
    assert forwarded_certificate(":" + base64.b64encode(der).decode() + ":") == der
    check_binding(expected, der)  # no exception: the right certificate


@pytest.mark.parametrize("value", ["", "::", "abc", ":abc", "abc:", ":not base64!:", ":YWJj"])
def test_a_client_cert_value_that_is_not_a_byte_sequence_is_invalid_request(value: str) -> None:
    with pytest.raises(Denied) as denied:
        forwarded_certificate(value)
    assert denied.value.reason is Reason.INVALID_REQUEST


def test_a_wrong_or_missing_certificate_is_a_binding_mismatch() -> None:
    for presented in (b"another certificate", None):
        with pytest.raises(Denied) as denied:
            check_binding(thumbprint(b"the certificate"), presented)
        assert denied.value.reason is Reason.TOKEN_BINDING_MISMATCH
        assert denied.value.status == 401


@given(st.text(min_size=1, max_size=64))
def test_any_bound_to_text_is_a_mismatch_never_an_error(bound_to: str) -> None:
    """`cnf.x5t#S256` is the token's text: non-ASCII, lone surrogates and all are refused as a
    mismatch (a TypeError from the comparison would be a 500)."""
    certificate = b"any certificate"
    if bound_to == thumbprint(certificate):
        return
    with pytest.raises(Denied) as denied:
        check_binding(bound_to, certificate)
    assert denied.value.reason is Reason.TOKEN_BINDING_MISMATCH
