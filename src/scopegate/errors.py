"""Every exception scopegate raises comes from one tree; each leaf keeps the fact that failed.

    ScopegateError
    ├── Denied                  a request refused: reason, detail (`reasons`)
    ├── ConfigErrors            a file refused: every problem, positioned (`config.errors`)
    ├── PatternError            a route path that is not a pattern (`pipeline.patterns`)
    ├── KeyFetchError           url, reason: discovery or JWKS fetch failed
    ├── TokenRefused            the demo issuer would not mint a token (`devtools`)
    ├── ClientError             the client side of an exchange ended early
    │   ├── ClientGone          the client closed, or took nothing it was sent
    │   ├── BodyStalled         seconds the body stood still
    │   └── BodyTooLarge        limit: the route's body limit, passed while streaming
    └── UpstreamError           cause; `kind` (the metric's reason), `status`, `detail`
        ├── UpstreamUnreachable   why no connection could be made              502 connect
        ├── UpstreamTimeout       seconds the upstream stood still             504 timeout
        └── UpstreamClosed        what ended the connection too early          502 reset

`str()` of a leaf is for logs and operators; `UpstreamError.detail` is the sentence a client
may read in the problem answer (it never names an address or a library).
"""

from __future__ import annotations

from typing import ClassVar, Literal

UpstreamFailureKind = Literal["connect", "timeout", "reset"]


class ScopegateError(Exception):
    """The root: `except ScopegateError` catches every failure scopegate itself reports."""


class KeyFetchError(ScopegateError):
    """A discovery or key set fetch that failed; `reason` says why in a sentence."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"{url}: {reason}")
        self.url = url
        self.reason = reason


class ClientError(ScopegateError):
    """The client's side of an exchange ended before it was complete."""


class ClientGone(ClientError):
    """The client closed the connection before its request or our answer was complete, or took
    none of the answer for the idle timeout."""


class BodyStalled(ClientError):
    """The client stopped sending its body for `seconds`."""

    def __init__(self, seconds: float | None = None, what: str = "the request body") -> None:
        limit = "" if seconds is None else f" for {seconds:g} s"
        super().__init__(f"{what} stopped arriving{limit}")
        self.seconds = seconds


class BodyTooLarge(ClientError):
    """The client sent more body than the route allows (`limit` bytes); nothing complete
    reached the upstream."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the request body exceeds {limit} bytes")
        self.limit = limit


class UpstreamError(ScopegateError):
    """The upstream could not be reached or did not answer whole, because of `cause`. `kind` is
    the reason label of `scopegate_upstream_errors_total`, `status` the answer when nothing was
    sent yet, `detail` what the client is told."""

    kind: ClassVar[UpstreamFailureKind]
    status: ClassVar[int]
    detail: ClassVar[str]

    def __init__(self, cause: str) -> None:
        super().__init__(cause)
        self.cause = cause


class UpstreamUnreachable(UpstreamError):
    """No connection could be made (refused, unreachable, TLS, connect timeout): `cause`."""

    kind = "connect"
    status = 502
    detail = "the upstream could not be reached"


class UpstreamTimeout(UpstreamError):
    """The upstream did not move for `seconds` (its head, or a pause in its body)."""

    kind = "timeout"
    status = 504
    detail = "the upstream did not answer in time"

    def __init__(self, seconds: float | None = None) -> None:
        super().__init__("no progress" + ("" if seconds is None else f" for {seconds:g} s"))
        self.seconds = seconds


class UpstreamClosed(UpstreamError):
    """The connection ended, or the answer was not HTTP, before the answer was complete."""

    kind = "reset"
    status = 502
    detail = "the upstream closed the connection"
