"""Step 3a of SPEC §3: the bearer token from the `Authorization` header (RFC 6750 §2.1).

Only the header is read: tokens in query strings, form bodies or cookies are ignored, because
they leak into logs and caches. The scheme is case-insensitive. Between scheme and token one or
more spaces are accepted (RFC 9110's `1*SP` in credentials); a tab, or any character outside
`b64token`, is a malformed request.

Usage::

    token = extract_bearer(request.headers.getall("Authorization", []), max_token_bytes=8192)
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from scopegate.reasons import Denied, Reason

_B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")


def extract_bearer(values: Sequence[str], max_token_bytes: int) -> str:
    """The token of the request's one `Authorization: Bearer` header, or a `Denied`."""
    if not values:
        raise Denied(Reason.MISSING_TOKEN, "no bearer token")
    if len(values) > 1:
        raise Denied(Reason.INVALID_REQUEST, "more than one Authorization header")
    value = values[0]
    scheme, _, credentials = value.partition(" ")
    if scheme.lower() != "bearer":
        raise Denied(Reason.MISSING_TOKEN, "no bearer token")
    token = credentials.lstrip(" ")
    if not token:
        raise Denied(Reason.INVALID_REQUEST, "the Bearer scheme carries no token")
    if len(token) > max_token_bytes:
        raise Denied(Reason.MALFORMED_TOKEN, f"the token is longer than {max_token_bytes} bytes")
    if not _B64TOKEN.fullmatch(token):
        raise Denied(Reason.INVALID_REQUEST, "the token has characters outside RFC 6750 b64token")
    return token
