"""RFC 7662 token introspection: asking an issuer what an opaque token (or, with `jwt: true`, a
JWT) stands for (SPEC §6.4).

- **The call**: a form POST of `token` and `token_type_hint=access_token` to the endpoint the
  configuration names, or else the issuer's discovery document's `introspection_endpoint`,
  authenticated with `client_secret_basic` (RFC 6749 §2.3.1: both halves form-encoded, then
  base64) or `client_secret_post`. Redirects are not followed, plain `http` is refused except to
  loopback, the body is capped, and the whole call is bounded by `timeout`.
- **One call per token at a time**: requests that arrive while a token is being introspected
  wait for that call's answer rather than making their own, and the call goes on if the request
  that started it goes away.
- **Answers**: `active: true` gives the answer's members, checked for their types (RFC 7519's
  for `exp`, `iat`, `nbf`, `aud`, `sub`; `scope` a string; `cnf` an object); `active: false` is
  remembered for `negative_cache_ttl` (a bounded, oldest-first store), so a client retrying a
  revoked token costs the issuer one call per interval. Active answers are remembered by the
  verifier's own cache (`pipeline.verify`), never past `exp` nor past `cache_ttl`.
- **Failures**: no answer within `timeout`, a connection refused, a status other than 200, a
  body that is not a JSON object with a boolean `active` or whose members have the wrong types:
  `issuer_unavailable` (503), never remembered, so the next request asks again. A 401 or 403
  from the endpoint means scopegate's own credentials are wrong, and is logged as such.

The client secret goes only into the request to the endpoint: no log line, error or metric
carries it, nor the token (tokens are remembered by digest, `cache_key`).

Usage::

    introspector = Introspector(issuer, session, on_answer=metrics.introspected)
    claims = await introspector.active_claims(token, digest)   # or raises Denied
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote_plus

import aiohttp

from scopegate.config.model import Introspection, Issuer
from scopegate.errors import KeyFetchError
from scopegate.keys.claim_types import is_numeric_date
from scopegate.keys.fetch import check_url, discover, read_capped
from scopegate.reasons import Denied, Reason

LOG = logging.getLogger("scopegate.keys")
MAX_ANSWER_BYTES = 1_048_576
MAX_REMEMBERED_INACTIVE = 10_000  # bounds memory under a flood of random tokens
WARNING_INTERVAL = 30.0  # seconds between two log lines about failing calls
_NUMERIC_DATES = ("exp", "iat", "nbf")

AnswerHook = Callable[[str, str], None]  # issuer, result: active | inactive | error


def _type_problem(answer: Mapping[str, Any]) -> str | None:
    """What is wrong with the members of an active answer, or None (RFC 7662 §2.2)."""
    for name in _NUMERIC_DATES:
        if name in answer and not is_numeric_date(answer[name]):
            return f"{name} is not a number"
    for name in ("scope", "sub", "iss", "client_id"):
        if name in answer and not isinstance(answer[name], str):
            return f"{name} is not a string"
    aud = answer.get("aud")
    if aud is not None and not (
        isinstance(aud, str) or (isinstance(aud, list) and all(isinstance(a, str) for a in aud))
    ):
        return "aud is neither a string nor an array of strings"
    if "cnf" in answer and not isinstance(answer["cnf"], dict):
        return "cnf is not an object"
    return None


def basic_credentials(client_id: str, client_secret: str) -> str:
    """RFC 6749 §2.3.1: the id and secret form-encoded, joined by a colon, base64."""
    pair = f"{quote_plus(client_id)}:{quote_plus(client_secret)}"
    return "Basic " + base64.b64encode(pair.encode("utf-8")).decode("ascii")


class Introspector:
    """Introspects tokens at one issuer; `active_claims` is what the verifier calls."""

    def __init__(
        self,
        issuer: Issuer,
        session: aiohttp.ClientSession,
        *,
        on_answer: AnswerHook | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        assert issuer.introspection is not None
        self.issuer = issuer
        self.settings: Introspection = issuer.introspection
        self._session = session
        self._on_answer = on_answer
        self._clock = clock
        self._endpoint = self.settings.endpoint  # None until discovered
        self._calls: dict[bytes, asyncio.Task[dict[str, Any] | None]] = {}
        self._inactive: OrderedDict[bytes, float] = OrderedDict()  # digest -> remembered until
        self._warned_credentials = False
        self._last_warning = -math.inf

    def adopts(self, other: Introspector) -> bool:
        """Whether `other` (a previous generation's) asks the same endpoint the same way; then
        its remembered inactive tokens and discovered endpoint are as good as this one's."""
        return other.issuer.issuer == self.issuer.issuer and other.settings == self.settings

    async def active_claims(self, token: str, digest: bytes) -> dict[str, Any]:
        """The members of the issuer's answer for an active token; `Denied(inactive_token)` when
        it is not active, `Denied(issuer_unavailable)` when no usable answer came."""
        if self._remembered_inactive(digest):
            raise Denied(Reason.INACTIVE_TOKEN, "the issuer says the token is not active")
        call = self._calls.get(digest)
        if call is None:
            call = asyncio.ensure_future(self._introspect(token, digest))
            self._calls[digest] = call
            call.add_done_callback(lambda done: self._call_done(digest, done))
        try:
            # Shielded: a request that goes away does not cancel the call others wait for.
            answer = await asyncio.shield(call)
        except KeyFetchError as failure:
            raise Denied(Reason.ISSUER_UNAVAILABLE, "the token could not be introspected",
                         retry_after=1) from failure  # fmt: skip
        if answer is None:
            raise Denied(Reason.INACTIVE_TOKEN, "the issuer says the token is not active")
        return answer

    def _call_done(self, digest: bytes, call: asyncio.Task[dict[str, Any] | None]) -> None:
        if self._calls.get(digest) is call:
            del self._calls[digest]
        if not call.cancelled():
            call.exception()  # retrieved here, should every waiter have gone away

    def _remembered_inactive(self, digest: bytes) -> bool:
        until = self._inactive.get(digest)
        if until is None:
            return False
        if until > self._clock():
            return True
        del self._inactive[digest]
        return False

    def _remember_inactive(self, digest: bytes) -> None:
        ttl = self.settings.negative_cache_ttl
        if ttl <= 0:
            return
        self._inactive[digest] = self._clock() + ttl
        self._inactive.move_to_end(digest)
        while len(self._inactive) > MAX_REMEMBERED_INACTIVE:
            self._inactive.popitem(last=False)

    async def _introspect(self, token: str, digest: bytes) -> dict[str, Any] | None:
        """One call: the active answer's members, None for an inactive token."""
        try:
            answer = await self._call(token)
        except KeyFetchError as failure:
            now = self._clock()
            if now - self._last_warning >= WARNING_INTERVAL:  # not a line per request
                self._last_warning = now
                LOG.warning("introspection at %s failed: %s", self.issuer.issuer, failure.reason)
            self._report("error")
            raise
        if answer.get("active") is not True:
            self._remember_inactive(digest)
            self._report("inactive")
            return None
        self._report("active")
        return answer

    def _report(self, result: str) -> None:
        if self._on_answer is not None:
            self._on_answer(self.issuer.issuer, result)

    async def endpoint(self) -> str:
        """The endpoint configured, or else discovered once (a failed discovery is tried again
        at the next call)."""
        if self._endpoint is None:
            self._endpoint = await discover(
                self._session, self.issuer.issuer, "introspection_endpoint",
                seconds=self.settings.timeout, max_bytes=MAX_ANSWER_BYTES,
            )  # fmt: skip
        return self._endpoint

    async def _call(self, token: str) -> dict[str, Any]:
        settings = self.settings
        form = {"token": token, "token_type_hint": "access_token"}
        headers = {"Accept": "application/json"}
        if settings.auth_method == "client_secret_basic":
            headers["Authorization"] = basic_credentials(settings.client_id, settings.client_secret)
        else:
            form |= {"client_id": settings.client_id, "client_secret": settings.client_secret}
        try:
            async with asyncio.timeout(settings.timeout):
                url = await self.endpoint()
                check_url(url)
                async with self._session.post(
                    url, data=form, headers=headers, allow_redirects=False
                ) as response:
                    status = response.status
                    if status != 200:
                        self._say_if_refused(status)
                        raise KeyFetchError(url, f"answered HTTP {status} (expected 200)")
                    body = await read_capped(response, url, MAX_ANSWER_BYTES)
        except TimeoutError:
            raise KeyFetchError(
                self._endpoint or self.issuer.issuer, f"no answer within {settings.timeout:g} s"
            ) from None
        except (aiohttp.ClientError, OSError) as exc:
            where = self._endpoint or self.issuer.issuer
            raise KeyFetchError(where, f"could not be reached ({type(exc).__name__})") from None
        return self._parsed(url, body)

    def _say_if_refused(self, status: int) -> None:
        if status in (401, 403) and not self._warned_credentials:
            self._warned_credentials = True
            LOG.error(
                "the introspection endpoint of %s refuses scopegate's client credentials "
                "(HTTP %d): check introspection.client_id, client_secret and auth_method",
                self.issuer.issuer, status,
            )  # fmt: skip

    @staticmethod
    def _parsed(url: str, body: bytes) -> dict[str, Any]:
        try:
            answer = json.loads(body.decode("utf-8"))
        except (ValueError, RecursionError):
            raise KeyFetchError(url, "the answer is not JSON") from None
        if not isinstance(answer, dict) or not isinstance(answer.get("active"), bool):
            raise KeyFetchError(url, "the answer is not a JSON object with a boolean active")
        if answer["active"] and (problem := _type_problem(answer)) is not None:
            raise KeyFetchError(url, f"the answer is malformed: {problem}")
        return answer
