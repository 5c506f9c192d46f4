"""`scopegate token`: mint a signed development token to try a configuration with.

With `--key`, the token is signed locally with that private key (PEM). Without one it is only
minted by a `scopegate demo` issuer, which announces a development token endpoint in its
discovery document: no real identity provider does, so this can never be pointed at one.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TextIO

import aiohttp

from scopegate.devtools.issuer import DEV_TOKEN_ENDPOINT
from scopegate.devtools.keys import SigningKey, load_pem
from scopegate.devtools.tokens import mint
from scopegate.errors import ScopegateError


class TokenRefused(ScopegateError):
    """Why no token was minted, in a sentence for the terminal."""


async def _from_demo_issuer(
    issuer: str, audience: str, subject: str, scopes: str, lifetime: int
) -> str:
    discovery_url = issuer.rstrip("/") + "/.well-known/openid-configuration"
    timeout = aiohttp.ClientTimeout(total=5)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        try:
            async with session.get(discovery_url) as response:
                document = await response.json(content_type=None)
            endpoint = document.get(DEV_TOKEN_ENDPOINT) if isinstance(document, dict) else None
            if not isinstance(endpoint, str):
                raise TokenRefused(
                    f"{issuer} is not a scopegate demo issuer: pass --key with a private key"
                )
            body = {"audience": audience, "subject": subject, "scope": scopes, "lifetime": lifetime}
            async with session.post(endpoint, json=body) as response:
                answer = await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise TokenRefused(f"could not reach {discovery_url}: {exc!r}") from exc
    token = answer.get("access_token") if isinstance(answer, dict) else None
    if not isinstance(token, str):
        raise TokenRefused(f"the demo issuer refused: {answer}")
    return token


def _signed_with(
    key: SigningKey, issuer: str, audience: str, subject: str, scopes: str, lifetime: int
) -> str:
    return mint(
        key,
        issuer=issuer,
        audience=audience,
        subject=subject,
        scopes=tuple(scopes.split()),
        lifetime=lifetime,
    )


def run_token(
    *,
    key: Path | None,
    kid: str | None,
    alg: str | None,
    issuer: str,
    audience: str,
    subject: str,
    scopes: str,
    lifetime: int,
    out: TextIO,
    err: TextIO,
) -> int:
    try:
        if key is None:
            token = asyncio.run(_from_demo_issuer(issuer, audience, subject, scopes, lifetime))
        else:
            signing_key = load_pem(key, kid=kid, alg=alg)
            token = _signed_with(signing_key, issuer, audience, subject, scopes, lifetime)
    except (TokenRefused, OSError, ValueError) as exc:
        print(f"scopegate token: {exc}", file=err)
        return 1
    print(token, file=out)
    return 0
