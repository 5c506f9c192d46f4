"""The vocabulary of refusals: every reason of SPEC §5, its status and how it is said on the wire.

A denial is raised once, as ``Denied(Reason.EXPIRED_TOKEN, "token expired")``, and caught once by
the gateway; the same value then drives the status code, the RFC 6750 challenge, the RFC 9457
problem body, the ``reason`` metric label and the access-log field.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from scopegate.errors import ScopegateError


class Reason(StrEnum):
    """Why a request was refused; the values are the ``reason`` label of the denials metric."""

    MISSING_TOKEN = "missing_token"
    INVALID_REQUEST = "invalid_request"
    MALFORMED_TOKEN = "malformed_token"
    DISALLOWED_ALG = "disallowed_alg"
    INVALID_ISSUER = "invalid_issuer"
    UNKNOWN_KEY = "unknown_key"
    BAD_SIGNATURE = "bad_signature"
    EXPIRED_TOKEN = "expired_token"
    NOT_YET_VALID = "not_yet_valid"
    INVALID_AUDIENCE = "invalid_audience"
    MISSING_CLAIM = "missing_claim"
    INVALID_TOKEN_TYPE = "invalid_token_type"
    INSUFFICIENT_SCOPE = "insufficient_scope"
    ISSUER_UNAVAILABLE = "issuer_unavailable"
    NO_ROUTE = "no_route"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    BAD_PATH = "bad_path"
    BODY_TOO_LARGE = "body_too_large"
    HEADERS_TOO_LARGE = "headers_too_large"
    CORS_REJECTED = "cors_rejected"
    RATE_LIMITED = "rate_limited"
    TOKEN_BINDING_MISMATCH = "token_binding_mismatch"
    RATE_LIMIT_UNAVAILABLE = "rate_limit_unavailable"
    INACTIVE_TOKEN = "inactive_token"
    INVALID_DPOP_PROOF = "invalid_dpop_proof"
    INSUFFICIENT_USER_AUTHENTICATION = "insufficient_user_authentication"

    @property
    def status(self) -> int:
        return _STATUS[self]

    @property
    def heading(self) -> str:
        """The problem+json `title`: short, the same for every denial of this reason."""
        return _TITLE[self]

    @property
    def oauth_error(self) -> str | None:
        """The RFC 6750 ``error`` code said on the wire, or None when the challenge carries none."""
        if self in INVALID_TOKEN_REASONS:
            return "invalid_token"
        if self is Reason.INVALID_REQUEST:
            return "invalid_request"
        if self is Reason.INSUFFICIENT_SCOPE:
            return "insufficient_scope"
        if self is Reason.INVALID_DPOP_PROOF:
            return "invalid_dpop_proof"
        if self is Reason.INSUFFICIENT_USER_AUTHENTICATION:
            return "insufficient_user_authentication"
        return None


# The checks that RFC 6750 folds into one `invalid_token` answer; the metric keeps them apart.
INVALID_TOKEN_REASONS = frozenset(
    {
        Reason.MALFORMED_TOKEN,
        Reason.DISALLOWED_ALG,
        Reason.INVALID_ISSUER,
        Reason.UNKNOWN_KEY,
        Reason.BAD_SIGNATURE,
        Reason.EXPIRED_TOKEN,
        Reason.NOT_YET_VALID,
        Reason.INVALID_AUDIENCE,
        Reason.MISSING_CLAIM,
        Reason.INVALID_TOKEN_TYPE,
        Reason.TOKEN_BINDING_MISMATCH,
        Reason.INACTIVE_TOKEN,
    }
)

# Reasons answered with `WWW-Authenticate: Bearer ...` (RFC 6750 §3).
CHALLENGE_REASONS = INVALID_TOKEN_REASONS | {
    Reason.MISSING_TOKEN,
    Reason.INVALID_REQUEST,
    Reason.INSUFFICIENT_SCOPE,
    Reason.INVALID_DPOP_PROOF,  # RFC 9449 §7.1, said in the DPoP challenge
    Reason.INSUFFICIENT_USER_AUTHENTICATION,  # RFC 9470 §3
}

_STATUS: dict[Reason, int] = {
    **dict.fromkeys(INVALID_TOKEN_REASONS, 401),
    Reason.MISSING_TOKEN: 401,
    Reason.INVALID_REQUEST: 400,
    Reason.INSUFFICIENT_SCOPE: 403,
    Reason.ISSUER_UNAVAILABLE: 503,
    Reason.NO_ROUTE: 404,
    Reason.METHOD_NOT_ALLOWED: 405,
    Reason.BAD_PATH: 400,
    Reason.BODY_TOO_LARGE: 413,
    Reason.HEADERS_TOO_LARGE: 431,
    Reason.CORS_REJECTED: 403,
    Reason.RATE_LIMITED: 429,
    Reason.RATE_LIMIT_UNAVAILABLE: 503,
    Reason.INVALID_DPOP_PROOF: 401,
    Reason.INSUFFICIENT_USER_AUTHENTICATION: 401,
}

_TITLE: dict[Reason, str] = {
    **dict.fromkeys(INVALID_TOKEN_REASONS, "Invalid token"),
    Reason.MISSING_TOKEN: "Authentication required",
    Reason.INVALID_REQUEST: "Invalid request",
    Reason.INSUFFICIENT_SCOPE: "Insufficient scope",
    Reason.ISSUER_UNAVAILABLE: "Token issuer unavailable",
    Reason.NO_ROUTE: "Not found",
    Reason.METHOD_NOT_ALLOWED: "Method not allowed",
    Reason.BAD_PATH: "Bad request target",
    Reason.BODY_TOO_LARGE: "Request body too large",
    Reason.HEADERS_TOO_LARGE: "Request header fields too large",
    Reason.CORS_REJECTED: "Cross-origin request rejected",
    Reason.RATE_LIMITED: "Too many requests",
    Reason.RATE_LIMIT_UNAVAILABLE: "Rate limit store unavailable",
    Reason.INVALID_DPOP_PROOF: "Invalid DPoP proof",
    Reason.INSUFFICIENT_USER_AUTHENTICATION: "Stronger authentication required",
}


# Not frozen: raising sets __traceback__, and contextlib sets it again on the way out of a
# context manager, which a frozen dataclass refuses. Nothing changes a Denied once made.
@dataclass(eq=False)
class Denied(ScopegateError):
    """A request refused for ``reason``; ``detail`` is safe to show the client (never the token).

    ``scope`` is the RFC 6750 ``scope`` attribute of a 403, ``allow`` the methods of a 405,
    ``retry_after`` the seconds of a 503 or 429, ``headers`` more for the answer.
    ``challenge_params`` are more attributes of the challenge (RFC 9470's ``acr_values`` and
    ``max_age``); ``dpop`` says the error belongs to the DPoP challenge (RFC 9449 §7.1): the
    request came with the DPoP scheme, or its proof failed. ``challenge``
    is False for framing errors counted as ``invalid_request`` that have nothing to do with a
    bearer token. ``status_override`` answers
    with another status than the reason's, for a refusal SPEC §5 counts under a reason whose
    usual status would misstate it (a transfer coding scopegate does not implement: 501, counted
    as ``invalid_request``).
    """

    reason: Reason
    detail: str
    scope: str | None = None
    allow: tuple[str, ...] = ()
    retry_after: int | None = None
    challenge: bool = True
    status_override: int | None = None
    headers: tuple[tuple[bytes, bytes], ...] = ()
    challenge_params: tuple[tuple[str, str], ...] = ()
    dpop: bool = False

    @property
    def status(self) -> int:
        """The status of the answer: the reason's, unless this denial overrides it."""
        return self.reason.status if self.status_override is None else self.status_override

    def __str__(self) -> str:
        return f"{self.reason}: {self.detail}"
