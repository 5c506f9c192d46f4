"""A development issuer for the benchmark: serves its JWKS and writes tokens to a file.

python bench/issuer.py PORT TOKENS_FILE COUNT AUDIENCE SCOPES [ALG]

ES256 signs some fifty times faster than RS256: the 100,000-token memory scenario uses it.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from aiohttp import web

from scopegate.devtools.issuer import DevIssuer
from scopegate.devtools.keys import generate


async def main(
    port: int, tokens_file: Path, count: int, audience: str, scopes: str, alg: str
) -> None:
    issuer = DevIssuer(generate(alg))
    runner: web.AppRunner = await issuer.start("127.0.0.1", port)
    tokens = [
        issuer.mint(
            audience=audience, subject=f"user-{i}", scopes=tuple(scopes.split()), lifetime=3600
        )
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
