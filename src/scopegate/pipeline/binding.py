"""RFC 8705 §3: certificate-bound access tokens, and where the client's certificate comes from.

A token whose `cnf` claim has `x5t#S256` is bound to one client certificate: it is accepted
only with that certificate, whose SHA-256 thumbprint (base64url, no padding) must be the claim's
value; otherwise 401 `invalid_token`, reason `token_binding_mismatch`, as for a stolen token.
The certificate is the one the client presented in the TLS handshake, or, when TLS ends at a
trusted proxy (`forwarded_client_cert`), the one that proxy forwards in an RFC 9440
`Client-Cert` header: `:base64-DER:`, a structured-field byte sequence.

Usage::

    check_binding(principal.bound_to, certificate_der)        # or Denied
    der = forwarded_certificate(request.header(b"client-cert"))   # or Denied
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

from scopegate.reasons import Denied, Reason


def thumbprint(certificate_der: bytes) -> str:
    """RFC 8705 §3.1: base64url(SHA-256(DER)) without padding."""
    digest = hashlib.sha256(certificate_der).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def check_binding(bound_to: str, certificate_der: bytes | None) -> None:
    """Refuse unless `certificate_der` is the certificate `bound_to` names."""
    if certificate_der is None:
        detail = "the token is bound to a client certificate, and none was presented"
        raise Denied(Reason.TOKEN_BINDING_MISMATCH, detail)
    # As bytes: `bound_to` is the token's text, and compare_digest takes ASCII strings only.
    expected = bound_to.encode("utf-8", "surrogatepass")
    if not hmac.compare_digest(thumbprint(certificate_der).encode(), expected):
        detail = "the token is bound to another client certificate"
        raise Denied(Reason.TOKEN_BINDING_MISMATCH, detail)


def forwarded_certificate(value: str | None) -> bytes | None:
    """The DER of an RFC 9440 `Client-Cert` value (`:base64:`), None when absent; a value that
    is not one is `invalid_request` (a trusted proxy sent something broken)."""
    if value is None:
        return None
    text = value.strip()
    if len(text) < 3 or text[0] != ":" or text[-1] != ":":
        raise Denied(Reason.INVALID_REQUEST, "the Client-Cert header is not :base64-DER:")
    try:
        return base64.b64decode(text[1:-1], validate=True)
    except (binascii.Error, ValueError):
        raise Denied(Reason.INVALID_REQUEST, "the Client-Cert header is not base64") from None
