"""RFC 9449 DPoP-bound tokens at the gateway (SPEC §6.4): which requests must prove possession
of a key, and the verdict.

Per issuer, `dpop` says what its tokens may or must do:

- `disabled` (the default): only `Bearer`. When no issuer accepts DPoP, the DPoP scheme is not
  even read (`Authorization: DPoP` is no Bearer token: `missing_token`, as SPEC §3 says) and no
  challenge names it: a file that does not mention DPoP behaves as it did before DPoP existed;
- `allowed`: `Authorization: DPoP <token>` is accepted with a sound proof;
- `required`: a token of this issuer without `cnf.jkt` is refused.

Under every mode a token with `cnf.jkt` (DPoP-bound) is accepted only with the DPoP scheme and a
proof signed by that key: sent as `Bearer` it is refused, as RFC 9449 §7.2 asks, since the whole
point of binding is that a stolen token is useless without the key.

The answers: a proof that fails a check of §4.3 (`pipeline.dpop.check_proof`), or whose `jti`
was seen before within its window, is 401 `invalid_dpop_proof`; a sound proof by another key
than `cnf.jkt`, a bound token sent as `Bearer`, an unbound token sent as `DPoP`, or an unbound
token under `required`, is 401 `invalid_token` with reason `token_binding_mismatch`. The
challenges name the DPoP scheme with the proof algorithms accepted (`algs`).

The URL a proof's `htu` must name is the request's public URL: `resource_metadata.public_url`
when it is configured (behind a proxy that terminates TLS or rewrites the host, that is what
the client called; its origin only), else the port's scheme and the request's `Host`; then the
request's path as it arrived.

A proof is remembered until its window closes, by its key's thumbprint and `jti`, in this
process (`refuse_replay`) and, when the rate limits' store is Redis, in Redis too, so that a
proof cannot be used again at another worker or replica (`gateway`).

Usage::

    policy = DpopPolicy(config.issuers, public_url, ReplayCache())
    # for a verified token: only a DPoP request, a bound token, or under `required`
    if dpop_scheme or principal.dpop_bound_to is not None or policy.required_somewhere:
        url = policy.url(request.scheme, host, path)
        proof = policy.check(principal, token, dpop_scheme, proofs, method=m, url=url, now=now)
        if proof is not None:
            policy.refuse_replay(proof, now)
"""

from __future__ import annotations

import dataclasses
import functools
import hmac
from collections.abc import Sequence
from urllib.parse import urlsplit

from scopegate.config.algorithms import SIGNING_ALGORITHMS
from scopegate.config.model import DpopMode, Issuer
from scopegate.pipeline import Principal
from scopegate.pipeline.dpop import (
    NonceRequired,
    Proof,
    ReplayCache,
    check_proof,
    refuse_replay,
)
from scopegate.pipeline.dpop_nonce import NonceSource
from scopegate.reasons import Denied, Reason

PROOF_MAX_AGE = 300.0  # a proof's `iat` may be this old, and it is remembered until then
PROOF_LEEWAY = 5.0  # and this far in the future (clock skew between client and gateway)


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _mismatch(detail: str, *, dpop: bool) -> Denied:
    return Denied(Reason.TOKEN_BINDING_MISMATCH, detail, dpop=dpop)


class DpopPolicy:
    def __init__(
        self,
        issuers: Sequence[Issuer],
        public_url: str | None,
        replay: ReplayCache,
        nonces: NonceSource | None = None,
    ):
        self._modes: dict[str | None, DpopMode] = {i.issuer: i.dpop for i in issuers}
        # RFC 9449 §9: the issuers whose tokens' proofs must carry a nonce issued here.
        self._nonce_issuers = frozenset(i.issuer for i in issuers if i.dpop_nonce)
        self.nonces = nonces if nonces is not None else NonceSource.from_environment()
        self.required_somewhere = "required" in self._modes.values()
        self.offered = any(mode != "disabled" for mode in self._modes.values())
        self.algorithms = SIGNING_ALGORITHMS
        # The challenge's `algs` (RFC 9449 §7.1), when some issuer accepts DPoP at all.
        self.algs: str | None = " ".join(self.algorithms) if self.offered else None
        # Only the origin: the path is the request's, as the client sent it (a `public_url`
        # with a path names the resource, and requests arrive with that path already).
        self.public_origin = None if public_url is None else _origin(public_url)
        self.replay = replay

    def url(self, scheme: str, host: str | None, path: str) -> str:
        """The request's public URL without its query: what `htu` must name."""
        if self.public_origin is not None:
            return self.public_origin + path
        return f"{scheme}://{host or ''}{path}"

    def check(
        self,
        principal: Principal,
        token: str,
        dpop_scheme: bool,
        proofs: Sequence[str],
        *,
        method: str,
        url: str,
        now: float,
    ) -> Proof | None:
        """Refuse unless the request meets its issuer's DPoP mode and the token's binding; the
        proof, when the request carried one (for `refuse_replay`)."""
        mode = self._modes.get(principal.issuer, "disabled")
        bound_to = principal.dpop_bound_to
        if not dpop_scheme:
            if bound_to is not None:
                detail = "the token is DPoP-bound: send it with the DPoP scheme and a proof"
                raise _mismatch(detail, dpop=False)
            if mode == "required":
                raise _mismatch("this issuer's tokens must be DPoP-bound (cnf.jkt)", dpop=False)
            return None
        if mode == "disabled":
            raise _mismatch("this issuer's tokens are not accepted with DPoP", dpop=True)
        nonce = None
        if principal.issuer in self._nonce_issuers:
            nonce = functools.partial(self.nonces.accepts, now=now)
        try:
            proof = check_proof(
                proofs, method=method, url=url, access_token=token, algorithms=self.algorithms,
                now=now, max_age=PROOF_MAX_AGE, leeway=PROOF_LEEWAY, nonce=nonce,
            )  # fmt: skip
        except NonceRequired as denied:  # RFC 9449 §9: here is one to use
            fresh = self.nonces.current(now).encode("ascii")
            headers = (*denied.headers, (b"DPoP-Nonce", fresh))
            raise dataclasses.replace(denied, dpop=True, headers=headers) from None
        except Denied as denied:  # said in the DPoP challenge, whatever the check
            raise dataclasses.replace(denied, dpop=True) from None
        if bound_to is None:
            raise _mismatch("the DPoP scheme needs a DPoP-bound token (cnf.jkt)", dpop=True)
        if not hmac.compare_digest(proof.jkt.encode(), bound_to.encode("utf-8", "surrogatepass")):
            raise _mismatch("the proof is signed by another key than the token is bound to",
                            dpop=True)  # fmt: skip
        return proof

    def refuse_replay(self, proof: Proof, now: float) -> None:
        """Remember a sound proof in this process until its window closes; `invalid_dpop_proof`
        if it was used before. Called last, so that a proof refused for any other reason is
        not remembered. (A shared store, when there is one, is asked as well: `gateway`.)"""
        try:
            refuse_replay(proof, self.replay, now=now, max_age=PROOF_MAX_AGE)
        except Denied as denied:
            raise dataclasses.replace(denied, dpop=True) from None
