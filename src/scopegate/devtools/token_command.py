"""`scopegate token`: mint a development token to try a configuration with.

With `--key`, the token is a JWT signed locally with that private key (PEM). Without one it is
only minted by a `scopegate demo` issuer, which announces a development token endpoint in its
discovery document: no real identity provider does, so this can never be pointed at one. Only
such an issuer mints opaque tokens (`--opaque`): it alone remembers what they stand for, and
tells it to the gateway at its introspection endpoint (RFC 7662).

With `--dpop-key`, the token is bound to that key (`cnf.jkt`, RFC 9449) and a DPoP proof for
one request (`--method`, `--url`) is printed with it, as shell assignments::

    DPOP_TOKEN=eyJ...
    DPOP_PROOF=eyJ...

A proof is good for one request (its `jti` is remembered): `--proof-for TOKEN` makes a fresh one
for a token already bound to the key. `--acr` and `--auth-time` add the RFC 9470 claims a
step-up route checks.
"""

from __future__ import annotations

import asyncio
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit

import aiohttp
import jwt

from scopegate.devtools.dpop import confirmation, make_proof
from scopegate.devtools.issuer import DEV_TOKEN_ENDPOINT
from scopegate.devtools.keys import SigningKey, load_pem
from scopegate.devtools.tokens import mint, step_up
from scopegate.errors import ScopegateError

DEFAULT_SUBJECT = "dev-user"
DEFAULT_LIFETIME = 300
DEFAULT_METHOD = "GET"
TOKEN_VARIABLE = "DPOP_TOKEN"
PROOF_VARIABLE = "DPOP_PROOF"

_METHOD = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # an HTTP token (RFC 9110 §5.6.2)
_ACCESS_TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")  # b64token (RFC 6750 §2.1)


class TokenRefused(ScopegateError):
    """Why no token was minted, in a sentence for the terminal."""


class TokenMisuse(TokenRefused):
    """Options that cannot go together, or a key that does not fit the token: exit 2."""


@dataclass(frozen=True)
class TokenOptions:
    """What `scopegate token` was asked for; None: not given (its default applies)."""

    issuer: str | None = None
    audience: str | None = None
    key: Path | None = None
    kid: str | None = None
    alg: str | None = None
    subject: str | None = None
    scopes: str | None = None
    lifetime: int | None = None
    opaque: bool = False
    dpop_key: Path | None = None
    url: str | None = None
    method: str | None = None
    acr: str | None = None
    auth_time: int | None = None
    proof_for: str | None = None

    def token_flags(self) -> list[tuple[str, object]]:
        """The options that shape a new token, with their values."""
        return [
            ("--issuer", self.issuer),
            ("--audience", self.audience),
            ("--key", self.key),
            ("--kid", self.kid),
            ("--alg", self.alg),
            ("--subject", self.subject),
            ("--scopes", self.scopes),
            ("--lifetime", self.lifetime),
            ("--opaque", self.opaque or None),
            ("--acr", self.acr),
            ("--auth-time", self.auth_time),
        ]


def usage_problem(options: TokenOptions) -> str | None:
    """Why these options cannot go together, in one sentence, or None."""
    if options.proof_for is not None:
        if options.dpop_key is None or options.url is None:
            return "--proof-for needs --dpop-key (the key the token is bound to) and --url"
        given = [flag for flag, value in options.token_flags() if value is not None]
        if given:
            return f"--proof-for makes a proof for a token you have: leave out {', '.join(given)}"
        if not _ACCESS_TOKEN.fullmatch(options.proof_for):
            return "--proof-for takes an access token as sent, e.g. the DPOP_TOKEN printed before"
        return _request_problem(options.url, options.method)
    if options.issuer is None or options.audience is None:
        return "--issuer and --audience are required to mint a token"
    if options.opaque and options.key is not None:
        return (
            "--opaque needs a demo issuer, the only one that remembers what an opaque token "
            "stands for: leave out --key"
        )
    if options.dpop_key is None:
        if options.url is not None or options.method is not None:
            return "--url and --method say what a DPoP proof is for: they go with --dpop-key"
        return None
    if options.url is None:
        return "--dpop-key needs --url, the gateway URL the request goes to, which the proof names"
    return _request_problem(options.url, options.method)


def _request_problem(url: str, method: str | None) -> str | None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"--url must be an absolute http:// or https:// URL, not {url!r}"
    if method is not None and not _METHOD.fullmatch(method):
        return f"--method must be an HTTP method such as GET, not {method!r}"
    return None


