"""CORS for browser apps (SPEC §6.2): which origins may read answers, and the preflight.

A browser asks before it sends a request a page may not send on its own (a DELETE, an
`Authorization` header): an `OPTIONS` with `Origin` and `Access-Control-Request-Method`. That
preflight carries no token by design, so scopegate answers it itself, from the configuration,
and never forwards it. Every other answer to an allowed origin names that origin and exposes
`WWW-Authenticate`, so that an app can read an `insufficient_scope` challenge and ask its user
for more. Origins are compared exactly; a `"*"` entry admits any origin, which is then named
back as it came (the configuration refuses `"*"` with credentials).

Usage::

    policy = CorsPolicy(config.cors)
    headers = policy.answer_headers(origin)          # None: not an allowed origin
    headers = policy.preflight(origin, method, requested_headers, methods_on_path)  # or Denied
"""

from __future__ import annotations

from scopegate.config.model import Cors
from scopegate.reasons import Denied, Reason

Headers = list[tuple[bytes, bytes]]

_PREFLIGHTS_REMEMBERED = 256
_VARY_PREFLIGHT = b"Origin, Access-Control-Request-Method, Access-Control-Request-Headers"


class CorsPolicy:
    """A `cors:` section compiled once per configuration generation."""

    def __init__(self, cors: Cors) -> None:
        self._origins = cors.allow_origins
        self._any_origin = cors.any_origin
        self._methods = None if cors.allow_methods is None else frozenset(cors.allow_methods)
        self._headers = frozenset(cors.allow_headers)
        exposed = dict.fromkeys(["WWW-Authenticate", *(_title(h) for h in cors.expose_headers)])
        self._expose = ", ".join(exposed).encode("ascii")
        self._allow_headers = ", ".join(cors.allow_headers).encode("ascii")
        self._max_age = str(cors.max_age).encode("ascii")
        self._credentials = cors.allow_credentials
        # The answer headers of each named origin, made once: most requests come from one.
        self._answers = {origin: self._headers_for(origin) for origin in cors.allow_origins}
        self._preflights: dict[tuple[str, str, str | None, frozenset[str]], Headers] = {}

    def allows(self, origin: str) -> bool:
        return origin in self._origins or (self._any_origin and origin != "null")

    def answer_headers(self, origin: str) -> Headers | None:
        """The CORS headers of an answer to a request from `origin`; None if not allowed.
        The list is shared between requests: add it to an answer's headers, never change it."""
        answer = self._answers.get(origin)
        if answer is not None or not self._any_origin or origin == "null":
            return answer
        return self._headers_for(origin)

    def _headers_for(self, origin: str) -> Headers:
        headers = [
            (b"Access-Control-Allow-Origin", origin.encode("latin-1")),
            (b"Access-Control-Expose-Headers", self._expose),
            (b"Vary", b"Origin"),
        ]
        if self._credentials:
            headers.append((b"Access-Control-Allow-Credentials", b"true"))
        return headers

    def preflight(
        self, origin: str, method: str, requested: str | None, methods_on_path: frozenset[str]
    ) -> Headers:
        """The headers of a 204 that lets the browser send `method` with the `requested`
        headers from `origin`; `Denied(cors_rejected)` when any of the three is not allowed.
        `methods_on_path`: what the routes of the path allow, the default of `allow_methods`.

        An app sends the same few preflights again and again: the answers allowed are
        remembered (at most `_PREFLIGHTS_REMEMBERED`; then the memory starts over)."""
        key = (origin, method, requested, methods_on_path)
        remembered = self._preflights.get(key)
        if remembered is not None:
            return remembered
        headers = self._checked_preflight(origin, method, requested, methods_on_path)
        if len(self._preflights) >= _PREFLIGHTS_REMEMBERED:
            self._preflights.clear()
        self._preflights[key] = headers
        return headers

    def _checked_preflight(
        self, origin: str, method: str, requested: str | None, methods_on_path: frozenset[str]
    ) -> Headers:
        if not self.allows(origin):
            raise Denied(
                Reason.CORS_REJECTED, f"the origin {origin} is not allowed", challenge=False
            )
        allowed = self._methods if self._methods is not None else methods_on_path
        if method not in allowed:
            raise Denied(Reason.CORS_REJECTED, f"{method} is not allowed from {origin}",
                         challenge=False)  # fmt: skip
        asked = {name.strip().lower() for name in (requested or "").split(",") if name.strip()}
        # Browsers list only headers outside the CORS safelist, so each must be allowed here.
        if refused := asked - self._headers:
            detail = f"header(s) not allowed: {', '.join(sorted(refused))}"
            raise Denied(Reason.CORS_REJECTED, detail, challenge=False)
        headers = [
            (b"Access-Control-Allow-Origin", origin.encode("latin-1")),
            (b"Access-Control-Allow-Methods", ", ".join(sorted(allowed)).encode("ascii")),
            (b"Access-Control-Allow-Headers", self._allow_headers),
            (b"Access-Control-Max-Age", self._max_age),
            (b"Vary", _VARY_PREFLIGHT),
        ]
        if self._credentials:
            headers.append((b"Access-Control-Allow-Credentials", b"true"))
        return headers


def _title(name: str) -> str:
    """`x-request-id` → `X-Request-Id`: as the headers are written on the wire."""
    return "-".join(part.capitalize() for part in name.split("-"))
