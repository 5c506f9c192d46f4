"""Where a DPoP request's extra time goes: each step of checking one proof (RFC 9449 §4.3), timed
natively in this process, beside verifying a new JWT and answering a cached one.

    .venv/bin/python bench/dpop_proofs.py [--proofs 2000] [--rounds 5]

The gateway checks a fresh proof on every DPoP request (a proof is good once), so a DPoP request
costs a warm token's work plus `check_proof` plus the replay check. The steps below are those
`check_proof` takes, each timed alone over the same proofs: the medians of `--rounds` rounds,
in microseconds of CPU per proof. `instructions.py` gives the whole request's cost.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable

import jwt

from scopegate.devtools.dpop import make_proof
from scopegate.devtools.keys import generate
from scopegate.devtools.tokens import mint
from scopegate.pipeline.dpop import (
    ReplayCache,
    _public_key,
    access_token_hash,
    check_proof,
    normalise_url,
    thumbprint,
)
from scopegate.pipeline.verify import parse_unverified

URL = "https://api.example.com/contacts"
ALGORITHMS = ("ES256", "RS256", "EdDSA")
Step = Callable[[int], object]


def _cpu_per_call(function: Step, count: int) -> float:
    started = time.process_time()
    for index in range(count):
        function(index)
    return (time.process_time() - started) / count * 1e6


def _steps(alg: str, token: str, count: int) -> dict[str, Step]:
    """Each step of checking `count` proofs signed with an `alg` key, as a function of the
    proof's index."""
    key = generate(alg)
    proofs = [make_proof(key, "GET", URL, access_token=token) for _ in range(count)]
    parsed = [parse_unverified(proof) for proof in proofs]
    jwk = parsed[0][0]["jwk"]
    public = _public_key(jwk, alg)
    signing_inputs = [proof.rpartition(".")[0].encode() for proof in proofs]
    signatures = [jwt.utils.base64url_decode(proof.rpartition(".")[2]) for proof in proofs]
    replays = ReplayCache(max_entries=count * 10)

    def whole(i: int) -> object:
        return check_proof([proofs[i]], method="GET", url=URL, access_token=token,
                           algorithms=ALGORITHMS, now=time.time())  # fmt: skip

    return {
        "whole check_proof": whole,
        "parse (base64url, strict JSON)": lambda i: parse_unverified(proofs[i]),
        "load the jwk (PyJWK)": lambda i: _public_key(parsed[i][0]["jwk"], alg),
        "verify the signature": lambda i: public.Algorithm.verify(
            signing_inputs[i], public.key, signatures[i]
        ),
        "thumbprint (RFC 7638)": lambda i: thumbprint(jwk),
        "ath (SHA-256 of the token)": lambda i: access_token_hash(token),
        "htu normalised, both URLs": lambda i: (normalise_url(URL), normalise_url(URL)),
        "replay cache": lambda i: replays.first_use(
            f"{alg}{i}{time.time()}", time.time() + 300, time.time()
        ),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--proofs", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    token = mint(generate("RS256"), issuer="https://id.example.com/", audience="api")
    results: dict[str, dict[str, list[float]]] = {}
    for alg in ALGORITHMS:
        steps = _steps(alg, token, args.proofs)
        results[alg] = {name: [] for name in steps}
        for _ in range(args.rounds):
            for name, step in steps.items():
                results[alg][name].append(_cpu_per_call(step, args.proofs))
    print(f"Date: {time.strftime('%Y-%m-%d')}. Python {sys.version.split()[0]}, PyJWT "
          f"{jwt.__version__}; {args.proofs} proofs, median of {args.rounds} rounds, µs of CPU "
          f"per proof. Token: RS256 JWT of {len(token)} bytes.\n")  # fmt: skip
    print("| step | " + " | ".join(f"{alg} proof" for alg in results) + " |")
    print("|---|" + "---:|" * len(results))
    for name in next(iter(results.values())):
        cells = [f"{statistics.median(results[alg][name]):.1f}" for alg in results]
        print(f"| {name} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