async def _from_demo_issuer(issuer: str, body: dict[str, Any], opaque: bool) -> str:
    discovery_url = issuer.rstrip("/") + "/.well-known/openid-configuration"
    timeout = aiohttp.ClientTimeout(total=5)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        try:
            async with session.get(discovery_url) as response:
                document = await response.json(content_type=None)
            endpoint = document.get(DEV_TOKEN_ENDPOINT) if isinstance(document, dict) else None
            if not isinstance(endpoint, str):
                instead = (
                    "only a demo issuer mints opaque tokens; leave out --opaque and pass --key "
                    "to sign a JWT"
                    if opaque
                    else "pass --key with a private key"
                )
                raise TokenRefused(f"{issuer} is not a scopegate demo issuer: {instead}")
            async with session.post(endpoint, json=body) as response:
                answer = await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise TokenRefused(f"could not reach {discovery_url}: {exc!r}") from exc
    token = answer.get("access_token") if isinstance(answer, dict) else None
    if not isinstance(token, str):
        raise TokenRefused(f"the demo issuer refused: {answer}")
    return token


def _minted(options: TokenOptions, bound_to: SigningKey | None) -> str:
    """A new token as `options` ask, bound to `bound_to` when given."""
    issuer, audience = options.issuer, options.audience
    if issuer is None or audience is None:
        raise TokenMisuse("--issuer and --audience are required to mint a token")
    subject = DEFAULT_SUBJECT if options.subject is None else options.subject
    scopes = "" if options.scopes is None else options.scopes
    lifetime = DEFAULT_LIFETIME if options.lifetime is None else options.lifetime
    claims = step_up(options.acr, options.auth_time)
    if options.key is not None:
        if bound_to is not None:
            claims["cnf"] = confirmation(bound_to)
        signing_key = load_pem(options.key, kid=options.kid, alg=options.alg)
        return mint(
            signing_key,
            issuer=issuer,
            audience=audience,
            subject=subject,
            scopes=tuple(scopes.split()),
            lifetime=lifetime,
            extra_claims=claims,
        )
    body: dict[str, Any] = {
        "audience": audience,
        "subject": subject,
        "scope": scopes,
        "lifetime": lifetime,
        **claims,
    }
    if options.opaque:
        body["format"] = "opaque"
    if bound_to is not None:
        body["jkt"] = confirmation(bound_to)["jkt"]
    return asyncio.run(_from_demo_issuer(issuer, body, options.opaque))


def _check_binding(token: str, key: SigningKey) -> None:
    """A JWT bound to another key would be refused with any proof this key makes: say so now.
    An opaque token cannot be looked into here."""
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return
    cnf = claims.get("cnf")
    bound = cnf.get("jkt") if isinstance(cnf, dict) else None
    if isinstance(bound, str) and bound != confirmation(key)["jkt"]:
        raise TokenMisuse("the token is bound to another key than --dpop-key (its cnf.jkt differs)")


def _assignments(pairs: list[tuple[str, str]]) -> str:
    return "\n".join(f"{name}={shlex.quote(value)}" for name, value in pairs)


def _output(options: TokenOptions) -> str:
    """What the command prints: the token alone, or with --dpop-key the shell assignments of
    the token and its proof (only the proof with --proof-for)."""
    proof_key = None
    if options.dpop_key is not None:
        try:
            proof_key = load_pem(options.dpop_key)
        except (OSError, ValueError) as exc:
            raise TokenRefused(f"cannot use {options.dpop_key} as the DPoP key: {exc}") from exc
    if proof_key is None:
        return _minted(options, None)
    assert options.url is not None  # usage_problem saw to it
    method = options.method or DEFAULT_METHOD
    if options.proof_for is not None:
        _check_binding(options.proof_for, proof_key)
        proof = make_proof(proof_key, method, options.url, access_token=options.proof_for)
        return _assignments([(PROOF_VARIABLE, proof)])
    token = _minted(options, proof_key)
    proof = make_proof(proof_key, method, options.url, access_token=token)
    return _assignments([(TOKEN_VARIABLE, token), (PROOF_VARIABLE, proof)])


def run_token(options: TokenOptions, out: TextIO, err: TextIO) -> int:
    """Print the token (and proof) asked for: exit 0; options that do not go together: exit 2;
    a token that could not be had: exit 1. Either failure is one sentence on `err`."""
    problem = usage_problem(options)
    if problem is not None:
        print(f"scopegate token: {problem}", file=err)
        return 2
    try:
        printed = _output(options)
    except TokenMisuse as exc:
        print(f"scopegate token: {exc}", file=err)
        return 2
    except (TokenRefused, OSError, ValueError) as exc:
        print(f"scopegate token: {exc}", file=err)
        return 1
    print(printed, file=out)
    return 0
