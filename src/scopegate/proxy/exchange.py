"""One request's passage through the gateway, as one value.

The handler creates an `Exchange` when a request arrives and each stage fills in what it
learned: the route and normalised path, the verified principal, the upstream and target, the
body limit. The header policy reads it to write the upstream's request head, the exchange with
the upstream streams through it and records how the upstream did, and the handler's last step
turns it into the metrics and the access-log line. Headers scopegate adds to the answer it
relays (`answer_headers`) hang here too, so a stage that needs to add one has one place to do it.

Usage::

    exchange = Exchange(request, request_id)
    exchange.route, exchange.path = match.route.name, target.path
    ...
    head = runtime.headers.request_head(exchange)
    await upstream.forward(pool, exchange, head)
"""

from __future__ import annotations

from dataclasses import dataclass, field

from scopegate.config.model import Upstream
from scopegate.errors import UpstreamFailureKind
from scopegate.pipeline import ANONYMOUS, Principal
from scopegate.reasons import Reason
from scopegate.server.request import Request
from scopegate.telemetry.metrics import UNMATCHED
from scopegate.wire.problems import REQUEST_ID_HEADER

_REQUEST_ID = REQUEST_ID_HEADER.encode("ascii")


@dataclass(slots=True, eq=False)
class Exchange:
    request: Request
    request_id: str
    route: str = UNMATCHED  # the route's name, for metrics and the access log
    path: str | None = None  # the normalised path, once the target was read
    principal: Principal = field(default=ANONYMOUS)
    upstream: Upstream | None = None
    target: str = ""  # the request target sent upstream: its base path, the path, the query
    body_limit: int = 0
    # A WebSocket upgrade's token from the query (SPEC §6.3), in place of `Authorization`.
    query_token: str | None = None
    # The peer is a proxy `forwarded_client_cert` trusts: its `Client-Cert` counts, and passes.
    via_trusted_proxy: bool = False
    dpop_token: str | None = None  # the token, when it came as `Authorization: DPoP` (RFC 9449)
    answer_headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    # CORS headers for an allowed `Origin` (SPEC §6.2): on every answer, replacing the
    # upstream's own; None without `cors:`, without an allowed origin, or on `cors: false`.
    cors_headers: list[tuple[bytes, bytes]] | None = None
    # How it ended: a denial's reason, or an error that is not a denial (`body_timeout`, an
    # upstream failure's kind); what the upstream failed with, even midway through a relay; how
    # long the upstream took, when it was asked.
    reason: Reason | None = None
    shadow_reason: Reason | None = None  # what a report-only route forwarded anyway
    error: str | None = None
    upstream_failure: UpstreamFailureKind | None = None
    upstream_seconds: float | None = None

    def add_request_id_to_answer(self) -> None:
        """The request id goes back with the upstream's answer (scopegate's own answers carry it
        already); added only once the request is forwarded, so a denial costs nothing here."""
        self.answer_headers.append((_REQUEST_ID, self.request_id.encode("ascii")))

    @property
    def decision(self) -> str:
        """The access log's `decision`: deny, error, shadow_deny (forwarded by a report-only
        route although a check would deny it) or allow."""
        if self.reason:
            return "deny"
        if self.error:
            return "error"
        return "shadow_deny" if self.shadow_reason else "allow"

    @property
    def logged_reason(self) -> str | None:
        """The access log's `reason`: the denial's, else the error's, else the shadow denial's."""
        if self.reason:
            return str(self.reason)
        if self.error:
            return self.error
        return str(self.shadow_reason) if self.shadow_reason else None
