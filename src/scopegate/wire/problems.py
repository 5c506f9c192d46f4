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


def challenge(
    denied: Denied, resource_metadata: str | None = None, dpop_algs: str | None = None
) -> list[str]:
    """The `WWW-Authenticate` values for a denial: none when the answer carries no challenge,
    else a Bearer one (RFC 6750 §3), and a DPoP one (RFC 9449 §7.1) when `dpop_algs` says which
    proof algorithms are accepted. The error is said in the challenge of the scheme the request
    used. A 401's Bearer challenge names `resource_metadata`, the URL of the RFC 9728 document,
    when there is one."""
    if not denied.challenge or denied.reason not in CHALLENGE_REASONS:
        return []
    params = [f"realm={_quoted(REALM)}"]
    error = [] if denied.reason.oauth_error is None else _error_params(denied)
    if not denied.dpop:
        params += error
    if resource_metadata is not None and denied.status == 401:
        params.append(f"resource_metadata={_quoted(resource_metadata)}")
    challenges = ["Bearer " + ", ".join(params)]
    if dpop_algs is not None:
        dpop = error if denied.dpop else []
        challenges.append("DPoP " + ", ".join([*dpop, f"algs={_quoted(dpop_algs)}"]))
    return challenges


def _error_params(denied: Denied) -> list[str]:
    """RFC 6750 §3.1: a request with no credentials gets no error code; any other names one."""
    # A denial may name a finer code than its reason's (RFC 9449 §9 `use_dpop_nonce`).
    error = getattr(denied, "error", None) or denied.reason.oauth_error
    assert error is not None
    params = [f"error={_quoted(error)}", f"error_description={_quoted(denied.detail)}"]
    if denied.scope is not None:
        params.append(f"scope={_quoted(denied.scope)}")
    params += [f"{name}={_quoted(value)}" for name, value in denied.challenge_params]
    return params


def problem_body(status: int, title: str, detail: str, slug: str) -> bytes:
    return json.dumps(
        {"type": PROBLEM_TYPE_BASE + slug, "title": title, "status": status, "detail": detail},
        ensure_ascii=True,
    ).encode()


def problem_answer(
    denied: Denied,
    rid: str,
    *,
    close: bool = False,
    resource_metadata: str | None = None,
    dpop_algs: str | None = None,
) -> Answer:
    """The complete answer to a denied request; `resource_metadata` and `dpop_algs` as for
    `challenge`."""
    reason = denied.reason
    answer = plain_problem(denied.status, reason.heading, denied.detail, str(reason), rid)
    for www_authenticate in challenge(denied, resource_metadata, dpop_algs):
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
