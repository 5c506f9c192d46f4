"""What a cached token and a route cost in Python heap, measured with tracemalloc in-process.

    .venv/bin/python bench/heap.py [--tokens 20000] [--routes 10000]

The memory scenario of `run.py` measures a whole server's RSS; this splits the part that grows
with use into bytes per cached token (verified, cached and its identity headers worked out, as
the gateway does on a token's first request) and bytes per route (the configuration as a
worker receives it from the loading child, then the route table compiled from it), and lists
the allocation sites that hold the most. Tokens are the benchmark's: ES256, six claims.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import math
import tempfile
import tracemalloc
from pathlib import Path
from typing import cast

import jwt
import peers

from scopegate.commands.loading import load_compact
from scopegate.config.model import Forwarding, Issuer
from scopegate.devtools.keys import generate
from scopegate.devtools.tokens import mint
from scopegate.pipeline.routing import compile_routes
from scopegate.pipeline.verify import TokenVerifier
from scopegate.proxy.exchange import Exchange
from scopegate.proxy.headers import HeaderPolicy
from scopegate.runtime import kept_claims
from scopegate.server.request import Request


class _Headerless:
    """What the header policy reads of a request: a GET without headers or body."""

    raw_headers: list[tuple[bytes, bytes]] = []  # noqa: RUF012 - read only
    remote = None
    method = "GET"
    scheme = "http"
    content_length = None
    body_exists = False


_HEADERLESS_GET = cast(Request, _Headerless())

ISSUER = "https://issuer.example/"


class _OneKey:
    generation = 1
    usable_for = math.inf

    def __init__(self, key: jwt.PyJWK) -> None:
        self._key = key

    async def key_for(self, kid: str | None, alg: str) -> jwt.PyJWK:
        return self._key


def _traced() -> int:
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


def _top(limit: int) -> list[str]:
    stats = tracemalloc.take_snapshot().statistics("lineno")[:limit]
    return [f"    {stat}" for stat in stats]


async def _per_token(count: int) -> list[str]:
    key = generate("ES256")
    issuer = Issuer(ISSUER, audiences=(peers.AUDIENCE,), algorithms=("ES256",))
    forward = Forwarding()
    verifier = TokenVerifier(
        [issuer],
        {ISSUER: _OneKey(jwt.PyJWK.from_dict(key.public_jwk()))},
        cache_size=count,
        kept_claims=kept_claims(forward),
    )
    policy = HeaderPolicy(forward)
    tokens = [
        mint(key, issuer=ISSUER, audience=peers.AUDIENCE, subject=f"user-{i}",
             scopes=("read:contacts",), lifetime=3600)
        for i in range(count)
    ]  # fmt: skip
    tracemalloc.start()
    before = _traced()
    for token in tokens:
        principal = await verifier.verify(token)
        policy.request_head(Exchange(_HEADERLESS_GET, "r", principal=principal, target="/"))
    grown = _traced() - before
    lines = [f"per cached token: {grown / count:,.0f} bytes ({count:,} tokens)", *_top(8)]
    tracemalloc.stop()
    return lines


def _per_route(count: int) -> list[str]:
    with tempfile.TemporaryDirectory(prefix="scopegate-heap-") as tmp:
        path = peers.scopegate_config(Path(tmp), "routes", ISSUER, 9, 9, routes=count)
        tracemalloc.start()
        start = _traced()
        config = load_compact(path)
        loaded = _traced()
        table = compile_routes(config.routes).table
        compiled = _traced()
        lines = [
            f"per route: configuration {(loaded - start) / count:,.0f} bytes, route table "
            f"{(compiled - loaded) / count:,.0f} bytes ({len(table):,} routes)",
            *_top(8),
        ]
        tracemalloc.stop()
        return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, default=20_000)
    parser.add_argument("--routes", type=int, default=10_000)
    args = parser.parse_args()
    print("\n".join(asyncio.run(_per_token(args.tokens))))
    print("\n".join(_per_route(args.routes)))


if __name__ == "__main__":
    main()
