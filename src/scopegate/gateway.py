"""The request handler: SPEC §3 in order, one stage per module.

    framing → target → routing → bearer → verify → scopes → body limit → headers → upstream

A WebSocket upgrade on a route with `websocket: true` (SPEC §6.3) takes the same steps, its token
possibly from the query; after the upstream's 101 the connection is a tunnel until it closes.

A denial is raised as `Denied` by whichever stage refuses and caught here once; the same value
makes the answer, the metric and the access-log line. A denied request never reaches an upstream:
forwarding is the last step, after every check has passed. The one exception is asked for: on a
report-only route (`enforce: report`) a denial by the token checks (bearer, verify, scopes) is
counted as a shadow denial and the request goes on; its shape (framing, target, route, method,
body limit) is checked as everywhere, and only a verified token's identity is forwarded.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable

from scopegate.config.model import Route
from scopegate.config.resource_document import PublishedMetadata
from scopegate.errors import BodyStalled, BodyTooLarge, UpstreamError
from scopegate.pipeline import RouteMatch
from scopegate.pipeline.bearer import (
    bearer_from_query,
    extract_bearer,
    extract_dpop,
    take_query_token,
)
from scopegate.pipeline.binding import check_binding, forwarded_certificate
from scopegate.pipeline.cors import CorsPolicy
from scopegate.pipeline.dpop_binding import PROOF_MAX_AGE
from scopegate.pipeline.scopes import require
from scopegate.pipeline.step_up import require_authentication
from scopegate.pipeline.target import parse_target
from scopegate.proxy import upstream, websocket
from scopegate.proxy.exchange import Exchange
from scopegate.proxy.pool import UpstreamPool
from scopegate.ratelimit.limiter import Limiter
from scopegate.ratelimit.resp import RedisError
from scopegate.reasons import Denied, Reason
from scopegate.runtime import Runtime
from scopegate.server.request import Request
from scopegate.telemetry import logs
from scopegate.telemetry.metrics import Metrics
from scopegate.wire.answer import Answer
from scopegate.wire.framing import check_framing
from scopegate.wire.problems import plain_problem, problem_answer, request_id
from scopegate.wire.websocket import POLICY_VIOLATION

METADATA_ROUTE = "(resource metadata)"  # its `route` label, set apart from route names


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
        exchange = Exchange(request, request_id(request.header(b"x-request-id")))
        runtime = self.runtime  # this request finishes on the generation it started with
        try:
            await self._decide_and_forward(exchange, runtime)
        except Denied as denied:
            if exchange.dpop_token is not None and not denied.dpop:
                # RFC 9449 §7.1: a request that came with the DPoP scheme hears why in the
                # DPoP challenge, whichever check refused it.
                denied = dataclasses.replace(denied, dpop=True)
            exchange.reason = denied.reason
            self._metrics.denied(exchange.route, denied.reason)
            close = _must_close(request, denied)
            metadata = None if runtime.metadata is None else runtime.metadata.url
            answer = problem_answer(denied, exchange.request_id, close=close,
                                    resource_metadata=metadata,
                                    dpop_algs=runtime.dpop.algs)  # fmt: skip
            _answer(exchange, answer)
        except BodyStalled as stalled:
            exchange.error = "body_timeout"
            rid = exchange.request_id
            timeout = plain_problem(408, "Request Timeout", str(stalled), "timeout", rid)
            timeout.close = True
            _answer(exchange, timeout)
        except UpstreamError as failure:
            exchange.error = exchange.upstream_failure = failure.kind
            title = "Bad gateway" if failure.status == 502 else "Gateway timeout"
            kind = f"upstream_{failure.kind}"
            _answer(
                exchange,
                plain_problem(failure.status, title, failure.detail, kind, exchange.request_id),
            )
        self._finish(exchange, self._clock() - started)

    async def _decide_and_forward(self, exchange: Exchange, runtime: Runtime) -> None:
        request = exchange.request
        limits = runtime.config.limits
        origin = None if runtime.cors is None else _origin_allowed_to_read(exchange, runtime.cors)
        check_framing(request.version, request.method, request.raw_path, request.raw_headers,
                      limits.max_header_bytes)  # fmt: skip
        target = parse_target(request.raw_path)
        exchange.path = target.path
        if runtime.metadata is not None and target.path == runtime.metadata.path:
            _answer_metadata(exchange, runtime.metadata)
            return
        if origin is not None and _preflight(exchange, runtime, origin):
            return
        match = runtime.routes.match(request.method, target.path)
        route = match.route
        exchange.route = route.name
        if not route.cors:
            exchange.cors_headers = None
        if (forwarded := runtime.config.forwarded_client_cert) is not None:
            exchange.via_trusted_proxy = forwarded.trusts(request.remote)
        query, upgrade = target.query, False
        if route.websocket:
            query, upgrade = _websocket_route(exchange, runtime, route, origin, query)
        if route.enforce == "report":
            await self._authenticate_reporting(exchange, runtime, route)
        else:
            await self._authenticate(exchange, runtime, route)
        exchange.body_limit = _body_limit(request, match, limits.max_body_bytes)
        expect = request.header(b"expect")
        if expect is not None and request.version == (1, 1) and expect.lower() == "100-continue":
            request.send_continue()  # SPEC §3.1: only now that the request is allowed
        upstream = exchange.upstream = runtime.config.upstreams[route.upstream]
        path = _strip_prefix(match.path, route.strip_prefix)
        exchange.target = upstream.base_path + path + ("" if query is None else "?" + query)
        if upgrade:
            await self._relay_websocket(exchange, runtime)
        else:
            await self._forward(exchange, runtime)

    async def _authenticate(self, exchange: Exchange, runtime: Runtime, route: Route) -> None:
        """The token's principal into `exchange` once verified (and the request counted, with
        rate limits), then its scopes checked."""
        limiter = runtime.limiter
        if route.auth == "none":
            if limiter is not None:
                counted = limiter.rules(route.name).counting(None, exchange.request.remote)
                exchange.answer_headers += await limiter.admit(counted)
            return
        if limiter is None:
            token = _token(exchange, runtime)
            exchange.principal = await runtime.verifier.verify(token, audience=route.audience)
        elif limiter.in_line and not (rules := limiter.rules(route.name)).by_ip:
            # Counted in this process, by token only (the usual case): in line, after it.
            token = _token(exchange, runtime)
            principal = await runtime.verifier.verify(token, audience=route.audience)
            exchange.principal = principal
            counted = rules.counting(principal, exchange.request.remote)
            exchange.answer_headers += limiter.admit_now(counted)
        else:
            await _verify_and_count(exchange, runtime, route, limiter)
        principal = exchange.principal
        if principal.bound_to is not None:  # RFC 8705: a certificate-bound token
            check_binding(principal.bound_to, _client_certificate(exchange, runtime))
        # RFC 9449: only a DPoP request, a DPoP-bound token, or an issuer's `required` needs the
        # policy; three attributes, since every request asks.
        dpop = runtime.dpop
        dpop_token = exchange.dpop_token
        if dpop_token is not None or principal.dpop_bound_to is not None or dpop.required_somewhere:
            await self._check_dpop(exchange, runtime)
        require(route.scopes, principal.scopes)
        if route.steps_up:  # RFC 9470
            leeway = _leeway(runtime, principal.issuer)
            require_authentication(route, principal.claims, now=time.time(), leeway=leeway)

    async def _authenticate_reporting(
        self, exchange: Exchange, runtime: Runtime, route: Route
    ) -> None:
        """`_authenticate` on a report-only route: a denial is counted as a shadow denial and
        the request goes on, with identity headers only if its token was verified. (A separate
        path, so that an enforcing route's denial is not caught and raised again.)"""
        try:
            await self._authenticate(exchange, runtime, route)
        except Denied as denied:
            exchange.shadow_reason = denied.reason
            self._metrics.shadow_denied(route.name, denied.reason)

    async def _check_dpop(self, exchange: Exchange, runtime: Runtime) -> None:
        """RFC 9449: the proof of possession a DPoP request carries, or a Bearer request's
        right to go without one (`pipeline.dpop_binding`). A sound proof is remembered in this
        process, and in the rate limits' Redis when there is one, so that no worker or replica
        accepts it twice; a Redis that fails leaves the check to this process (counted)."""
        request = exchange.request
        dpop = runtime.dpop
        token = exchange.dpop_token
        path = request.raw_path.partition("?")[0]
        now = time.time()
        proof = dpop.check(
            exchange.principal, token or "", token is not None, request.header_values(b"dpop"),
            method=request.method, url=dpop.url(request.scheme, request.header(b"host"), path),
            now=now,
        )  # fmt: skip
        if proof is None:
            return
        dpop.refuse_replay(proof, now)
        shared = runtime.shared_proofs
        if shared is None:
            return
        try:
            first = await shared.first_use(proof.replay_key, proof.iat + PROOF_MAX_AGE - now)
        except (RedisError, TimeoutError, OSError):
            self._metrics.rate_limit_store_failed()
            return
        if not first:
            raise Denied(Reason.INVALID_DPOP_PROOF, "the DPoP proof was used before (jti)",
                         dpop=True)  # fmt: skip

    async def _forward(self, exchange: Exchange, runtime: Runtime) -> None:
        head = runtime.headers.request_head(exchange)
        exchange.add_request_id_to_answer()
        try:
            await upstream.forward(self._pool, exchange, head)
        except BodyTooLarge as too_large:
            raise Denied(Reason.BODY_TOO_LARGE, str(too_large), challenge=False) from None

    async def _relay_websocket(self, exchange: Exchange, runtime: Runtime) -> None:
        """Forward the upgrade; once switched, relay until either side or the gateway closes:
        the gateway closes with 1008 when the token expires (`exp` plus the issuer's leeway)."""
        head = websocket.upgrade_head(runtime.headers.request_head(exchange))
        exchange.add_request_id_to_answer()
        idle = runtime.config.limits.websocket_idle_timeout
        tunnel = await websocket.open_tunnel(self._pool, exchange, head, idle)
        if tunnel is None:
            return  # the upstream answered otherwise, and that answer was relayed
        principal = exchange.principal
        if principal.expires_at is not None:
            expires = principal.expires_at + _leeway(runtime, principal.issuer) - time.time()
            tunnel.close_at(expires, POLICY_VIOLATION, "token expired", "token_expired")
        opened = self._clock()
        self._metrics.websocket_opened(exchange.route)
        reason = "shutdown"
        try:
            reason = await tunnel.ended
        finally:
            self._metrics.websocket_closed(exchange.route, reason)
            logs.event("websocket closed", logging.INFO, request_id=exchange.request_id,
                       route=exchange.route, reason=reason,
                       seconds=round(self._clock() - opened, 3))  # fmt: skip

    def _finish(self, exchange: Exchange, seconds: float) -> None:
        request = exchange.request
        status = request.answered_status
        metrics = self._metrics
        upstream_name = None if exchange.upstream is None else exchange.upstream.name
        if exchange.upstream_seconds is not None:
            metrics.upstream_answered(str(upstream_name), exchange.upstream_seconds)
        if exchange.upstream_failure is not None:
            metrics.upstream_failed(str(upstream_name), exchange.upstream_failure)
        metrics.answered(exchange.route, request.method, status, seconds)
        upstream_ms = exchange.upstream_seconds
        logs.access(
            request_id=exchange.request_id,
            method=request.method,
            path=exchange.path,
            route=exchange.route,
            status=status,
            decision=exchange.decision,
            reason=exchange.logged_reason,
            subject=exchange.principal.subject,
            client_id=exchange.principal.client_id,
            upstream=upstream_name,
            duration_ms=round(seconds * 1000, 3),
            upstream_ms=None if upstream_ms is None else round(upstream_ms * 1000, 3),
            remote=request.remote,
        )


def _answer(exchange: Exchange, answer: Answer) -> None:
    """Send one of scopegate's own answers, readable by an allowed web origin."""
    if exchange.cors_headers is not None:
        answer.headers += exchange.cors_headers
    exchange.request.answer(answer)


def _origin_allowed_to_read(exchange: Exchange, cors: CorsPolicy) -> str | None:
    """The request's `Origin`, if any; the CORS headers its answers carry when it is allowed."""
    origin = exchange.request.header(b"origin")
    if origin is not None:
        exchange.cors_headers = cors.answer_headers(origin)
    return origin


def _preflight(exchange: Exchange, runtime: Runtime, origin: str) -> bool:
    """Answer a CORS preflight (SPEC §6.2) without a token and without forwarding it; False when
    it is to be handled as any OPTIONS request: not a preflight, no route on the path, or the
    route says `cors: false`. A refusal is `Denied(cors_rejected)`, without CORS headers."""
    request, cors = exchange.request, runtime.cors
    if request.method != "OPTIONS" or cors is None:
        return False  # checked first: every request from a browser comes here
    method = request.header(b"access-control-request-method")
    if method is None:
        return False
    exchange.cors_headers = None
    path = str(exchange.path)
    try:
        route = runtime.routes.match(method, path).route
    except Denied as denied:
        if denied.reason is not Reason.METHOD_NOT_ALLOWED:
            return False
        methods = frozenset(denied.allow)
    else:
        if not route.cors:
            return False
        exchange.route = route.name
        methods = runtime.routes.methods_on(path) or frozenset({method})
    requested = exchange.request.header(b"access-control-request-headers")
    answer = Answer(204)
    answer.headers += cors.preflight(origin, method, requested, methods)
    answer.add("X-Request-Id", exchange.request_id)
    exchange.request.answer(answer)
    return True


def _client_certificate(exchange: Exchange, runtime: Runtime) -> bytes | None:
    """The client's certificate: forwarded by a trusted proxy (RFC 9440), else from the TLS
    handshake on this port."""
    request = exchange.request
    forwarded = runtime.config.forwarded_client_cert
    if forwarded is not None and exchange.via_trusted_proxy:
        return forwarded_certificate(request.header(forwarded.header.encode("latin-1")))
    return request.peer_certificate()


def _token(exchange: Exchange, runtime: Runtime) -> str:
    """The request's access token: from `Authorization` (Bearer, or DPoP when an issuer
    accepts it, which `exchange.dpop_token` then holds), or from the query of a WebSocket
    upgrade on a route that allows it."""
    headers = exchange.request.header_values(b"authorization")
    limit = runtime.config.limits.max_token_bytes
    if exchange.query_token is not None:
        return bearer_from_query(headers, exchange.query_token, limit)
    try:
        return extract_bearer(headers, limit)
    except Denied as denied:  # DPoP is tried only once Bearer failed: no cost for Bearer
        if denied.reason is not Reason.MISSING_TOKEN or not headers or not runtime.dpop.offered:
            raise
        token = extract_dpop(headers, limit)
        if token is None:
            raise
        exchange.dpop_token = token
        return token


async def _verify_and_count(
    exchange: Exchange, runtime: Runtime, route: Route, limiter: Limiter
) -> None:
    """Verify the token and count the request against the route's rules, in one store call
    (SPEC §6.5): `ip` rules count every request, before its token is looked at or even when it
    is refused; `client` and `subject` rules count only a verified token, so an invalid one
    never spends a client's budget."""
    rules = limiter.rules(route.name)
    remote = exchange.request.remote
    if not rules.by_principal:
        counted = rules.counting(None, remote)
        exchange.answer_headers += await limiter.admit(counted)
        token = _token(exchange, runtime)
        exchange.principal = await runtime.verifier.verify(token, audience=route.audience)
        return
    try:
        principal = await runtime.verifier.verify(
            _token(exchange, runtime), audience=route.audience
        )
    except Denied:
        if rules.by_ip:  # the address is counted all the same, and over its limit that wins
            await limiter.admit(rules.counting(None, remote))
        raise
    exchange.principal = principal
    counted = rules.counting(principal, remote)
    # A store counted in this process answers in line: no coroutine on the common path.
    exchange.answer_headers += await limiter.admit(counted)


def _websocket_route(
    exchange: Exchange, runtime: Runtime, route: Route, origin: str | None, query: str | None
) -> tuple[str | None, bool]:
    """On a `websocket: true` route: the query to forward, and whether the request is an
    upgrade to relay. The token parameter is taken out of every request's query (so that it
    reaches no upstream log), but counts only for an upgrade.

    Browsers apply no CORS to WebSockets, so with `cors:` configured the server checks the
    `Origin` of an upgrade itself: a page from an origin not allowed to call the API cannot
    open one either."""
    upgrade = websocket.asks_for_websocket(exchange.request)
    cors_applies = origin is not None and runtime.cors is not None and route.cors
    if upgrade and cors_applies and not exchange.cors_headers:
        raise Denied(Reason.CORS_REJECTED, f"the origin {origin} may not open a WebSocket")
    name = route.websocket_token_query
    if name is None or query is None:
        return query, upgrade
    token, rest = take_query_token(query, name)
    if upgrade:
        exchange.query_token = token
    return rest or None, upgrade


def _leeway(runtime: Runtime, issuer: str | None) -> float:
    for configured in runtime.config.issuers:
        if configured.issuer == issuer:
            return configured.leeway
    return 0.0


def _answer_metadata(exchange: Exchange, metadata: PublishedMetadata) -> None:
    """RFC 9728 §3: the protected resource metadata, answered by scopegate before any route.
    The document is public, so any web origin may read it (browser-based OAuth clients do)."""
    exchange.route = METADATA_ROUTE
    if exchange.request.method not in ("GET", "HEAD"):
        detail = "the resource metadata is read with GET"
        raise Denied(Reason.METHOD_NOT_ALLOWED, detail, allow=("GET", "HEAD"), challenge=False)
    answer = Answer(200, body=metadata.body)
    answer.add("Content-Type", "application/json")
    answer.add("Cache-Control", "public, max-age=3600")
    answer.add("Access-Control-Allow-Origin", "*")
    answer.add("X-Request-Id", exchange.request_id)
    exchange.request.answer(answer)


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
