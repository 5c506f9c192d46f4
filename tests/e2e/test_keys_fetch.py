"""Fetching keys from a real JWKS endpoint on loopback: which JWKs are usable and which key a
token gets, every way a fetch can fail (each with its reason), and the transport rules
(https, or plain http to loopback only). The store built on top: tests/e2e/test_keys_store.py."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from scopegate.devtools.keys import SigningKey, generate
from scopegate.errors import KeyFetchError
from scopegate.keys.fetch import FetchedKeySet, check_url, fetch_jwks, max_age
from tests.support.jwks_server import JwksServer

A = generate("RS256", kid="a").public_jwk()
B = generate("RS256", kid="b").public_jwk()
E = generate("ES256", kid="e").public_jwk()
E384 = generate("ES384", kid="e384").public_jwk()
SHORT = SigningKey("short", "RS256", rsa.generate_private_key(public_exponent=65537, key_size=1024))
FULL_PRIVATE = rsa.generate_private_key(public_exponent=65537, key_size=2048)
PRIVATE = {**RSAAlgorithm.to_jwk(FULL_PRIVATE, as_dict=True), "kid": "private"}
ALGORITHMS = ("RS256", "ES256")
MiB = 1 << 20


def without(jwk: dict[str, Any], *names: str) -> dict[str, Any]:
    return {name: value for name, value in jwk.items() if name not in names}


@pytest.fixture(name="server")
async def _server() -> AsyncIterator[JwksServer]:
    async with JwksServer([]) as server:
        yield server


async def fetch(
    server: JwksServer, session: aiohttp.ClientSession, *keys: Any, max_bytes: int = MiB
) -> FetchedKeySet:
    if keys:
        server.document = {"keys": list(keys)}
    return await fetch_jwks(session, server.jwks_uri, ALGORITHMS, seconds=0.3, max_bytes=max_bytes)


@pytest.mark.parametrize(
    ("keys", "usable"),
    [
        pytest.param(
            [A, E], {("a", "RS256"), ("e", "ES256")}, id="RSA and EC keys, each for its algorithm"
        ),
        pytest.param(
            [without(A, "use", "alg")], {("a", "RS256")}, id="no use and no alg: fits by kty"
        ),
        pytest.param([{**A, "use": "enc"}, B], {("b", "RS256")}, id="use enc is skipped"),
        pytest.param(
            [{**A, "key_ops": ["encrypt"]}, B],
            {("b", "RS256")},
            id="key_ops without verify is skipped",
        ),
        pytest.param(
            [{**A, "key_ops": ["verify"]}], {("a", "RS256")}, id="key_ops with verify is kept"
        ),
        pytest.param([PRIVATE, B], {("b", "RS256")}, id="a published private key is skipped"),
        pytest.param(
            [{"kty": "oct", "k": "c2VjcmV0", "kid": "h"}, B],
            {("b", "RS256")},
            id="a symmetric key is skipped",
        ),
        pytest.param(
            [{**A, "alg": "RS512"}, B],
            {("b", "RS256")},
            id="alg not on the issuer's list is skipped",
        ),
        pytest.param(
            [{**A, "alg": "ES256"}, B],
            {("b", "RS256")},
            id="alg not fitting the key type is skipped",
        ),
        pytest.param([E384, B], {("b", "RS256")}, id="EC key on another curve is skipped"),
        pytest.param(
            [{**A, "n": "!!not base64!!"}, B],
            {("b", "RS256")},
            id="an unparsable key is skipped, the rest kept",
        ),
        pytest.param(
            [{"kty": "EC", "crv": "P-256", "x": "AAAA", "y": "AAAA", "kid": "off"}, B],
            {("b", "RS256")},
            id="EC point off the curve is skipped",
        ),
        pytest.param(
            [SHORT.public_jwk(), B], {("b", "RS256")}, id="RSA key under 2048 bits is skipped"
        ),
        pytest.param([{**A, "kid": 7}, B], {("b", "RS256")}, id="kid not a string is skipped"),
        pytest.param(
            ["x", 7, None, [], B], {("b", "RS256")}, id="entries that are not objects are skipped"
        ),
    ],
)
async def test_only_usable_signing_keys_are_kept(
    server: JwksServer,
    session: aiohttp.ClientSession,
    keys: list[Any],
    usable: set[tuple[str, str]],
) -> None:
    fetched = await fetch(server, session, *keys)
    assert set(fetched.by_id) == usable
    assert fetched.count == len({kid for kid, _ in usable})


async def test_a_repeated_kid_goes_to_the_first_usable_key(
    server: JwksServer, session: aiohttp.ClientSession
) -> None:
    first, second = {**A, "kid": "dup"}, {**B, "kid": "dup"}
    fetched = await fetch(server, session, {**first, "use": "enc"}, second, first)
    chosen = fetched.by_id[("dup", "RS256")].key.public_numbers()
    assert chosen == jwt.PyJWK(second, algorithm="RS256").key.public_numbers()


@pytest.mark.parametrize(
    ("keys", "sole"),
    [
        pytest.param(
            [without(A, "kid")], {"RS256"}, id="one key without kid: kid-less tokens use it"
        ),
        pytest.param([A], {"RS256"}, id="one key with a kid: kid-less tokens use it too"),
        pytest.param(
            [without(A, "kid"), B], set(), id="two RSA keys: a kid-less token gets neither"
        ),
        pytest.param(
            [without(A, "kid"), without(B, "kid")], set(), id="two keys without kid: neither"
        ),
        pytest.param([A, B, E], {"ES256"}, id="the only EC key among RSA keys"),
    ],
)
async def test_a_token_without_kid_gets_a_key_only_when_it_is_the_only_one(
    server: JwksServer, session: aiohttp.ClientSession, keys: list[Any], sole: set[str]
) -> None:
    assert set((await fetch(server, session, *keys)).sole) == sole


@pytest.mark.parametrize(
    ("breakage", "reason"),
    [
        pytest.param({"mode": "down"}, "answered HTTP 503", id="provider answers 503"),
        pytest.param({"mode": "garbage"}, "not JSON", id="HTML instead of JSON"),
        pytest.param({"body": b"[" * 100_000}, "not JSON", id="JSON nested too deep to parse"),
        pytest.param({"body": '{"keys": []}'.encode("utf-16")}, "not JSON", id="JSON not in UTF-8"),
        pytest.param(
            {"mode": "huge"}, f"larger than {MiB} bytes", id="oversized body without a length"
        ),
        pytest.param({"mode": "empty"}, "no usable signing key", id="an empty key set"),
        pytest.param(
            {"document": {"keys": [{**A, "use": "enc"}]}},
            "no usable signing key",
            id="no usable key in the set",
        ),
        pytest.param({"document": {"key": [A]}}, 'no "keys" array', id="not a JWK Set"),
        pytest.param({"body": b"[1, 2]"}, 'no "keys" array', id="a JSON array"),
        pytest.param(
            {"delay": 1.0}, "no answer within 0.3 s", id="provider slower than the timeout"
        ),
    ],
)
async def test_every_failed_fetch_says_why(
    server: JwksServer, session: aiohttp.ClientSession, breakage: dict[str, Any], reason: str
) -> None:
    server.keys = [generate("RS256", kid="a")]
    for name, value in breakage.items():
        setattr(server, name, value)
    with pytest.raises(KeyFetchError) as caught:
        await fetch(server, session)
    assert reason in caught.value.reason and caught.value.url == server.jwks_uri


async def test_a_declared_length_over_the_cap_is_refused_before_reading(
    server: JwksServer, session: aiohttp.ClientSession
) -> None:
    with pytest.raises(KeyFetchError, match="larger than 100 bytes"):
        await fetch(server, session, A, max_bytes=100)


async def test_a_closed_port_is_a_fetch_error(
    server: JwksServer, session: aiohttp.ClientSession
) -> None:
    await server.stop()
    with pytest.raises(KeyFetchError, match="could not be fetched"):
        await fetch(server, session)


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://id.example.com/jwks", True),
        ("http://127.0.0.1:8080/jwks", True),
        ("http://127.8.9.10/jwks", True),
        ("http://[::1]/jwks", True),
        ("http://localhost/jwks", True),
        ("http://id.example.com/jwks", False),
        ("http://10.0.0.5/jwks", False),
        ("http://localhost.example.com/jwks", False),
        ("http://127.0.0.1.nip.io/jwks", False),
        ("ftp://id.example.com/jwks", False),
        ("file:///etc/passwd", False),
    ],
)
def test_keys_are_fetched_over_https_or_from_loopback_only(url: str, allowed: bool) -> None:
    if allowed:
        check_url(url)
        return
    with pytest.raises(KeyFetchError, match="only over https"):
        check_url(url)


async def test_plain_http_elsewhere_is_refused_before_any_connection(
    session: aiohttp.ClientSession,
) -> None:
    with pytest.raises(KeyFetchError, match="only over https"):
        await fetch_jwks(session, "http://192.0.2.1/jwks", ALGORITHMS, seconds=5, max_bytes=MiB)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        (None, None),
        ("max-age=300", 300.0),
        ("public, max-age=60, must-revalidate", 60.0),
        ('max-age="90"', 90.0),
        ("MAX-AGE=45", 45.0),
        ("s-maxage=600", None),
        ("no-store, max-age=600", None),
        ("max-age=soon", None),
    ],
)
def test_max_age_is_read_from_cache_control(header: str | None, seconds: float | None) -> None:
    assert max_age(header) == seconds
