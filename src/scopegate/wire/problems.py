"""The answers scopegate makes itself: RFC 9457 problem+json bodies, RFC 6750 challenges and
request ids.

Usage::

    answer = problem_answer(Denied(Reason.EXPIRED_TOKEN, "token expired"), request_id)
    # 401, WWW-Authenticate: Bearer realm="scopegate", error="invalid_token",
    #      error_description="token expired"; body {"type": ..., "status": 401, ...}
"""

from __future__ import annotations

import json
import random
import re

from scopegate.reasons import CHALLENGE_REASONS, Denied
from scopegate.wire.answer import Answer

REALM = "scopegate"
PROBLEM_TYPE_BASE = "https://scopegate.dev/problems/"
REQUEST_ID_HEADER = "X-Request-Id"

# A client's request id is echoed only when it is short and made of harmless characters: it lands
# in logs and upstream headers, where anything else could forge entries or split lines.
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:@/+=-]{1,128}")
# RFC 6750 §3: error_description and scope use %x20-21 / %x23-5B / %x5D-7E (no quote, no backslash).
_UNSAFE_IN_QUOTED = re.compile(r"[^\x20\x21\x23-\x5b\x5d-\x7e]")


def request_id(client_value: str | None) -> str:
    """The client's `X-Request-Id` when it is sane, else a fresh random one."""
    if client_value is not None and _SANE_REQUEST_ID.fullmatch(client_value):
        return client_value
    # A correlation id, not a secret: the fast generator is enough and spares a system call.
    return f"{random.getrandbits(128):032x}"


def _quoted(value: str) -> str:
    return '"' + _UNSAFE_IN_QUOTED.sub("?", value) + '"'


def challenge(denied: Denied, resource_metadata: str | None = None) -> str | None:
    """The `WWW-Authenticate` value for a denial, or None when the answer carries no challenge.
    A 401's names `resource_metadata`, the URL of the RFC 9728 document, when there is one."""
    if not denied.challenge or denied.reason not in CHALLENGE_REASONS:
        return None
    params = [f"realm={_quoted(REALM)}"]
    error = denied.reason.oauth_error
    if error is not None:  # RFC 6750 §3.1: a request with no credentials gets no error code
        params.append(f"error={_quoted(error)}")
        params.append(f"error_description={_quoted(denied.detail)}")
    if denied.scope is not None:
        params.append(f"scope={_quoted(denied.scope)}")
    if resource_metadata is not None and denied.status == 401:
        params.append(f"resource_metadata={_quoted(resource_metadata)}")
    return "Bearer " + ", ".join(params)


def problem_body(status: int, title: str, detail: str, slug: str) -> bytes:
    return json.dumps(
        {"type": PROBLEM_TYPE_BASE + slug, "title": title, "status": status, "detail": detail},
        ensure_ascii=True,
    ).encode()


def problem_answer(
    denied: Denied, rid: str, *, close: bool = False, resource_metadata: str | None = None
) -> Answer:
    """The complete answer to a denied request; `resource_metadata` as for `challenge`."""
    reason = denied.reason
    answer = plain_problem(denied.status, reason.heading, denied.detail, str(reason), rid)
    www_authenticate = challenge(denied, resource_metadata)
    if www_authenticate is not None:
        answer.add("WWW-Authenticate", www_authenticate)
    if denied.allow:
        answer.add("Allow", ", ".join(denied.allow))
    if denied.retry_after is not None:
        answer.add("Retry-After", str(denied.retry_after))
    if denied.headers:
        answer.headers += denied.headers
    answer.close = close
    return answer


def plain_problem(status: int, title: str, detail: str, slug: str, rid: str) -> Answer:
    """A problem+json answer that is not a denial (upstream failures, framing errors)."""
    answer = Answer(status, body=problem_body(status, title, detail, slug))
    answer.add("Content-Type", "application/problem+json")
    answer.add(REQUEST_ID_HEADER, rid)
    answer.add("Cache-Control", "no-store")
    return answer


def internal_error(rid: str) -> Answer:
    answer = plain_problem(500, "Internal error", "the gateway failed", "internal", rid)
    answer.close = True
    return answer
