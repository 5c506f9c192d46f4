"""RFC 9449 §9: nonces a resource server hands out, so that a proof cannot be made in advance.

With `dpop_nonce: true` on an issuer, a proof for one of its tokens must carry a nonce this
gateway issued lately. One without (or with an old one) is answered 401 with
`WWW-Authenticate: DPoP error="use_dpop_nonce"` and a `DPoP-Nonce` header; the client signs a
new proof with it and sends the request again.

A nonce is stateless: the number of the current `INTERVAL`-second window, and an HMAC of it
under a key, base64url. It is accepted during its own window and the next one, so it is good for
`INTERVAL` to `2 × INTERVAL` seconds; nothing is stored per client. Every process that must accept
another's nonces needs the same key: `scopegate serve --workers` shares one with its workers
through the environment (`NONCE_KEY_ENV`), and replicas behind one load balancer should be given
one there too (any 32 random bytes, hex); otherwise each process draws its own.

Usage::

    nonces = NonceSource.from_environment()
    nonces.current(now)            # for the DPoP-Nonce header
    nonces.accepts(nonce, now)     # for check_proof's `nonce`
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import struct
from collections.abc import Mapping

from scopegate.pipeline.dpop import b64url

INTERVAL = 60  # seconds a nonce window lasts
NONCE_KEY_ENV = "SCOPEGATE_DPOP_NONCE_KEY"
_WINDOW = struct.Struct(">Q")
_MAC_BYTES = 16


class NonceSource:
    def __init__(self, key: bytes) -> None:
        self._key = key

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] = os.environ) -> NonceSource:
        """The key in `NONCE_KEY_ENV` (hex), else a fresh random one for this process."""
        text = environ.get(NONCE_KEY_ENV)
        if text:
            try:
                return cls(bytes.fromhex(text))
            except ValueError:
                pass  # not hex: a key of its own, as without one (never a guessable default)
        return cls(secrets.token_bytes(32))

    def _for_window(self, window: int) -> str:
        packed = _WINDOW.pack(window)
        mac = hmac.new(self._key, packed, hashlib.sha256).digest()[:_MAC_BYTES]
        return b64url(packed + mac)

    def current(self, now: float) -> str:
        return self._for_window(int(now // INTERVAL))

    def accepts(self, nonce: str, now: float) -> bool:
        if not nonce.isascii():  # a client's text: compare_digest takes ASCII strings only
            return False
        window = int(now // INTERVAL)
        return any(hmac.compare_digest(nonce, self._for_window(w)) for w in (window, window - 1))
