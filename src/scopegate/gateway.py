"""The request handler: SPEC §3 in order, one stage per module.

    framing → target → routing → bearer → verify → scopes → body limit → headers → upstream

A denial is raised as `Denied` by whichever stage refuses and caught here once; the same value
makes the answer, the metric and the access-log line. A denied request never reaches an upstream:
forwarding is the last line of `handle`, after every check has passed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from scopegate.errors import BodyStalled, BodyTooLarge, UpstreamError
from scopegate.pipeline import ANONYMOUS, Principal, RouteMatch
from scopegate.pipeline.bearer import extract_bearer
from scopegate.pipeline.scopes import require
from scopegate.pipeline.target import parse_target
from scopegate.proxy import upstream
from scopegate.proxy.pool import UpstreamPool
from scopegate.reasons import Denied, Reason
from scopegate.runtime import Runtime
from scopegate.server.request import Request
from scopegate.telemetry import logs
from scopegate.telemetry.metrics import UNMATCHED, Metrics
from scopegate.wire.framing import check_framing
from scopegate.wire.problems import REQUEST_ID_HEADER, plain_problem, problem_answer, request_id


@dataclass
class _Outcome:
    """What the access log and metrics say about one request, filled in as it goes."""

    route: str = UNMATCHED
    path: str | None = None
    reason: Reason | None = None
    upstream: str | None = None
    principal: Principal = field(default=ANONYMOUS)
    error: str | None = None
    upstream_seconds: float | None = None


_REQUEST_ID_BYTES = REQUEST_ID_HEADER.encode("ascii")


class Gateway:
    """Holds the current `Runtime` (swapped whole on reload) and answers requests with it."""

    def __init__(
        self,
        runtime: Runtime,
        pool: UpstreamPool,
        metrics: Metrics,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.runtime = runtime
        self._pool = pool
        self._metrics = metrics
        self._clock = clock

    async def handle(self, request: Request) -> None:
        started = self._clock()
        rid = request_id(request.header(b"x-request-id"))
        runtime = self.runtime  # this request finishes on the generation it started with
        outcome = _Outcome()
        try:
            await self._decide_and_forward(request, runtime, rid, outcome)
        except Denied as denied:
            outcome.reason = denied.reason
            self._metrics.denied(outcome.route, denied.reason)
            request.answer(problem_answer(denied, rid, close=_must_close(request, denied)))
        except BodyStalled as stalled:
            outcome.error = "body_timeout"
            timeout = plain_problem(408, "Request Timeout", str(stalled), "timeout", rid)
            timeout.close = True
            request.answer(timeout)
        except UpstreamError as failure:
            outcome.error = failure.kind
            self._metrics.upstream_failed(str(outcome.upstream), failure.kind)
            request.answer(
                plain_problem(
                    failure.status,
                    "Bad gateway" if failure.status == 502 else "Gateway timeout",
                    failure.detail,
                    f"upstream_{failure.kind}",
                    rid,
                )
            )
        self._finish(request, rid, outcome, self._clock() - started)

    async def _decide_and_forward(
        self, request: Request, runtime: Runtime, rid: str, outcome: _Outcome
    ) -> None:
        limits = runtime.config.limits
        check_framing(
            request.version,
            request.method,
            request.raw_path,
            request.raw_headers,
            limits.max_header_bytes,
        )
        target = parse_target(request.raw_path)
        outcome.path = target.path
        match = runtime.routes.match(request.method, target.path)
        outcome.route = match.route.name
        principal = await self._authenticate(request, runtime, match)
        outcome.principal = principal
        body_limit = _body_limit(request, match, limits.max_body_bytes)
        expect = request.header(b"expect")
        if expect is not None and request.version == (1, 1) and expect.lower() == "100-continue":
            request.send_continue()  # SPEC §3.1: only now that the request is allowed
        await self._forward(
            request, runtime, match, target.query, principal, rid, body_limit, outcome
        )

    async def _authenticate(
        self, request: Request, runtime: Runtime, match: RouteMatch
    ) -> Principal:
        route = match.route
        if route.auth == "none":
            return ANONYMOUS
        token = extract_bearer(
            request.header_values(b"authorization"), runtime.config.limits.max_token_bytes
        )
        principal = await runtime.verifier.verify(token, audience=route.audience)
        require(route.scopes, principal.scopes)
        return principal

    async def _forward(
        self,
        request: Request,
        runtime: Runtime,
        match: RouteMatch,
        query: str | None,
        principal: Principal,
        rid: str,
        body_limit: int,
        outcome: _Outcome,
    ) -> None:
        route = match.route
        target_upstream = runtime.config.upstreams[route.upstream]
        outcome.upstream = target_upstream.name
        path = _strip_prefix(match.path, route.strip_prefix)
        target = target_upstream.base_path + path + ("" if query is None else "?" + query)
        head = runtime.headers.request_head(
            upstream.request_line(request.method, target),
            request.raw_headers,
            principal,
            client_ip=request.remote,
            scheme=request.scheme,
            upstream_host=None if target_upstream.preserve_host else target_upstream.authority,
            request_id=rid,
            framing=upstream.body_framing(request),
        )
        try:
            await upstream.forward(
                self._pool,
                request,
                target_upstream,
                head,
                body_limit=body_limit,
                extra_response_headers=[(_REQUEST_ID_BYTES, rid.encode("ascii"))],
                observe=lambda name, seconds: self._observe_upstream(outcome, name, seconds),
                observe_failure=self._metrics.upstream_failed,
            )
        except BodyTooLarge as too_large:
            raise Denied(Reason.BODY_TOO_LARGE, str(too_large), challenge=False) from None

    def _observe_upstream(self, outcome: _Outcome, name: str, seconds: float) -> None:
        outcome.upstream_seconds = seconds
        self._metrics.upstream_answered(name, seconds)

    def _finish(self, request: Request, rid: str, outcome: _Outcome, seconds: float) -> None:
        status = request.answered_status
        self._metrics.answered(outcome.route, request.method, status, seconds)
        logs.access(
            request_id=rid,
            method=request.method,
            path=outcome.path,
            route=outcome.route,
            status=status,
            decision="deny" if outcome.reason else ("error" if outcome.error else "allow"),
            reason=str(outcome.reason) if outcome.reason else outcome.error,
            subject=outcome.principal.subject,
            client_id=outcome.principal.client_id,
            upstream=outcome.upstream,
            duration_ms=round(seconds * 1000, 3),
            upstream_ms=(
                None
                if outcome.upstream_seconds is None
                else round(outcome.upstream_seconds * 1000, 3)
            ),
            remote=request.remote,
        )


def _body_limit(request: Request, match: RouteMatch, default: int) -> int:
    """The route's body limit; a declared length over it is refused before any byte moves."""
    limit = match.route.max_body_bytes if match.route.max_body_bytes is not None else default
    if request.content_length is not None and request.content_length > limit:
        raise Denied(
            Reason.BODY_TOO_LARGE,
            f"the declared body of {request.content_length} bytes exceeds {limit}",
            challenge=False,
        )
    return limit


def _strip_prefix(path: str, prefix: str | None) -> str:
    if prefix is None:
        return path
    if path == prefix:
        return "/"
    if path.startswith(prefix + "/"):
        return path[len(prefix) :]
    return path


def _must_close(request: Request, denied: Denied) -> bool:
    """Close after a framing doubt, or when an unread body would otherwise have to be drained."""
    if denied.reason is Reason.HEADERS_TOO_LARGE or (
        denied.reason is Reason.INVALID_REQUEST and not denied.challenge
    ):
        return True
    return not request.body.complete
