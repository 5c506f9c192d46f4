"""A development issuer for the benchmark: serves its JWKS and writes tokens to a file.

python bench/issuer.py PORT TOKENS_FILE COUNT AUDIENCE SCOPES [ALG]

ES256 signs some fifty times faster than RS256: the 100,000-token memory scenario uses it.

Beside TOKENS_FILE it writes the tokens of SPEC §6.4, a few of each: `.opaque` (opaque tokens it
introspects, as client INTROSPECTION_CLIENT with INTROSPECTION_SECRET), `.dpop` (JWTs bound to
the key in `.dpop.pem`, which the bench signs its proofs with).
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from aiohttp import web

from scopegate.devtools.dpop import confirmation
from scopegate.devtools.issuer import DevIssuer
from scopegate.devtools.keys import generate

INTROSPECTION_CLIENT = "scopegate-bench"
INTROSPECTION_SECRET = "bench-introspection-secret"
OTHER_KINDS = 10  # opaque and DPoP-bound tokens: the cases that use them reuse one


async def main(
    port: int, tokens_file: Path, count: int, audience: str, scopes: str, alg: str
) -> None:
    issuer = DevIssuer(
        generate(alg), client_id=INTROSPECTION_CLIENT, client_secret=INTROSPECTION_SECRET
    )
    runner: web.AppRunner = await issuer.start("127.0.0.1", port)
    granted = tuple(scopes.split())
    client = generate("ES256")
    opaque = [
        issuer.mint_opaque(audience=audience, subject=f"user-{i}", scopes=granted, lifetime=3600)
        for i in range(OTHER_KINDS)
    ]
    bound = [
        issuer.mint(audience=audience, subject=f"user-{i}", scopes=granted, lifetime=3600,
                    extra_claims={"cnf": confirmation(client)})
        for i in range(OTHER_KINDS)
    ]  # fmt: skip
    tokens_file.with_suffix(".opaque").write_text("\n".join(opaque) + "\n")
    tokens_file.with_suffix(".dpop").write_text("\n".join(bound) + "\n")
    tokens_file.with_suffix(".dpop.pem").write_bytes(client.private_pem())
    tokens = [
        issuer.mint(audience=audience, subject=f"user-{i}", scopes=granted, lifetime=3600)
        for i in range(count)
    ]
    await asyncio.to_thread(tokens_file.write_text, "\n".join(tokens) + "\n")
    print(issuer.url, flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(
        main(
            int(sys.argv[1]),
            Path(sys.argv[2]),
            int(sys.argv[3]),
            sys.argv[4],
            sys.argv[5],
            sys.argv[6] if len(sys.argv) > 6 else "RS256",
        )
    )
