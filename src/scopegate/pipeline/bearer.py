"""Step 3a of SPEC §3: the bearer token from the `Authorization` header (RFC 6750 §2.1).

Only the header is read: tokens in query strings, form bodies or cookies are ignored, because
they leak into logs, caches and `Referer`. The one exception is asked for per route: a browser
cannot set headers on a WebSocket, so `websocket_token_query` lets an upgrade request carry its
token in the query (`take_query_token`), which is then removed before forwarding. The answers:

- no `Authorization` header, or one with another scheme (`Basic`, `Token`, `Bearerx`,
  `Bearer<TAB>x`): `missing_token` (401 with a bare challenge, RFC 6750 §3.1);
- more than one `Authorization` header: `invalid_request` (400) — which one counts would
  depend on who reads them;
- `Bearer` with no token, or a token outside `b64token`: `invalid_request` (400);
- a token longer than `limits.max_token_bytes`: `malformed_token` (401 `invalid_token`).

The scheme is case-insensitive (RFC 9110 §11.1) and compared in ASCII only. Between scheme and
token RFC 6750 writes `1*SP`, so one space or several are accepted. Nothing else separates: a
scheme followed by a tab is not `Bearer` at all (as for a prefix-matching extractor such as
Envoy's), and a tab or a space inside the token is `invalid_request`, so that no token two
parsers could cut in different places reaches the verifier. Whitespace around the whole field
value is not part of it (RFC 9110 §5.5) and is ignored.

Usage::

    token = extract_bearer(request.header_values(b"authorization"), max_token_bytes=8192)
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from urllib.parse import unquote_plus

from scopegate.reasons import Denied, Reason

_SCHEME = "bearer"
_DPOP_SCHEME = "dpop"
_OWS = " \t"
# RFC 6750 §2.1: b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
_B64TOKEN_CHARACTERS = (string.ascii_letters + string.digits + "-._~+/").encode("ascii")


def _only_value(values: Sequence[str]) -> str:
    if not values:
        raise Denied(Reason.MISSING_TOKEN, "no Authorization header")
    if len(values) > 1:
        raise Denied(Reason.INVALID_REQUEST, "more than one Authorization header")
    return values[0].strip(_OWS)


def _is_scheme(value: str, name: str = _SCHEME) -> bool:
    """Whether the credentials are of the scheme `name` (lower-case): alone or before a space.

    The scheme is compared in ASCII only, so that no Unicode case mapping can turn some other
    word into `bearer`.
    """
    scheme, after = value[: len(name)], value[len(name) : len(name) + 1]
    return scheme.isascii() and scheme.lower() == name and after in ("", " ")


def is_b64token(token: str) -> bool:
    """Whether `token` is an RFC 6750 b64token: what `[A-Za-z0-9\\-._~+/]+=*` fully matches.

    Checked with `bytes.translate`, which deletes the allowed characters in C: cheaper than the
    regular expression stepping through the token, and this runs on every protected request."""
    body = token.rstrip("=")
    return (
        bool(body)
        and body.isascii()
        and not body.encode("ascii").translate(None, _B64TOKEN_CHARACTERS)
    )


def extract_bearer(values: Sequence[str], max_token_bytes: int) -> str:
    """The token of the request's one `Authorization: Bearer` header, or a `Denied`.

    `values` are all the request's `Authorization` field values, in order. No detail ever
    quotes the token.
    """
    value = _only_value(values)
    if not _is_scheme(value):
        raise Denied(Reason.MISSING_TOKEN, "the Authorization header is not of the Bearer scheme")
    return _checked_token(value[len(_SCHEME) :].lstrip(" "), max_token_bytes, "Bearer")


def extract_dpop(values: Sequence[str], max_token_bytes: int) -> str | None:
    """The token of the request's one `Authorization: DPoP` header (RFC 9449 §7.1), checked
    as a Bearer one is; None when the header is of neither scheme."""
    value = _only_value(values)
    if not _is_scheme(value, _DPOP_SCHEME):
        return None
    return _checked_token(value[len(_DPOP_SCHEME) :].lstrip(" "), max_token_bytes, "DPoP")


def _checked_token(token: str, max_token_bytes: int, scheme: str) -> str:
    # The size comes before any parsing, so an oversized token costs a length check. A token
    # that passes b64token is ASCII, where characters and bytes count the same.
    if len(token) > max_token_bytes:
        raise Denied(Reason.MALFORMED_TOKEN, f"the token is longer than {max_token_bytes} bytes")
    if not token:
        raise Denied(Reason.INVALID_REQUEST, f"the {scheme} scheme carries no token")
    if not is_b64token(token):
        raise Denied(
            Reason.INVALID_REQUEST,
            "the token must be one RFC 6750 b64token after a space: letters, digits, "
            "-._~+/ and trailing =",
        )
    return token


def take_query_token(query: str, name: str) -> tuple[str | None, str]:
    """RFC 6750 §2.3, for a WebSocket upgrade on a route that allows it (SPEC §6.3): the value of
    the query parameter `name`, form-decoded, and the query without it, every other parameter
    byte for byte. None when it is absent; `invalid_request` when it is there more than once."""
    token: str | None = None
    kept: list[str] = []
    for parameter in query.split("&"):
        key, _, value = parameter.partition("=")
        if unquote_plus(key) != name:
            kept.append(parameter)
        elif token is not None:
            raise Denied(Reason.INVALID_REQUEST, f"more than one {name} query parameter")
        else:
            token = unquote_plus(value)
    return token, "&".join(kept)


def bearer_from_query(authorization: Sequence[str], token: str, max_token_bytes: int) -> str:
    """The query's token, checked as a header's would be; `invalid_request` when the request
    also has an `Authorization` header (RFC 6750 §2: one method per request)."""
    if authorization:
        raise Denied(
            Reason.INVALID_REQUEST, "a token in both the Authorization header and the query"
        )
    return extract_bearer([f"Bearer {token}"], max_token_bytes)
